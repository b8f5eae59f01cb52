"""The compiled fast path against the torch reference loop (`forward_reference`): same circuit,
same input, same samples; and `forward` (kernel Newton + one differentiable step) against it."""

from __future__ import annotations

import hashlib
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import circuits
import nodal
from nodal import fast, signals
from nodal.errors import ConvergenceError
from nodal.newton import NewtonOptions

LENGTH = 1000       # the torch path takes milliseconds per sample: keep the file under a minute
TOLERANCE = 1e-9     # volts (and amperes for inductor states)


def _inputs(solver, peaks=(1.0,)) -> torch.Tensor:
    """[len(peaks), LENGTH, inputs]: plucked strings (a different one per item, at each peak
    voltage) on the audio input; each control source gets a slow sine, as an LFO would."""
    seconds = LENGTH / 48000
    controls = [signals.sine(2.0 + k, seconds, 48000, amplitude=0.5)
                for k in range(solver.n_inputs - 1)]
    items = [np.stack([signals.plucked_string(seconds, 48000, peak=peak, seed=b)] + controls, -1)
             for b, peak in enumerate(peaks)]
    return torch.tensor(np.stack(items))


@pytest.mark.parametrize("name", list(circuits.registry()))
def test_fast_path_gives_the_torch_paths_samples(name):
    solver = nodal.load(name)
    u = _inputs(solver, peaks=(0.5, 1.0))
    ref = solver.simulate(u, backend="torch")
    out = solver.simulate(u, backend="fast")
    assert out.y.shape == ref.y.shape == (2, LENGTH, 1)
    assert out.x.shape == ref.x.shape and out.s_final.shape == ref.s_final.shape
    assert out.y.dtype == torch.float64
    assert (out.y - ref.y).abs().max() <= TOLERANCE
    assert (out.x - ref.x).abs().max() <= TOLERANCE
    # the same Newton, so the same iteration count (a sample may differ by one where the
    # residual reaches its round-off floor in one summation order and not the other); where
    # the kernel splits the equations into blocks (the torch path solves them together),
    # each block stops when it has converged: no more iterations than the joint solve
    arrays = solver._kernel_arrays(solver.theta())
    if fast.layout(solver.eq, arrays.K).n_blocks <= 1:
        assert out.diagnostics.mean_iterations == pytest.approx(
            ref.diagnostics.mean_iterations, rel=1e-2)
    else:
        assert out.diagnostics.mean_iterations <= ref.diagnostics.mean_iterations * 1.01
    assert np.array_equal(out.diagnostics.level, ref.diagnostics.level)


def test_a_batch_equals_single_runs():
    solver = nodal.load("diode_clipper")
    u = _inputs(solver, peaks=(1.0, 0.7, 0.4))
    batch = solver.simulate(u)
    for b in range(3):
        single = solver.simulate(u[b:b + 1])
        assert torch.equal(batch.y[b], single.y[0])
        assert torch.equal(batch.x[b], single.x[0])


class _Filled:
    """numpy, except that `empty` hands out memory filled with one byte (as reused memory is)."""

    def __init__(self, byte: int):
        self.byte = byte

    def __getattr__(self, name):
        return getattr(np, name)

    def empty(self, *args, **kwargs):
        out = np.empty(*args, **kwargs)
        out.view(np.uint8)[...] = self.byte
        return out


@pytest.mark.parametrize("name, max_iter", [("rc_lowpass", 50), ("diode_clipper", 50),
                                            ("diode_clipper", 3)])
def test_every_output_sample_is_written_whatever_the_memory_held(monkeypatch, name, max_iter):
    # the sample loop's outputs are not zeroed before it runs (`fast._outputs`): every sample,
    # state and iteration count must be written by it, also for a circuit without ports and at
    # samples the fallback ladder solves (max_iter 3 sends some there)
    solver = nodal.load(name)
    solver.newton = NewtonOptions(max_iter=max_iter)
    u = _inputs(solver, peaks=(1.0, 0.5))
    runs = []
    for byte in (0x00, 0xA5, 0xFF):
        monkeypatch.setattr(fast, "np", _Filled(byte))
        runs.append(solver.simulate(u, backend="fast"))
    monkeypatch.undo()
    for out in runs[1:]:
        assert torch.equal(out.y, runs[0].y) and torch.equal(out.x, runs[0].x)
        assert np.array_equal(out.diagnostics.iterations, runs[0].diagnostics.iterations)
        assert np.array_equal(out.diagnostics.level, runs[0].diagnostics.level)
    ref = solver.simulate(u, backend="torch")
    assert (runs[0].y - ref.y).abs().max() <= TOLERANCE
    if name == "rc_lowpass":
        assert not runs[0].diagnostics.iterations.any()
    else:
        assert runs[0].diagnostics.iterations.all()
    if max_iter == 3:
        assert runs[0].diagnostics.level.any()      # the ladder did solve some samples


def test_starting_state_is_honoured():
    solver = nodal.load("diode_clipper")
    u = _inputs(solver)
    first = solver.simulate(u[:, :500])
    rest = solver.simulate(u[:, 500:], s0=first.s_final)
    whole = solver.simulate(u)
    assert torch.equal(whole.y[:, 500:], rest.y)


def test_non_convergence_is_reported_not_nan():
    solver = nodal.load("diode_clipper")
    solver.newton = NewtonOptions(max_iter=1, ladder_iter=1, substep_levels=1)
    u = _inputs(solver)[:, :200]
    with pytest.raises(ConvergenceError) as err:
        solver.simulate(u, backend="fast")
    with pytest.raises(ConvergenceError) as ref:
        solver.simulate(u, backend="torch")
    # strict: both stop at the same first failed sample, as SPICE stops
    assert len(err.value.samples) == 1 and err.value.samples == ref.value.samples
    solver.strict = False
    with pytest.warns(UserWarning, match="did not converge"):
        out = solver.simulate(u, backend="fast")
    with pytest.warns(UserWarning, match="did not converge"):
        out_torch = solver.simulate(u, backend="torch")
    # a failed sample keeps the previous sample's solution in both: the same samples fail
    assert torch.isfinite(out.y).all()
    assert out.diagnostics.failures[0] == err.value.samples[0]
    assert out.diagnostics.failures == out_torch.diagnostics.failures


def test_kernel_is_compiled_once_per_structure():
    a = nodal.load("diode_clipper")
    b = nodal.load("diode_clipper", r1=4.7e3)
    assert fast.kernel(a.eq).run is fast.kernel(b.eq).run
    u = _inputs(a)
    # a different resistor is a different output from the same kernel
    assert not torch.equal(a.simulate(u).y, b.simulate(u).y)


def test_unknown_backend_is_refused():
    solver = nodal.load("rc_lowpass")
    with pytest.raises(ValueError, match="backend"):
        solver.simulate(torch.zeros(1, 10, 1), backend="jax")


@pytest.mark.parametrize("name,trainable", [("diode_clipper", ("r1", "d1n4148.is")),
                                            ("tube_screamer", None)])
def test_forward_with_autograd_equals_the_reference_loop(name, trainable):
    """`forward` (kernel Newton, then one differentiable step per sample) against
    `forward_reference` (the torch loop over newton.solve): same samples, same gradients."""
    solver = nodal.load(name)
    names = trainable or tuple(n for n in solver.names[-2:])
    params = [solver.make_trainable(n) for n in names]
    u = _inputs(solver, peaks=(0.5, 1.0))[:, :300]
    out = solver(u)
    ref = solver.forward_reference(u)
    assert (out.y - ref.y).abs().max() <= 1e-12
    assert (out.x - ref.x).abs().max() <= 1e-12
    assert out.y.requires_grad
    def loss(t):
        return (t.y ** 2).sum() + t.x.sum() + t.s_final.sum()

    grads = torch.autograd.grad(loss(out), params)
    ref_grads = torch.autograd.grad(loss(ref), params)
    for g, h in zip(grads, ref_grads, strict=True):
        assert float(abs(g - h)) <= 1e-9 * float(abs(h)) + 1e-300


def test_teacher_forcing_equals_the_reference_loop():
    solver = nodal.load("diode_clipper")
    r = solver.make_trainable("r1")
    u = _inputs(solver, peaks=(1.0, 0.7))[:, :400]
    with torch.no_grad():
        teacher = solver(u * 0.9).x
        out = solver(u, teacher=teacher, every=64)
        ref = solver.forward_reference(u, teacher=teacher, every=64)
    assert (out.y - ref.y).abs().max() <= 1e-12
    out = solver(u, teacher=teacher, every=64)
    ref = solver.forward_reference(u, teacher=teacher, every=64)
    assert (out.y - ref.y).abs().max() <= 1e-12
    g, = torch.autograd.grad(out.y.square().sum(), r)
    h, = torch.autograd.grad(ref.y.square().sum(), r)
    assert float(abs(g - h)) <= 1e-9 * float(abs(h))


def test_forward_without_autograd_is_the_kernel():
    solver = nodal.load("tube_screamer")
    u = _inputs(solver)[:, :500]
    with torch.no_grad():
        out = solver(u)
    fast_out = solver.simulate(u, backend="fast")
    assert torch.equal(out.y, fast_out.y) and not out.y.requires_grad


def test_a_value_changed_between_calls_reaches_every_cache():
    """Short calls key what they compute from the values (the kernel's arrays, the states'
    scale, theta's views) on the bytes of the fixed values: a value set between two calls,
    a state loaded in place, a value made trainable each give the samples of a solver built
    with those values."""
    u = _inputs(nodal.load("diode_clipper"))
    solver = nodal.load("diode_clipper")
    name = next(n for n in solver.names if n.startswith("r"))
    before = solver.simulate(u).y
    doubled = 2.0 * float(solver.value(name))
    solver.set_value(name, doubled)
    after = solver.simulate(u).y
    assert not torch.equal(before, after)
    assert torch.equal(after, nodal.load("diode_clipper", **{name: doubled}).simulate(u).y)
    solver.load_state_dict(nodal.load("diode_clipper").state_dict())     # in place
    assert torch.equal(solver.simulate(u).y, before)
    solver.make_trainable(name)
    solver.set_value(name, doubled)
    assert torch.equal(solver.simulate(u).y, after)
    # a stream carried across a change: the state scale of the new values
    first = solver.simulate(u[:, :600])
    solver.set_value(name, 0.5 * doubled)
    rest = solver.simulate(u[:, 600:], s0=first.s_final).y
    other = nodal.load("diode_clipper", **{name: 0.5 * doubled})
    assert torch.equal(rest, other.simulate(u[:, 600:], s0=first.s_final).y)


def test_another_temperature_is_the_same_kernel_with_other_constants(tmp_path):
    """The thermal voltage and the IS factor of a `.temp` are constants of the laws, read at
    run time: the clipper at 60 C and at -10 C is one compiled kernel, and still clips as
    each temperature says (a hotter diode conducts at a lower voltage)."""
    text = circuits.path_of("diode_clipper").read_text().replace(".end", "")
    peaks = {}
    kernels = {}
    for celsius in (60, -10):
        path = tmp_path / f"clipper_{celsius}.cir"
        path.write_text(text + f".temp {celsius}\n.end\n")
        solver = nodal.load(path)
        kernels[celsius] = fast.kernel(solver.eq)
        u = torch.tensor(signals.sine(1000.0, 0.004, 48000, amplitude=5.0))[None, :, None]
        peaks[celsius] = float(solver.simulate(u).y.max())
    assert kernels[60].run is kernels[-10].run
    assert not np.array_equal(kernels[60].literals, kernels[-10].literals)
    # the forward voltage falls ~2 mV/K per diode: 70 K -> ~0.1 V or more at these currents
    assert peaks[-10] - peaks[60] > 0.05


#: A common-emitter stage with a diode to ground from its collector: one Newton block of three
#: junction ports (the BJT's two, the diode), above the size written out in scalars, whose Q
#: is the identity.
CE_WITH_DIODE = """* CE stage, a diode from the collector
*@ input vin
*@ output c
.model qn npn is=1e-14 bf=200 br=3 vaf=60 ikf=20m
.model dx d is=2.5n n=1.75
vin in 0 dc 0
vcc vcc 0 dc 9
c1 in b 100n
r1 b c 470k
rc vcc c 10k
re e 0 100
q1 c b e qn
d1 c x dx
rx x 0 4.7k
"""


def test_a_large_blocks_written_out_jacobian_is_the_generic_loops(tmp_path):
    """`_matrix_k` (J = I - K di/dv written out over the Jacobian's structural nonzeros, for a
    block above the scalar size whose Q is the identity) gives the generic `_matrix`'s J to
    the last bit, on random K and derivatives in the block's structure (the BJT's 2 x 2
    coupling included). Only the two functions are compiled, not the sample loop."""
    path = tmp_path / "ce.cir"
    path.write_text(CE_WITH_DIODE)
    eq = nodal.equations(path)
    solver = nodal.NodalSolver(eq, sample_rate=48000.0)
    plan = fast.layout(eq, solver._kernel_arrays(solver.theta()).K)
    (coords, ports), = plan.blocks
    assert len(coords) == len(ports) == 3
    source, _ = fast.kernel_text(eq, plan)
    assert "_matrix_0(KN, jac, J)" in source          # the sample loop calls the written-out J
    space: dict = {}
    exec(compile(source, "<kernel>", "exec"), space)
    rng = np.random.default_rng(1)
    n = len(ports)
    jac = np.zeros((n, n))
    ptr, rows = space["JAC_PTR"], space["JAC_ROW"]
    for col in range(n):
        for k in range(ptr[col], ptr[col + 1]):
            jac[rows[k], col] = rng.normal()
    assert np.count_nonzero(jac) > n                   # an off-diagonal derivative is there
    for _ in range(5):
        KN = rng.normal(size=(n, n)) * 10.0 ** rng.uniform(-3, 3)
        written, generic = np.empty((n, n)), np.empty((n, n))
        space["_matrix_0"](KN, jac, written)
        space["_matrix"](KN, jac, np.eye(n), np.empty((n, n)), generic, 0, n, 0, n, True)
        np.testing.assert_array_equal(written, generic)


def test_the_kernel_text_is_the_same_in_every_process(tmp_path):
    """The kernel is found on disk by its text: the text, and the order of the constants it
    reads at run time, must not depend on Python's hash seed (the constants are kept in sets
    and dicts on the way; their order comes from value-free texts of the terms around them).
    A full BJT card beside a diode: laws with many constants in alike places."""
    path = tmp_path / "ce.cir"
    path.write_text(CE_WITH_DIODE)
    script = ("import hashlib, sys, nodal\nfrom nodal import fast\n"
              "eq = nodal.equations(sys.argv[1])\n"
              "text, values = fast.kernel_text(eq)\n"
              "print(hashlib.sha256((text + repr(values)).encode()).hexdigest())\n")
    digests = set()
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        done = subprocess.run([sys.executable, "-c", script, str(path)], env=env,
                              capture_output=True, text=True, check=True)
        digests.add(done.stdout.strip())
    text, values = fast.kernel_text(nodal.equations(path))
    digests.add(hashlib.sha256((text + repr(values)).encode()).hexdigest())
    assert len(digests) == 1


def test_a_kernel_from_the_disk_cache_loads_its_helpers_before_its_loop(tmp_path):
    """A process that finds the kernel on disk loads the machine code of every helper numba
    cached (the laws, the eliminations, each block's Newton) before the sample loop, so that
    the loop's calls bind to the helpers' own code, as in the process that compiled it (the
    loop's private copies ran ~45% slower on the Big Muff pair: bench/README.md). Checked
    in a second process on the cache folder the first one filled."""
    script = ("import sys, nodal, torch\nfrom nodal import fast\n"
              "solver = nodal.load('diode_clipper')\n"
              "if sys.argv[1] == 'cold':\n"
              "    solver.simulate(torch.zeros(1, 8, 1))\n"
              "    raise SystemExit\n"
              "arrays = solver._kernel_arrays(solver.theta())\n"
              "k = fast.kernel(solver.eq, fast.layout(solver.eq, arrays.K))\n"
              "module = sys.modules[k.run.py_func.__module__]\n"
              "from numba.core.registry import CPUDispatcher\n"
              "ready = sorted(n for n, f in vars(module).items()\n"
              "               if isinstance(f, CPUDispatcher) and f.overloads)\n"
              "print(' '.join(ready))\n")
    env = dict(os.environ, NODALNET_CACHE=str(tmp_path))
    for phase in ("cold", "warm"):
        done = subprocess.run([sys.executable, "-c", script, phase], env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
    ready = set(done.stdout.split())
    assert "run" not in ready                      # the loop itself loads on its first call
    assert {"_junctions", "_predict", "_effective"} <= ready, ready


def test_a_kernel_whose_helpers_cannot_be_loaded_first_says_so(tmp_path, monkeypatch):
    """Where numba's cache index is not the one `_load_callees` knows (a numba release that
    moved it), the kernel still loads and runs, and a KernelCacheWarning says it may be
    slower: never a silent fallback."""
    from numba.core import caching

    monkeypatch.setenv("NODALNET_CACHE", str(tmp_path))
    source = fast.kernel_source(nodal.equations("diode_clipper"))

    def moved(self):
        raise AttributeError("no such index")

    monkeypatch.setattr(caching.IndexDataCacheFile, "_load_index", moved)
    with pytest.warns(fast.KernelCacheWarning, match="slower"):
        run, ladder = fast._load(source)
    assert callable(run) and callable(ladder)


def _ladder_body(n: int, t: str = "") -> list[str]:
    """n clipping diodes, alternating in direction, at the nodes of a resistor ladder fed from
    node "in" (names and nodes suffixed by t): every diode sees every other through the
    resistors, so one Newton block of n ports."""
    lines = [f"c0{t} in n1{t} 1u"]
    for k in range(1, n + 1):
        lines.append(f"d{k}{t} n{k}{t} 0 dx" if k % 2 else f"d{k}{t} 0 n{k}{t} dx")
        lines.append(f"r{k}{t} n{k}{t} n{k + 1}{t} 470" if k < n else f"r{k}{t} n{k}{t} 0 10k")
        lines.append(f"cx{k}{t} n{k}{t} 0 {k}n")
    return lines


def _diode_ladder(n: int) -> str:
    lines = [f"* {n} clipping diodes on a resistor ladder", "*@ input vin", f"*@ output n{n}",
             ".model dx d is=2.5n n=1.75 rs=2", "vin in 0 dc 0"]
    return "\n".join(lines + _ladder_body(n)) + "\n"


def test_a_large_block_reuses_its_factors_for_the_tangent_to_the_last_bit(tmp_path, monkeypatch):
    """A block above INLINE_BLOCK coordinates has its Newton called, on its own J and f; its
    tangent start solves with the factors Newton left where they are those of J at its last
    evaluation. Same samples and iteration counts, to the last bit, as a kernel that builds
    and factors J again (compiled in memory with the reuse switched off); and the torch
    path's samples."""
    monkeypatch.setenv("NODALNET_CACHE", "")           # both kernels from their own text
    path = tmp_path / "ladder.cir"
    path.write_text(_diode_ladder(fast.INLINE_BLOCK + 2))
    eq = nodal.equations(path)
    solver = nodal.NodalSolver(eq, sample_rate=48000.0)
    plan = fast.layout(eq, solver._kernel_arrays(solver.theta()).K)
    assert max(len(coords) for coords, _ in plan.blocks) > fast.INLINE_BLOCK
    assert "if fresh_0:" in fast.kernel_source(eq, plan)
    u = _inputs(solver, peaks=(2.0,))
    out = solver.simulate(u, backend="fast")
    ref = solver.simulate(u[:, :300], backend="torch")
    assert (out.y[:, :300] - ref.y).abs().max() <= TOLERANCE
    monkeypatch.setattr(fast, "_MAIN_BLOCK_CALLED",
                        fast._MAIN_BLOCK_CALLED.replace("if fresh_@K@:", "if False:"))
    rebuilt = nodal.NodalSolver(eq, sample_rate=48000.0).simulate(u, backend="fast")
    assert torch.equal(out.y, rebuilt.y) and torch.equal(out.x, rebuilt.x)
    assert np.array_equal(out.diagnostics.iterations, rebuilt.diagnostics.iterations)


def _two_ladders(n: int, card: str = "") -> str:
    """Two copies of the ladder on one input, their outputs mixed by ideal VCVS (so neither
    loads the other): two large Newton blocks of one shape (card: more of the diodes' model,
    e.g. a junction charge, a port of its own)."""
    lines = ["* two diode ladders", "*@ input vin", "*@ output out",
             f".model dx d is=2.5n n=1.75 rs=2 {card}", "vin in 0 dc 0"]
    lines += _ladder_body(n, "a") + _ladder_body(n, "b")
    lines += [f"ea ma 0 n{n}a 0 0.5", f"eb out ma n{n}b 0 0.5"]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("card", ["", "cjo=5p"], ids=["junctions", "with-charges"])
def test_large_blocks_of_one_shape_share_their_compiled_laws(tmp_path, monkeypatch, card):
    """Two large blocks whose laws are the same up to where their ports and parameters sit
    (two copies of a circuit in one netlist) compile one laws function, given each block's
    port offset and parameter indices at run time, and one Newton on each block's local
    arrays (a group): the same samples and iteration counts, to the last bit, as a kernel
    with the laws and Newton written per block, in the sample loop and in the fallback
    ladder; the same currents and derivatives where the ladder calls the laws; and the
    torch path's samples. With the diodes' charges each block's ports are twice its
    coordinates (Q not the identity): the group runs on each block's part of Q."""
    monkeypatch.setenv("NODALNET_CACHE", "")
    path = tmp_path / "two.cir"
    path.write_text(_two_ladders(fast.INLINE_BLOCK + 2, card))
    eq = nodal.equations(path)
    solver = nodal.NodalSolver(eq, sample_rate=48000.0)
    plan = fast.layout(eq, solver._kernel_arrays(solver.theta()).K)
    assert [len(coords) for coords, _ in plan.blocks] == [fast.INLINE_BLOCK + 2] * 2
    assert [len(ports) for _, ports in plan.blocks] == [(fast.INLINE_BLOCK + 2) * (
        2 if card else 1)] * 2
    text = fast.kernel_source(eq, plan)
    assert text.count("def _laws_g") == 1
    assert text.count("def _newton_s") == 1 and "def _newton_0(" not in text
    u = _inputs(solver, peaks=(2.0,))
    out = solver.simulate(u, backend="fast")
    starved = nodal.NodalSolver(eq, sample_rate=48000.0)
    starved.newton = NewtonOptions(max_iter=3, ladder_iter=3)
    ladder = starved.simulate(u[:, :400], backend="fast")
    assert ladder.diagnostics.fallback_samples, "the test needs samples that fall back"
    ref = solver.simulate(u[:, :200], backend="torch")
    assert (out.y[:, :200] - ref.y).abs().max() <= TOLERANCE
    unshared = fast._relative_laws
    monkeypatch.setattr(fast, "_relative_laws", lambda out_, rg, *a: (
        unshared(out_, rg, *a)[0] + f"# block {rg['K']}\n", unshared(out_, rg, *a)[1]))
    alone = fast.kernel_source(eq, plan)
    assert "def _laws_g" not in alone and "def _newton_s" not in alone
    apart = nodal.NodalSolver(eq, sample_rate=48000.0).simulate(u, backend="fast")
    assert torch.equal(out.y, apart.y) and torch.equal(out.x, apart.x)
    assert np.array_equal(out.diagnostics.iterations, apart.diagnostics.iterations)
    starved = nodal.NodalSolver(eq, sample_rate=48000.0)
    starved.newton = NewtonOptions(max_iter=3, ladder_iter=3)
    ladder_apart = starved.simulate(u[:, :400], backend="fast")
    assert torch.equal(ladder.y, ladder_apart.y)
    assert np.array_equal(ladder.diagnostics.level, ladder_apart.diagnostics.level)
    assert np.array_equal(ladder.diagnostics.iterations, ladder_apart.diagnostics.iterations)
    # the per-block laws the fallback ladder calls (`_laws_all`): the same currents and
    # derivatives at any port voltages
    theta = solver._kernel_arrays(solver.theta()).theta
    v = np.random.default_rng(0).uniform(-1.0, 1.0, len(eq.ports))
    got = []
    for source in (text, alone):
        namespace = fast._load(source)[0].py_func.__globals__
        literals = fast.kernel_text(eq, plan)[1]
        cur, jac = np.zeros(len(eq.ports)), np.zeros((len(eq.ports),) * 2)
        namespace["_laws_all"](v, np.concatenate([theta, literals]), cur, jac)
        got.append((cur, jac))
    assert np.array_equal(got[0][0], got[1][0]) and np.array_equal(got[0][1], got[1][1])


def _board(t: str, order: list[int]) -> list[str]:
    """A fuzz board of three direct-coupled NPN stages, clipping diodes from each collector to
    ground, every part with the board's own names and its transistors with model cards of
    their own (as a KiCad export writes them), its parts listed in `order` (stage numbers)."""
    head = [f"c0{t} in b1{t} 1u", f"rb{t} vcc b1{t} 1Meg", f"rg{t} b1{t} 0 150k"]
    stages = []
    for k in (1, 2, 3):
        part = [f".model q{t}{k} npn(is=5.911f bf=300 br=1.271 rb=10)",
                f"q{k}{t} c{k}{t} b{k}{t} e{k}{t} q{t}{k}",
                f"rc{k}{t} vcc c{k}{t} 10k", f"re{k}{t} e{k}{t} 0 1k",
                f"d{k}{t} c{k}{t} 0 dx" if k < 3 else f"d{k}{t} 0 c{k}{t} dx"]
        part += ([f"ra{k}{t} c{k}{t} b{k + 1}{t} 47k", f"rd{k}{t} b{k + 1}{t} 0 22k"] if k < 3
                 else [f"d4{t} c3{t} 0 dx", f"co{t} c3{t} o{t} 1u", f"rl{t} o{t} 0 100k"])
        stages.append(part)
    return head + [line for k in order for line in stages[k - 1]]


def test_boards_whose_parts_are_listed_in_other_orders_share_their_compiled_laws(
        tmp_path, monkeypatch):
    # the same board twice, its parts and model cards named and listed another way the
    # second time: the blocks' ports come in one canonical order (`fast._canonical`), so the
    # kernel compiles one laws function and one Newton for both; the torch path's samples
    monkeypatch.setenv("NODALNET_CACHE", "")
    lines = ["* two boards", "*@ input vin", "*@ output out", ".model dx d is=2.5n n=1.75 rs=2",
             "vin in 0 dc 0", "vcc vcc 0 dc 9"]
    lines += _board("a", [1, 2, 3]) + _board("b", [3, 1, 2])
    lines += ["ea ma 0 oa 0 0.5", "eb out ma ob 0 0.5"]
    path = tmp_path / "boards.cir"
    path.write_text("\n".join(lines) + "\n")
    eq = nodal.equations(path)
    solver = nodal.NodalSolver(eq, sample_rate=48000.0)
    plan = fast.layout(eq, solver._kernel_arrays(solver.theta()).K)
    assert [len(ports) for _, ports in plan.blocks] == [10, 10]
    text = fast.kernel_source(eq, plan)
    assert text.count("def _laws_g") == 1 and text.count("def _newton_s") == 1
    u = _inputs(solver)[:, :200]
    out = solver.simulate(u, backend="fast")
    ref = solver.simulate(u, backend="torch")
    assert (out.y - ref.y).abs().max() <= TOLERANCE
    assert (out.x - ref.x).abs().max() <= TOLERANCE


_STAGES = """* three direct-coupled stages, two transistor models of the same parameters
*@ input Vin
*@ output out
.model QA NPN(IS=5.911f BF=1122 BR=1.271 NE=1.394 ISE=5.911f IKF=14.92m VAF=62.37 RB=10)
.model QB NPN(IS=20f BF=300 BR=4 NE=1.5 ISE=1f IKF=50m VAF=100 RB=30)
Vin in 0 DC 0
Vcc vcc 0 DC 9
C0 in b0 1u
RB0 vcc b0 1Meg
RG0 b0 0 150k
Q0 c0 b0 e0 QA
RC0 vcc c0 10k
RE0 e0 0 1k
CE0 e0 0 10u
RA0 c0 b1 47k
RD0 b1 0 22k
Q1 c1 b1 e1 QB
RC1 vcc c1 10k
RE1 e1 0 1k
CE1 e1 0 10u
RA1 c1 b2 47k
RD1 b2 0 22k
Q2 c2 b2 e2 QA
RC2 vcc c2 10k
RE2 e2 0 1k
CO c2 out 1u
RL out 0 100k
"""


def test_a_blocks_laws_as_loops_over_its_kinds_of_device_are_the_written_out_laws(
        tmp_path, monkeypatch):
    # three transistors of two models with the same parameters given: one kind, each device
    # its own row of ports and parameters (and of the terms of its parameters alone)
    monkeypatch.setenv("NODALNET_CACHE", "")
    path = tmp_path / "stages.cir"
    path.write_text(_STAGES)
    eq = nodal.equations(path)
    solver = nodal.NodalSolver(eq, sample_rate=48000.0)
    arrays = solver._kernel_arrays(solver.theta())
    plan = fast.layout(eq, arrays.K)
    assert [len(ports) for _, ports in plan.blocks] == [6]
    monkeypatch.setattr(fast, "KIND_LOOP_PORTS", 1)
    looped, literals = fast.kernel_text(eq, plan)
    assert looped.count("def _kind_") == 1 and "for d in range(0, 3):" in looped
    monkeypatch.setattr(fast, "KIND_LOOP_PORTS", 10 ** 6)
    written, written_literals = fast.kernel_text(eq, plan)
    assert "def _kind_" not in written and written_literals == literals
    theta = np.concatenate([arrays.theta, literals])
    rng = np.random.default_rng(0)
    got = []
    for text in (looped, written):
        namespace = fast._load(text)[0].py_func.__globals__
        out = []
        for _ in range(30):
            v = rng.uniform(-1.0, 1.0, len(eq.ports))
            cur, jac = np.zeros(len(eq.ports)), np.zeros((len(eq.ports),) * 2)
            namespace["_laws_all"](v, theta, cur, jac)
            out.append(np.concatenate([cur, jac.ravel()]))
        got.append(np.array(out))
        rng = np.random.default_rng(0)
    assert np.array_equal(got[0] != 0, got[1] != 0)
    assert np.max(np.abs(got[0] - got[1]) / (np.abs(got[1]) + 1e-300)) <= 1e-13
    # and the kernels: the same samples, Newton's iterations, fallbacks
    u = torch.tensor(0.2 * np.sin(2 * np.pi * 1000.0 * np.arange(2400) / 48000.0))[None, :, None]
    runs = []
    for ports in (1, 10 ** 6):
        monkeypatch.setattr(fast, "KIND_LOOP_PORTS", ports)
        runs.append(nodal.NodalSolver(eq, sample_rate=48000.0).simulate(u))
    assert float((runs[0].y - runs[1].y).abs().max()) <= 1e-12
    assert runs[0].diagnostics.fallback_samples == runs[1].diagnostics.fallback_samples
    assert float(runs[0].y.abs().max()) > 0.1          # the stages do pass the signal


def _clipping_stages(n: int, boards: str = "a") -> str:
    """n Big Muff clipping stages in a row on each board (named by the letters of `boards`,
    all fed from c0): 1N914-like diodes without series resistance, in antiparallel from
    collector to base, share the transistor's base-collector nodes, so a block has fewer
    coordinates than ports (its Q is not the identity)."""
    lines = ["* clipping stages", "*@ input Vin", f"*@ output c{n}{boards[0]}",
             ".model QA NPN(IS=5.911f BF=1122 BR=1.271 NE=1.394 ISE=5.911f IKF=14.92m "
             "VAF=62.37)", ".model DA D(IS=2.52n N=1.752)", "Vin c0 0 DC 0", "Vcc vcc 0 DC 9"]
    for t in boards:
        for k in range(1, n + 1):
            before = "c0" if k == 1 else f"c{k - 1}{t}"
            lines += [f"C{k}{t} {before} b{k}{t} 100n", f"RF{k}{t} b{k}{t} c{k}{t} 470k",
                      f"RC{k}{t} vcc c{k}{t} 15k", f"RE{k}{t} e{k}{t} 0 100",
                      f"Q{k}{t} c{k}{t} b{k}{t} e{k}{t} QA", f"DA{k}{t} b{k}{t} c{k}{t} DA",
                      f"DB{k}{t} c{k}{t} b{k}{t} DA"]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("stages, boards, inline, called", [
    (2, "a", 8, "_matrix_0(KN, jac, expand, J"),      # a block written in the sample loop
    # a large block (larger than INLINE_BLOCK coordinates: two stages made large here, five
    # would be by default, for a longer compile), its Newton called; two boards: a group
    (2, "a", 2, "_matrix_0(KN, jac, expand, J_0)"),
    (2, "ab", 2, "_matrix_s0(KG_0[m], jl_0, EXG_0[m], JG_0[m])")])
def test_a_block_whose_ports_share_coordinates_runs_its_port_map_written_out(
        tmp_path, monkeypatch, stages, boards, inline, called):
    monkeypatch.setenv("NODALNET_CACHE", "")
    monkeypatch.setattr(fast, "INLINE_BLOCK", inline)
    path = tmp_path / "clip.cir"
    path.write_text(_clipping_stages(stages, boards))
    eq = nodal.equations(path)
    solver = nodal.NodalSolver(eq, sample_rate=48000.0)
    plan = fast.layout(eq, solver._kernel_arrays(solver.theta()).K)
    assert [(len(c), len(p)) for c, p in plan.blocks] == [(2 * stages, 4 * stages)] * len(boards)
    text, _ = fast.kernel_text(eq, plan)
    assert called in text and "_matrix_on(" not in text.split("def run(")[1].split("def ladder(")[0]
    u = torch.tensor(0.5 * np.sin(2 * np.pi * 1000.0 * np.arange(1200) / 48000.0))[None, :, None]
    written = solver.simulate(u)
    monkeypatch.setattr(fast.port_map, "applies", lambda rg: False)
    generic = nodal.NodalSolver(eq, sample_rate=48000.0).simulate(u)
    # the same sums in the same order: the same samples to the last bit
    assert torch.equal(written.y, generic.y) and torch.equal(written.x, generic.x)
    assert np.array_equal(written.diagnostics.iterations, generic.diagnostics.iterations)
    assert float(written.y.std()) > 0.1                # the stages do clip a swinging signal


def test_the_state_update_a_column_at_a_time_gives_the_same_samples(tmp_path, monkeypatch):
    # the sample loop's update and prediction as sums over rows or over columns: the same
    # terms in the same order, so the same samples to the last bit (forced both ways here;
    # `COLUMN_STATES` picks by the number of states)
    monkeypatch.setenv("NODALNET_CACHE", "")
    path = tmp_path / "stages.cir"
    path.write_text(_STAGES)
    eq = nodal.equations(path)
    u = torch.tensor(0.2 * np.sin(2 * np.pi * 1000.0 * np.arange(2400) / 48000.0))[None, :, None]
    runs = []
    for states in (1, 10 ** 6):
        monkeypatch.setattr(fast, "COLUMN_STATES", states)
        solver = nodal.NodalSolver(eq, sample_rate=48000.0)
        text, _ = fast.kernel_text(eq, fast.layout(eq, solver._kernel_arrays(solver.theta()).K))
        assert ("COLUMNS = 1" in text) == (states == 1)
        runs.append(solver.simulate(u))
    assert torch.equal(runs[0].y, runs[1].y) and torch.equal(runs[0].x, runs[1].x)
    assert torch.equal(runs[0].s_final, runs[1].s_final)
    assert float(runs[0].y.abs().max()) > 0.1


def test_the_laws_exponential_is_the_c_librarys_without_its_underflow_path(tmp_path,
                                                                             monkeypatch):
    # the laws call the kernel's _exp: exp itself to the bit, 0.0 where exp underflows to 0.0
    # (no errno path), NaN and the infinities as exp gives them
    monkeypatch.setenv("NODALNET_CACHE", "")
    path = tmp_path / "stages.cir"
    path.write_text(_STAGES)
    eq = nodal.equations(path)
    solver = nodal.NodalSolver(eq, sample_rate=48000.0)
    text, _ = fast.kernel_text(eq, fast.layout(eq, solver._kernel_arrays(solver.theta()).K))
    assert "_exp(" in text and "math.exp(" not in text.replace("return math.exp(x)", "")
    kernel_exp = fast._load(text)[0].py_func.__globals__["_exp"]
    xs = np.concatenate([np.linspace(-800.0, 720.0, 20001), [-745.2, -745.1, -744.4, -746.0,
                                                           -np.inf, np.inf, 709.78, 709.79]])
    got = np.array([kernel_exp(float(x)) for x in xs])

    def c_exp(x):           # the C library's, as Python's math calls it
        try:
            return math.exp(x)
        except OverflowError:
            return math.inf

    want = np.array([c_exp(x) for x in xs])
    assert np.array_equal(got, want)
    assert np.isnan(kernel_exp(float("nan")))

"""Never give up where SPICE would not, never hand back NaN.

The asymmetric clipper (a silicon diode with RS one way, two germanium-like diodes in series the
other) stopped with "Newton did not converge" at hundreds of samples: the node between the
germanium diodes is reached only through junctions, so K ~ 1/GMIN and Newton's steps stall at
round-off (~1e-10 V) above its step tolerance. Where Newton really fails, both backends climb
the same fallback ladder (substeps, gmin stepping, source stepping: `nodal/newton.py`).
References: ngspice on the same netlist, and the torch loop against the compiled kernel.
"""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import circuits
import nodal
from nodal.render import input_matrix
from nodal import fast, signals, verify
from nodal.errors import NodalError, NonFiniteOutputError
from nodal.netlist import parse
from nodal.newton import NewtonOptions

FS = 48000.0
ASYMMETRIC = Path(__file__).parent / "fixtures" / "asymmetric_clipper.cir"


def _pluck(seconds, peak, seed=1):
    return signals.plucked_string(seconds, FS, peak=peak, cutoff=5000, seed=seed)


def test_asymmetric_clipper_converges_at_every_sample_at_48k():
    solver = nodal.load(ASYMMETRIC)
    u = torch.tensor(_pluck(0.25, 1.0, seed=0))[None, :, None]
    traj = solver.simulate(u)             # strict: a failed sample would raise
    assert traj.diagnostics.failures == []
    assert torch.isfinite(traj.y).all()
    # the germanium pair clips lower than the silicon diode: the output is asymmetric
    y = traj.y[0, :, 0].numpy()
    assert -y.min() < 0.9 * y.max()


@pytest.mark.parametrize("oversample, limit", [(1, 1e-3), (8, 1e-5)])
def test_asymmetric_clipper_agrees_with_ngspice(oversample, limit):
    eq = nodal.equations(ASYMMETRIC)
    row = verify.agreement(eq, _pluck(0.05, 1.0), "pluck", FS, oversample)
    assert row.output_esr <= limit


@pytest.fixture(scope="module")
def starved():
    """The diode clipper at 5 V with Newton limited to 5 iterations: some samples need the
    ladder (substeps)."""
    solver = nodal.load("diode_clipper")
    solver.newton = NewtonOptions(max_iter=5, ladder_iter=5)
    u = torch.tensor(np.stack([_pluck(0.01, 5.0, seed=1), _pluck(0.01, 4.0, seed=2)]))[..., None]
    return solver, u


def test_the_ladder_gives_the_same_samples_on_both_backends(starved):
    solver, u = starved
    out = solver.simulate(u, backend="fast")
    ref = solver.simulate(u, backend="torch")
    assert out.diagnostics.fallback_samples, "the test needs samples that fall back"
    assert out.diagnostics.failures == [] == ref.diagnostics.failures
    np.testing.assert_array_equal(out.diagnostics.level, ref.diagnostics.level)
    assert float((out.y - ref.y).abs().max()) <= 1e-9
    assert float((out.x - ref.x).abs().max()) <= 1e-9


def test_the_ladder_is_differentiable_as_the_reference_loop(starved):
    solver, u = starved
    solver = nodal.load("diode_clipper")
    solver.newton = NewtonOptions(max_iter=5, ladder_iter=5)
    r = solver.make_trainable("r1")
    out = solver(u[:, :200])
    ref = solver.forward_reference(u[:, :200])
    assert out.diagnostics.fallback_samples
    assert float((out.y - ref.y).detach().abs().max()) <= 1e-9
    g, = torch.autograd.grad(out.y.square().sum(), r)
    h, = torch.autograd.grad(ref.y.square().sum(), r)
    assert float(abs(g - h)) <= 1e-7 * float(abs(h))


MAX_ITER_FOR_CONTINUATION = 4


def test_gmin_or_source_stepping_solve_what_substeps_do_not():
    # With 4 Newton iterations a sample, +-5 V steps into the Tube Screamer leave samples that
    # 64 substeps do not solve; the continuation rungs solve some of them (the count holds only
    # samples a rung solved, not failed ones). Since the diode law has ngspice's reverse tail
    # the asymmetric clipper no longer needs these rungs at any drive, so it cannot show them.
    eq = nodal.equations("tube_screamer")
    # "step": the stopping rule this iteration limit was chosen for (the "predicted" one
    # converges within it at more samples)
    solver = nodal.NodalSolver(eq, FS, newton=NewtonOptions(max_iter=MAX_ITER_FOR_CONTINUATION,
                                                            ladder_iter=MAX_ITER_FOR_CONTINUATION,
                                                            stopping="step"), strict=False)
    x = np.zeros(3000)
    x[100:1000], x[1000:1500] = 5.0, -5.0
    with pytest.warns(UserWarning, match="did not converge"):
        out = solver.simulate(torch.from_numpy(input_matrix(eq, x, FS))[None], backend="fast")
    counts = out.diagnostics.fallback_counts()
    assert "gmin stepping" in counts or "source stepping" in counts, counts
    assert torch.isfinite(out.y).all()


def _square(seconds, frequency, peak):
    t = np.arange(int(seconds * FS)) / FS
    return peak * np.sign(np.sin(2 * np.pi * frequency * t + 0.1))


@pytest.mark.parametrize("name", sorted(circuits.registry()) + [str(ASYMMETRIC)])
def test_every_circuit_at_5v_and_with_a_20khz_square_wave(name):
    solver = nodal.load(name)
    for audio in (_pluck(0.05, 5.0), _square(0.02, 20000.0, 5.0)):
        u = torch.tensor(audio)[None, :, None]
        if solver.n_inputs > 1:
            lfo = np.full((1, len(audio), solver.n_inputs - 1), -1.9)
            u = torch.cat([u, torch.tensor(lfo)], -1)
        traj = solver.simulate(u)
        assert traj.diagnostics.failures == []
        assert torch.isfinite(traj.y).all() and torch.isfinite(traj.x).all()


def test_the_simulate_command_reports_fallbacks(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import cli

    audio = _pluck(0.02, 5.0)
    np.save(tmp_path / "in.npy", audio)
    result = CliRunner().invoke(cli.app, ["simulate", str(ASYMMETRIC), "-i",
                                          str(tmp_path / "in.npy"), "--rate", "48000",
                                          "-o", str(tmp_path / "out.npy")])
    assert result.exit_code == 0, result.output
    assert "iterations/sample" in result.output and "fallback" in result.output


# -- never NaN -------------------------------------------------------------------------------

def test_an_absurd_jfet_is_a_named_error_not_a_traceback():
    # BETA = 1e30 A/V^2: Newton's Jacobian is singular in float64 (a LinAlgError before)
    solver = nodal.load("phase90", **{"j2n5952.beta": 1e30})
    u = torch.tensor(np.stack([_pluck(0.002, 1.0), np.full(96, -1.9)], -1))[None]
    with pytest.raises(NodalError, match="operating point"):
        solver.simulate(u)


AMPLIFIER = """* an ideal gain of 1e5
*@ input Vin
*@ output out
Vin in 0 DC 0
E1 out 0 in 0 1e5
R1 out 0 1k
"""


@pytest.mark.parametrize("backend", ["fast", "torch"])
def test_a_non_finite_output_names_its_sample(backend):
    solver = nodal.NodalSolver(nodal.derive(parse(AMPLIFIER, "amplifier.cir")))
    u = torch.zeros(1, 20, 1, dtype=torch.float64)
    u[0, 7:] = 1e305                       # finite volts in, 1e310 out: beyond float64
    with pytest.raises(NonFiniteOutputError) as info:
        solver.simulate(u, backend=backend)
    assert info.value.samples[0] == 7 and "sample 7" in str(info.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_an_unwritable_kernel_cache_compiles_in_memory_with_a_warning(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    monkeypatch.setenv("NODALNET_CACHE", str(folder))
    eq = nodal.equations("rc_lowpass")
    monkeypatch.setattr(fast, "_COMPILED", {})
    with pytest.warns(fast.KernelCacheWarning, match="not writable"):
        fast.kernel(eq)
    folder.chmod(stat.S_IRWXU)


def test_an_unwritable_kernel_cache_path_warns(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("NODALNET_CACHE", str(blocker / "kernels"))
    monkeypatch.setattr(fast, "_COMPILED", {})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = fast.kernel(nodal.equations("rc_lowpass"))
    assert any(issubclass(w.category, fast.KernelCacheWarning) for w in caught)
    assert callable(run.run) and callable(run.ladder)


def test_the_ladder_is_compiled_only_where_a_sample_needs_it(starved, monkeypatch):
    """The sample loop stops an item where Newton fails and `fast.run` hands that sample to
    the ladder, a separate function compiled on its first call: a run where Newton never
    fails never compiles it."""
    monkeypatch.setattr(fast, "_COMPILED", {})
    plain = nodal.load("diode_clipper")
    plain.simulate(torch.tensor(_pluck(0.005, 0.5))[None, :, None])
    ((run, ladder),) = fast._COMPILED.values()
    assert run.signatures and not ladder.signatures
    _, u = starved
    solver = nodal.load("diode_clipper")          # a solver of its own: the same kernel
    solver.newton = NewtonOptions(max_iter=5, ladder_iter=5)
    out = solver.simulate(u)
    assert out.diagnostics.fallback_samples
    assert ladder.signatures


def test_a_run_keeps_every_samples_port_coordinates_only_when_asked(starved):
    """Without keep_q the kernel writes Newton's port coordinates in two rows (sample n in row
    n & 1), and so does the ladder for the samples it solves: the last two are those of the
    full record, and the samples are the same."""
    solver, u = starved
    arrays = solver._kernel_arrays(solver.theta())
    kernel_run = solver._kernel(arrays)
    w = solver.source_values(u).numpy()
    batch = w.shape[0]
    s, q = solver._operating_point(batch, u[:, 0].to(torch.float64))
    start = fast.Start(s=s.numpy(), x=np.zeros((batch, solver.n_states)), w=w[:, 0],
                       q=q.numpy())
    whole = fast.run(kernel_run, arrays, w, start, solver.newton, keep_q=True)
    (ladder_at,) = np.flatnonzero(whole.level[0])[:1]      # a sample the ladder solved
    for length in (w.shape[1], w.shape[1] - 1, ladder_at + 1, ladder_at + 2, 2, 1):
        full = fast.run(kernel_run, arrays, w[:, :length], start, solver.newton, keep_q=True)
        ring = fast.run(kernel_run, arrays, w[:, :length], start, solver.newton)
        assert ring.q is None and full.q.shape[1] == length
        np.testing.assert_array_equal(ring.y, full.y)
        np.testing.assert_array_equal(ring.q_last, full.q[:, -1])
        np.testing.assert_array_equal(ring.q_before, full.q[:, -2 if length > 1 else -1])
        np.testing.assert_array_equal(full.q_last, full.q[:, -1])


def test_the_kernel_source_is_read_back_and_written_again_if_damaged(tmp_path, monkeypatch):
    """Equations from the derivation cache name their kernel source on disk: a second process
    reads it instead of writing it again with Sympy; a damaged file is written again."""
    monkeypatch.setenv("NODALNET_CACHE", str(tmp_path))
    eq = nodal.equations("tube_screamer")
    assert eq.derived_key
    plan = fast.one_block(eq)
    text = fast._text(eq, plan)
    assert text == fast.kernel_text(eq, plan)
    (stored,) = (tmp_path / "kernels").glob("source_*.json")

    def no_sympy(*args):
        raise AssertionError("the stored source was not used")

    with monkeypatch.context() as m:
        m.setattr(fast, "kernel_text", no_sympy)
        assert fast._text(eq, plan) == text
    stored.write_text(stored.read_text()[:-40])          # truncated by hand
    assert fast._text(eq, plan) == text               # written again
    with monkeypatch.context() as m:
        m.setattr(fast, "kernel_text", no_sympy)
        assert fast._text(eq, plan) == text           # and read back


CHAIN = Path(__file__).parent / "fixtures" / "direct_coupled_chain.cir"


def test_a_chain_of_direct_coupled_stages_flips_as_in_ngspice():
    # Sixteen direct-coupled stages flip from one saturated / cut-off pattern to the other
    # within a sample; Newton turns them over a stage or two at a time (~80 evaluations) and
    # no substep makes that fewer. ngspice takes such a sample at its full step. With every
    # rung of the ladder at a sample's own 50 evaluations the solver stopped at the first flip;
    # with `ladder_iter` evaluations a rung it takes every flip.
    eq = nodal.equations(CHAIN)
    t = np.arange(int(0.01 * FS)) / FS
    sine = 0.5 * np.sin(2 * np.pi * 1000.0 * t)
    u = torch.from_numpy(input_matrix(eq, sine, FS))[None]
    solver = nodal.NodalSolver(eq, FS)
    out = solver.simulate(u)                  # strict: a failed sample would raise
    assert out.diagnostics.failures == []
    assert out.diagnostics.fallback_samples, "the flips need the ladder"
    assert float(out.y.max()) > 5.0 and float(out.y.min()) < 0.5   # it flips both ways
    starved = nodal.NodalSolver(eq, FS, newton=NewtonOptions(ladder_iter=50))
    with pytest.raises(nodal.ConvergenceError):
        starved.simulate(u)
    row = verify.agreement(eq, sine, "sine", FS, 1)
    # the flips land on the sample grid here and between samples in ngspice: that, not the
    # solve, is what the ESR holds
    assert row.output_esr <= 2e-2

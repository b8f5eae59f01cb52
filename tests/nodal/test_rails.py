"""An ideal op-amp with rails: an E source `max(min(A (0 - V(m)), 4), -4)`, A >= 1e5.

Its linear band is 2 Vsat / A wide in V(m) (80 uV at A = 1e5): Newton started on one rail
steps along that rail's slope (zero: the rail is flat) to the other rail and back, and never
enters the band, at the full step, in any number of substeps, or with gmin or source stepping
(each starts from a rail too). The line search, the ladder's first rung (`nodal/newton.py`),
bisects along the step to where f turns against its start, inside the band, from where
Newton's next step is exact. The circuit: an inverting amplifier of gain 22 (100 nF into
10 kOhm, 220 kOhm || 100 pF in the feedback, so the op-amp's band is crossed with a capacitor
in the loop) into a 2.2 kOhm / 10 nF low-pass, driven into both rails by a 1 V plucked string.
It must run at 48 kHz with every sample converged in the torch loop, the compiled kernel and
the C export alike, and agree with ngspice.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import nodal
from nodal import ccode, signals, spice, verify
from nodal.newton import NewtonOptions, fallback_name, line_search_level, solve_with_jacobian

FS = 48000.0
RAIL = 4.0
needs_ngspice = pytest.mark.skipif(not spice.available(), reason="ngspice is not installed")
needs_cc = pytest.mark.skipif(ccode.compiler() is None, reason="no C compiler (cc/gcc)")


def netlist(gain: float = 1e5, output: str = "vo") -> str:
    return f"""inverting clipper into ideal rails
*@ input vin
*@ output {output}
.param a={gain:g}
Vin in 0 DC 0
Cin in x 100n
Rin x m 10k
Rf m o 220k
Cf m o 100p
E1 o 0 value={{max(min(a*(0 - V(m)), {RAIL:g}), -{RAIL:g})}}
Rl o vo 2.2k
Cl vo 0 10n
"""


def equations(tmp_path, gain: float = 1e5, output: str = "vo") -> nodal.Equations:
    path = tmp_path / f"rails_{gain:g}_{output}.cir"
    path.write_text(netlist(gain, output))
    eq = nodal.equations(path)
    nodal.check_solvable(eq)
    return eq


def pluck(seconds: float = 0.1) -> np.ndarray:
    x = signals.plucked_string(seconds, FS, peak=1.0, cutoff=5000, seed=3)
    return x.astype(np.float32).astype(np.float64)     # one input for numba, torch and C


def run(eq: nodal.Equations, x: np.ndarray, backend: str = "fast", rate: float = FS):
    """(output, diagnostics) of a strict solver: a sample even the ladder cannot solve
    raises `ConvergenceError`."""
    solver = nodal.NodalSolver(eq, rate, strict=True)
    traj = solver.simulate(torch.from_numpy(x)[None, :, None], backend=backend)
    return traj.y[0, :, 0].numpy(), traj.diagnostics


@pytest.mark.parametrize("gain", [1e5, 1e7])
def test_every_sample_converges_at_48k(tmp_path, gain):
    for output in ("vo", "o"):
        y, diagnostics = run(equations(tmp_path, gain, output), pluck())
        assert not diagnostics.failed.any()
        assert np.all(np.isfinite(y))
        # plain Newton fails at the rail crossings; the line search solved every one of them
        levels = set(np.unique(diagnostics.level).tolist())
        assert levels == {0, line_search_level()}, levels
        assert diagnostics.fallback_counts().keys() == {"line search"}
    # the op-amp's own output sits on both rails and passes through the band between
    assert np.isclose(y.max(), RAIL, atol=1e-12) and np.isclose(y.min(), -RAIL, atol=1e-12)
    on_rail = np.abs(np.abs(y) - RAIL) < 1e-9
    assert 0.05 < on_rail.mean() < 0.95


def _scalar(gain: float, start: torch.Tensor, a: torch.Tensor, line_search: bool):
    """x = a + c clip(-A x), the circuit without its capacitors, by Newton from `start`."""
    c = 1.0 / 23.0

    def laws(v):
        i = -torch.clamp(-gain * v, -RAIL, RAIL)
        jac = (gain * ((gain * v).abs() < RAIL).to(v.dtype))[:, :, None]
        return i, jac

    K = torch.tensor([[-c]], dtype=torch.float64)
    expand = torch.eye(1, dtype=torch.float64)
    q, iterations, converged, _ = solve_with_jacobian(
        start, a, K, laws, expand, [], torch.zeros(0), torch.zeros(0),
        NewtonOptions(max_iter=50), line_search=line_search)
    exact = torch.where(a.abs() * gain / (1 + c * gain) < RAIL, a / (1 + c * gain),
                        a + c * RAIL * -torch.sign(a))
    return q, iterations, converged, exact


def test_the_line_search_crosses_the_band_from_either_rail_where_newton_cycles():
    gain = 1e5
    a = torch.tensor([[-0.6], [-0.3], [-1e-3], [1e-4], [2e-5], [0.05], [0.35], [0.9]],
                     dtype=torch.float64)
    for start in (a - RAIL / 23.0, a + RAIL / 23.0):      # each rail's own root
        q, iterations, converged, exact = _scalar(gain, start, a, True)
        assert bool(converged.all())
        torch.testing.assert_close(q, exact, rtol=0, atol=1e-12)
        assert int(iterations.max()) <= 40
        # plain Newton, from either rail, never converges where the root is inside the band
        _, _, plain, _ = _scalar(gain, start, a, False)
        in_band = (gain * exact.abs() < RAIL)[:, 0]
        assert int(in_band.sum()) == 4
        assert not bool((plain & in_band).any())


def test_the_level_is_named():
    assert fallback_name(line_search_level()) == "line search"


def test_the_torch_loop_and_the_kernel_give_the_same_samples(tmp_path):
    eq = equations(tmp_path)
    x = pluck(0.02)
    y_fast, d_fast = run(eq, x, "fast")
    y_torch, d_torch = run(eq, x, "torch")
    assert (d_fast.level > 0).any(), "the test needs samples the line search solves"
    assert np.max(np.abs(y_fast - y_torch)) <= 1e-9
    np.testing.assert_array_equal(d_fast.level, d_torch.level)
    np.testing.assert_array_equal(d_fast.iterations, d_torch.iterations)


def test_gradients_through_the_line_search_match_the_reference_loop(tmp_path):
    solver = nodal.NodalSolver(equations(tmp_path), FS, strict=True)
    rf = solver.make_trainable("rf")
    u = torch.from_numpy(pluck(0.008))[None, :, None]
    out = solver(u)
    ref = solver.forward_reference(u)
    assert (out.diagnostics.level == line_search_level()).any()
    assert float((out.y - ref.y).detach().abs().max()) <= 1e-9
    g, = torch.autograd.grad(out.y.square().sum(), rf)
    h, = torch.autograd.grad(ref.y.square().sum(), rf)
    assert torch.isfinite(g) and float(abs(g - h)) <= 1e-7 * float(abs(h))


@needs_cc
def test_the_c_build_gives_the_kernels_samples(tmp_path):
    eq = equations(tmp_path)
    x = pluck(0.05)
    reference, diagnostics = run(eq, x)
    assert (diagnostics.level > 0).any()
    exe = ccode.build(ccode.source(eq, sample_rate=FS), tmp_path, double=True)
    y, _ = ccode.run_program(exe, x, double=True)
    assert np.all(np.isfinite(y))
    assert np.max(np.abs(y - reference)) <= 1e-9


@needs_ngspice
@pytest.mark.parametrize("oversample, bound", [(1, 1e-3), (8, 1e-5)])
def test_it_agrees_with_ngspice(tmp_path, oversample, bound):
    """ESR of the output against ngspice (`verify.agreement`: ngspice at fine steps, the
    solver at 48 kHz or 8x). The solver's error is the trapezoidal rule's: its frequency
    warping at the plucked string's 5 kHz edge, (pi f / fs)^2 / 3 relative, is 3.6 % at 48 kHz
    and 0.06 % at 8x; as an ESR, at most about its square at the band edge (1.3e-3 and 3e-7),
    less over the string's falling spectrum and behind the 7.2 kHz poles; at 48 kHz also
    the clipped edges' harmonics above 24 kHz, folded back. The bounds: 1e-3 and 1e-5."""
    eq = equations(tmp_path)
    row = verify.agreement(eq, pluck(0.05), "pluck", FS, oversample)
    assert row.output_esr <= bound, row

"""An ideal op-amp with rails: an E source `max(min(A (V+ - V-), Vsat), -Vsat)`, A >= 1e5.

Its linear band is 2 Vsat / A wide (45 uV at A = 2e5): Newton started on one rail steps along
that rail's slope to the other rail and back, and never enters the band, unless each step
must reduce the residual (`newton.py`'s line search). The circuit is an inverting amplifier of
gain 10 (AC-coupled in, an RC low-pass out) that a 1 V plucked string drives into both rails.
It must run at 48 kHz with every sample converged and no fallback, in both backends and the
C export alike, and agree with ngspice.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import nodal
from nodal import ccode, resample, signals, spice
from nodal.metrics import esr
from nodal.newton import NewtonOptions, solve

FS = 48000.0
RAIL = 4.5
needs_ngspice = pytest.mark.skipif(not spice.available(), reason="ngspice is not installed")
needs_cc = pytest.mark.skipif(ccode.compiler() is None, reason="no C compiler (cc/gcc)")


def netlist(gain: float = 2e5, output: str = "o2") -> str:
    return f"""inverting amplifier into its rails
*@ input vin
*@ output {output}
.param gain={gain:g}
Vin in 0 DC 0
C1 in a 1u
R1 a n 4.7k
Rf n out 47k
E1 out 0 value={{max(min(gain*(0 - V(n)), {RAIL}), -{RAIL})}}
Ro out o2 1k
Co o2 0 22n
"""


def equations(gain: float = 2e5, output: str = "o2") -> nodal.Equations:
    eq = nodal.derive(nodal.parse(netlist(gain, output), "rails.cir"))
    nodal.check_solvable(eq)
    return eq


def pluck(seconds: float = 0.1) -> np.ndarray:
    return signals.plucked_string(seconds, FS, peak=1.0, cutoff=5000, seed=3)


def run(eq: nodal.Equations, x: np.ndarray, backend: str = "fast", rate: float = FS):
    """(output o2, diagnostics) of a strict solver: a sample Newton cannot solve raises."""
    solver = nodal.NodalSolver(eq, rate, strict=True)
    traj = solver.simulate(torch.from_numpy(x)[None, :, None], backend=backend)
    return traj.y[0, :, 0].numpy(), traj.diagnostics


@pytest.mark.parametrize("gain", [1e5, 2e5, 1e7])
def test_every_sample_converges_at_48k_without_a_fallback(gain):
    for output in ("o2", "out"):
        y, diagnostics = run(equations(gain, output), pluck())
        assert not diagnostics.failed.any()
        assert not diagnostics.level.any()      # Newton alone, no substeps or continuation
        assert np.all(np.isfinite(y))
    # the op-amp's own output sits on both rails and passes through the band between
    assert np.isclose(y.max(), RAIL, atol=1e-12) and np.isclose(y.min(), -RAIL, atol=1e-12)
    on_rail = np.abs(np.abs(y) - RAIL) < 1e-9
    assert 0.05 < on_rail.mean() < 0.95


def test_newton_alone_crosses_the_band_from_either_rail():
    """The scalar problem of the circuit without its capacitors: x = a + c clip(-A x), started
    on the wrong rail, where undamped Newton cycles rail to rail for ever."""
    A, c = 2e5, 1.0 / 11.0

    def laws(v):
        i = -torch.clamp(-A * v, -RAIL, RAIL)
        jac = (A * ((A * v).abs() < RAIL).to(v.dtype))[:, :, None]
        return i, jac

    a = torch.tensor([[-0.6], [-0.3], [-1e-3], [2e-5], [0.05], [0.35], [0.9]],
                     dtype=torch.float64)
    exact = torch.where((a.abs() / (1 + c * A)) * A < RAIL, a / (1 + c * A),
                        a + c * RAIL * -torch.sign(a))
    K = torch.tensor([[-c]], dtype=torch.float64)
    expand = torch.eye(1, dtype=torch.float64)
    options = NewtonOptions(max_iter=50)
    for start in (a - c * RAIL, a + c * RAIL):      # each rail's own root
        q, iterations, converged = solve(start, a, K, laws, expand, [], torch.zeros(0),
                                         torch.zeros(0), options)
        assert bool(converged.all())
        torch.testing.assert_close(q, exact, rtol=0, atol=1e-12)
        assert int(iterations.max()) <= 40


def test_the_torch_loop_and_the_kernel_give_the_same_samples():
    eq = equations()
    x = pluck(0.02)
    y_fast, d_fast = run(eq, x, "fast")
    y_torch, d_torch = run(eq, x, "torch")
    assert np.max(np.abs(y_fast - y_torch)) <= 1e-9
    np.testing.assert_array_equal(d_fast.iterations, d_torch.iterations)


@needs_cc
def test_the_c_build_gives_the_kernels_samples(tmp_path):
    eq = equations()
    x = pluck(0.05).astype(np.float32).astype(np.float64)
    reference, _ = run(eq, x)
    exe = ccode.build(ccode.source(eq, sample_rate=FS), tmp_path, double=True)
    y, _ = ccode.run_program(exe, x, double=True)
    assert np.max(np.abs(y - reference)) <= 1e-9


# ngspice meets the same kink: at its tight REFERENCE_OPTIONS (reltol 1e-7) its Newton does not
# converge where the op-amp leaves a rail and it cuts the time step until "timestep too small";
# at reltol 1e-5 it runs, and its result no longer moves with the tolerance (1e-4 and ngspice's
# defaults give the same ESR against the solver to 1%).
SPICE_OPTIONS = {"reltol": 1e-5, "abstol": 1e-13, "vntol": 1e-9, "chgtol": 1e-16, "trtol": 1}


@needs_ngspice
@pytest.mark.parametrize("oversample, bound", [(1, 1e-3), (8, 1e-6)])
def test_it_agrees_with_ngspice(oversample, bound):
    """ESR of the output against ngspice (a 16th of a 48 kHz sample). The solver's error is the
    trapezoidal rule's: its frequency warping at the plucked string's 5 kHz edge is
    (pi f / fs)^2 / 3 relative, 3.6% at 48 kHz and 0.06% at 8x; through the output's one-pole
    (7.2 kHz) a little over half that in the response, so an ESR of at most its square at the
    band edge, ~4e-4 and ~1e-7, less over the string's falling spectrum (at 48 kHz the
    clipping's harmonics above 5 kHz alias too). Measured: 7e-5 and 3e-8."""
    eq = equations()
    x = pluck()
    net = eq.netlist
    drive = resample.upsample(x, 8)
    ref = spice.simulate(net, {net.input: drive}, FS * 8, substeps=2, options=SPICE_OPTIONS)
    reference = resample.downsample(ref.voltage(*net.output), 8)[: len(x)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")              # no fallback or failure warning either
        y, diagnostics = run(eq, resample.upsample(x, oversample), rate=FS * oversample)
    y = resample.downsample(y, oversample)[: len(x)] if oversample > 1 else y
    assert not diagnostics.failed.any()
    assert esr(reference, y) <= bound

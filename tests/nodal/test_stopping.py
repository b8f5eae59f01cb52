"""Newton's stopping rules (`NewtonOptions.stopping`, `nodal/newton.py`): "predicted" accepts a
sample when the next step, predicted from the junction curvature without evaluating the laws,
is below the tolerance; "step" when an evaluated step is. The accepted samples must still solve
the port equation q - p - K i(Q q) = 0 to the tolerance, re-evaluated here from the laws; the
rule must save evaluations on every circuit with junctions; both backends honour the option."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import circuits
import nodal
from nodal import fast, signals
from nodal.errors import NodalError
from nodal.newton import (AHEAD_REACH, AHEAD_SAFETY, NewtonOptions, UnknownStoppingRuleError,
                          ahead_step, curvature, junction_step_scale)

RATE = 48000
NONLINEAR = [name for name in circuits.registry() if name != "rc_lowpass"]


def _inputs(solver, length: int, peak: float = 1.0) -> torch.Tensor:
    """[1, length, inputs]: a plucked string on the audio input, slow sines on the controls."""
    seconds = length / RATE
    controls = [signals.sine(2.0 + k, seconds, RATE, amplitude=0.5)
                for k in range(solver.n_inputs - 1)]
    return torch.tensor(np.stack(
        [signals.plucked_string(seconds, RATE, peak=peak)] + controls, -1))[None]


def _record_solves(solver):
    """Wrap the torch path's Newton: every call's (q, p, K, laws, converged) is kept."""
    calls = []
    original = solver._solve

    def recording(q0, p, K, laws, theta_j, options=None):
        out = original(q0, p, K, laws, theta_j, options)
        calls.append((out[0], p, K, laws, out[2]))
        return out
    solver._solve = recording
    return calls


def _newton_left(q, p, K, laws, expand) -> torch.Tensor:
    """|the Newton step that remains at q| [B, r]: J^-1 f, f = q - p - K i(Q q) evaluated from
    the laws at q (not from the solver's own currents)."""
    i, jac = laws(q @ expand.T)
    f = q - p - i @ K.T
    J = torch.eye(q.shape[1], dtype=q.dtype) - K @ jac @ expand
    return torch.linalg.solve(J, f.unsqueeze(-1)).squeeze(-1).abs()


@pytest.mark.parametrize("name", NONLINEAR)
def test_the_accepted_samples_solve_the_port_equation(name):
    """At every sample the predicted rule accepted (torch path, plucked string at 1 V and a
    5 V one), the Newton step that remains is below the tolerance abstol + reltol |q|: q is
    within what one more Newton step of the tolerance would move."""
    solver = nodal.load(name)
    options = solver.newton
    assert options.stopping == "predicted"          # the default
    calls = _record_solves(solver)
    for peak in (1.0, 5.0):
        solver.simulate(_inputs(solver, 300, peak), backend="torch")
    worst, samples = 0.0, 0
    for q, p, K, laws, converged in calls:
        left = _newton_left(q, p, K, laws, solver.numeric.expand)
        tolerance = options.abstol + options.reltol * q.abs()
        ratio = (left / tolerance).amax(1)[converged]
        samples += int(converged.sum())
        worst = max(worst, float(ratio.max()) if ratio.numel() else 0.0)
    assert samples >= 600
    assert worst <= 1.0, worst
    # the check can fail: a q off by 1e-8 V is far outside it
    q, p, K, laws, _ = calls[-1]
    assert float((_newton_left(q + 1e-8, p, K, laws, solver.numeric.expand)
                  / (options.abstol + options.reltol * q.abs())).max()) > 10


@pytest.mark.parametrize("name", NONLINEAR)
def test_the_predicted_rule_saves_evaluations_and_keeps_the_samples(name):
    """Fast path, 0.1 s plucked string: fewer law evaluations per sample than the "step" rule
    on the same input, and the same samples to 1e-9 V."""
    solver = nodal.load(name)
    u = _inputs(solver, 4800)
    new = solver.simulate(u)
    solver.newton = NewtonOptions(stopping="step")
    old = solver.simulate(u)
    assert new.diagnostics.mean_iterations < old.diagnostics.mean_iterations - 0.3, (
        new.diagnostics.mean_iterations, old.diagnostics.mean_iterations)
    assert float((new.y - old.y).abs().max()) <= 1e-9
    assert float((new.x - old.x).abs().max()) <= 1e-9


def test_both_backends_honour_the_option():
    """The diode clipper (one block: the same Newton in both backends) with either rule: the
    same iteration counts and samples in torch and in the kernel."""
    solver = nodal.load("diode_clipper")
    u = _inputs(solver, 300)
    counts = {}
    for rule in ("step", "predicted"):
        solver.newton = NewtonOptions(stopping=rule)
        ref = solver.simulate(u, backend="torch")
        out = solver.simulate(u, backend="fast")
        assert float((out.y - ref.y).abs().max()) <= 1e-9
        assert out.diagnostics.mean_iterations == pytest.approx(
            ref.diagnostics.mean_iterations, rel=1e-2)
        counts[rule] = out.diagnostics.mean_iterations
    assert counts["predicted"] < counts["step"] - 0.5


@pytest.mark.parametrize("backend", ["fast", "torch"])
def test_an_unknown_rule_is_named(backend):
    solver = nodal.load("diode_clipper")
    solver.newton = NewtonOptions(stopping="residual")
    with pytest.raises(UnknownStoppingRuleError, match="step, predicted") as err:
        solver.simulate(_inputs(solver, 100), backend=backend)
    assert isinstance(err.value, NodalError)


def _predicted_and_actual(solver, length: int):
    """Plain Newton (no stopping) from the torch path's starts: per full step within reach,
    (predicted next step, the actual next step), largest coordinate of each."""
    pairs = []
    original = solver._solve
    expand = solver.numeric.expand
    ports = solver.numeric.junction_ports

    def replay(q0, p, K, laws, theta_j, options=None):
        out = original(q0, p, K, laws, theta_j, options)
        vte, vcrit = theta_j
        half = curvature(expand.shape[0], ports, vte)
        q, predicted = q0.clone(), None
        for _ in range(12):
            v = q @ expand.T
            i, jac = laws(v)
            J = torch.eye(q.shape[1], dtype=q.dtype) - K @ jac @ expand
            dq = -torch.linalg.solve(J, (q - p - i @ K.T).unsqueeze(-1)).squeeze(-1)
            dv = dq @ expand.T
            if predicted is not None:
                pairs.append((predicted, float(dq.abs().max())))
            alpha = junction_step_scale(v[:, ports], dv[:, ports], vte, vcrit)
            reach = float((dv.abs() * 2 * half).max()) <= AHEAD_REACH
            predicted = (float(ahead_step(jac, dv, half, K, J)[0].abs().max())
                         if float(alpha[0]) == 1.0 and reach else None)
            q = q + alpha[:, None] * dq
        return out
    solver._solve = replay
    solver.simulate(_inputs(solver, length), backend="torch")
    return np.array(pairs)


@pytest.mark.parametrize("name, low, high", [
    # the diodes' exponential: the prediction is the next step
    ("diode_clipper", 0.9, 1.1),
    # the JFETs' square-law channels (~2.6 V above pinch-off): i''/i' = 1/(vgs - vto) is far
    # below the 1/vt assumed, an overestimate (safe: acceptance comes later, never wrongly)
    ("phase90", 10.0, 1e3),
])
def test_the_predicted_step_against_the_actual_one(name, low, high):
    """Where acceptance is decided (the actual next step between 1e-12 and 1e-8 V, above
    round-off), predicted / actual lies in [low, high]; never below 1 / AHEAD_SAFETY."""
    pairs = _predicted_and_actual(nodal.load(name), 150)
    band = pairs[(pairs[:, 1] > 1e-12) & (pairs[:, 1] < 1e-8)]
    assert len(band) >= 50
    ratio = band[:, 0] / band[:, 1]
    assert ratio.min() >= 1 / AHEAD_SAFETY
    assert low <= np.median(ratio) <= high, np.median(ratio)


def test_the_kernel_elimination_keeps_its_factors():
    """`_solve_n` then `_resolve_n` on a second right-hand side (the generated templates,
    compiled alone) give numpy's solutions, with row exchanges."""
    import numba

    namespace = {"numba": numba, "CACHE": False}
    exec(fast._solvers({1, 3, 6}), namespace)
    rng = np.random.default_rng(4)
    for n in (1, 3, 6):
        A = rng.normal(size=(n, n))
        A[0, 0] = 1e-3                      # a pivot that must be exchanged
        b1, b2 = rng.normal(size=n), rng.normal(size=n)
        J, f, out = A.copy(), b1.copy(), np.empty(n)
        namespace[f"_solve_{n}"](J, f, out)
        assert np.allclose(out, np.linalg.solve(A, b1), rtol=1e-12, atol=1e-12)
        second = b2.copy()
        namespace[f"_resolve_{n}"](J, f, second)
        assert np.allclose(second, np.linalg.solve(A, b2), rtol=1e-12, atol=1e-12)

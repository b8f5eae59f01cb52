"""Closed-form physics: what the solver must give, from circuit theory, not from a past run."""

import math

import numpy as np
import pytest
import torch
from scipy import constants

import nodal
from nodal.devices import GMIN, THERMAL_VOLTAGE
from nodal.netlist import parse

FS = 48000.0


def solver_for(text, fs=FS, **values):
    eq = nodal.derive(parse(text, "test.cir"))
    return nodal.NodalSolver(eq, sample_rate=fs, values=values)


def run(solver, u):
    u = torch.as_tensor(np.asarray(u, dtype=float))
    if u.dim() == 1:
        u = u[None, :, None]
    with torch.no_grad():
        return solver(u)


def test_divider_of_two_equal_resistors_halves_the_voltage():
    s = solver_for("""* divider
*@ input Vin
*@ output mid
Vin in 0 DC 0
R1 in mid 1k
R2 mid 0 1k
""")
    traj = run(s, [10.0, 10.0, -4.0])
    assert s.n_states == 0
    np.testing.assert_allclose(traj.y[0, :, 0].numpy(), [5.0, 5.0, -2.0], rtol=1e-12)


def test_differential_output_of_a_bridge():
    s = solver_for("""* bridge
*@ input Vin
*@ output a,b
Vin in 0 DC 0
R1 in a 1k
R2 a 0 3k
R3 in b 3k
R4 b 0 1k
""")
    traj = run(s, [4.0])
    assert math.isclose(float(traj.y[0, 0, 0]), 3.0 - 1.0, rel_tol=1e-12)


RC = """* rc
*@ input Vin
*@ output out
Vin in 0 DC 0
R1 in out 1k
C1 out 0 100n
"""


def steady_gain(solver, f, fs):
    """Amplitude of the steady-state response to a unit sine at f (least-squares fit)."""
    n = int(fs * 0.05)
    t = np.arange(n) / fs
    y = run(solver, np.sin(2 * np.pi * f * t)).y[0, :, 0].numpy()
    tail = slice(n // 2, n)
    basis = np.stack([np.sin(2 * np.pi * f * t[tail]), np.cos(2 * np.pi * f * t[tail])], 1)
    coef, *_ = np.linalg.lstsq(basis, y[tail], rcond=None)
    return float(np.hypot(*coef))


@pytest.mark.parametrize("ratio,expected_db", [(0.5, -0.97), (1.0, -3.01), (2.0, -6.99)])
def test_rc_lowpass_magnitude_matches_the_bilinear_transform(ratio, expected_db):
    fc = 1 / (2 * math.pi * 1e3 * 100e-9)
    f = fc * ratio
    s = solver_for(RC)
    gain = steady_gain(s, f, FS)
    # the trapezoidal rule is the bilinear transform: the analog response at the warped frequency
    warped = 2 * FS * math.tan(math.pi * f / FS)
    exact = 1 / math.sqrt(1 + (warped * 1e3 * 100e-9) ** 2)
    assert abs(20 * math.log10(gain) - 20 * math.log10(exact)) < 1e-3
    # and, sampled fast enough for the warping to vanish, the analog filter within 0.01 dB
    fast = steady_gain(solver_for(RC, fs=8 * FS), f, 8 * FS)
    assert abs(20 * math.log10(fast) - expected_db) < 0.01


def test_rc_step_response_is_exponential():
    s = solver_for(RC, fs=1e6)
    n = 2000
    u = np.ones(n)
    u[0] = 0.0  # operating point at 0 V, then a 1 V step
    y = run(s, u).y[0, :, 0].numpy()
    t = np.arange(n) / 1e6
    tau = 1e3 * 100e-9
    # the input ramps linearly over the first sample (as SPICE's PWL does); after that, exp decay
    expected = 1 - np.exp(-(t - 0.5e-6) / tau)
    assert np.max(np.abs(y[10:] - expected[10:])) < 1e-4


def test_diode_follows_the_shockley_law():
    """A 1N4148 fed through 1 kOhm: at junction voltage v it carries Is (exp(v / n Vt) - 1),
    so the source must be v + R I; drive that source and the solver must return v."""
    s = solver_for("""* diode
*@ input Vin
*@ output a
.model D1N4148 D(IS=2.52n N=1.752)
Vin in 0 DC 0
R1 in a 1k
D1 a 0 D1N4148
""")
    vte = 1.752 * THERMAL_VOLTAGE
    junction = np.array([0.3, 0.4, 0.5, 0.6, 0.7])
    current = 2.52e-9 * np.expm1(junction / vte) + GMIN * junction
    v = run(s, junction + 1e3 * current).y[0, :, 0].numpy()
    np.testing.assert_allclose(v, junction, rtol=1e-9)
    # the law itself, evaluated from the Sympy expression at a few voltages
    law = s.numeric.laws(torch.tensor([[0.3], [0.5], [0.7]], dtype=torch.float64), s.theta())[0]
    volts = np.array([0.3, 0.5, 0.7])
    np.testing.assert_allclose(law[:, 0].numpy(),
                               2.52e-9 * np.expm1(volts / vte), rtol=1e-12)


def test_thermal_voltage_is_k_t_over_q_at_27_celsius():
    # SPICE's nominal temperature; scipy's CODATA 2018 constants against ngspice's 2014 ones
    # agree to 4e-7, a wrong temperature (25 C: 0.7 %, 300 K: 5e-4) would not
    expected = constants.k * constants.convert_temperature(27.0, "Celsius", "Kelvin") / constants.e
    assert math.isclose(THERMAL_VOLTAGE, expected, rel_tol=1e-6)


def test_clipper_is_odd_symmetric_and_bounded():
    s = nodal.load("diode_clipper")
    t = np.arange(960) / FS
    x = 2.0 * np.sin(2 * np.pi * 1000 * t)
    y_pos = run(s, x).y[0, :, 0].numpy()
    y_neg = run(s, -x).y[0, :, 0].numpy()
    np.testing.assert_allclose(y_pos, -y_neg, atol=1e-12)
    assert 0.5 < y_pos.max() < 0.9  # two silicon junctions in anti-parallel clamp near 0.6-0.8 V


def test_operating_point_holds_a_constant_input():
    """Started at its operating point with the input held, a circuit stays put (dx/dt = 0)."""
    s = nodal.load("diode_clipper")
    traj = run(s, np.full(50, 0.8))
    y = traj.y[0, :, 0].numpy()
    assert np.ptp(y) < 1e-12 and 0.4 < y[0] < 0.8


def test_the_operating_point_follows_a_changed_value_and_is_not_shared():
    """A diode biased from 9 V through R1: at DC it carries (9 - v) / R1 = Is (exp(v / Vt) - 1)
    (the 100 kOhm from the grounded input takes v / 100k). The operating point is kept between
    calls while the values stay (`simulate` calls it each time): changing R1 must move it to
    the new solution of that equation, and what a call returns is the caller's to change."""
    s = solver_for("""* bias
*@ input Vin
*@ output out
.model DX D(IS=1e-14 N=1)
Vin in 0 DC 0
Vcc vcc 0 DC 9
R1 vcc out 10k
R2 in out 100k
D1 out 0 DX
C1 out 0 100n
""")
    u0 = torch.zeros(1, 1, dtype=torch.float64)

    def junction(r1):
        # bisect (9 - v) / r1 - v / 100k - GMIN v = Is (exp(v / Vt) - 1) on [0, 1] V
        lo, hi = 0.0, 1.0
        for _ in range(200):
            v = 0.5 * (lo + hi)
            excess = (9 - v) / r1 - v / 1e5 - GMIN * v - 1e-14 * math.expm1(v / THERMAL_VOLTAGE)
            lo, hi = (v, hi) if excess > 0 else (lo, v)
        return 0.5 * (lo + hi)

    def node(state):      # the capacitor's voltage from its canonical state 2C/T v
        return float(state[0, 0]) / (2 * 100e-9 * FS)

    with torch.no_grad():
        first = s.initial_state(1, u0)
        assert node(first) == pytest.approx(junction(10e3), abs=1e-9)
        first += 1.0                                  # the caller's copy, not the kept one
        assert node(s.initial_state(1, u0)) == pytest.approx(junction(10e3), abs=1e-9)
        s.set_value("r1", 1e3)
        assert node(s.initial_state(1, u0)) == pytest.approx(junction(1e3), abs=1e-9)
        # and a run starts there: the output holds the new bias
        y = s.simulate(torch.zeros(1, 10, 1, dtype=torch.float64)).y[0, :, 0].numpy()
    np.testing.assert_allclose(y, junction(1e3), atol=1e-9)
    assert junction(1e3) - junction(10e3) == pytest.approx(
        THERMAL_VOLTAGE * math.log(10), rel=2e-2)    # ten times the current: Vt ln 10 more

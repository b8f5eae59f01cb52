"""Nonlinear junction and diffusion charges (diode CJO VJ M FC TT; BJT CJE CJC XCJC CJS TF XTF
VTF ITF TR; JFET CGS CGD PB FC; MOSFET CBD CBS CJ CJSW MJ MJSW PB FC and the gate overlaps
CGSO CGDO CGBO) in the DK solver, at and away from the models' nominal temperature.

References we did not write: the depletion charge is the integral of SPICE's capacitance law
(q = integral of C dv, by scipy's quadrature); the circuits are compared with ngspice's
transient (8x oversampled) and, for the common-emitter stage's Miller capacitance, with
ngspice's `.ac` small-signal analysis of the same file. Each comparison is also run with the
charges set to zero, to show that the test can fail.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import sympy as sp
import torch
from scipy.integrate import quad

import nodal
from nodal import resample, signals, spice
from nodal.devices import charges
from nodal.errors import NetlistError
from nodal.metrics import esr
from nodal.netlist import parse, read
from nodal.newton import NewtonOptions

FS = 48000.0
FIXTURES = Path(__file__).parent / "fixtures"
CLIPPER = FIXTURES / "charge_clipper.cir"
CE_STAGE = FIXTURES / "charge_ce_stage.cir"
JFET = FIXTURES / "charge_jfet.cir"
MOS_CLIPPER = FIXTURES / "mosfet_clipper.cir"         # 2N7000s as diodes, back to back
PMOS_STAGE = FIXTURES / "charge_pmos_stage.cir"       # CJ CJSW AD AS PD PS, three overlaps
CHARGED = [CLIPPER, CE_STAGE, JFET, MOS_CLIPPER, PMOS_STAGE]
PEAKS = {CLIPPER: 2.0, CE_STAGE: 0.02, JFET: 1.0, MOS_CLIPPER: 6.0, PMOS_STAGE: 0.1}  # volts in
ZERO = {CLIPPER: {"dq.cjo": 0.0, "dq.tt": 0.0},
        CE_STAGE: {"qn.cje": 0.0, "qn.cjc": 0.0, "qn.cjs": 0.0, "qn.tf": 0.0, "qn.tr": 0.0},
        JFET: {"jn.cgs": 0.0, "jn.cgd": 0.0},
        MOS_CLIPPER: {"n7000.cbd": 0.0, "n7000.cbs": 0.0, "n7000.cgso": 0.0, "n7000.cgdo": 0.0},
        PMOS_STAGE: {"pm.cj": 0.0, "pm.cjsw": 0.0, "pm.cgso": 0.0, "pm.cgdo": 0.0,
                     "pm.cgbo": 0.0}}


def _spice_capacitance(v, cj0, vj, m, fc):
    """SPICE's depletion capacitance: CJ0 (1 - v/VJ)^-M below FC VJ, continued linearly."""
    if v < fc * vj:
        return cj0 * (1 - v / vj) ** -m
    return cj0 / (1 - fc) ** (1 + m) * (1 - fc * (1 + m) + m * v / vj)


@pytest.mark.parametrize("m", [0.33, 0.5, 0.0])
def test_depletion_charge_is_the_integral_of_the_capacitance(m):
    cj0, vj, fc = 4e-12, 0.6, 0.5
    v = sp.Symbol("v", real=True)
    law = sp.lambdify(v, charges.depletion(v, cj0, vj, m, fc), "numpy")
    cap = sp.lambdify(v, sp.diff(charges.depletion(v, cj0, vj, m, fc), v), "numpy")
    for bias in (-10.0, -1.0, 0.0, 0.1, fc * vj, 0.45, vj, 1.0, 2.0):   # above FC VJ and VJ
        ref, _ = quad(_spice_capacitance, 0.0, bias, args=(cj0, vj, m, fc),
                      points=[fc * vj] if bias > fc * vj else None, epsabs=1e-30)
        assert float(law(bias)) == pytest.approx(ref, rel=1e-10, abs=1e-27)
        assert float(cap(bias)) == pytest.approx(_spice_capacitance(bias, cj0, vj, m, fc),
                                                 rel=1e-10)


def test_the_solver_evaluates_the_diode_charge_law():
    """The charge port's law, as the solver's torch laws evaluate it: depletion + TT i_d."""
    eq = nodal.equations(CLIPPER)
    assert eq.state_names == ["v(c1)", "q(d1.q)", "q(d2.q)"]
    assert len(eq.reduced) == 1            # the charges share the diodes' port voltage
    solver = nodal.NodalSolver(eq)
    biases = torch.tensor([-3.0, -0.2, 0.0, 0.3, 0.5, 0.7], dtype=torch.float64)
    k = eq.charge_ports[0]                 # D1's charge, across D1's junction (out, 0)
    v = biases[:, None] * solver.numeric.expand.T      # every port voltage from v(out)
    assert torch.equal(v[:, k], biases)
    i, jac = solver.numeric.laws(v, solver.theta())
    jac = jac @ solver.numeric.expand                  # dq/dv(out), all ports' columns
    vt = nodal.devices.THERMAL_VOLTAGE
    i_s, n, tt, cj = 14.1e-9, 1.984, 5.7e-6, (25.9e-12, 0.325, 0.44, 0.5)   # the card's values
    for b, q, c in zip(biases.tolist(), i[:, k].tolist(), jac[:, k, 0].tolist(), strict=True):
        ref, _ = quad(_spice_capacitance, 0.0, b, args=cj, epsabs=1e-30,
                      points=[cj[1] * cj[3]] if b > cj[1] * cj[3] else None)
        # TT times ngspice's diode current: Shockley above -3 n vt, its cubic tail below
        tail = 3 * n * vt / np.e
        if b >= -tail * np.e:
            current, slope = i_s * np.expm1(b / (n * vt)), i_s / (n * vt) * np.exp(b / (n * vt))
        else:
            current, slope = -i_s * (1 + (tail / b) ** 3), 3 * i_s * tail ** 3 / b ** 4
        assert q == pytest.approx(ref + tt * current, rel=1e-9, abs=1e-27)
        assert c == pytest.approx(_spice_capacitance(b, *cj) + tt * slope, rel=1e-9)


def test_circuits_without_charges_get_no_charge_ports():
    for name in ("diode_clipper", "tube_screamer", "phase90"):
        eq = nodal.equations(name)
        assert eq.charges == [] and eq.charge_ports == []
        assert eq.n_states == len(eq.reactive)


def _against_ngspice(path, seconds=0.03, oversample=8, values=None, skip=0, spice_path=None):
    """ESR of our output against ngspice's on the same netlist (or on spice_path's)."""
    eq = nodal.equations(path)
    net = eq.netlist if spice_path is None else read(spice_path)
    x = signals.plucked_string(seconds, FS, peak=PEAKS[path], cutoff=5000, seed=3)
    rate = FS * oversample
    ref = spice.simulate(net, {net.input: resample.upsample(x, oversample)}, rate,
                         substeps=max(1, 16 // oversample))
    reference = resample.downsample(ref.voltage(*net.output), oversample)[: len(x)]
    solver = nodal.NodalSolver(eq, rate, values=values)
    u = torch.tensor(resample.upsample(x, oversample))[None, :, None]
    y = resample.downsample(solver.simulate(u).y[0, :, 0].numpy(), oversample)[: len(x)]
    return esr(reference[skip:], y[skip:])


@pytest.mark.parametrize("path", CHARGED, ids=lambda p: p.stem)
def test_charged_circuits_agree_with_ngspice_at_8x(path):
    ours = _against_ngspice(path)
    assert ours <= 1e-4
    # the same solver without the charges is far off: the test sees them
    assert _against_ngspice(path, values=ZERO[path]) >= 100 * max(ours, 1e-9)


@pytest.mark.parametrize("which", ["dq.cjo", "dq.tt"])
def test_each_diode_charge_counts(which):
    """Junction charge alone and diffusion charge alone: each one's absence is seen."""
    ours = _against_ngspice(CLIPPER)
    assert _against_ngspice(CLIPPER, values={which: 0.0}) >= 50 * ours


def test_each_mosfet_charge_counts():
    """The bulk junctions alone (CJ AD + CJSW PD on the drain of the PMOS stage): removing them
    is seen, besides the gate overlaps that dominate."""
    ours = _against_ngspice(PMOS_STAGE, seconds=0.02)
    assert _against_ngspice(PMOS_STAGE, seconds=0.02,
                            values={"pm.cj": 0.0, "pm.cjsw": 0.0}) >= 100 * ours


def test_mosfet_bulk_charge_is_bottom_plus_sidewall_depletion():
    """ngspice's MOS1 bulk charges: CBD/CBS where given, else CJ times AD/AS, plus CJSW times
    PD/PS with its own grading MJSW, sharing PB and FC; the integral of SPICE's capacitance."""
    net = parse("* t\n*@ input vx\n*@ output d\n.model mq nmos vto=1 cj=2e-4 mj=0.4 "
                "cjsw=1e-9 mjsw=0.3 pb=0.7 fc=0.5 cbs=3p\nvx d 0 0\n"
                "m1 d d 0 0 mq ad=20p pd=30u as=5p ps=40u\n", "m.cir")
    el = net.elements[1]
    stamp = nodal.devices.BUILDERS["M"](el, net)
    values = {sp.Symbol(k): v for k, v in net.defaults.items()}
    qbs, qbd = stamp.charges
    assert (qbs.name, qbd.name) == ("m1.qbs", "m1.qbd")
    bottom = {"m1.qbs": 3e-12, "m1.qbd": 2e-4 * 20e-12}          # CBS given: wins over CJ AS
    side = {"m1.qbs": 1e-9 * 40e-6, "m1.qbd": 1e-9 * 30e-6}
    for charge in (qbs, qbd):
        q = charge.q.subs(values)
        (v,) = q.free_symbols                  # the junction port's voltage (vbs or vbd)
        law = sp.lambdify(v, q, "numpy")
        for bias in (-5.0, -0.3, 0.2, 0.35, 0.6, 1.0):
            def cap(v, name=charge.name):
                return (_spice_capacitance(v, bottom[name], 0.7, 0.4, 0.5)
                        + _spice_capacitance(v, side[name], 0.7, 0.3, 0.5))
            ref, _ = quad(cap, 0.0, bias, points=[0.35] if bias > 0.35 else None,
                          epsabs=1e-30)
            assert float(law(bias)) == pytest.approx(ref, rel=1e-10, abs=1e-27)


def test_gate_overlaps_are_linear_capacitors_to_the_internal_terminals():
    """CGSO W and CGDO W from the gate to s' and d' (after RS, RD), CGBO (L - 2 LD) to the
    bulk: plain capacitor states, open at DC."""
    eq = nodal.equations(PMOS_STAGE)
    caps = {r.name: r for r in eq.reactive}
    values = {sp.Symbol(k): v for k, v in eq.netlist.defaults.items()}
    assert float(caps["m1.cgso"].value.subs(values)) == pytest.approx(5e-8 * 200e-6)
    assert float(caps["m1.cgbo"].value.subs(values)) == pytest.approx(2e-6 * 2e-6)
    assert (caps["m1.cgso"].a, caps["m1.cgso"].b) == ("g", "m1#s")
    assert (caps["m1.cgdo"].a, caps["m1.cgdo"].b) == ("g", "m1#d")
    assert (caps["m1.cgbo"].a, caps["m1.cgbo"].b) == ("g", "0")


def _ac_reference(path, freqs):
    """ngspice's `.ac` of the same file (the input source as `DC 0 AC 1`): gain in dB."""
    text = Path(path).read_text().splitlines()
    lines = [("Vin in bias DC 0 AC 1" if line.startswith("Vin ") else line) for line in text
             if not line.lower().startswith(".end")]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ac.txt"
        deck = Path(tmp) / "ac.cir"
        deck.write_text("\n".join(lines + [".ac lin 500 20 10000", ".control", "run",
                                           f"wrdata {out} vdb(c)", ".endc", ".end"]) + "\n")
        subprocess.run(["ngspice", "-b", str(deck)], capture_output=True, text=True,
                       timeout=120, check=False)
        data = np.loadtxt(out)
    return np.interp(freqs, data[:, 0], data[:, 1])


def _swept_sine_db(path, freqs, amplitude=1e-4, oversample=8, values=None):
    """The solver's gain at each frequency: a low-level sine per batch item, two periods of
    the lowest frequency at 8x the sample rate, the second one's Fourier coefficient."""
    rate = FS * oversample
    period = int(round(rate / freqs[0]))
    t = np.arange(2 * period) / rate
    u = torch.tensor(amplitude * np.sin(2 * np.pi * freqs[:, None] * t))[..., None]
    solver = nodal.NodalSolver(nodal.equations(path), rate, values=values)
    y = solver.simulate(u).y[:, period:, 0].numpy()
    coef = (y * np.exp(-2j * np.pi * freqs[:, None] * t[period:])).sum(1) * 2 / period
    return 20 * np.log10(np.abs(coef) / amplitude)


def test_common_emitter_frequency_response_matches_ngspice_ac():
    """The Miller capacitance (CJC times the stage's gain of about 110) and CJE + TF gm set a
    pole near 7 kHz: 1.8 dB down at 10 kHz. Within 0.1 dB of ngspice from 20 Hz to 10 kHz."""
    freqs = np.array([20.0, 100.0, 1000.0, 3000.0, 6000.0, 10000.0])
    ref = _ac_reference(CE_STAGE, freqs)
    ours = _swept_sine_db(CE_STAGE, freqs)
    assert np.abs(ours - ref).max() <= 0.1
    assert ref[0] - ref[-1] >= 1.0                      # the roll-off is really there
    flat = _swept_sine_db(CE_STAGE, freqs[-1:], values={"qn.cjc": 0.0})
    assert abs(flat[0] - ref[-1]) > 0.5                 # without CJC: no Miller pole


def _inputs(path, length=600):
    seconds = length / FS
    return torch.tensor(np.stack([signals.plucked_string(seconds, FS, peak=PEAKS[path] * k,
                                                         seed=k) for k in (1, 2)]))[..., None]


@pytest.mark.parametrize("path", CHARGED, ids=lambda p: p.stem)
def test_fast_path_gives_the_torch_paths_samples(path):
    solver = nodal.load(path)
    u = _inputs(path)
    ref = solver.simulate(u, backend="torch")
    out = solver.simulate(u, backend="fast")
    assert float((out.y - ref.y).abs().max()) <= 1e-9
    # exposed states: the charges in coulombs (picocoulombs), held to 1e-9 of their size
    scale = ref.x.abs().amax((0, 1))
    assert bool(((out.x - ref.x).abs().amax((0, 1)) <= 1e-9 * scale + 1e-24).all())
    assert np.array_equal(out.diagnostics.level, ref.diagnostics.level)


def test_gradcheck_through_a_charge_carrying_diode():
    solver = nodal.load(CLIPPER)
    solver.newton.abstol = solver.newton.reltol = 1e-14
    for name in ("r1", "dq.cjo", "dq.tt"):
        solver.make_trainable(name)
    u = torch.tensor(signals.plucked_string(0.0006, FS, peak=2.0, seed=1))[None, :, None]
    u[0, 0, 0] = 0.3

    def output(r_kohm, cjo_pf, tt_us):
        params = {"trainable.r1": r_kohm * 1e3, "trainable.dq__cjo": cjo_pf * 1e-12,
                  "trainable.dq__tt": tt_us * 1e-6}
        return torch.func.functional_call(solver, params, (u,)).y

    inputs = tuple(torch.tensor(v, dtype=torch.float64, requires_grad=True)
                   for v in (2.2, 25.9, 5.7))
    assert torch.autograd.gradcheck(output, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)
    # and the charges really move the output
    g = torch.autograd.grad(output(*inputs).square().sum(), inputs)
    assert float(abs(g[1])) > 0 and float(abs(g[2])) > 0


@pytest.mark.parametrize("level", [1, 3])
def test_substeps_carry_the_charge_states_as_an_oversampled_run(level):
    """The fallback's k = 2^level substeps at T/k are exactly k samples of the same circuit at
    k times the rate (inputs interpolated linearly), the charge histories rescaled as a
    capacitor's: h' = h + (k - 1) (2/T) q."""
    k = 1 << level
    solver = nodal.load(CLIPPER)
    u = torch.tensor(signals.plucked_string(0.002, FS, peak=3.0, seed=4))[None, :, None]
    n = 60
    first = solver.simulate(u[:, :n])
    s, x_prev = first.s_final, first.x[:, -1]
    w_prev, w_n = u[:, n - 1], u[:, n]
    theta = solver.theta()
    q_start = torch.zeros(1, len(solver.eq.reduced), dtype=torch.float64)
    with torch.no_grad():
        y, x, s_new, _, _, ok, _ = solver._substeps(level, theta, s, x_prev, w_prev, w_n,
                                                    q_start, False)
    assert bool(ok.all())
    fine = nodal.load(CLIPPER, sample_rate=FS * k)
    g = solver.numeric.reactive_g(theta)
    s0 = s + (k - 1) * g * x_prev
    sub_u = torch.stack([w_prev + (j + 1) / k * (w_n - w_prev) for j in range(k)], 1)
    ref = fine.simulate(sub_u, s0=s0)
    assert float((ref.y[:, -1] - y).abs().max()) <= 1e-9
    assert float((ref.x[:, -1] - x).abs().max()) <= 1e-9 * float(x.abs().max())
    back = ref.s_final - (k - 1) * g * ref.x[:, -1]
    assert float((back - s_new).abs().max()) <= 1e-9 * float(s_new.abs().max())


def test_the_ladder_gives_the_same_samples_on_both_backends_with_charges():
    solver = nodal.load(CLIPPER)
    solver.newton = NewtonOptions(max_iter=5, ladder_iter=5)
    u = torch.tensor(np.stack([signals.plucked_string(0.006, FS, peak=5.0, seed=s)
                               for s in (1, 2)]))[..., None]
    out = solver.simulate(u, backend="fast")
    ref = solver.simulate(u, backend="torch")
    assert out.diagnostics.fallback_samples, "the test needs samples that fall back"
    assert out.diagnostics.failures == [] == ref.diagnostics.failures
    np.testing.assert_array_equal(out.diagnostics.level, ref.diagnostics.level)
    assert float((out.y - ref.y).abs().max()) <= 1e-9
    assert float((out.x - ref.x).abs().max()) <= 1e-9


def test_operating_point_charge_state_is_q_of_the_bias():
    """At DC a charge carries no current; its exposed state is q(v0) of the bias point."""
    eq = nodal.equations(JFET)
    solver = nodal.NodalSolver(eq)
    s, q = solver._operating_point(1)
    x = s / solver._state_scale(solver.theta())
    v = q @ solver.numeric.expand.T
    vgs = float(v[0, eq.charge_ports[0]])
    ref, _ = quad(_spice_capacitance, 0.0, vgs, args=(20e-12, 0.8, 0.5, 0.5), epsabs=1e-30)
    assert float(x[0, 0]) == pytest.approx(ref, rel=1e-9)


@pytest.mark.parametrize("card, word", [
    ("D(IS=1n CJO=1p FC=1)", "FC"), ("D(IS=1n CJO=1p M=1)", "M"),
    ("D(IS=1n CJO=-1p)", "CJO"), ("D(IS=1n TT=-1n)", "TT"), ("D(IS=1n VJ=0 CJO=1p)", "VJ")])
def test_charge_parameters_out_of_range_are_named(card, word):
    text = f"*@ input V1\n*@ output a\n.model DX {card}\nV1 i 0 0\nR1 i a 1k\nD1 a 0 DX\n.end\n"
    with pytest.raises(NetlistError, match=word):
        nodal.mna.derive(parse(text, "bad.cir"))


def test_bjt_xcjc_and_the_substrate_charge_have_their_own_ports():
    """Without an internal base node (no RB), XCJC changes nothing: CJC is one charge; CJS is
    a charge from ground to the collector (vertical NPN)."""
    eq = nodal.equations(CE_STAGE)
    names = [c.name for c in eq.charges]
    assert names == ["q1.qbe", "q1.qbc", "q1.qsub"]
    sub = eq.charges[2]
    assert (sub.p, sub.m) == ("0", "c")


def test_pnp_stage_charges_have_the_pnp_polarity(tmp_path):
    """The common-emitter stage mirrored (PNP, negative supply and bias) against ngspice: the
    charges' ports and voltages are polarity-normalised as the junctions' are."""
    text = CE_STAGE.read_text().replace("NPN(", "PNP(").replace("DC 0.612", "DC -0.612")
    path = tmp_path / "pnp_ce_stage.cir"
    path.write_text(text.replace("DC 9", "DC -9"))
    PEAKS[path] = PEAKS[CE_STAGE]
    assert _against_ngspice(path, seconds=0.02) <= 1e-4
    assert _against_ngspice(path, seconds=0.02, values=ZERO[CE_STAGE]) >= 1e-4


# -- the germanium fuzz (FZ-1 style, three PNP stages) ------------------------------------------

FUZZ = FIXTURES / "germanium_fuzz.cir"
#: ngspice stops this fuzz's transient at REFERENCE_OPTIONS' reltol 1e-7 ("timestep too small"
#: at a stage's base, near 0.8 ms), and finishes at ten times the tolerances.
FUZZ_OPTIONS = {"reltol": 1e-6, "abstol": 1e-14, "vntol": 1e-9, "chgtol": 1e-17, "trtol": 1}


def _fuzz_esr(values=None, seconds=0.02, peak=0.1, path=FUZZ, options=FUZZ_OPTIONS):
    eq = nodal.equations(path)
    net = eq.netlist
    x = signals.plucked_string(seconds, FS, peak=peak, cutoff=5000, seed=3)
    rate = FS * 8
    ref = spice.simulate(net, {net.input: resample.upsample(x, 8)}, rate, substeps=2,
                         options=options)
    reference = resample.downsample(ref.voltage(*net.output), 8)[: len(x)]
    solver = nodal.NodalSolver(eq, rate, values=values)
    u = torch.tensor(resample.upsample(x, 8))[None, :, None]
    y = resample.downsample(solver.simulate(u, backend="fast").y[0, :, 0].numpy(), 8)[: len(x)]
    return esr(reference, y)


def test_germanium_fuzz_agrees_with_ngspice_at_8x():
    """IKF IKR ISE NE ISC NC RB RE RC, CJE CJC, TF TR on three leaky germanium PNP stages."""
    ours = _fuzz_esr()
    assert ours <= 1e-3
    zero = {"ge.cje": 0.0, "ge.cjc": 0.0, "ge.tf": 0.0, "ge.tr": 0.0}
    assert _fuzz_esr(values=zero) >= 100 * max(ours, 1e-9)


def test_germanium_fuzz_fast_path_gives_the_torch_paths_samples():
    solver = nodal.load(FUZZ)
    u = torch.tensor(np.stack([signals.plucked_string(600 / FS, FS, peak=p, seed=s)
                               for s, p in ((1, 0.1), (2, 0.5))]))[..., None]
    ref = solver.simulate(u, backend="torch")
    out = solver.simulate(u, backend="fast")
    assert float((out.y - ref.y).abs().max()) <= 1e-9


def test_a_micro_ohm_collector_resistance_is_solvable(tmp_path):
    """A published germanium card sets RC=1.727u: the internal collector hangs on 5.8e5 S, the
    transient matrix's condition number is ~3e10 after equilibration, yet it is regular (the
    circuit runs, as in ngspice). It was called singular; the check now measures the backward
    error. Against ngspice at its default tolerances (its tight ones stop on this card)."""
    text = FUZZ.read_text().replace("RC=1.5", "RC=1.727u")
    path = tmp_path / "micro_rc.cir"
    path.write_text(text)
    nodal.check_solvable(nodal.equations(path))
    assert _fuzz_esr(path=path, seconds=0.01, options={}) <= 1e-4

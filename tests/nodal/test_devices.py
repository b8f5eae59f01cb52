"""The BJT and JFET laws, checked like circuit theory: closed forms, symmetries, and ngspice.

Each device's law is the Sympy expression its builder returns (`Stamp.currents`, one per port),
evaluated at the model's default values. Units are SI (volts, amperes).
"""

import math
import re
import subprocess

import pytest
import sympy as sp
import torch

from nodal import devices
from nodal.devices import GMIN, THERMAL_VOLTAGE as VT
from nodal.errors import NetlistError
from nodal.netlist import GROUND, parse


def device(model: str, card: str):
    """(element, stamp, numeric defaults) of the one device on `card` under `.model`."""
    net = parse(f"* one device\n*@ input vx\n*@ output x\n{model}\nvx x 0 0\n{card}\n", "t.cir")
    el = net.elements[1]
    stamp = devices.BUILDERS[el.kind](el, net)
    return el, stamp, {sp.Symbol(k): v for k, v in net.defaults.items()}


def terminal_currents(model: str, card: str, volts: dict[str, float]) -> dict[str, float]:
    """Current into each terminal (A) with the terminals held at `volts` (V)."""
    el, stamp, values = device(model, card)
    volts = {**volts, GROUND: 0.0}
    ports = {sym: volts[p.p] - volts[p.m]
             for p, sym in zip(stamp.ports, stamp.voltages, strict=True)}
    into = {n: 0.0 for n in el.nodes}
    for port, law, sym in zip(stamp.ports, stamp.currents, stamp.voltages, strict=True):
        i = float(law.subs(values).subs(ports))
        if port.junction:          # GMIN across every junction, stamped by mna.derive
            i += GMIN * ports[sym]
        into[port.p] += i
        into[port.m] -= i
    for row, col, g in stamp.matrix:          # linear parts (the BJT's substrate GMIN)
        if row == col and row[1] in into:
            into[row[1]] += float(g) * volts[row[1]]
    return into


NPN = ".model QN NPN(IS=1e-14 BF=200 BR=2 VAF=50)"
PNP = ".model QP PNP(IS=1e-14 BF=200 BR=2 VAF=50)"
NJF = ".model JN NJF(VTO=-2 BETA=1e-3 LAMBDA=0.02 IS=1e-14)"
PJF = ".model JP PJF(VTO=-2 BETA=1e-3 LAMBDA=0.02 IS=1e-14)"


# -- BJT ---------------------------------------------------------------------------------------

def test_npn_in_forward_active_follows_ebers_moll_with_the_early_effect():
    vbe, vce = 0.65, 5.0
    i = terminal_currents(NPN, "Q1 c b e QN", {"c": vce, "b": vbe, "e": 0.0})
    forward = 1e-14 * math.expm1(vbe / VT)
    reverse = -1e-14                       # vbc = -4.35 V: the reverse junction is saturated
    vbc = vbe - vce
    ic = (forward - reverse) * (1 - vbc / 50) - reverse / 2 - GMIN * vbc + GMIN * vce
    ib = forward / 200 + reverse / 2 + GMIN * (vbe + vbc)
    assert i["c"] == pytest.approx(ic, rel=1e-6)
    assert i["b"] == pytest.approx(ib, rel=1e-6)
    assert i["e"] == pytest.approx(-(i["c"] + i["b"]) + GMIN * vce, rel=1e-9)


def test_early_effect_raises_the_current_gain_by_one_plus_vcb_over_vaf():
    gains = []
    for vce in (2.0, 10.0):
        i = terminal_currents(NPN, "Q1 c b e QN", {"c": vce, "b": 0.65, "e": 0.0})
        gains.append(i["c"] / i["b"])
    assert gains[1] / gains[0] == pytest.approx((1 + 9.35 / 50) / (1 + 1.35 / 50), rel=1e-4)


def test_pnp_is_the_npn_with_every_voltage_and_current_reversed():
    for c, b, e in [(5.0, 0.65, 0.0), (0.2, 0.7, 0.0), (-1.0, 0.3, 0.1)]:
        n = terminal_currents(NPN, "Q1 c b e QN", {"c": c, "b": b, "e": e})
        p = terminal_currents(PNP, "Q1 c b e QP", {"c": -c, "b": -b, "e": -e})
        # the substrate GMIN sits on the collector (vertical NPN) or base (lateral PNP)
        n["c"] -= GMIN * c
        p["b"] -= GMIN * -b
        for k in "cbe":
            assert p[k] == pytest.approx(-n[k], rel=1e-12, abs=1e-20)


def test_reverse_junction_tail_is_ngspices_cubic_and_joins_the_exponential_smoothly():
    v = sp.Symbol("v", real=True)
    law = devices.spice_junction(v, sp.Float(1e-14), sp.Float(VT))
    f = sp.lambdify([v], [law, sp.diff(law, v)], "math")
    knee = -3 * VT
    below, above = f(knee * (1 + 1e-9)), f(knee * (1 - 1e-9))
    assert below[0] == pytest.approx(above[0], rel=1e-7)
    assert below[1] == pytest.approx(above[1], rel=1e-6)
    assert f(-10.0)[0] == pytest.approx(-1e-14 * (1 + (3 * VT / (math.e * -10.0)) ** 3), rel=1e-14)


def test_junction_tail_gradient_is_finite_where_the_exponential_branch_is_taken():
    # torch.where differentiates both branches: a 1/v tail evaluated at v = 0 gave NaN.
    v, i_s = sp.Symbol("v", real=True), sp.Symbol("i_s")
    law = devices.spice_junction(v, i_s, sp.Float(VT))
    fn = sp.lambdify([v, i_s], law, modules="torch")
    volts = torch.tensor([-1.0, 0.0, 0.3], dtype=torch.float64, requires_grad=True)
    i_sat = torch.tensor(1e-14, dtype=torch.float64, requires_grad=True)
    fn(volts, i_sat).sum().backward()
    assert torch.isfinite(volts.grad).all() and torch.isfinite(i_sat.grad)


# -- JFET --------------------------------------------------------------------------------------


def test_jfet_in_saturation_follows_the_square_law():
    vgs, vds = -1.0, 5.0                    # vgst = 1 V < vds
    i = terminal_currents(NJF, "J1 d g s JN", {"d": vds, "g": vgs, "s": 0.0})
    gate_drain = -1e-14 + GMIN * (vgs - vds)
    assert i["d"] - (-gate_drain) == pytest.approx(1e-3 * 1.0 ** 2 * (1 + 0.02 * vds), rel=1e-9)


def test_jfet_in_the_triode_region_is_beta_vds_times_two_vgst_minus_vds():
    vgs, vds = 0.0, 0.5                     # vgst = 2 V > vds
    i = terminal_currents(NJF, "J1 d g s JN", {"d": vds, "g": vgs, "s": 0.0})
    gate_drain = 1e-14 * math.expm1(-vds / VT) + GMIN * -vds
    assert i["d"] + gate_drain == pytest.approx(1e-3 * vds * (2 * 2.0 - vds) * (1 + 0.02 * vds),
                                                rel=1e-9)


def test_jfet_below_pinch_off_conducts_only_gmin_and_junction_leakage():
    i = terminal_currents(NJF, "J1 d g s JN", {"d": 3.0, "g": -2.5, "s": 0.0})
    leak = -1e-14 + GMIN * (-2.5 - 3.0)
    assert i["d"] == pytest.approx(-leak, rel=1e-6)


def test_jfet_at_negative_vds_equals_the_swapped_device():
    for vd, vg, vs in [(-0.5, 0.0, 0.0), (-3.0, -1.0, 0.0), (-0.2, -1.9, 0.1), (0.4, -0.5, 1.5)]:
        a = terminal_currents(NJF, "J1 d g s JN", {"d": vd, "g": vg, "s": vs})
        b = terminal_currents(NJF, "J1 d g s JN", {"d": vs, "g": vg, "s": vd})
        assert a["d"] == pytest.approx(b["s"], rel=1e-12, abs=1e-18)
        assert a["s"] == pytest.approx(b["d"], rel=1e-12, abs=1e-18)
        assert a["g"] == pytest.approx(b["g"], rel=1e-12, abs=1e-18)


def test_jfet_channel_is_continuous_with_its_slope_across_triode_and_saturation():
    vgs = sp.Symbol("vgs", real=True)
    vgd = sp.Symbol("vgd", real=True)
    law = devices.jfet_channel(vgs, vgd, sp.Float(-2.0), sp.Float(1e-3), sp.Float(0.02))
    f = sp.lambdify([vgs, vgd], [law, sp.diff(law, vgd)], "math")
    # vds = vgst = 1 V: the triode/saturation boundary, approached from both sides
    lo, hi = f(-1.0, -2.0 + 1e-9), f(-1.0, -2.0 - 1e-9)
    assert lo[0] == pytest.approx(hi[0], rel=1e-7)
    assert lo[1] == pytest.approx(hi[1], rel=1e-5, abs=1e-12)


def test_pjf_is_the_njf_with_every_voltage_and_current_reversed():
    for d, g, s in [(5.0, -1.0, 0.0), (0.5, 0.0, 0.0), (-0.3, -1.5, 0.2)]:
        n = terminal_currents(NJF, "J1 d g s JN", {"d": d, "g": g, "s": s})
        p = terminal_currents(PJF, "J1 d g s JP", {"d": -d, "g": -g, "s": -s})
        for k in "dgs":
            assert p[k] == pytest.approx(-n[k], rel=1e-12, abs=1e-18)


def test_jfet_b_parameter_changes_saturation_as_ngspice_sydney_model():
    model = ".model JB NJF(VTO=-2 BETA=1e-3 LAMBDA=0 IS=1e-14 B=0.7 PB=0.8)"
    i = terminal_currents(model, "J1 d g s JB", {"d": 5.0, "g": -1.0, "s": 0.0})
    bfac = (1 - 0.7) / (0.8 + 2.0)
    assert i["d"] + (-1e-14 + GMIN * -6.0) == pytest.approx(1e-3 * (0.7 + bfac * 1.0), rel=1e-9)


# -- against ngspice's own operating points ----------------------------------------------------

def ngspice_currents(model: str, card: str, volts: dict[str, float]) -> dict[str, float]:
    sources = "\n".join(f"v{n} {n} 0 {v}" for n, v in volts.items())
    deck = f"op\n{model}\n{sources}\n{card}\n.control\nset numdgt=15\nop\nprint all\n.endc\n.end\n"
    out = subprocess.run(["ngspice", "-b", "/dev/stdin"], input=deck, capture_output=True,
                         text=True, timeout=60).stdout
    found = {m.group(1): -float(m.group(2))
             for m in re.finditer(r"^v(\w+)#branch = (\S+)", out, re.M)}
    assert set(found) == set(volts), out
    return found


@pytest.mark.parametrize("model, card, points", [
    (".model QN NPN(IS=1e-14 BF=200 BR=2 VAF=50 VAR=20 NF=1.1 NR=1.2)", "Q1 c b e QN",
     [(5.0, 0.65, 0.0), (0.1, 0.7, 0.0), (-0.3, 0.65, 0.0), (-1.0, -1.5, 0.3)]),
    (PNP, "Q1 c b e QP", [(-5.0, -0.65, 0.0), (-0.1, -0.7, 0.0), (1.0, 1.5, -0.3)]),
    (NJF, "J1 d g s JN", [(3.0, -0.5, 0.0), (0.5, -1.0, 0.0), (-0.5, -1.0, 0.0),
                          (-3.0, -3.5, 0.0), (-0.4, -1.9, 0.0), (1.0, 0.4, 0.2), (0.1, -2.5, 0.0)]),
    (".model JB NJF(VTO=-2 BETA=1e-3 LAMBDA=0.02 IS=1e-14 B=0.7 PB=0.8)", "J1 d g s JB",
     [(3.0, -0.5, 0.0), (0.5, -1.0, 0.0), (-3.0, -3.5, 0.0)]),
    (PJF, "J1 d g s JP", [(-3.0, 0.5, 0.0), (0.5, 1.0, 0.0)]),
])
def test_terminal_currents_match_ngspice_operating_points(model, card, points):
    names = card.split()[1:4]
    for point in points:
        volts = dict(zip(names, point, strict=True))
        ours = terminal_currents(model, card, volts)
        theirs = ngspice_currents(model, card, volts)
        for n in names:
            assert ours[n] == pytest.approx(theirs[n], rel=1e-8, abs=1e-15), (point, n)


def test_a_model_parameter_nodalnet_does_not_model_is_a_named_error():
    with pytest.raises(NetlistError, match="ISS"):       # CJE is modelled now (charges)
        device(".model QC NPN(IS=1e-14 ISS=2f)", "Q1 c b e QC")
    with pytest.raises(NetlistError, match="VTOTC"):     # RD and CGS are modelled now
        device(".model JR NJF(VTO=-2 VTOTC=1m)", "J1 d g s JR")


# -- the device registry -----------------------------------------------------------------------

def test_every_letter_is_one_record_with_its_node_count_and_models():
    assert devices.letters() == "R C L V I E G F H B D Q J M A S K"
    for letter, rec in devices.DEVICES.items():
        assert rec.letter == letter and rec.nodes in (2, 3, 4)
        assert rec.card in ("value", "model", "source", "codemodel", "controlled", "coupling")
        assert (rec.card == "controlled") == (rec.read is not None)
        assert (rec.card in ("model", "codemodel")) == bool(rec.models)
        for i, j in rec.dc_pairs:
            assert 0 <= i < rec.nodes and 0 <= j < rec.nodes
    assert {m for m in devices.MODEL_TYPES} == {"d", "npn", "pnp", "njf", "pjf", "nmos", "pmos",
                                                "potentiometer", "sw", "aswitch"}
    assert devices.model_type("NPN").defaults["bf"] == 100.0      # ngspice's default BF


def test_the_unknown_element_error_lists_the_registry_letters():
    with pytest.raises(NetlistError) as info:
        parse("* t\n*@ input vx\n*@ output x\nvx x 0 0\nZ1 x 0 1k\n", "z.cir")
    assert "R C L V I E G F H B D Q J M A S" in str(info.value) and info.value.line == 5


def test_a_new_device_is_one_record(monkeypatch):
    """A conductance element `Y1 a b g` (siemens): one Device, registered, and it works."""
    def conductor(el, net):
        a, b = el.nodes
        return devices.Stamp(matrix=devices.conductance(a, b, el.value))

    record = devices.Device("Y", "conductor", nodes=2, card="value", build=conductor,
                            value=("conductance", "positive"), dc_pairs=((0, 1),))
    monkeypatch.setitem(devices.DEVICES, "Y", record)
    import nodal

    net = parse("* t\n*@ input vx\n*@ output y\nvx x 0 1\nR1 x y 1k\nY1 y 0 1m\n", "y.cir")
    eq = nodal.derive(net)
    nodal.check_solvable(eq)
    solver = nodal.NodalSolver(eq)
    assert solver.matrices().E[0, 0].item() == pytest.approx(0.5)   # a 1k/1k divider
    with pytest.raises(NetlistError, match="conductance is -0.001"):
        parse("* t\n*@ input vx\n*@ output y\nvx x 0 1\nR1 x y 1k\nY1 y 0 -1m\n", "y.cir")


def test_dc_paths_follow_the_records():
    import nodal

    # A VCCS output does not conduct at DC: its node floats.
    text = "* t\n*@ input vx\n*@ output y\nvx x 0 1\nR1 x 0 1k\nG1 y 0 x 0 1m\nC1 y 0 1n\n"
    with pytest.raises(NetlistError, match="no DC path"):
        nodal.derive(parse(text))
    # A VCVS output and a diode do.
    text = ("* t\n*@ input vx\n*@ output z\n.model dd D\nvx x 0 1\nR1 x 0 1k\nE1 y 0 x 0 2\n"
            "D1 y z dd\nC1 z 0 1n\n")
    nodal.derive(parse(text))

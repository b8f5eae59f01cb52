"""ngspice's static device models: each law against a closed form, and whole small circuits
against ngspice's own operating points (`.op`, terminal currents through voltage sources to
1e-8 relative) and transients (ESR at 8x oversampling).

Every netlist is written here; units are SI (volts, amperes, ohms, kelvin).
"""

import math
import re
import subprocess

import numpy as np
import pytest
import sympy as sp
import torch

import nodal
from nodal import devices, resample, signals, spice
from nodal.devices import temperature
from nodal.errors import NetlistError
from nodal.metrics import esr
from nodal.netlist import parse
from nodal.render import render

VT = temperature.thermal_voltage_at(300.15)
ngspice = pytest.mark.skipif(not spice.available(), reason="ngspice is not installed")


# -- harness -----------------------------------------------------------------------------------

def equations(body: str, name: str = "t.cir") -> nodal.Equations:
    """A netlist whose first source is the input, output at node `out` if present."""
    first = next(line.split()[0] for line in body.splitlines()
                 if line[:1].lower() == "v")
    nodes = re.findall(r"^[a-z]\w* (\w+)", body, re.M | re.I)
    out = "out" if re.search(r"\bout\b", body) else next(n for n in nodes if n != "0")
    net = parse(f"* test\n*@ input {first}\n*@ output {out}\n{body}\n", name)
    eq = nodal.derive(net)
    nodal.check_solvable(eq)
    return eq


def operating_point(eq: nodal.Equations) -> dict[str, float]:
    """Every voltage source's current (A, ngspice's sign: into its + node) at DC."""
    from nodal.mna import numeric_entries

    solver = nodal.NodalSolver(eq)
    net = eq.netlist
    u0 = torch.tensor([[net.defaults[s.name] if s.name in net.defaults
                        else float(s.value) for s in eq.sources[: eq.n_inputs]]],
                      dtype=torch.float64)
    _, q = solver._operating_point(1, u0)
    numeric = solver.numeric
    v = q @ numeric.expand.T
    i, _ = numeric.laws(v, solver.theta())
    rows, cols, vals = numeric_entries(eq, dc=True)
    n = len(eq.unknowns_dc)
    s = np.zeros((n, n))
    np.add.at(s, (rows, cols), vals)
    w0 = solver.source_values(u0[:, None, :])[0, 0].numpy()
    rhs = numeric.Ru_dc.numpy() @ w0 + numeric.Rn_dc.numpy() @ i[0].numpy()
    z = np.linalg.solve(s, rhs)
    return {key[1]: float(z[k]) for k, key in enumerate(eq.unknowns_dc) if key[0] == "branch"}


def ngspice_operating_point(body: str, options: str = ".options reltol=1e-12 abstol=1e-18 "
                            "vntol=1e-15 itl1=1000") -> dict[str, float]:
    deck = (f"op\n{body}\n{options}\n.control\nset numdgt=15\nop\nprint all\n.endc\n.end\n")
    out = subprocess.run(["ngspice", "-b", "/dev/stdin"], input=deck, capture_output=True,
                         text=True, timeout=60).stdout
    return {m.group(1).lower(): float(m.group(2))
            for m in re.finditer(r"^(\w+)#branch = (\S+)", out, re.M)}


def agrees_at_dc(body: str, rel: float = 1e-8, abs_: float = 1e-15) -> dict[str, float]:
    ours = operating_point(equations(body))
    theirs = ngspice_operating_point(body)
    assert set(theirs) == set(ours), (theirs, ours)
    for name, value in theirs.items():
        assert ours[name] == pytest.approx(value, rel=rel, abs=abs_), (name, ours, theirs)
    return theirs


def transient_esr(body: str, x: np.ndarray, oversample: int = 8, fs: float = 48000.0,
                  backend: str = "torch") -> float:
    eq = equations(body)
    net = eq.netlist
    rate = fs * oversample
    drive = resample.upsample(x, oversample)
    ref = spice.simulate(net, {net.input: drive}, rate, substeps=2)
    reference = resample.downsample(ref.voltage(*net.output), oversample)[: len(x)]
    y, _ = render(eq, x, fs, oversample=oversample, backend=backend)
    return esr(reference, y)


def law(card: str, model: str, volts: dict[str, float]) -> list[float]:
    """The port currents of the one device on `card`, at port voltages `volts` (by suffix)."""
    net = parse(f"* t\n*@ input vx\n*@ output x\n{model}\nvx x 0 0\n{card}\n", "t.cir")
    el = net.elements[1]
    stamp = devices.BUILDERS[el.kind](el, net)
    values = {sp.Symbol(k): v for k, v in net.defaults.items()}
    at = {sym: volts[str(sym).split("_")[-1]] for sym in stamp.voltages}
    return [float(c.subs(values).subs(at)) for c in stamp.currents]


# -- closed forms ------------------------------------------------------------------------------

def bjt_currents(model: str, vbe: float, vbc: float) -> tuple[float, float]:
    """(Ic, Ib) of a bare BJT law (no GMIN) at the internal junction voltages."""
    i_be, i_bc = law("q1 c b e qn", model, {"be": vbe, "bc": vbc})
    return -i_bc, i_be + i_bc


def test_bjt_without_knees_or_early_voltages_is_ebers_moll():
    model = ".model qn npn is=2e-15 bf=120 br=4"
    for vbe, vbc in [(0.65, -4.0), (0.7, 0.5), (-0.2, 0.6)]:
        ic, ib = bjt_currents(model, vbe, vbc)
        ef, er = math.expm1(vbe / VT), math.expm1(vbc / VT) if vbc >= -3 * VT else None
        if er is None:
            continue
        assert ic == pytest.approx(2e-15 * (ef - er) - 2e-15 / 4 * er, rel=1e-12)
        assert ib == pytest.approx(2e-15 / 120 * ef + 2e-15 / 4 * er, rel=1e-12)


def test_early_effect_scales_the_transport_current_by_q1():
    model = ".model qn npn is=1e-15 vaf=40 var=15"
    vbe = 0.66
    for vbc in (-1.0, -5.0, -10.0):
        ic, _ = bjt_currents(model, vbe, vbc)
        transport = 1e-15 * (math.expm1(vbe / VT) + 1)       # cbc = -IS deep in reverse
        q1 = 1 / (1 - vbc / 40 - vbe / 15)
        assert ic == pytest.approx(transport / q1 + 1e-15, rel=1e-9)


def test_high_injection_knee_at_ikf():
    """Where IS exp(vbe/vt) = IKF, q2 = 1 and qb = (1 + sqrt 5)/2: Ic = IKF 2/(1 + sqrt 5);
    far above, Ic follows sqrt(IS IKF) exp(vbe / 2vt)."""
    is_, ikf = 1e-15, 5e-3
    model = f".model qn npn is={is_} ikf={ikf}"
    vbe = VT * math.log(ikf / is_ + 1)
    ic, _ = bjt_currents(model, vbe, -3.0)
    assert ic - is_ == pytest.approx(ikf * 2 / (1 + math.sqrt(5)), rel=1e-9)
    high = vbe + 10 * VT
    ic, _ = bjt_currents(model, high, -3.0)
    assert ic == pytest.approx(math.sqrt(is_ * ikf) * math.exp(high / (2 * VT)), rel=1e-2)


def test_recombination_currents_add_to_the_base():
    model = ".model qn npn is=1e-15 bf=100 ise=1e-12 ne=2 isc=1e-12 nc=2"
    vbe = 0.3
    _, ib = bjt_currents(model, vbe, -3.0)
    forward = 1e-15 / 100 * math.expm1(vbe / VT) + 1e-12 * math.expm1(vbe / (2 * VT))
    reverse = -1e-15 / 1 - 1e-12              # vbc = -3 V: both B-C junctions saturated
    expected = forward + reverse
    assert ib == pytest.approx(expected, rel=1e-6)


def test_base_resistance_falls_from_rb_to_rbm_with_current():
    from nodal.devices.bjt import base_resistance

    mp = {"rb": sp.Float(100), "rbm": sp.Float(10), "irb": sp.Float(1e-3)}
    net = parse("* t\n*@ input vx\n*@ output x\nvx x 0 0\nr1 x 0 1\n", "t.cir")

    def rbb(cb):
        return float(base_resistance(sp.Float(cb), sp.S.One, mp, sp.S.One, net))

    assert rbb(1e-15) == pytest.approx(100, rel=1e-6)      # z -> 0: 3 (tan z - z)/(z tan^2 z) -> 1
    assert rbb(1e3) == pytest.approx(10, abs=0.5)              # crowded: RBM
    values = [rbb(c) for c in (1e-6, 1e-5, 1e-4, 1e-3, 1e-2)]
    assert all(a > b for a, b in zip(values, values[1:], strict=False))
    no_irb = {"rb": sp.Float(100), "rbm": sp.Float(10)}
    assert float(base_resistance(sp.S.Zero, sp.Float(2.0), no_irb, sp.S.One, net)) == 55.0


def test_breakdown_current_at_bv_is_ibv():
    for bv, ibv, nbv in [(5.1, 1e-3, 1.0), (3.3, 5e-3, 1.3), (12.0, 1e-6, 2.0)]:
        model = f".model dz d is=1e-14 bv={bv} ibv={ibv} nbv={nbv}"
        (i,) = law("d1 a 0 dz", model, {"d1": -bv})
        # ngspice matches IS (exp((BV - xbv)/(NBV vt)) - 1 + xbv/vt) = IBV: the current at -BV
        # is IBV less IS (xbv/vt - 1), a few pA
        assert 0 < i + ibv < 1e-14 * bv / VT
        (below,) = law("d1 a 0 dz", model, {"d1": -bv - 0.1})
        assert below == pytest.approx(i * math.exp(0.1 / (nbv * VT)), rel=1e-9)


def test_area_multiplies_the_saturation_current():
    (one,) = law("d1 a 0 dm", ".model dm d is=1e-14", {"d1": 0.6})
    (three,) = law("d1 a 0 dm 3", ".model dm d is=1e-14", {"d1": 0.6})
    assert three == pytest.approx(3 * one, rel=1e-12)
    assert one == pytest.approx(1e-14 * math.expm1(0.6 / VT), rel=1e-12)


def test_mosfet_square_law_in_saturation_and_triode():
    model = ".model mn nmos vto=2 kp=0.1 lambda=0.02"
    beta = 0.1 * 100e-6 / 100e-6
    _, sat, _, _ = law("m1 d g s b mn", model, {"gs": 3.5, "ds": 5.0, "bs": 0.0, "bd": -5.0})
    assert sat == pytest.approx(beta / 2 * 1.5 ** 2 * (1 + 0.02 * 5), rel=1e-12)
    _, lin, _, _ = law("m1 d g s b mn", model, {"gs": 3.5, "ds": 0.5, "bs": 0.0, "bd": -0.5})
    assert lin == pytest.approx(beta * 0.5 * (1.5 - 0.25) * (1 + 0.02 * 0.5), rel=1e-12)
    _, rev, _, _ = law("m1 d g s b mn", model, {"gs": 3.0, "ds": -0.5, "bs": 0.0, "bd": 0.5})
    assert rev == pytest.approx(-beta * 0.5 * (1.5 - 0.25) * (1 + 0.01), rel=1e-12)
    _, off, _, _ = law("m1 d g s b mn", model, {"gs": 1.9, "ds": 5.0, "bs": 0.0, "bd": -5.0})
    assert off == 0.0


def test_body_effect_raises_the_threshold():
    model = ".model mn nmos vto=1 kp=1e-4 gamma=0.5 phi=0.6"
    _, i0, _, _ = law("m1 d g s b mn", model, {"gs": 3.0, "ds": 5.0, "bs": 0.0, "bd": -5.0})
    _, i1, _, _ = law("m1 d g s b mn", model, {"gs": 3.0, "ds": 5.0, "bs": -2.0, "bd": -7.0})
    von = 1 + 0.5 * (math.sqrt(0.6 + 2.0) - math.sqrt(0.6))
    assert i0 == pytest.approx(1e-4 / 2 * 2.0 ** 2, rel=1e-12)
    assert i1 == pytest.approx(1e-4 / 2 * (3.0 - von) ** 2, rel=1e-12)


def test_temperature_moves_is_and_beta_as_ngspice_writes_them():
    t, tnom = 350.0, 300.15
    vt = temperature.thermal_voltage_at(t)
    factor = float(temperature.saturation_factor(t, tnom, sp.Float(1.11), sp.Float(3.0)))
    assert factor == pytest.approx(math.exp((t / tnom - 1) * 1.11 / vt) * (t / tnom) ** 3)
    assert float(temperature.beta_factor(t, tnom, sp.Float(1.7))) == pytest.approx(
        (t / tnom) ** 1.7)
    assert temperature.saturation_factor(tnom, tnom, sp.Float(1.11), sp.Float(3)) == 1
    assert temperature.junction_potential(tnom, tnom, sp.Float(0.7)) == sp.Float(0.7)
    # the junction potential falls about 2 mV/K near room temperature
    drop = float(temperature.junction_potential(tnom + 10, tnom, sp.Float(0.7))) - 0.7
    assert -0.025 < drop < -0.015


# -- against ngspice's operating points --------------------------------------------------------

BIAS = "vcc vcc 0 dc {vcc}\nvb bb 0 dc {vb}\nrb bb b 1k\nrl vcc c 1k\nq1 c b e qn{inst}\nve e 0 0"


@ngspice
@pytest.mark.parametrize("model, vcc, vb, inst", [
    ("npn is=1e-15 bf=150 br=3 ikf=10m ikr=5m ise=1e-13 ne=1.6 isc=1e-13 nc=1.8 vaf=50 var=30",
     9, 0.75, " 2"),
    ("npn is=1e-15 bf=150 rb=100 irb=1m rbm=10 re=1 rc=5 ise=1e-13 ne=1.6", 9, 0.75, ""),
    ("npn is=1e-15 bf=150 rb=100 rbm=10 rc=5 vaf=50 ikf=10m nkf=0.6", 9, 0.8, " area=3"),
    ("npn is=1e-15 bf=150 rb=50 re=2 rc=20", 0.2, 0.8, ""),             # saturated
    ("pnp is=1e-15 bf=80 br=2 ikf=20m ise=1e-14 rb=100 irb=1m rbm=20 re=1 rc=3 vaf=40",
     -9, -0.75, ""),
])
def test_bjt_terminal_currents_match_ngspice(model, vcc, vb, inst):
    agrees_at_dc(f".model qn {model}\n" + BIAS.format(vcc=vcc, vb=vb, inst=inst))


@ngspice
@pytest.mark.parametrize("model, vin, inst", [
    ("is=1e-14 bv=5 ibv=1m", -8, ""),                      # in breakdown
    ("is=1e-14 bv=5 ibv=1m nbv=1.5", -5.2, ""),
    ("is=1e-14 bv=5 ibv=1m", -3, ""),                      # reverse, above the knee
    ("is=1e-14 isr=1e-9 nr=2 vj=0.7 m=0.4", 0.5, ""),      # recombination
    ("is=1e-14 ikf=1m", 1.0, " area=2"),
    ("is=1e-14 ikr=1m bv=4", -9, ""),
    ("is=2.52n n=1.752 rs=0.568", 1.2, " area=3"),
    ("is=1e-14 bv=5.1 ibv=20m rs=2", -12, ""),
    ("is=1e-9 bv=0.5 ibv=1e-12", -2, ""),                 # IBV below IS BV/vt: the knee at BV
])
def test_diode_currents_match_ngspice(model, vin, inst):
    agrees_at_dc(f".model dm d {model}\nvin in 0 dc {vin}\nr1 in a 100\nd1 a 0 dm{inst}")


@ngspice
@pytest.mark.parametrize("model, vg, vd, inst", [
    ("njf vto=-2 beta=1e-3 lambda=0.02 is=1e-14 rd=10 rs=20", -0.5, 3, ""),
    ("njf vto=-2 beta=1e-3 is=1e-14 rs=20", 0.6, 1, " area=2"),          # gate conducting
    ("pjf vto=-1.5 beta=2e-3 lambda=0.01 rd=5 rs=5 b=0.8 pb=0.9", 0.3, -4, ""),
    ("njf vto=-2 beta=1e-3 lambda=0.02 rd=10 rs=20", -1, -0.5, ""),      # drain and source swap
])
def test_jfet_currents_match_ngspice(model, vg, vd, inst):
    agrees_at_dc(f".model jm {model}\nvg g 0 dc {vg}\nvd dd 0 dc {vd}\nrl dd d 100\n"
                 f"j1 d g 0 jm{inst}")


@ngspice
@pytest.mark.parametrize("model, vg, vd, vb, inst", [
    ("nmos vto=2.1 kp=0.1 lambda=0.01", 3, 5, 0, ""),
    ("nmos vto=2.1 kp=0.1 lambda=0.01 rd=1 rs=0.5", 3.5, 0.5, 0, " l=2u w=3u"),
    ("nmos vto=1 kp=2e-5 gamma=0.5 phi=0.7 lambda=0.02", 3, 4, -1, " l=1u w=20u"),
    ("nmos vto=1 kp=2e-5 gamma=0.5 phi=0.7", 3, -2, 0.2, " l=1u w=20u"),   # reversed, body on
    ("pmos vto=-1 kp=1e-5 gamma=0.4 lambda=0.03 rs=3", -3, -4, 0.5, " l=1u w=50u"),
    ("nmos vto=2.1 kp=0.1 is=1e-12", 0, -1.0, 0, ""),                     # body diode
    ("nmos vto=1 kp=2e-5 gamma=0.5 phi=0.7 ld=0.1u", 3, 4, 0.3, " l=1u w=20u"),
    ("nmos vto=1 kp=2e-5 js=1e-4", 0, -0.7, 0, " l=1u w=20u ad=1e-10 as=2e-10"),
])
def test_mosfet_currents_match_ngspice(model, vg, vd, vb, inst):
    agrees_at_dc(f".model mm {model}\nvg g 0 dc {vg}\nvd dd 0 dc {vd}\nvb b 0 dc {vb}\n"
                 f"rl dd d 100\nm1 d g 0 b mm{inst}")


def _at_temperature(body: str, celsius: float, nominal: float | None = None):
    src = next(line.split() for line in body.splitlines() if line[:1].lower() == "v")
    net = parse(f"* t\n*@ input {src[0]}\n*@ output {src[1]}\n{body}\n", "t.cir")
    net.temperature = celsius + 273.15
    options = f".options temp={celsius} reltol=1e-12 abstol=1e-18 vntol=1e-15 itl1=1000"
    if nominal is not None:
        net.nominal_temperature = nominal + 273.15
        options += f" tnom={nominal}"
    return operating_point(nodal.derive(net)), ngspice_operating_point(body, options)


@ngspice
@pytest.mark.parametrize("body, celsius, nominal", [
    (".model qn npn is=1e-15 bf=150 xtb=1.5 xti=3.5 eg=1.2 ise=1e-13 ne=1.6 isc=1e-13 nc=1.8 "
     "br=3\nvcc c 0 dc 5\nvb bb 0 dc 0.7\nrb bb b 1k\nq1 c b 0 qn", 75, None),
    (".model qn npn is=1e-15 bf=150 xtb=1.5 tnom=50\nvcc c 0 dc 5\nvb bb 0 dc 0.7\n"
     "rb bb b 1k\nq1 c b 0 qn", 0, None),                       # the card's TNOM
    (".model dm d is=1e-14 n=1.5 xti=2 eg=1.0\nvin in 0 dc 0.8\nr1 in a 100\nd1 a 0 dm", 60,
     None),
    (".model dm d is=1e-14 n=1.2\nvin in 0 dc 0.7\nr1 in a 100\nd1 a 0 dm", -20, 10),
    (".model jm njf vto=-2 beta=1e-3 is=1e-14 xti=3 b=0.8 pb=0.9\nvg g 0 dc 0.6\n"
     "vd d 0 dc 1\nj1 d g 0 jm", 60, None),
    (".model mm pmos vto=-1 kp=2e-5 gamma=0.5 phi=0.7 is=1e-12\nvg g 0 dc -3\nvd d 0 dc -4\n"
     "vb b 0 dc -0.4\nm1 d g 0 b mm l=1u w=20u", -10, None),
])
def test_temperature_matches_ngspice(body, celsius, nominal):
    ours, theirs = _at_temperature(body, celsius, nominal)
    for name, value in theirs.items():
        assert ours[name] == pytest.approx(value, rel=1e-8, abs=1e-15), name


# -- transients against ngspice (8x oversampling) -----------------------------------------------

AMPLIFIER = """.model qn npn is=1e-14 bf=200 br=3 vaf=60 ikf=20m ise=5e-14 ne=1.5 isc=1e-13 nc=2
+ rb=200 irb=0.5m rbm=20 re=2 rc=10
vin in 0 dc 0
vcc vcc 0 dc 9
c1 in b 1u
r1 vcc b 470k
r2 b 0 68k
rc vcc c 4.7k
re e 0 470
ce e 0 22u
q1 c b e qn
c2 c out 1u
rl out 0 100k"""

ZENER_CLIPPER = """.model dz d is=1e-14 rs=5 bv=3.3 ibv=5m nbv=1.2
vin in 0 dc 0
r1 in out 1k
d1 out 0 dz
d2 0 out dz
c1 out 0 10n"""

JFET_STAGE = """.model jn njf vto=-2 beta=1e-3 lambda=0.01 is=1e-14 rd=50 rs=30
vin in 0 dc 0
vdd vdd 0 dc 9
c1 in g 100n
rg g 0 1meg
rd vdd d 4.7k
rs s 0 1k
j1 d g s jn 2
c2 d out 100n
rl out 0 100k"""

#: A 2N7000 as a level-1 card with datasheet-class values (threshold about 2.2 V, some
#: 0.1 A/V^2, an ohm or so of terminal resistance, the body diode as the bulk junction), two
#: of them as an antisymmetric clipper: gate tied to drain, so each conducts above threshold
#: one way and through its body diode the other.
MOSFET_CLIPPER = """.model m2n7000 nmos level=1 vto=2.236 kp=0.0932 lambda=0.01 rd=1 rs=0.5 is=1e-14
vin in 0 dc 0
r1 in out 1k
m1 out out 0 0 m2n7000
m2 0 0 out out m2n7000
c1 out 0 10n"""


@ngspice
@pytest.mark.parametrize("body, peak, limit", [
    (AMPLIFIER, 0.05, 1e-4), (ZENER_CLIPPER, 5.0, 1e-4), (JFET_STAGE, 0.5, 1e-4),
    (MOSFET_CLIPPER, 4.0, 1e-3),
])
def test_transients_agree_with_ngspice_at_8x(body, peak, limit):
    x = peak * signals.sine(1000, 0.004, 48000.0)
    assert transient_esr(body, x, backend="fast") <= limit


@pytest.mark.parametrize("body, peak", [(AMPLIFIER, 0.2), (MOSFET_CLIPPER, 4.0),
                                        (ZENER_CLIPPER, 6.0)])
def test_fast_and_torch_paths_agree(body, peak):
    eq = equations(body)
    x = peak * signals.sine(2000, 0.002, 48000.0)
    fast, _ = render(eq, x, 48000.0, backend="fast")
    slow, _ = render(eq, x, 48000.0, backend="torch")
    assert np.max(np.abs(fast - slow)) <= 1e-9


# -- model cards that are errors ---------------------------------------------------------------

def _build(model: str, card: str):
    net = parse(f"* t\n*@ input vx\n*@ output x\nvx x 0 0\nr1 x 0 1k\n{model}\n{card}\n",
                "card.cir")
    return nodal.derive(net)


def test_charge_parameters_are_charges_and_meyers_tox_a_named_error():
    """Junction and diffusion charges of D, Q, J and M are charge ports (`charges.py`), the
    MOSFET's overlaps capacitors; Meyer's intrinsic gate capacitances (TOX) are not modelled:
    one named error at the card's line."""
    eq = _build(".model qc npn is=1e-14 cje=2p tf=0.3n vje=0.7", "q1 x x 0 qc")
    assert any(name.startswith("q(q1.") for name in eq.state_names)
    for model, card in [(".model dc d cjo=1p", "d1 x 0 dc"),
                        (".model jc njf cgs=1p", "j1 x x 0 jc"),
                        (".model mc nmos cbd=1p", "m1 x x 0 0 mc")]:
        assert any(name.startswith("q(") for name in _build(model, card).state_names)
    assert "v(m1.cgso)" in _build(".model mc nmos cgso=1n", "m1 x x 0 0 mc").state_names
    with pytest.raises(NetlistError, match="TOX") as info:
        _build(".model mc nmos tox=1e-7", "m1 x x 0 0 mc")
    assert info.value.line == 6 and "Meyer" in str(info.value)


@pytest.mark.parametrize("model, card, words", [
    (".model q1m npn is=-1e-14", "q1 x x 0 q1m", "IS is -1e-14; it must be positive"),
    (".model q1m npn ne=0", "q1 x x 0 q1m", "NE is 0"),
    (".model d1m d vj=0", "d1 x 0 d1m", "VJ is 0"),
    (".model d1m d m=1.5", "d1 x 0 d1m", "M is 1.5"),
    (".model d1m d level=2", "d1 x 0 d1m", "level 1 diode only"),
    (".model m1m nmos level=3 vto=1", "m1 x x 0 0 m1m", "LEVEL=3"),
    (".model m1m nmos nsub=1e16", "m1 x x 0 0 m1m", "NSUB"),
    (".model q1m npn iss=1e-15", "q1 x x 0 q1m", "ISS=1e-15, which nodalnet does not model"),
    (".model d1m d foo=2", "d1 x 0 d1m", "FOO, which nodalnet does not model"),
    (".model d1m d", "d1 x 0 d1m pj=2", "instance parameter PJ"),
    (".model d1m d", "d1 x 0 d1m area=-2", "AREA is -2"),
])
def test_bad_cards_are_named_errors_at_their_line(model, card, words):
    with pytest.raises(NetlistError) as info:
        _build(model, card)
    assert words in str(info.value) and info.value.file == "card.cir"
    assert info.value.line in (6, 7)


@ngspice
@pytest.mark.parametrize("body, celsius, nominal", [
    (".model dz d is=1e-14 n=1.1 bv=5.1 ibv=1m nbv=1.3 tcv=2e-3\nvin in 0 dc -6\n"
     "r1 in a 100\nd1 a 0 dz", 60, None),                       # BV - TCV (T - TNOM)
    (".model dz d is=1e-14 n=1.1 bv=5.1 ibv=1m nbv=1.3 tcv=2e-3\nvin in 0 dc -6\n"
     "r1 in a 100\nd1 a 0 dz", -10, None),
    (".model dz d is=1e-12 n=1.5 bv=3 ibv=10u\nvin in 0 dc -3.5\nr1 in a 1k\nd1 a 0 dz", 60,
     None),                                                       # NBV defaults to N
    (".model dr d is=1e-14 n=1.05 isr=1e-10 nr=2.2 vj=0.7 m=0.4 xti=3 eg=1.11\n"
     "vin in 0 dc 0.5\nr1 in a 100\nd1 a 0 dr", 60, None),      # ISR(T): IS's law with NR
    (".model dr d is=1e-14 n=1.05 isr=1e-10 nr=2.2 vj=0.7 m=0.4\nvin in 0 dc 0.45\n"
     "r1 in a 100\nd1 a 0 dr", -20, 10),
])
def test_breakdown_and_recombination_follow_the_temperature_as_in_ngspice(body, celsius,
                                                                          nominal):
    ours, theirs = _at_temperature(body, celsius, nominal)
    for name, value in theirs.items():
        assert ours[name] == pytest.approx(value, rel=1e-8, abs=1e-15), name


def test_breakdown_emission_defaults_to_n():
    """ngspice's NBV is N unless the card gives it: the knee's slope at -BV follows N."""
    base = ".model dz d is=1e-12 n=1.5 bv=3 ibv=10u"
    (default,) = law("d1 a 0 dz", base, {"d1": -3.2})
    (given,) = law("d1 a 0 dz", base + " nbv=1.5", {"d1": -3.2})
    (unit,) = law("d1 a 0 dz", base + " nbv=1", {"d1": -3.2})
    assert default == given and abs(default - unit) > 0.1 * abs(unit)


@ngspice
@pytest.mark.parametrize("vin", [-0.05, -0.15, -0.3, -1.0, -5.0])
def test_reverse_current_without_bv_is_ngspices_cubic_tail(vin):
    """Below -3 N vt a diode without BV carries -IS (1 + (3 N vt / (e v))^3), not Shockley's
    -IS (1 - exp(v / (N vt))): 2 to 5 % apart near the knee, where ngspice's `.op` decides."""
    n, i_s = 1.3, 1e-9
    theirs = agrees_at_dc(f".model dl d is={i_s} n={n}\nvin in 0 dc {vin}\nr1 in a 10\n"
                          "d1 a 0 dl", rel=1e-8)
    (v,) = [vin + theirs["vin"] * 10]                    # the branch current into vin's +
    vte = n * VT
    if v < -3 * vte:
        cubic = -i_s * (1 + (3 * vte / (math.e * v)) ** 3)
        shockley = i_s * math.expm1(v / vte)
        assert law("d1 a 0 dl", f".model dl d is={i_s} n={n}", {"d1": v})[0] == \
            pytest.approx(cubic, rel=1e-12)
        if v > -0.5:
            assert abs(cubic - shockley) > 1e-3 * i_s       # the test tells the two laws apart


def test_jfet_emission_coefficient_is_noted_as_ngspice_ignores_it():
    net = parse("* t\n*@ input vx\n*@ output x\nvx x 0 0\nr1 x 0 1k\n"
                ".model jn njf n=2\nj1 x x 0 jn\n", "t.cir")
    nodal.derive(net)
    assert any("N" in note and "ignores" in note for note in net.notes)


@pytest.mark.parametrize("model, card", [
    (".model qn npn is=1e-15 rb=100 irb=1m rbm=10 ikf=10m ise=1e-13", "q1 x b 0 qn"),
    (".model dm d ikf=1m ikr=1m bv=5 isr=1e-9 rs=1", "d1 x 0 dm"),
    (".model mn nmos vto=1 kp=1e-4 gamma=0.5 lambda=0.01", "m1 x b 0 0 mn"),
])
def test_laws_and_their_gradients_are_finite_in_every_region(model, card):
    """torch.where differentiates both branches: no branch may hold sqrt(<0), 1/0 or inf."""
    net = parse(f"* t\n*@ input vx\n*@ output x\nvx x 0 0\nr1 x b 1k\nr2 b 0 1k\n{model}\n"
                f"{card}\n", "t.cir")
    eq = nodal.derive(net)
    solver = nodal.NodalSolver(eq, trainable=tuple(n for n in eq.parameters if "." in n))
    theta = solver.theta()
    for volts in (-6.0, -1.0, 0.0, 0.7):
        v = torch.full((1, len(eq.ports)), volts, dtype=torch.float64, requires_grad=True)
        i, jac = solver.numeric.laws(v, theta)
        (i.sum() + jac.sum()).backward()
        assert torch.isfinite(i).all() and torch.isfinite(jac).all()
        assert torch.isfinite(v.grad).all()
        for name, value in zip(solver.names, theta, strict=False):
            assert value.grad is None or torch.isfinite(value.grad), (volts, name)


def test_parameters_ngspice_does_not_know_are_ignored_with_a_note_as_ngspice_does():
    """An OC44 card written for another simulator sets VT, CEB, CCB: ngspice-39 warns
    "unrecognized parameter - ignored"; nodalnet notes it, and an alias (VA for VAF) counts."""
    net = parse("* t\n*@ input vx\n*@ output x\nvx x 0 0\nr1 x 0 1k\n"
                ".model qg pnp(is=1.4u bf=300 va=8 vt=25.5m ceb=410p ccb=10p)\n"
                "q1 x x 0 qg\n", "t.cir")
    eq = nodal.derive(net)
    assert any("VT CEB CCB" in note and "ignores" in note for note in net.notes)
    law_text = str(eq.currents)
    assert "qg.va" in law_text and "qg.vaf" not in law_text
    eq = _build(".model qc npn csub=1p", "q1 x x 0 qc")               # an alias of CJS
    assert "q(q1.qsub)" in eq.state_names

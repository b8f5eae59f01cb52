"""Controlled (E G F H, POLY) and behavioural (B, VALUE=) sources against ngspice and Sympy.

Each circuit is written here, run by ngspice (`nodal.spice`) and by the solver at 8x
oversampling on the same input, and compared by ESR at the sample times.
"""

import numpy as np
import pytest
import sympy as sp

import nodal
from nodal import resample, signals, spice
from nodal.errors import NetlistError
from nodal.metrics import esr
from nodal.render import render

FS = 48000.0
PLUCK = signals.plucked_string(0.02, FS, peak=1.0, cutoff=5000, seed=5)
needs_ngspice = pytest.mark.skipif(not spice.available(), reason="ngspice is not installed")


def equations(text: str, name: str = "test.cir") -> nodal.Equations:
    eq = nodal.derive(nodal.parse(text, name))
    nodal.check_solvable(eq)
    return eq


def against_ngspice(text: str, x: np.ndarray, oversample: int = 8, backend: str = "fast",
                    options: dict = spice.REFERENCE_OPTIONS) -> tuple[float, np.ndarray]:
    """ESR of the solver's output against ngspice's, both at `oversample` times 48 kHz."""
    eq = equations(text)
    net = eq.netlist
    drive = resample.upsample(x, oversample)
    ref = spice.simulate(net, {net.input: drive}, FS * oversample,
                         substeps=max(1, 16 // oversample), options=options)
    reference = resample.downsample(ref.voltage(*net.output), oversample)[: len(x)]
    y, _ = render(eq, x, FS, oversample=oversample, backend=backend)
    return esr(reference, y), reference


def parse_error(text: str) -> NetlistError:
    with pytest.raises(NetlistError) as info:
        equations(text, "bad.cir")
    return info.value


# ngspice's tolerances for circuits at a few hundred volts: its `REFERENCE_OPTIONS` abstol of
# 1e-15 A makes its time step collapse on the triode's plate ("timestep too small").
HIGH_VOLTAGE_OPTIONS = {"reltol": 1e-7, "abstol": 1e-12, "vntol": 1e-9, "chgtol": 1e-16,
                        "trtol": 1}

LOWPASS = """\
Vin in 0 DC 0
R1 in x 2.2k
C1 x 0 10n
"""


def circuit(body: str, output: str = "out") -> str:
    return f"test circuit\n*@ input vin\n*@ output {output}\n{LOWPASS}{body}"


# -- F and H: linear, controlled by the current through a voltage source ---------------------

F_AND_H = circuit("""\
Vsense x s 0
Rs s 0 2.2k
F1 f 0 Vsense 3
Rf f 0 1k
Cf f 0 22n
H1 h 0 Vsense -470
Rh h out 1k
Co out f 4.7n
Ro out 0 10k
""")


@needs_ngspice
def test_f_and_h_in_a_small_circuit_match_ngspice():
    eq = equations(F_AND_H)
    assert not eq.ports                   # linear stamps, no Newton
    assert ("branch", "h1") in eq.unknowns and ("branch", "f1") not in eq.unknowns
    error, reference = against_ngspice(F_AND_H, PLUCK)
    assert np.sqrt(np.mean(reference ** 2)) > 0.01      # the sources do drive the output
    assert error <= 1e-6


def test_a_current_controlled_gain_is_a_trainable_parameter():
    eq = equations(F_AND_H)
    assert eq.netlist.defaults["f1"] == 3.0 and eq.netlist.defaults["h1"] == -470.0


# -- POLY(n) -----------------------------------------------------------------------------------

POLY1 = circuit("E1 out 0 POLY(1) x 0 0.25 -2\nRo out 0 1k\n")
VALUE1 = circuit("E1 out 0 VALUE={0.25 - 2*V(x)}\nRo out 0 1k\n")
POLY2 = circuit("""\
E1 y 0 POLY(2) x 0 in x 0.1 1 -0.5 0.3 0.2 -0.4
R2 y out 1k
C2 out 0 4.7n
""")
VALUE2 = circuit("""\
E1 y 0 VALUE={0.1 + V(x) - 0.5*V(in,x) + 0.3*V(x)^2 + 0.2*V(x)*V(in,x) - 0.4*V(in,x)**2}
R2 y out 1k
C2 out 0 4.7n
""")


def test_poly_is_read_as_a_polynomial_never_as_nodes():
    """`E1 a b POLY(1) c 0 ...` was once read as an E between nodes `poly` and `(`."""
    net = nodal.parse(POLY1, "poly.cir")
    e1 = net.element("e1")
    assert e1.nodes == ("out", "0")
    assert not {"poly", "(", ")"} & set(net.nodes)
    x = sp.Symbol("v(x)", real=True)
    p0, p1 = sp.symbols("e1.p0 e1.p1")
    assert sp.expand(e1.law - (p0 + p1 * x)) == 0
    assert net.defaults["e1.p0"] == 0.25 and net.defaults["e1.p1"] == -2.0


def test_poly_coefficients_follow_spice2_order_in_three_dimensions():
    """p0, the linear terms, then x1^2 x1x2 x1x3 x2^2 x2x3 x3^2, then x1^3 ... (ngspice)."""
    text = circuit("E1 out 0 POLY(3) x 0 in 0 in x 0 1 2 3 4 5 6 7 8 9 10\nRo out 0 1k\n")
    law = nodal.parse(text, "poly3.cir").element("e1").law
    a, b, c = (sp.Symbol(n, real=True) for n in ("v(x)", "v(in)", "v(in,x)"))
    monomials = [a, b, c, a * a, a * b, a * c, b * b, b * c, c * c, a ** 3]
    values = {sp.Symbol(f"e1.p{k}"): k for k in range(11)}
    assert sp.expand(law.xreplace(values) - sum(
        k * m for k, m in enumerate(monomials, start=1))) == 0


def test_poly1_without_a_constant_is_linear():
    eq = equations(circuit("E1 out 0 POLY(1) x 0 0 -2\nRo out 0 1k\n"))
    assert not eq.ports


@needs_ngspice
def test_poly1_equals_its_value_expression_and_ngspice():
    error_poly, reference = against_ngspice(POLY1, PLUCK)
    error_value, _ = against_ngspice(VALUE1, PLUCK)
    assert error_poly <= 1e-6 and error_value <= 1e-6
    y_poly, _ = render(equations(POLY1), PLUCK, FS)
    y_value, _ = render(equations(VALUE1), PLUCK, FS)
    np.testing.assert_allclose(y_poly, y_value, rtol=0, atol=1e-12)
    # the constant p0 is a port of zero Jacobian: nothing for Newton to iterate on
    eq = equations(POLY1)
    assert len(eq.ports) == 1 and eq.jacobian.is_zero_matrix


@needs_ngspice
def test_poly2_equals_its_value_expression_and_ngspice():
    error_poly, reference = against_ngspice(POLY2, PLUCK)
    error_value, _ = against_ngspice(VALUE2, PLUCK)
    assert np.sqrt(np.mean(reference ** 2)) > 0.1
    assert error_poly <= 1e-4 and error_value <= 1e-4
    y_poly, _ = render(equations(POLY2), PLUCK, FS)
    y_value, _ = render(equations(VALUE2), PLUCK, FS)
    np.testing.assert_allclose(y_poly, y_value, rtol=0, atol=1e-9)


@needs_ngspice
def test_poly_on_f_g_and_h_matches_ngspice():
    text = circuit("""\
Vsense x s 0
Rs s 0 2.2k
G1 g 0 POLY(2) x 0 in 0 0 1m 0.5m 0.2m
Rg g 0 1k
F1 f 0 POLY(1) Vsense 0 2 300
Rf f 0 1k
H1 out f POLY(1) Vsense 0.1 100 -2e5
Ro out 0 10k
Co out 0 1n
""")
    error, _ = against_ngspice(text, PLUCK)
    assert error <= 1e-4


# -- VALUE= and B sources ----------------------------------------------------------------------

def test_a_linear_expression_stamps_linearly():
    """Sympy finds 2 V(x) - V(in,x)/3 + I(Vsense) linear in its probes: no port, no Newton."""
    text = circuit("Vsense x s 0\nRs s 0 1k\n"
                   "G1 out 0 VALUE={2m*V(x) - V(in,x)/3k + 0.5*I(Vsense)}\nRo out 0 1k\n")
    assert not equations(text).ports
    text = circuit("B1 out 0 I={2m*V(x) + 1m*tanh(V(in))}\nRo out 0 1k\n")
    eq = equations(text)
    # the linear term is stamped, only tanh(V(in)) is a law: one control port and the output
    assert len(eq.ports) == 2 and not eq.currents[0].has(sp.Symbol("v(x)", real=True))


CLIPPER = circuit("""\
B1 y 0 V={0.8*tanh(3*V(x))}
R2 y out 1k
C2 out 0 4.7n
""")


@needs_ngspice
def test_b_tanh_soft_clipper_matches_ngspice():
    error, reference = against_ngspice(CLIPPER, PLUCK * 2)
    assert np.abs(reference).max() > 0.7          # driven well into the tanh's knee
    assert error <= 1e-4


@needs_ngspice
def test_a_current_probe_in_a_nonlinear_law_matches_ngspice():
    """I(Vx) in a nonlinear expression: copied onto an internal node by a unit CCVS."""
    text = circuit("""\
Vsense x s 0
Rs s 0 1k
B1 out 0 I={-2m*tanh(1k*I(Vsense)) + 0.1*I(Vsense)^2}
Ro out 0 1k
Co out 0 10n
""")
    error, reference = against_ngspice(text, PLUCK * 2)
    assert error <= 1e-4


@needs_ngspice
def test_value_in_a_subcircuit_reads_its_own_nodes():
    text = circuit("""\
.subckt shaper a b
E1 m 0 VALUE={0.5*atan(4*V(a))}
Rm m b 1k
.ends
X1 x out shaper
Co out 0 10n
""")
    eq = equations(text)
    assert "x1.m" in eq.netlist.nodes
    error, _ = against_ngspice(text, PLUCK * 2)
    assert error <= 1e-4


def test_ngspice_spellings_of_value_are_read():
    for card in ("E1 out 0 vol={2*V(x)}", "E1 out 0 value = {2*V(x)}", "G1 out 0 cur={2m*V(x)}",
                 "B1 out 0 V = 2*V(x)", "E1 out 0 VALUE='2*V(x)'"):
        law = nodal.parse(circuit(card + "\nRo out 0 1k\n"), "s.cir").elements[-2].law
        assert law.free_symbols == {sp.Symbol("v(x)", real=True)}, card


# -- a triode stage, Koren's plate current as a behavioural G source ---------------------------

# Koren's triode: E1 = (Vpk/kp) ln(1 + exp(kp (1/mu + Vgk / sqrt(kvb + Vpk^2)))),
# Ip = 2 E1^ex / kg1 for E1 > 0, else 0 (written pwr + |.|^ex: ngspice's pwr keeps the sign);
# 12AX7: mu 100, ex 1.4, kg1 1060, kp 600, kvb 300.
KOREN = "V(p,k)/kp*ln(1+exp(kp*(1/mu+V(g,k)/sqrt(kvb+V(p,k)*V(p,k)))))"
TRIODE = f"""\
triode common-cathode stage, 12AX7
*@ input vin
*@ output out
.param mu=100 ex=1.4 kg1=1060 kp=600 kvb=300
Vin in 0 DC 0
VCC vp 0 DC 250
Cin in g 22n
Rg g 0 1meg
Rp vp p 100k
Rk k 0 1.5k
Ck k 0 22u
Cgp g p 1.7p
Cgk g k 1.6p
Gp p k VALUE={{(pwr({KOREN},ex)+abs({KOREN})**ex)/kg1}}
Cout p out 22n
Rl out 0 1meg
"""


def test_triode_operating_point_is_koren_s():
    """At DC the plate current solves Ip = koren(250 - 100k Ip - 1.5k Ip, -1.5k Ip) (scipy)."""
    from scipy.optimize import brentq

    def koren(vpk, vgk):
        e1 = vpk / 600 * np.log1p(np.exp(600 * (1 / 100 + vgk / np.sqrt(300 + vpk ** 2))))
        return 2 * max(e1, 0.0) ** 1.4 / 1060

    ip = brentq(lambda i: i - koren(250 - 101.5e3 * i, -1.5e3 * i), 0.0, 2.5e-3, xtol=1e-15)
    solver = nodal.NodalSolver(equations(TRIODE))
    q = solver._operating_point(1)[1][0].numpy()
    assert q[0] == pytest.approx(250 - 101.5e3 * ip, rel=1e-9)      # V(p,k)
    assert q[1] == pytest.approx(-1.5e3 * ip, rel=1e-9)             # V(g,k)


@needs_ngspice
def test_triode_common_cathode_stage_matches_ngspice():
    error, reference = against_ngspice(TRIODE, PLUCK * 3, options=HIGH_VOLTAGE_OPTIONS)
    assert np.abs(reference).max() > 50        # tens of volts: into cut-off and grid clamp
    assert error <= 1e-4


@pytest.mark.parametrize("text", [CLIPPER, TRIODE], ids=["clipper", "triode"])
def test_the_torch_and_numba_laws_agree(text):
    """The same Sympy law and Jacobian, lambdified for torch and printed for numba."""
    eq = equations(text)
    x = PLUCK[:240] * 3
    y_fast, _ = render(eq, x, FS, backend="fast")
    y_torch, _ = render(eq, x, FS, backend="torch")
    np.testing.assert_allclose(y_torch, y_fast, rtol=1e-9, atol=1e-9)


# -- named errors --------------------------------------------------------------------------------

@pytest.mark.parametrize("card, words", [
    ("G1 out 0 VALUE={2m*foo(V(x))}", "`foo` is not a known function"),
    ("G1 out 0 VALUE={2m*V(nowhere)}", "node 'nowhere'"),
    ("B1 out 0 I={2m*I(R9)}", "I(r9) names a R element"),
    ("B1 out 0 I={2m*I(Vmissing)}", "I(vmissing) names no element"),
    ("B1 out 0 V={sin(1000*time)}", "`time`"),
    ("E1 out 0 TABLE {V(x)} = (0,0) (1,1)", "TABLE"),
    ("E1 out 0 x 0", "expected 3 more tokens"),
    ("E1 out 0 POLY(2) x 0 1 2", "needs 4 control nodes"),
    ("E1 out 0 ( x 0 ) 2", "expected 3 more tokens"),
    ("E1 out 0 x ( 2", "cannot be a control node"),
    ("F1 out 0 1k 2", "is not the name of a voltage source"),
    ("B1 out 0 W={V(x)}", "B1 n+ n- V={expr}"),
    ("G1 out 0 VALUE={V(x)} m=2", "m = 2"),
])
def test_a_bad_controlled_source_is_a_named_error_at_its_line(words, card):
    text = circuit(f"R9 x 0 1meg\n{card}\nRo out 0 1k\n")
    error = parse_error(text)
    assert words.lower() in str(error).lower()
    assert error.line == 8 and error.file == "bad.cir"


def test_a_behavioural_law_is_differentiable_in_its_parameters():
    """Koren's kg1 and mu and a POLY coefficient: gradcheck through Newton (IFT)."""
    import torch
    from torch.func import functional_call

    u = torch.tensor(PLUCK[:24] * 3)[None, :, None]
    solver = nodal.NodalSolver(equations(TRIODE))
    solver.newton.abstol = solver.newton.reltol = 1e-14
    for name in ("kg1", "mu"):
        solver.make_trainable(name)

    def triode(kg1, mu):
        return functional_call(solver, {"trainable.kg1": kg1 * 1e3, "trainable.mu": mu * 1e2},
                               (u,)).y

    inputs = tuple(torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (1.06, 1.0))
    assert torch.autograd.gradcheck(triode, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_min_and_max_in_a_value_expression_clip_as_written(tmp_path):
    """`max(min(...))` (an ideal op-amp's rails) in both paths: the output is the clipped
    input, the closed form of the netlist; torch.min/max never see a float beside a tensor."""
    import torch

    text = ("* clip\n*@ input vin\n*@ output out\nVin a 0 0\nR1 a 0 1k\n"
            "E1 out 0 value={max(min(10*V(a), 1), -1)}\nRl out 0 1k\n")
    path = tmp_path / "clip.cir"
    path.write_text(text)
    solver = nodal.load(path)
    u = torch.linspace(-0.3, 0.3, 61, dtype=torch.float64)[None, :, None]
    expected = torch.clamp(10 * u, -1, 1)
    for backend in ("torch", "fast"):
        y = solver.simulate(u, backend=backend).y
        assert torch.allclose(y, expected, atol=1e-9), backend


@pytest.mark.parametrize("backend", ["fast", "torch"])
def test_a_step_function_in_a_law_is_the_step_of_the_linear_part(backend):
    """`V={floor(V(x))}` behind an RC low-pass: the output is floor of the trapezoidal RC's
    own response (scipy's bilinear transform of 1/(1 + s RC)), the floor's derivative zero as
    ngspice takes it (it was an autograd traceback)."""
    from scipy import signal

    text = circuit("B1 out 0 V={floor(3*V(x))}\nR2 out 0 1k\n")
    t = np.arange(2400) / FS
    x = 1.5 * np.sin(2 * np.pi * 200 * t)
    y, _ = render(equations(text), x, FS, backend=backend)
    b, a = signal.bilinear([1.0], [2.2e3 * 10e-9, 1.0], fs=FS)
    vx = 3 * signal.lfilter(b, a, x)
    clear = np.abs(vx - np.round(vx)) > 1e-9        # away from the steps' edges
    assert clear.mean() > 0.99 and np.ptp(vx) > 6
    np.testing.assert_array_equal(y[clear], np.floor(vx[clear]))

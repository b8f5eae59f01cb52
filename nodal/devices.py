"""Every element as one shape: its linear stamp and, if nonlinear, its law with its Jacobian.

A stamp speaks of unknowns by key: `("node", name)` for a node voltage, `("branch", element)`
for a branch current that modified nodal analysis adds (voltage sources, VCVS, inductors at
DC). The assembler never asks what an element is; adding a device means adding one builder to
`BUILDERS`.

Conventions (SI units): a nonlinear port `(p, m)` has voltage `v = V(p) - V(m)` and carries the
port current `i(v)` from `p` through the device to `m`. Laws are Sympy expressions in the port
voltage symbols and the circuit's parameter symbols; Jacobians are derived by `sympy.diff` in
`mna.py`, never written by hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import sympy as sp

from .netlist import GROUND, Element, Netlist, evaluate

# ngspice's physical constants (src/include/ngspice/const.h) and nominal temperature 27 C, so
# that thermal voltages agree with the reference simulator to the last digit.
BOLTZMANN = 1.38064852e-23
CHARGE = 1.6021766208e-19
TNOM = 300.15
THERMAL_VOLTAGE = BOLTZMANN * TNOM / CHARGE
GMIN = 1e-12            # ngspice's default conductance across every junction

SAMPLE_PERIOD = sp.Symbol("T")

Key = tuple[str, str]


def node_key(name: str) -> Key | None:
    return None if name == GROUND else ("node", name)


@dataclass
class Reactive:
    """A capacitor or inductor discretised by the trapezoidal rule.

    Companion conductance `g` (2C/T or T/2L) between nodes `a`, `b`, and the canonical state
    x~ injected as a current source. Capacitor: i[n] = g v[n] - x~[n-1], x~[n] = 2 g v[n] - x~[n-1].
    Inductor: i[n] = g v[n] + x~[n-1], x~[n] = 2 g v[n] + x~[n-1]. The exposed circuit state is
    the capacitor voltage v[n], or the inductor current i[n].
    """

    name: str
    kind: str          # "C" or "L"
    a: str
    b: str
    g: sp.Expr
    value: sp.Expr     # C or L

    @property
    def sign(self) -> int:
        """+1: x~ flows into `a` (capacitor); -1: out of `a` (inductor)."""
        return 1 if self.kind == "C" else -1


@dataclass
class Port:
    """One nonlinear port of a device; `junction` is (n*Vt, Is) for SPICE voltage limiting."""

    p: str
    m: str
    junction: tuple[sp.Expr, sp.Expr] | None = None


@dataclass
class Stamp:
    """What one element contributes to the equations."""

    matrix: list[tuple[Key, Key, sp.Expr]] = field(default_factory=list)
    matrix_dc: list[tuple[Key, Key, sp.Expr]] | None = None   # None: same as transient
    branches: list[Key] = field(default_factory=list)
    branches_dc: list[Key] | None = None
    source_rows: list[tuple[Key, int]] = field(default_factory=list)   # (row, sign)
    reactive: list[Reactive] = field(default_factory=list)
    ports: list[Port] = field(default_factory=list)
    currents: list[sp.Expr] = field(default_factory=list)   # one law per port
    voltages: list[sp.Symbol] = field(default_factory=list)  # the port voltage symbols
    internal_nodes: list[str] = field(default_factory=list)


def conductance(a: str, b: str, g: sp.Expr) -> list[tuple[Key, Key, sp.Expr]]:
    """The four entries of a conductance `g` between nodes a and b."""
    out = []
    ka, kb = node_key(a), node_key(b)
    if ka:
        out.append((ka, ka, g))
    if kb:
        out.append((kb, kb, g))
    if ka and kb:
        out += [(ka, kb, -g), (kb, ka, -g)]
    return out


def _branch_incidence(a: str, b: str, br: Key) -> list[tuple[Key, Key, sp.Expr]]:
    """A branch current leaving `a` and entering `b`, and its voltage row v(a) - v(b)."""
    out = []
    for n, s in ((a, 1), (b, -1)):
        k = node_key(n)
        if k:
            out += [(k, br, sp.Integer(s)), (br, k, sp.Integer(s))]
    return out


def resistor(el: Element, net: Netlist) -> Stamp:
    a, b = el.nodes
    return Stamp(matrix=conductance(a, b, 1 / el.value))


def capacitor(el: Element, net: Netlist) -> Stamp:
    a, b = el.nodes
    g = 2 * el.value / SAMPLE_PERIOD
    return Stamp(matrix=conductance(a, b, g), matrix_dc=[],
                 reactive=[Reactive(el.name, "C", a, b, g, el.value)])


def inductor(el: Element, net: Netlist) -> Stamp:
    a, b = el.nodes
    g = SAMPLE_PERIOD / (2 * el.value)
    br = ("branch", el.name)
    # At DC an inductor is a short: a 0 V source with its own branch current.
    return Stamp(matrix=conductance(a, b, g), matrix_dc=_branch_incidence(a, b, br),
                 branches=[], branches_dc=[br],
                 reactive=[Reactive(el.name, "L", a, b, g, el.value)])


def voltage_source(el: Element, net: Netlist) -> Stamp:
    a, b = el.nodes
    br = ("branch", el.name)
    return Stamp(matrix=_branch_incidence(a, b, br), branches=[br], source_rows=[(br, 1)])


def current_source(el: Element, net: Netlist) -> Stamp:
    # SPICE: positive current flows from n+ through the source to n-.
    a, b = el.nodes
    rows = [(k, s) for k, s in ((node_key(a), -1), (node_key(b), 1)) if k]
    return Stamp(source_rows=rows)


def vcvs(el: Element, net: Netlist) -> Stamp:
    """E: v(a) - v(b) = gain (v(c) - v(d)); with a large gain, the ideal op-amp."""
    a, b, c, d = el.nodes
    br = ("branch", el.name)
    entries = _branch_incidence(a, b, br)
    for n, s in ((c, -1), (d, 1)):
        k = node_key(n)
        if k:
            entries.append((br, k, s * el.value))
    return Stamp(matrix=entries, branches=[br])


def vccs(el: Element, net: Netlist) -> Stamp:
    """G: a current gm (v(c) - v(d)) from a through the source to b."""
    a, b, c, d = el.nodes
    entries = []
    for n, s in ((a, 1), (b, -1)):
        kn = node_key(n)
        if not kn:
            continue
        for m, t in ((c, 1), (d, -1)):
            km = node_key(m)
            if km:
                entries.append((kn, km, s * t * el.value))
    return Stamp(matrix=entries)


def _model_symbols(net: Netlist, el: Element) -> dict[str, sp.Expr]:
    return net.models[el.model].params


def junction_current(v: sp.Expr, i_s: sp.Expr, n: sp.Expr) -> sp.Expr:
    """The Shockley diode law: i = Is (exp(v / (n Vt)) - 1).

    ngspice also puts GMIN (1e-12 S) across every junction; being linear, that conductance is
    stamped into the MNA matrix for every junction port (`mna.derive`), not added here. It also
    keeps the matrix regular when a node is reached only through junctions.
    """
    return i_s * (sp.exp(v / (n * THERMAL_VOLTAGE)) - 1)


def diode(el: Element, net: Netlist) -> Stamp:
    """D: the Shockley law between anode and cathode; RS > 0 adds an internal node as ngspice."""
    a, k = el.nodes
    mp = _model_symbols(net, el)
    stamp = Stamp()
    rs_default = evaluate(mp["rs"], net.defaults)
    if rs_default > 0:
        inner = f"{el.name}#a"
        stamp.internal_nodes.append(inner)
        stamp.matrix += conductance(a, inner, 1 / mp["rs"])
        a = inner
    v = sp.Symbol(f"v_{el.name}")
    stamp.ports.append(Port(a, k, junction=(mp["n"] * THERMAL_VOLTAGE, mp["is"])))
    stamp.voltages.append(v)
    stamp.currents.append(junction_current(v, mp["is"], mp["n"]))
    return stamp


BUILDERS = {
    "R": resistor,
    "C": capacitor,
    "L": inductor,
    "V": voltage_source,
    "I": current_source,
    "E": vcvs,
    "G": vccs,
    "D": diode,
}


def register(letter: str):
    """Decorator: add a device builder for SPICE letter `letter`."""
    def wrap(fn):
        BUILDERS[letter] = fn
        return fn
    return wrap


def critical_voltage(vte: float, i_s: float) -> float:
    """SPICE's vcrit = n Vt ln(n Vt / (sqrt(2) Is)): above it, junction steps are limited."""
    return vte * math.log(vte / (math.sqrt(2.0) * i_s))


# -- semiconductors beyond the diode: ngspice's BJT (level 1) and JFET (level 1) ---------------

EULER = math.e          # ngspice's CONSTe


def spice_junction(v: sp.Expr, i_s: sp.Expr, vte: sp.Expr) -> sp.Expr:
    """A pn junction as ngspice's BJT and JFET evaluate it (no GMIN; callers add their own).

        i = Is (exp(v / vte) - 1)                 for v >= -3 vte
        i = -Is (1 + (3 vte / (e v))^3)           below: a cubic tail, C1-continuous at -3 vte

    The tail's denominator uses min(v, -3 vte), written with Abs so that the branch that
    `torch.where` discards stays finite and its gradient is zero rather than NaN.
    """
    knee = -3 * vte
    v_tail = (v + knee - sp.Abs(v - knee)) / 2          # min(v, knee)
    tail = -i_s * (1 + (3 * vte / (EULER * v_tail)) ** 3)
    return sp.Piecewise((i_s * (sp.exp(v / vte) - 1), v >= knee), (tail, True))


def _port_voltage(name: str) -> sp.Symbol:
    return sp.Symbol(f"v_{name}", real=True)


def _inverse(value: sp.Expr, net: Netlist) -> sp.Expr:
    """1/V for an Early voltage; infinite or zero (ngspice: not given) means no effect."""
    if value is sp.oo or value == sp.oo:
        return sp.Integer(0)
    default = evaluate(value, net.defaults)
    if default == 0 or math.isinf(default):
        return sp.Integer(0)
    return 1 / value


def _check_model(el: Element, net: Netlist, unsupported: tuple[str, ...], what: str) -> None:
    """ngspice parameters that would change the device but that nodalnet does not model."""
    params = net.models[el.model].params
    given = [p for p in unsupported if p in params and evaluate(params[p], net.defaults) != 0]
    if given:
        raise net.error(f"{what} model {el.model} sets {', '.join(p.upper() for p in given)}, "
                        "which nodalnet does not model (its Q has IS BF BR NF NR VAF VAR, its J "
                        "has VTO BETA LAMBDA IS B PB); remove them or set them to 0", el)


_BJT_UNSUPPORTED = ("ikf", "ikr", "ise", "isc", "rb", "rbm", "irb", "re", "rc", "cje", "cjc",
                    "cjs", "tf", "tr", "xtf", "itf", "iss")
_JFET_UNSUPPORTED = ("rd", "rs", "cgs", "cgd")


@register("Q")
def bjt(el: Element, net: Netlist) -> Stamp:
    """Q c b e: ngspice's Gummel-Poon BJT with what IS BF BR NF NR VAF VAR give (SI units).

    In the polarity-normalised frame (vbe, vbc multiplied by +1 for NPN, -1 for PNP):

        cbe = J(vbe; IS, NF Vt),  cbc = J(vbc; IS, NR Vt)       (`spice_junction`)
        qb  = 1 / (1 - vbc/VAF - vbe/VAR)                        (Early effect, IKF = IKR = 0)
        Ic  = (cbe - cbc)/qb - cbc/BR - GMIN vbc                 into the collector
        Ib  = cbe/BF + cbc/BR + GMIN (vbe + vbc)                 into the base

    Ports are the two junctions, (b, e) and (b, c) for NPN, (e, b) and (c, b) for PNP, so
    SPICE's pnjlim applies to both exactly as ngspice applies it to vbe and vbc. Their currents
    are Ib + Ic (= -Ie, base to emitter) and -Ic (base to collector). ngspice also puts GMIN
    from the substrate (ground for a 3-terminal Q) to the collector of a vertical NPN and to the
    base of a lateral PNP: a linear conductance here.
    """
    _check_model(el, net, _BJT_UNSUPPORTED, "BJT")
    c, b, e = el.nodes
    mp = _model_symbols(net, el)
    npn = net.models[el.model].type == "npn"
    i_s, bf, br = mp["is"], mp["bf"], mp["br"]
    vtf, vtr = mp["nf"] * THERMAL_VOLTAGE, mp["nr"] * THERMAL_VOLTAGE
    vbe, vbc = _port_voltage(f"{el.name}_be"), _port_voltage(f"{el.name}_bc")
    cbe = spice_junction(vbe, i_s, vtf)
    cbc = spice_junction(vbc, i_s, vtr)
    qb = 1 / (1 - vbc * _inverse(mp["vaf"], net) - vbe * _inverse(mp["var"], net))
    # ngspice's GMIN across both junctions (-GMIN vbc in Ic, GMIN (vbe + vbc) in Ib) is linear:
    # `mna.derive` stamps it for every junction port, so it is not part of the law here.
    i_c = (cbe - cbc) / qb - cbc / br
    i_b = cbe / bf + cbc / br
    if npn:
        ports = [Port(b, e, junction=(vtf, i_s)), Port(b, c, junction=(vtr, i_s))]
        substrate = conductance(c, GROUND, sp.Float(GMIN))
    else:
        ports = [Port(e, b, junction=(vtf, i_s)), Port(c, b, junction=(vtr, i_s))]
        substrate = conductance(b, GROUND, sp.Float(GMIN))
    return Stamp(matrix=substrate, ports=ports, voltages=[vbe, vbc],
                 currents=[i_b + i_c, -i_c])


def jfet_channel(vgs: sp.Expr, vgd: sp.Expr, vto: sp.Expr, beta: sp.Expr, lam: sp.Expr,
                 b: sp.Expr = sp.Integer(1), pb: sp.Expr = sp.Integer(1)) -> sp.Expr:
    """ngspice's JFET level-1 drain current (Shichman-Hodges with the Sydney B term), d -> s.

    ngspice (jfetload.c), with vds = vgs - vgd, vgst = vgs - VTO, bfac = (1 - B)/(PB - VTO),
    cpart(g, e) = e (e (bfac e - B) + g (2B + 3 bfac (g - e))), for vds >= 0:

        cutoff      vgst <= 0:      0
        linear      vgst >= vds:    BETA (1 + LAMBDA vds) cpart(vgst, vds)
        saturation  otherwise:      BETA (1 + LAMBDA vds) cpart(vgst, vgst)   (= BETA (1 + LAMBDA vds) vgst^2 (B + bfac vgst))

    and for vds < 0 the same with drain and source swapped (vgd for vgs, -vds for vds), negated.
    B = 1 gives the square law BETA vgst^2 (1 + LAMBDA vds). All four cases are one formula:
    with g = max(max(vgs, vgd) - VTO, 0), the gate overdrive at the source-side terminal, and
    e = clamp(vds, -g, g) (saturation clamps |vds| at g, cutoff clamps it to 0),

        Id = BETA (1 + LAMBDA |vds|) sgn(e) cpart(g, |e|)

    which is how it is written here: three flat `Piecewise` (g, e, |e|) rather than nested cases,
    so the Jacobian (sympy.diff) and the compiled kernels stay small. Every Abs has a real
    argument (port voltages only), so its derivative is sign(), never re()/im().
    """
    bfac = (1 - b) / (pb - vto)
    vds = vgs - vgd
    source_side = (vgs + vgd + sp.Abs(vds)) / 2          # max(vgs, vgd)
    g = sp.Piecewise((source_side - vto, source_side > vto), (0, True))
    e = sp.Piecewise((g, vds > g), (-g, vds < -g), (vds, True))
    size = sp.Piecewise((g, sp.Abs(vds) > g), (sp.Abs(vds), True))
    return beta * (1 + lam * sp.Abs(vds)) * e * (
        size * (bfac * size - b) + g * (2 * b + 3 * bfac * (g - size)))


@register("J")
def jfet(el: Element, net: Netlist) -> Stamp:
    """J d g s: ngspice's JFET level 1 (VTO BETA LAMBDA IS, and B PB if given; SI units).

    Gate junctions: cgs = J(vgs; IS, Vt) + GMIN vgs, cgd = J(vgd; IS, Vt) + GMIN vgd (ngspice-39's
    JFET has no emission coefficient: an `N` on the model is ignored, as ngspice warns).
    Channel: `jfet_channel`. Ports are the junctions (g, s) and (g, d) (reversed for PJF), so
    pnjlim limits both as in ngspice; their currents are cgs + Id (gate to source) and
    cgd - Id (gate to drain), Id the channel current from drain to source.
    """
    _check_model(el, net, _JFET_UNSUPPORTED, "JFET")
    d, g, s = el.nodes
    mp = _model_symbols(net, el)
    i_s = mp["is"]
    vgs, vgd = _port_voltage(f"{el.name}_gs"), _port_voltage(f"{el.name}_gd")
    # + GMIN vgs and + GMIN vgd as ngspice has them: stamped linearly by `mna.derive`.
    cgs = spice_junction(vgs, i_s, THERMAL_VOLTAGE)
    cgd = spice_junction(vgd, i_s, THERMAL_VOLTAGE)
    i_d = jfet_channel(vgs, vgd, mp["vto"], mp["beta"], mp["lambda"],
                       mp.get("b", sp.Integer(1)), mp.get("pb", sp.Integer(1)))
    vt = sp.Float(THERMAL_VOLTAGE)
    if net.models[el.model].type == "njf":
        ports = [Port(g, s, junction=(vt, i_s)), Port(g, d, junction=(vt, i_s))]
    else:
        ports = [Port(s, g, junction=(vt, i_s)), Port(d, g, junction=(vt, i_s))]
    return Stamp(ports=ports, voltages=[vgs, vgd], currents=[cgs + i_d, cgd - i_d])

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
    """The Shockley diode law with ngspice's GMIN: i = Is (exp(v / (n Vt)) - 1) + GMIN v."""
    return i_s * (sp.exp(v / (n * THERMAL_VOLTAGE)) - 1) + GMIN * v


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

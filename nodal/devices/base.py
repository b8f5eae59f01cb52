"""What every device record shares: the stamp shapes, ngspice's constants and junction laws.

A stamp speaks of unknowns by key: `("node", name)` for a node voltage, `("branch", element)`
for a branch current that modified nodal analysis adds (voltage sources, VCVS, inductors at
DC). The assembler never asks what an element is: it asks the element's `Device` record.

Conventions (SI units): a nonlinear port `(p, m)` has voltage `v = V(p) - V(m)` and carries the
port current `i(v)` from `p` through the device to `m`. Laws are Sympy expressions in the port
voltage symbols and the circuit's parameter symbols; Jacobians are derived by `sympy.diff` in
`mna.py`, never written by hand.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import sympy as sp

from ..netlist.data import GROUND, Element, Netlist
from ..netlist.values import evaluate

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
class Charge:
    """A nonlinear charge q(v) between nodes `p` and `m` (its current dq/dt flows p -> m through
    the device), discretised by the trapezoidal rule (`nodal.devices.charges`, `mna.derive`).

    `voltage` is the symbol of its own port voltage v(p) - v(m); `q` is a Sympy expression in
    that symbol and/or the other port voltages of the same stamp (a charge across a junction
    port is written in that port's voltage, the same value, so the laws share their exp();
    a BJT's diffusion charge follows the transport current, a function of vbe and vbc).
    SI units: coulombs.
    """

    name: str
    p: str
    m: str
    voltage: sp.Symbol
    q: sp.Expr


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
    charges: list[Charge] = field(default_factory=list)      # junction/diffusion charges


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


def branch_incidence(a: str, b: str, br: Key) -> list[tuple[Key, Key, sp.Expr]]:
    """A branch current leaving `a` and entering `b`, and its voltage row v(a) - v(b)."""
    out = []
    for n, s in ((a, 1), (b, -1)):
        k = node_key(n)
        if k:
            out += [(k, br, sp.Integer(s)), (br, k, sp.Integer(s))]
    return out


def thermal_voltage(net: Netlist | None = None) -> float:
    """k T / q at the circuit's temperature (`.temp`, `.options temp=`; kelvin in
    `Netlist.temperature`), ngspice's 27 C when there is no netlist."""
    if net is None:
        return THERMAL_VOLTAGE
    return BOLTZMANN * net.temperature / CHARGE


def junction_current(v: sp.Expr, i_s: sp.Expr, n: sp.Expr,
                     vt: float = THERMAL_VOLTAGE) -> sp.Expr:
    """The Shockley diode law: i = Is (exp(v / (n Vt)) - 1).

    ngspice also puts GMIN (1e-12 S) across every junction; being linear, that conductance is
    stamped into the MNA matrix for every junction port (`mna.derive`), not added here. It also
    keeps the matrix regular when a node is reached only through junctions.
    """
    return i_s * (sp.exp(v / (n * vt)) - 1)


def critical_voltage(vte: float, i_s: float) -> float:
    """SPICE's vcrit = n Vt ln(n Vt / (sqrt(2) Is)): above it, junction steps are limited."""
    return vte * math.log(vte / (math.sqrt(2.0) * i_s))



# -- pn junctions as ngspice's BJT and JFET evaluate them --------------------------------------

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


def port_voltage(name: str) -> sp.Symbol:
    return sp.Symbol(f"v_{name}", real=True)


def inverse_early(value: sp.Expr, net: Netlist) -> sp.Expr:
    """1/V for an Early voltage; infinite or zero (ngspice: not given) means no effect."""
    if value is sp.oo or value == sp.oo:
        return sp.Integer(0)
    default = evaluate(value, net.defaults)
    if default == 0 or math.isinf(default):
        return sp.Integer(0)
    return 1 / value


def check_unsupported(el: Element, net: Netlist, unsupported: tuple[str, ...], what: str,
                      reason: str = "which nodalnet does not model") -> None:
    """Model parameters that would change the device but that nodalnet does not model yet:
    each one the card sets to a nonzero value is named, with why, at the model's line."""
    model = net.models[el.model]
    given = [p for p in unsupported if p in model.params
             and evaluate(model.params[p], net.defaults) != 0]
    if given:
        listed = ", ".join(f"{p.upper()}={evaluate(model.params[p], net.defaults):g}"
                           for p in given)
        raise net.error(f"{what} model {el.model} sets {listed}, {reason}", line=model.line)


def check_known(el: Element, net: Netlist, mtype: ModelType, what: str,
                ngspice_names: frozenset[str] | None = None) -> None:
    """A card parameter the model type does not list (in its rules) is a named error. Where
    `ngspice_names` (every model parameter ngspice's device reads) is given, a parameter not
    among them is one ngspice ignores with a warning ("unrecognized parameter"): nodalnet
    ignores it too and says so in the netlist's notes."""
    model = net.models[el.model]
    unknown = [p for p in model.params if p not in mtype.rules and p not in mtype.defaults]
    if ngspice_names is not None:
        foreign = [p for p in unknown if p not in ngspice_names]
        if foreign:
            note = (f"{net.file}:{model.line}: {what} model {el.model} sets "
                    f"{', '.join(p.upper() for p in foreign)}, which ngspice does not know "
                    "and ignores (with a warning); nodalnet ignores them too")
            if note not in net.notes:
                net.notes.append(note)
        unknown = [p for p in unknown if p in ngspice_names]
    if unknown:
        raise net.error(f"{what} model {el.model} sets {', '.join(p.upper() for p in unknown)}, "
                        f"which nodalnet's {mtype.name.upper()} does not model (it reads "
                        f"{' '.join(sorted(p.upper() for p in mtype.rules))})", line=model.line)


@dataclass(frozen=True)
class ModelType:
    """A `.model` type: its name, ngspice's defaults for the parameters nodalnet uses, and the
    rule each parameter's value must follow (`netlist.values.RULES`; unlisted: finite)."""

    name: str                               # d, npn, pnp, njf, pjf
    defaults: dict[str, float]
    rules: dict[str, str] = field(default_factory=dict)
    #: a parameter neither in `defaults` nor in `rules`: "unsupported" (named with every other
    #: unsupported construct), or "ignored" where `rules` lists every parameter ngspice's device
    #: reads, so that any other is one ngspice itself ignores with a warning (noted)
    unknown: str = "unsupported"
    #: parameters whose default is another parameter's value on the same card (ngspice's NBV
    #: defaults to N): each is a parameter of its own, starting at that value when read
    derived: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Device:
    """One element kind, everything about it in one place.

    letter: the SPICE letter; nodes: how many nodes the card names; card: how the rest of the
    card reads ("value": one value, e.g. `R1 a b 2.2k` or `R1 a b r=2.2k`; "model": a `.model`
    name; "source": DC/SIN/PULSE/PWL); value: (what the value is, its rule) for "value" and
    "source" cards; models: the `.model` types it takes; build: its stamp and law; dc_pairs:
    the node pairs (indices into the card's nodes) that conduct at DC, for the DC-path check;
    read: for card "controlled", how the rest of the card reads: read(reader, element, tokens
    after the nodes, the name as written, node-name mapper) -> the element to keep.
    """

    letter: str
    name: str
    nodes: int
    card: str
    build: Callable[[Element, Netlist], Stamp]
    value: tuple[str, str] | None = None
    models: tuple[ModelType, ...] = ()
    dc_pairs: tuple[tuple[int, int], ...] = ()
    read: Callable | None = None
    #: instance parameters a "model" card may give after the model name, as `name=value` or
    #: (in this order) as bare values, e.g. ("area",) for `D1 a k dmod 2`; each must be positive
    instance: tuple[str, ...] = ()

    @property
    def is_source(self) -> bool:
        """An independent source: it can be the `*@ input` or a `*@ control`."""
        return self.card == "source"

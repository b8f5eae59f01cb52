"""Controlled and behavioural sources: E G F H (gain, POLY(n), VALUE=) and B (V= / I=).

Every such source is read into one form, a `ControlledElement`: its output (a voltage between
its two nodes, or a current from n+ through the source to n-, SPICE's sign) and its law, a
Sympy expression of *probe* symbols (`V(a,b)`, `I(Vx)`) and the netlist's parameters:

    E1 a b c d 10               v(a,b) = e1 V(c,d)                 e1 = 10, trainable
    F1 a b Vsense 2             i      = f1 I(vsense)
    E1 a b POLY(2) c 0 d 0 p0 p1 p2 p3 ...   SPICE2's polynomial, ngspice's coefficient order
    G1 a b VALUE={expr}         i      = expr      (also `cur=`; E: `vol=`; LTspice `value =`)
    B1 a b V={expr} / I={expr}

Expressions are read by `netlist.expressions` (never eval'd): its `Scope.probes` hook turns
`V(a)`, `V(a,b)` and `I(Vx)` into probe symbols. `time` is a named error (a behavioural source
is not a signal generator here: drive the circuit with an independent source instead).

Building asks Sympy whether the law is linear in its probes (every d law / d probe free of
probes). A linear law stamps linearly into the MNA matrix (a V probe reads node voltages, an I
probe the branch current of a voltage source, which MNA already has as an unknown); a constant
term, or a law that is not linear, becomes nonlinear ports whose Jacobian `mna.derive` takes by
`sympy.diff`, like the junctions':

* a current output is a port (n+, n-) carrying the law's current;
* a voltage output drives an internal node `<name>#v` through a 1 Ohm resistor to ground with
  the current f (so its voltage is f exactly), and the source's branch equation reads
  v(n+) - v(n-) = (linear part) + v(<name>#v);
* each V(c,d) the law reads is a control port (c, d) carrying no current;
* each I(Vx) a nonlinear law reads is copied, exactly and linearly, onto an internal node
  `<name>#i<k>` by a unit transresistance (a CCVS to ground), which is then a control port.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field, fields

import sympy as sp

from ..netlist.data import GROUND, Element, Netlist
from ..netlist import expressions
from ..netlist.expressions import Scope, parse_expression, parse_number
from ..netlist.values import evaluate
from .base import Device, Key, Port, Stamp, branch_incidence, conductance, node_key, port_voltage

_TIME = sp.Symbol("time()", real=True)
_PUNCTUATION = {"(", ")", "=", ","}
_UNSUPPORTED_FORMS = {"table": "TABLE", "laplace": "LAPLACE", "freq": "FREQ",
                      "chebyshev": "CHEBYSHEV", "nand": "NAND", "nor": "NOR", "and": "AND",
                      "or": "OR"}


@dataclass(eq=False)
class ControlledElement(Element):
    """A controlled or behavioural source, read into one form.

    output: "v" (a voltage v(n+) - v(n-)) or "i" (a current from n+ through the source to n-);
    law: a Sympy expression of the probe symbols and the netlist's parameter symbols;
    probes: each probe symbol -> ("v", node, node) or ("i", voltage source name);
    form: how the card was written, for messages ("gain", "POLY(2)", "VALUE", "B V=").
    """

    output: str = "i"
    law: sp.Expr = sp.Integer(0)
    probes: dict[sp.Symbol, tuple[str, ...]] = field(default_factory=dict)
    form: str = ""


# -- reading ----------------------------------------------------------------------------------

class _Card:
    """What one card's reading needs from the reader: values, errors, node names."""

    def __init__(self, reader, el: ControlledElement, written: str,
                 node: Callable[[str], str]):
        self.reader, self.el, self.written, self.node = reader, el, written, node
        self.prefix = el.name[: len(el.name) - len(written)]

    def fail(self, message: str):
        return self.reader.fail(message, self.el.line, self.el.text)

    def node_token(self, tok: str, what: str) -> str:
        if tok in _PUNCTUATION or tok.startswith("{") or tok.lower() == "poly":
            raise self.fail(f"{self.written}: `{tok}` cannot be {what}; write "
                            f"{self._usage()}")
        return self.node(tok)

    def _usage(self) -> str:
        return {"E": "E1 n+ n- nc+ nc- gain, E1 n+ n- POLY(n) ..., or E1 n+ n- VALUE={expr}",
                "G": "G1 n+ n- nc+ nc- gain, G1 n+ n- POLY(n) ..., or G1 n+ n- VALUE={expr}",
                "F": "F1 n+ n- Vsense gain, or F1 n+ n- POLY(n) V1 ... p0 p1 ...",
                "H": "H1 n+ n- Vsense gain, or H1 n+ n- POLY(n) V1 ... p0 p1 ...",
                "B": "B1 n+ n- V={expr} or B1 n+ n- I={expr}"}[self.el.kind]

    def source_name(self, tok: str) -> str:
        if tok in _PUNCTUATION or tok.startswith("{") or parse_number(tok) is not None:
            raise self.fail(f"{self.written}: `{tok}` is not the name of a voltage source "
                            f"(the current through it controls the source); write "
                            f"{self._usage()}")
        return self.prefix + tok.lower()

    def probe(self, kind: str, *args: str) -> sp.Expr:
        if kind == "v":
            a, b = args
            if a == b:
                return sp.Integer(0)
            name = f"v({a})" if b == GROUND else f"v({a},{b})"
        else:
            name = f"i({args[0]})"
        sym = sp.Symbol(name, real=True)
        self.el.probes[sym] = (kind, *args)
        return sym

    def scope(self) -> Scope:
        params = self.reader.params

        def names(name: str):
            return _TIME if name == "time" else params.get(name)

        def v(args: list[str]) -> sp.Expr:
            if len(args) not in (1, 2) or not all(args) or any(" " in a for a in args):
                raise ValueError("V() takes one node or two, V(a) or V(a,b)")
            a = self.node(args[0])
            b = self.node(args[1]) if len(args) == 2 else GROUND
            return self.probe("v", a, b)

        def i(args: list[str]) -> sp.Expr:
            if len(args) != 1 or not args[0] or " " in args[0]:
                raise ValueError("I() takes the name of one voltage source, I(Vx)")
            return self.probe("i", self.prefix + args[0].lower())

        return Scope(names, {"v": v, "i": i}, _B_SOURCE_FUNCTIONS)


def _two(args: list, what: str) -> list:
    if len(args) != 2:
        raise ValueError(f"takes 2 arguments, got {len(args)}")
    return args


# ngspice's B source (and the E/G VALUE= it becomes) reads two power functions otherwise than
# its `.param` evaluator does: there pwr(x, y) = sgn(x) |x|^y and pow(x, y) = |x|^y (ngspice
# 39: pwr(-2, 3) = -8, pow(-2, 3) = 8, pow(-2, 2.5) = 5.657). `^` and `**` are |x|^y in both.
_B_SOURCE_FUNCTIONS = {
    "pwr": lambda args, what: expressions._pwrs(*_two(args, what), what),
    "pow": lambda args, what: expressions._abs_power(*_two(args, what), what),
}


def _as_controlled(el: Element) -> ControlledElement:
    return ControlledElement(**{f.name: getattr(el, f.name) for f in fields(Element)})


def read(reader, el: Element, rest: list[str], written: str,
         node: Callable[[str], str]) -> ControlledElement:
    """The rest of an E G F H B card (after its two nodes), read into a `ControlledElement`.

    Called back by the reader for devices whose card form is "controlled"."""
    out = _as_controlled(el)
    out.output = "v" if el.kind in "EHB" else "i"
    card = _Card(reader, out, written, node)
    from ..netlist.cards import tokenize

    for tok in tokenize(el.text)[1:3]:
        card.node_token(tok, "a node")
    if not rest:
        raise card.fail(f"{written} needs more: write {card._usage()}")
    word = rest[0].lower()
    if el.kind == "B":
        _read_b(card, rest)
    elif word in _UNSUPPORTED_FORMS:
        raise card.fail(f"{written}: the {_UNSUPPORTED_FORMS[word]} form of a controlled "
                        "source is not modelled by nodalnet; write it as VALUE={expr} or "
                        "POLY(n)")
    elif word == "poly":
        _read_poly(card, rest)
    elif len(rest) >= 2 and rest[1] == "=" and word in _value_words(el.kind):
        card.el.form = "VALUE"
        _read_expression(card, rest)
    else:
        _read_linear(card, rest)
    return out


def _value_words(kind: str) -> tuple[str, ...]:
    """`VALUE=` on E and G, and ngspice's `vol=` (E) and `cur=` (G)."""
    return {"E": ("value", "vol"), "G": ("value", "cur")}.get(kind, ())


def _read_linear(card: _Card, rest: list[str]) -> None:
    el = card.el
    controls = 2 if el.kind in "EG" else 1
    if len(rest) != controls + 1:
        raise card.fail(f"{card.written}: expected {controls + 1} more tokens, got "
                        f"{len(rest)} ({' '.join(rest)}); write {card._usage()}")
    if el.kind in "EG":
        c = card.node_token(rest[0], "a control node")
        d = card.node_token(rest[1], "a control node")
        probe = card.probe("v", c, d)
        el.nodes = (*el.nodes, c, d)
    else:
        probe = card.probe("i", card.source_name(rest[0]))
    gain = card.reader.value(el.name, rest[-1], el.line, el.text)
    el.form = "gain"
    el.law = gain * probe


def _read_poly(card: _Card, rest: list[str]) -> None:
    """`POLY(n) controls... p0 p1 ...`: E/G take n node pairs, F/H n voltage sources; the
    coefficients follow SPICE2's order (ngspice's): p0, the n linear terms, then the products
    of each degree in lexicographic order (x1^2, x1 x2, ..., x2^2, ...)."""
    el = card.el
    if len(rest) < 4 or rest[1] != "(" or rest[3] != ")":
        raise card.fail(f"{card.written}: write POLY(n) with the number of controls n in "
                        "parentheses")
    n = parse_number(rest[2])
    if n is None or n != int(n) or not 1 <= n <= 20:
        raise card.fail(f"{card.written}: POLY({rest[2]}): the number of controls must be an "
                        "integer from 1 to 20")
    n = int(n)
    toks = [t for t in rest[4:] if t not in ("(", ")", ",")]
    if "=" in toks:
        raise card.fail(f"{card.written}: POLY initial conditions (IC=...) are not modelled; "
                        "remove them")
    per = 2 if el.kind in "EG" else 1
    if len(toks) < n * per + 1:
        raise card.fail(f"{card.written}: POLY({n}) needs {n * per} control "
                        f"{'nodes' if per == 2 else 'sources'} and at least one coefficient")
    if per == 2:
        nodes = [card.node_token(t, "a control node") for t in toks[: 2 * n]]
        xs = [card.probe("v", nodes[2 * k], nodes[2 * k + 1]) for k in range(n)]
    else:
        xs = [card.probe("i", card.source_name(t)) for t in toks[:n]]
    coefficients = toks[n * per:]
    el.form = f"POLY({n})"
    el.law = sp.Add(*[_coefficient(card, k, tok) * m
                      for k, (tok, m) in enumerate(zip(coefficients, _monomials(xs),
                                                       strict=False))])


def _monomials(xs: list[sp.Expr]):
    """1, x1..xn, then each degree's products in lexicographic order, without end."""
    yield sp.Integer(1)
    for degree in itertools.count(1):
        for combo in itertools.combinations_with_replacement(range(len(xs)), degree):
            yield sp.Mul(*[xs[k] for k in combo])


def _coefficient(card: _Card, k: int, tok: str) -> sp.Expr:
    """A literal 0 is a structural zero; another number a trainable parameter `<name>.p<k>`."""
    if parse_number(tok) == 0:
        return sp.Integer(0)
    return card.reader.value(f"{card.el.name}.p{k}", tok, card.el.line, card.el.text)


def _read_b(card: _Card, rest: list[str]) -> None:
    word = rest[0].lower()
    if len(rest) < 3 or rest[1] != "=" or word not in ("v", "i"):
        raise card.fail(f"{card.written}: write {card._usage()}")
    card.el.output = word
    card.el.form = f"B {word.upper()}="
    _read_expression(card, rest)


def _read_expression(card: _Card, rest: list[str]) -> None:
    """The expression after `VALUE=` / `V=` / `I=`: one `{...}` token, or the rest of the card
    as written (ngspice's B takes `V = V(a)*2` without braces)."""
    el = card.el
    if rest[2].startswith("{"):
        if len(rest) > 3:
            raise card.fail(f"{card.written}: `{' '.join(rest[3:])}` after the expression is "
                            "not modelled; remove it")
        body = rest[2][1:-1]
    else:
        body = el.text[el.text.index("=") + 1:]
        if "{" in body or "=" in body:
            raise card.fail(f"{card.written}: put the expression in braces, "
                            f"{rest[0]}={{...}}, and nothing after it")
    law = parse_expression(body, card.scope(), card.reader.file, el.line, el.text)
    if _TIME in law.free_symbols:
        raise card.fail(f"{card.written}: `time` in a behavioural expression is not modelled "
                        "(nodalnet's sources are the netlist's independent V and I sources); "
                        "drive the circuit with a V or I source (SIN, PULSE, PWL) instead")
    el.law = law


# -- building ---------------------------------------------------------------------------------

def _check_probes(el: ControlledElement, net: Netlist) -> None:
    nodes = set(net.nodes) | {GROUND}
    for kind, *args in (el.probes[s] for s in el.law.free_symbols if s in el.probes):
        if kind == "v":
            for n in args:
                if n not in nodes:
                    raise net.error(f"{el.name.upper()}: V({n}) names node {n!r}, which no "
                                    "element connects; check the node's name", el)
        else:
            try:
                source = net.element(args[0])
            except KeyError:
                source = None
            if source is None or source.kind != "V":
                what = "no element" if source is None else f"a {source.kind} element"
                raise net.error(f"{el.name.upper()}: I({args[0]}) names {what}; the current "
                                "that controls a source is the current through an independent "
                                "V source (add a 0 V source in series to sense it)", el)


def _columns(probe: tuple[str, ...]) -> list[tuple[Key, int]]:
    """The MNA unknowns a probe reads, with signs: V(a,b) = v(a) - v(b); I(Vx) its branch."""
    if probe[0] == "v":
        return [(k, s) for k, s in ((node_key(probe[1]), 1), (node_key(probe[2]), -1)) if k]
    return [(("branch", probe[1]), 1)]


def _split(law: sp.Expr, probes: list[sp.Symbol]):
    """(linear coefficients by probe, remainder): law = sum c_k p_k + remainder, where each
    c_k is free of probes and the remainder holds the constant and every term that is not
    linear in one probe (`V(h)/1k + tanh(V(e))`: V(h) stamps linearly, tanh is a port)."""
    coefficients: dict[sp.Symbol, sp.Expr] = {}
    rest = []
    wanted = set(probes)
    for term in sp.Add.make_args(sp.expand(law, deep=False, mul=True, power_exp=False,
                                           power_base=False, log=False, multinomial=False)):
        used = term.free_symbols & wanted
        if len(used) == 1:
            (p,) = used
            c = sp.diff(term, p)
            if not c.free_symbols & wanted and term.xreplace({p: sp.Integer(0)}) == 0:
                coefficients[p] = coefficients.get(p, sp.Integer(0)) + c
                continue
        rest.append(term)
    return {p: c for p, c in coefficients.items() if c != 0}, sp.Add(*rest)


def build(el: Element, net: Netlist) -> Stamp:
    """The stamp of a controlled or behavioural source (see the module's description)."""
    if not isinstance(el, ControlledElement):
        raise net.error(f"{el.name.upper()} was not read as a controlled source", el)
    _check_probes(el, net)
    a, b = el.nodes[:2]
    probes = [p for p in el.probes if p in el.law.free_symbols]
    linear, remainder = _split(el.law, probes)
    stamp = Stamp()
    if el.output == "v":
        row = ("branch", el.name)
        stamp.branches.append(row)
        stamp.matrix += branch_incidence(a, b, row)
        targets = [(row, -1)]
    else:
        targets = [(k, s) for k, s in ((node_key(a), 1), (node_key(b), -1)) if k]
    for p, c in linear.items():
        for col, t in _columns(el.probes[p]):
            stamp.matrix += [(r, col, s * t * c) for r, s in targets]
    if remainder == 0:
        return stamp
    voltages = {}
    for k, p in enumerate(q for q in probes if q in remainder.free_symbols):
        voltages[p] = port_voltage(f"{el.name}_{k}")
        stamp.ports.append(_control_port(el, k, el.probes[p], stamp))
        stamp.voltages.append(voltages[p])
        stamp.currents.append(sp.Integer(0))
    law = _real_forms(remainder.xreplace(voltages), net.defaults)
    if el.output == "v":
        inner = f"{el.name}#v"
        stamp.internal_nodes.append(inner)
        stamp.matrix += conductance(inner, GROUND, sp.Integer(1))
        stamp.matrix.append((("branch", el.name), ("node", inner), sp.Integer(-1)))
        stamp.ports.append(Port(inner, GROUND))
        law = -law          # f flows into the internal node: v = f across its 1 Ohm
    else:
        stamp.ports.append(Port(a, b))
    stamp.voltages.append(port_voltage(f"{el.name}_out"))
    stamp.currents.append(law)
    return stamp


def _real_forms(law: sp.Expr, defaults: dict[str, float]) -> sp.Expr:
    """|x| and |x|^y in forms whose Sympy derivatives are real and finite where the value is.

    The parameters are Sympy symbols of no declared sign, so the derivative of Abs(x) would
    bring re() and im() into the Jacobian: |x| becomes Piecewise((x, x >= 0), (-x, True)).
    Sympy differentiates u^y as u^y y u'/u, which is 0/0 at u = 0 (a triode's plate current
    at cut-off): |u|^y with y > 0 not an integer becomes u^y for u > 0, (-u)^y for u < 0 and
    0 at u = 0, whose derivative at 0 is 0 (the limit for y > 1); y may be a parameter,
    positive at its default. Every branch stays finite for every u (see `abs_power`)."""
    def is_abs_power(e):
        return (e.is_Pow and isinstance(e.base, sp.Abs) and not e.exp.is_integer
                and evaluate(e.exp, defaults) > 0)

    def abs_power(e):
        # torch evaluates every branch (torch.where) and back-propagates through all of them:
        # each power's base is kept positive in the branches where it is not used, so that no
        # branch is NaN (u^y at u < 0) and no gradient is NaN times zero
        # (as exp(y log b): Sympy would fold b^y into the Piecewise, unprotected again)
        u = e.base.args[0]
        up = sp.Piecewise((u, u > 0), (sp.Integer(1), True))
        um = sp.Piecewise((-u, u < 0), (sp.Integer(1), True))
        return sp.Piecewise((sp.exp(e.exp * sp.log(up)), u > 0),
                            (sp.exp(e.exp * sp.log(um)), u < 0), (sp.Integer(0), True))

    law = law.replace(is_abs_power, abs_power)
    return law.replace(sp.Abs, lambda x: sp.Piecewise((x, x >= 0), (-x, True)))


def _control_port(el: ControlledElement, k: int, probe: tuple[str, ...], stamp: Stamp) -> Port:
    """A zero-current port across V(c,d); for I(Vx), a unit CCVS onto an internal node first."""
    if probe[0] == "v":
        return Port(probe[1], probe[2])
    inner = f"{el.name}#i{k}"
    row = ("branch", inner)
    stamp.internal_nodes.append(inner)
    stamp.branches.append(row)
    stamp.matrix += branch_incidence(inner, GROUND, row)
    stamp.matrix.append((row, ("branch", probe[1]), sp.Integer(-1)))
    return Port(inner, GROUND)


DEVICE = Device("B", "behavioural source", nodes=2, card="controlled", build=build,
                dc_pairs=((0, 1),), read=read)

__all__ = ["DEVICE", "ControlledElement", "build", "read"]

"""`K name L1 L2 k`: coupled inductors, rewritten into the equivalent circuit of
`nodal.devices.coupling` once every element is read (a K card may stand before its inductors).

ngspice reads k between -1 and 1 (a negative k swaps the dot of the second inductor) and M =
k sqrt(L1 L2). nodalnet takes the same, k = 0 excluded (no coupling: delete the card), and
each inductor in at most one K (a transformer of three or more windings is named as not
modelled). The first inductor's element becomes the leakage inductance L1 (1 - k^2) to an inner
node `<K name>#x`, and a `K` element (nodes x, b, c, d; value the ratio k sqrt(L1 / L2)) is
added; the second inductor stays as it is, the magnetising inductance. A note says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import sympy as sp

from ..errors import NetlistError
from .data import Element, InitialConditions
from .values import evaluate


@dataclass
class Coupling:
    name: str                  # the K element's name (with its subcircuit prefix)
    first: str                 # the inductors' element names
    second: str
    k: sp.Expr
    line: int
    text: str


def read_card(toks: list[str], name: str, prefix: str, k: sp.Expr, line: int,
              text: str) -> Coupling:
    """The parts of `K name L1 L2 k` (`toks` split by the reader; `k` read as a value)."""
    return Coupling(name, prefix + toks[1].lower(), prefix + toks[2].lower(), k, line, text)


def apply(couplings: list[Coupling], elements: list[Element], names: dict[str, Element],
          initial: InitialConditions, defaults: dict[str, float], fail) -> list[str]:
    """Rewrite `elements` (and `names`) for every coupling; the notes to add. `fail(message,
    line, text)` makes the reader's error."""
    used: dict[str, str] = {}
    notes = []
    for c in couplings:
        pair = []
        for ind in (c.first, c.second):
            el = names.get(ind)
            if el is None or el.kind != "L":
                what = "no such element" if el is None else f"{ind.upper()} is not an inductor"
                raise fail(f"{c.name.upper()} couples {ind.upper()}: {what}; a K card names two "
                           "inductors and the coupling, e.g. `K1 L1 L2 0.99`", c.line, c.text)
            if ind in used:
                raise fail(f"{ind.upper()} is coupled by {used[ind].upper()} and by "
                           f"{c.name.upper()}: an inductor in more than one K (a transformer of "
                           "three or more windings) is not modelled", c.line, c.text)
            if ind in initial.elements:
                raise fail(f"{ind.upper()} has IC= and is coupled by {c.name.upper()}: initial "
                           "currents of coupled inductors are not modelled; remove the IC=",
                           c.line, c.text)
            used[ind] = c.name
            pair.append(el)
        if c.first == c.second:
            raise fail(f"{c.name.upper()} couples {c.first.upper()} with itself", c.line, c.text)
        k = evaluate(c.k, defaults)
        if not (math.isfinite(k) and 0 < abs(k) <= 1):
            raise fail(f"{c.name.upper()}'s coupling is {k:g}: it must be between -1 and 1 and "
                       "not 0 (k = 0 is no coupling: delete the card)", c.line, c.text)
        primary, secondary = pair
        k_expr = sp.Float(k)
        ratio = k_expr * sp.sqrt(primary.value / secondary.value)
        a, b = primary.nodes
        if abs(k) == 1:
            nodes = (a, b, *secondary.nodes)
            elements.remove(primary)
            del names[primary.name]
        else:
            inner = f"{c.name}#x"
            nodes = (inner, b, *secondary.nodes)
            primary.nodes = (a, inner)
            primary.value = primary.value * (1 - k_expr ** 2)
        coupler = Element(c.name, "K", nodes, value=ratio, line=c.line, text=c.text)
        if c.name in names:
            raise fail(f"element {c.name} is defined twice", c.line, c.text)
        elements.append(coupler)
        names[c.name] = coupler
        notes.append(f"{c.name.upper()} couples {c.first.upper()} and {c.second.upper()} "
                     f"(k = {k:g}): modelled as " + (
                         "an ideal transformer with " if abs(k) == 1 else
                         f"{c.first.upper()}'s leakage L (1 - k^2) in series with an ideal "
                         "transformer and ") + f"{c.second.upper()} as the magnetising "
                     f"inductance (so I({c.second.upper()}) is the magnetising current, not "
                     "the winding's)")
    return notes


__all__ = ["Coupling", "NetlistError", "apply", "read_card"]

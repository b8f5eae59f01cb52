"""E G F H: controlled sources, linear (`E1 a b c d gain`, `F1 a b Vsense gain`), SPICE2
polynomials (`POLY(n)`) and expressions (`VALUE={...}`); read and built by `behavioural`.

E: a voltage controlled by voltages (VCVS; with a large gain, the ideal op-amp); G: a current
controlled by voltages (VCCS); F: a current controlled by the current through a voltage source
(CCCS); H: a voltage controlled by such a current (CCVS). A current flows from n+ through the
source to n-, as in SPICE; the controlling current I(Vx) flows from Vx's n+ through it to n-.
"""

from __future__ import annotations

from ..netlist.data import Element, Netlist
from . import behavioural
from .base import Device, Stamp


def vcvs(el: Element, net: Netlist) -> Stamp:
    """E: v(a) - v(b) = law (gain (v(c) - v(d)) in the linear form)."""
    return behavioural.build(el, net)


def vccs(el: Element, net: Netlist) -> Stamp:
    """G: a current law (gm (v(c) - v(d)) in the linear form) from a through the source to b."""
    return behavioural.build(el, net)


def cccs(el: Element, net: Netlist) -> Stamp:
    """F: a current gain I(Vx) from a through the source to b."""
    return behavioural.build(el, net)


def ccvs(el: Element, net: Netlist) -> Stamp:
    """H: v(a) - v(b) = transresistance I(Vx)."""
    return behavioural.build(el, net)


VCVS = Device("E", "voltage-controlled voltage source", nodes=2, card="controlled", build=vcvs,
              dc_pairs=((0, 1),), read=behavioural.read)
VCCS = Device("G", "voltage-controlled current source", nodes=2, card="controlled", build=vccs,
              read=behavioural.read)
CCCS = Device("F", "current-controlled current source", nodes=2, card="controlled", build=cccs,
              read=behavioural.read)
CCVS = Device("H", "current-controlled voltage source", nodes=2, card="controlled", build=ccvs,
              dc_pairs=((0, 1),), read=behavioural.read)

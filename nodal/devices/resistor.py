"""R: a resistor, `R1 a b 2.2k` (or `r=2.2k`); a conductance 1/R, conducting at DC."""

from __future__ import annotations

from ..netlist.data import Element, Netlist
from .base import Device, Stamp, conductance


def resistor(el: Element, net: Netlist) -> Stamp:
    a, b = el.nodes
    return Stamp(matrix=conductance(a, b, 1 / el.value))


DEVICE = Device("R", "resistor", nodes=2, card="value", build=resistor,
                value=("resistance", "component"), dc_pairs=((0, 1),))

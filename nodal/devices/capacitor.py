"""C: a capacitor, discretised by the trapezoidal rule; open at DC."""

from __future__ import annotations

from ..netlist.data import Element, Netlist
from .base import SAMPLE_PERIOD, Device, Reactive, Stamp, conductance


def capacitor(el: Element, net: Netlist) -> Stamp:
    a, b = el.nodes
    g = 2 * el.value / SAMPLE_PERIOD
    return Stamp(matrix=conductance(a, b, g), matrix_dc=[],
                 reactive=[Reactive(el.name, "C", a, b, g, el.value)])


DEVICE = Device("C", "capacitor", nodes=2, card="value", build=capacitor,
                value=("capacitance", "component"))

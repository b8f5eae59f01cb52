"""L: an inductor, discretised by the trapezoidal rule; a short (0 V source) at DC."""

from __future__ import annotations

from ..netlist.data import Element, Netlist
from .base import SAMPLE_PERIOD, Device, Reactive, Stamp, branch_incidence, conductance


def inductor(el: Element, net: Netlist) -> Stamp:
    a, b = el.nodes
    g = SAMPLE_PERIOD / (2 * el.value)
    br = ("branch", el.name)
    # At DC an inductor is a short: a 0 V source with its own branch current.
    return Stamp(matrix=conductance(a, b, g), matrix_dc=branch_incidence(a, b, br),
                 branches=[], branches_dc=[br],
                 reactive=[Reactive(el.name, "L", a, b, g, el.value)])


DEVICE = Device("L", "inductor", nodes=2, card="value", build=inductor,
                value=("inductance", "component"), dc_pairs=((0, 1),))

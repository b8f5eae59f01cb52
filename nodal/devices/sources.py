"""V and I: independent sources (DC, SIN, PULSE, PWL), the circuit's inputs and controls.

A V source is a branch current in MNA and conducts at DC; an I source injects a current from
n+ through the source to n- (SPICE's sign) and does not.
"""

from __future__ import annotations

from ..netlist.data import Element, Netlist
from .base import Device, Stamp, branch_incidence, node_key


def voltage_source(el: Element, net: Netlist) -> Stamp:
    a, b = el.nodes
    br = ("branch", el.name)
    return Stamp(matrix=branch_incidence(a, b, br), branches=[br], source_rows=[(br, 1)])


def current_source(el: Element, net: Netlist) -> Stamp:
    # SPICE: positive current flows from n+ through the source to n-.
    a, b = el.nodes
    rows = [(k, s) for k, s in ((node_key(a), -1), (node_key(b), 1)) if k]
    return Stamp(source_rows=rows)


VOLTAGE = Device("V", "voltage source", nodes=2, card="source", build=voltage_source,
                 value=("value", "finite"), dc_pairs=((0, 1),))
CURRENT = Device("I", "current source", nodes=2, card="source", build=current_source,
                 value=("value", "finite"))

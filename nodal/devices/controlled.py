"""E and G: linear controlled sources (VCVS, VCCS), `E1 a b c d gain`."""

from __future__ import annotations

from ..netlist.data import Element, Netlist
from .base import Device, Stamp, branch_incidence, node_key


def vcvs(el: Element, net: Netlist) -> Stamp:
    """E: v(a) - v(b) = gain (v(c) - v(d)); with a large gain, the ideal op-amp."""
    a, b, c, d = el.nodes
    br = ("branch", el.name)
    entries = branch_incidence(a, b, br)
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


VCVS = Device("E", "voltage-controlled voltage source", nodes=4, card="value", build=vcvs,
              value=("gain", "finite"), dc_pairs=((0, 1),))
VCCS = Device("G", "voltage-controlled current source", nodes=4, card="value", build=vccs,
              value=("transconductance", "finite"))

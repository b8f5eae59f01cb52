"""K: the mutual inductance of two inductors (a transformer), as an exact equivalent circuit.

Two coupled inductors, L1 from a to b and L2 from c to d (dots at a and c), coupling k,
M = k sqrt(L1 L2):

    v1 = L1 di1/dt + M di2/dt,        v2 = M di1/dt + L2 di2/dt

are the same two-port as: a leakage inductance L1 (1 - k^2) from a to an inner node x, an
ideal transformer of ratio n = M / L2 = k sqrt(L1 / L2) from (x, b) to (c, d), and L2 itself
across c, d as the magnetising inductance. (With i_m = n i1 + i2 through L2: v2 = L2 di_m/dt =
M di1/dt + L2 di2/dt, and v1 = L1 (1 - k^2) di1/dt + n v2 = L1 di1/dt + M di2/dt.) So the
inductors keep their one-state trapezoidal companions and the coupling is a linear stamp: the
ideal transformer's branch current i (x to b) with v(x) - v(b) = n (v(c) - v(d)), and -n i
through the secondary from c to d. At DC both inductors are shorts, as SPICE has them.

The reader (`nodal.netlist.reader`) does the rewriting when it meets a `K` card: the first
inductor's element becomes the leakage inductance (to the inner node `<K name>#x`) and a `K`
element with nodes (x, b, c, d) and the ratio as its value is added; with k = 1 there is no
leakage and the first inductor's element is the transformer's primary itself.
"""

from __future__ import annotations

import sympy as sp

from ..netlist.data import Element, Netlist
from .base import Device, Stamp, node_key


def ideal_transformer(el: Element, net: Netlist) -> Stamp:
    """Primary (nodes 0, 1) and secondary (2, 3) of ratio n = el.value (primary over
    secondary voltage), one branch current: the primary's, from node 0 to node 1."""
    x, b, c, d = el.nodes
    n = el.value
    br = ("branch", el.name)
    entries = []
    for node, into, volt in ((x, 1, 1), (b, -1, -1), (c, -n, -n), (d, n, n)):
        k = node_key(node)
        if k:
            entries += [(k, br, sp.sympify(into)), (br, k, sp.sympify(volt))]
    return Stamp(matrix=entries, branches=[br])


DEVICE = Device("K", "mutual inductance (coupled inductors)", nodes=4, card="coupling",
                build=ideal_transformer, dc_pairs=((0, 1),))

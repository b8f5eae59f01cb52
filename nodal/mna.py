"""Modified nodal analysis, stamped symbolically.

`derive(netlist)` gathers every element's stamp into the transient MNA system (capacitors and
inductors replaced by their trapezoidal companions) and the DC system (capacitors open,
inductors shorted), with component values and parameters as Sympy symbols:

    S(theta) z = R_x x~ + R_u w + R_n i(v),    v = P_v z

z: node voltages then branch currents; x~: the reactive elements' canonical states; w: the
independent sources (input, controls, then fixed sources); i(v): the nonlinear port currents.
Only the incidence matrices are numbers; `S` stays symbolic and is inverted numerically in
`dk.py` (a symbolic inverse explodes past a handful of nodes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy as sp

from . import devices
from .devices import SAMPLE_PERIOD, Key, Port, Reactive, node_key
from .errors import NetlistError
from .netlist import GROUND, Element, Netlist


@dataclass
class Equations:
    """The symbolic circuit equations of one netlist, ready to be made numeric."""

    netlist: Netlist
    parameters: list[str]                 # free symbols with defaults, in a fixed order
    unknowns: list[Key]
    unknowns_dc: list[Key]
    matrix: dict[tuple[int, int], sp.Expr]      # S, transient
    matrix_dc: dict[tuple[int, int], sp.Expr]   # S at DC
    sources: list[Element]                # input, controls, fixed sources
    source_rhs: np.ndarray                # [unknowns, sources]
    source_rhs_dc: np.ndarray
    reactive: list[Reactive]
    ports: list[Port]
    port_voltages: list[sp.Symbol]
    currents: list[sp.Expr]               # i(v), one per port
    jacobian: sp.Matrix                   # d i / d v, by sympy.diff
    port_incidence: np.ndarray            # [ports, unknowns] (node part: same at DC)
    reduced: list[int]                    # independent ports: w = v[reduced]
    expand: np.ndarray                    # [ports, len(reduced)]: v = expand @ w
    reactive_incidence: np.ndarray        # [states, unknowns]
    output_incidence: np.ndarray          # [unknowns]

    @property
    def n_inputs(self) -> int:
        return 1 + len(self.netlist.controls)

    @property
    def n_states(self) -> int:
        return len(self.reactive)

    @property
    def state_names(self) -> list[str]:
        return [f"v({r.name})" if r.kind == "C" else f"i({r.name})" for r in self.reactive]

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.sources[: self.n_inputs]]

    @property
    def component_values(self) -> dict[str, float]:
        """Defaults of the parameters a user sets: all but the input and control sources'."""
        skip = set(self.input_names)
        return {k: v for k, v in self.netlist.defaults.items() if k not in skip}

    @property
    def symbols(self) -> list[sp.Symbol]:
        """Every symbol the numeric matrices depend on: the parameters, then T."""
        return [sp.Symbol(p) for p in self.parameters] + [SAMPLE_PERIOD]

    def symbolic_matrix(self, dc: bool = False) -> sp.Matrix:
        n = len(self.unknowns_dc if dc else self.unknowns)
        m = sp.zeros(n, n)
        for (i, j), e in (self.matrix_dc if dc else self.matrix).items():
            m[i, j] = e
        return m


def _dc_path_check(net: Netlist) -> None:
    """Every node needs a DC path to ground, or the operating point is undefined.

    Union-find over the node pairs that each element's device record says conduct at DC
    (`Device.dc_pairs`): near-linear in the number of elements.
    """
    parent: dict[str, str] = {}

    def find(n: str) -> str:
        root = n
        while parent.get(root, root) != root:
            root = parent[root]
        while n != root:                    # path compression
            parent[n], n = root, parent[n]
        return root

    for el in net.elements:
        for i, j in devices.record(el.kind).dc_pairs:
            a, b = find(el.nodes[i]), find(el.nodes[j])
            if a != b:
                parent[a] = b
    ground = find(GROUND)
    for el in net.elements:
        for n in el.nodes:
            if find(n) != ground:
                raise net.error(
                    f"node {n!r} has no DC path to ground (only capacitors or current sources "
                    "reach it); add a resistor to ground, e.g. 1G, as SPICE would need too", el)


def derive(net: Netlist) -> Equations:
    """Stamp every element of `net` and return its symbolic equations."""
    stamps: dict[str, devices.Stamp] = {}
    for el in net.elements:
        device = devices.record(el.kind)
        if device is None:
            raise net.error(f"element kind {el.kind} is read but has no model yet", el)
        stamps[el.name] = device.build(el, net)
    _dc_path_check(net)

    nodes = dict.fromkeys(net.nodes)
    for st in stamps.values():
        nodes.update(dict.fromkeys(st.internal_nodes))
    node_keys = [("node", n) for n in nodes]
    branches = [b for st in stamps.values() for b in st.branches]
    branches_dc = [b for st in stamps.values()
                   for b in (st.branches_dc if st.branches_dc is not None else st.branches)]
    unknowns = node_keys + branches
    unknowns_dc = node_keys + branches_dc
    index = {k: i for i, k in enumerate(unknowns)}
    index_dc = {k: i for i, k in enumerate(unknowns_dc)}

    def gather(entries, idx) -> dict[tuple[int, int], sp.Expr]:
        out: dict[tuple[int, int], sp.Expr] = {}
        for r, c, e in entries:
            key = (idx[r], idx[c])
            out[key] = out.get(key, sp.Integer(0)) + e
        return {k: v for k, v in out.items() if v != 0}

    # ngspice's GMIN across every junction: linear, so it belongs in the matrix.
    gmin = [e for st in stamps.values() for p in st.ports if p.junction
            for e in devices.conductance(p.p, p.m, sp.Float(devices.GMIN))]
    matrix = gather([e for st in stamps.values() for e in st.matrix] + gmin, index)
    matrix_dc = gather([e for st in stamps.values()
                        for e in (st.matrix_dc if st.matrix_dc is not None else st.matrix)]
                       + gmin, index_dc)

    sources, source_rhs, source_rhs_dc = _sources(net, stamps, index, index_dc)

    reactive = [r for st in stamps.values() for r in st.reactive]
    reactive_incidence = np.zeros((len(reactive), len(unknowns)))
    for k, r in enumerate(reactive):
        for n, s in ((r.a, 1), (r.b, -1)):
            if node_key(n):
                reactive_incidence[k, index[node_key(n)]] += s

    ports = [p for st in stamps.values() for p in st.ports]
    voltages = [v for st in stamps.values() for v in st.voltages]
    currents = [c for st in stamps.values() for c in st.currents]
    port_incidence = np.zeros((len(ports), len(unknowns)))
    for k, p in enumerate(ports):
        for n, s in ((p.p, 1), (p.m, -1)):
            if node_key(n):
                port_incidence[k, index[node_key(n)]] += s
    jacobian = sp.Matrix(len(ports), len(ports),
                         lambda i, j: sp.diff(currents[i], voltages[j]))
    reduced, expand = _independent_ports(port_incidence)

    output_incidence = np.zeros(len(unknowns))
    for n, s in zip(net.output, (1, -1), strict=True):
        if node_key(n):
            output_incidence[index[node_key(n)]] += s

    return Equations(
        netlist=net, parameters=list(net.defaults), unknowns=unknowns, unknowns_dc=unknowns_dc,
        matrix=matrix, matrix_dc=matrix_dc, sources=sources, source_rhs=source_rhs,
        source_rhs_dc=source_rhs_dc, reactive=reactive, ports=ports, port_voltages=voltages,
        currents=currents, jacobian=jacobian, port_incidence=port_incidence, reduced=reduced,
        expand=expand, reactive_incidence=reactive_incidence, output_incidence=output_incidence)


def _sources(net: Netlist, stamps: dict[str, devices.Stamp], index: dict, index_dc: dict):
    """The independent sources in input, controls, fixed order, and their right-hand sides."""
    by_name = {el.name: el for el in net.elements}
    order = [net.input, *net.controls]
    first = set(order)
    sources = [by_name[n] for n in order] + [
        el for el in net.elements if devices.record(el.kind).is_source and el.name not in first]
    source_rhs = np.zeros((len(index), len(sources)))
    source_rhs_dc = np.zeros((len(index_dc), len(sources)))
    for j, src in enumerate(sources):
        for row, sign in stamps[src.name].source_rows:
            source_rhs[index[row], j] += sign
            source_rhs_dc[index_dc[row], j] += sign
    return sources, source_rhs, source_rhs_dc


def _independent_ports(incidence: np.ndarray) -> tuple[list[int], np.ndarray]:
    """Ports whose voltages are independent, and how every port voltage follows from them.

    Two antiparallel diodes share one voltage: Newton then solves for one unknown, not two.
    """
    if incidence.shape[0] == 0:
        return [], np.zeros((0, 0))
    m = sp.Matrix(incidence.astype(int))
    _, pivots = m.T.rref()
    reduced = list(pivots)
    r = m[reduced, :]
    expand = m * r.T * (r * r.T).inv()
    return reduced, np.array(expand.tolist(), dtype=float)


def check_solvable(eq: Equations) -> None:
    """Raise a NetlistError if the MNA matrices are singular at the default values."""
    values = {sp.Symbol(k): v for k, v in eq.netlist.defaults.items()}
    values[SAMPLE_PERIOD] = 1 / 48000
    for dc, entries, n in ((False, eq.matrix, len(eq.unknowns)),
                           (True, eq.matrix_dc, len(eq.unknowns_dc))):
        s = np.zeros((n, n))
        for (i, j), e in entries.items():
            s[i, j] = float(e.subs(values))
        if n and np.linalg.matrix_rank(s) < n:
            what = "DC" if dc else "transient"
            raise NetlistError(
                f"the circuit's {what} equations are singular: look for a loop of voltage "
                "sources (or inductors), or a floating sub-circuit", eq.netlist.file)

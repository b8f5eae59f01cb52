"""Modified nodal analysis, stamped symbolically.

`derive(netlist)` gathers every element's stamp into the transient MNA system (capacitors and
inductors replaced by their trapezoidal companions) and the DC system (capacitors open,
inductors shorted), with component values and parameters as Sympy symbols:

    S(theta) z = R_x x~ + R_u w + R_n i(v),    v = P_v z

A nonlinear charge q(v) (`devices.Charge`: junction capacitances, diffusion charge) becomes a
port like any other, whose law is q(v) itself (coulombs), listed after the stamps' own ports
(`charge_ports`), and a state of its own after the reactive elements'; `dk.py` scales its
column by 2/T and derives its trapezoidal history (see `dk.NumericEquations`).

z: node voltages then branch currents; x~: the reactive elements' canonical states; w: the
independent sources (input, controls, then fixed sources); i(v): the nonlinear port currents.
Only the incidence matrices are numbers; `S` stays symbolic and is inverted numerically in
`dk.py` (a symbolic inverse explodes past a handful of nodes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import sympy as sp

from . import devices, laws
from .devices import SAMPLE_PERIOD, Charge, Key, Port, Reactive, node_key
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
    charges: list[Charge] = field(default_factory=list)    # nonlinear charges, states after
    charge_ports: list[int] = field(default_factory=list)  # the reactive ones; their ports
    #: where GMIN (across junctions, from DC-floating nodes) sits in `matrix` / `matrix_dc`
    gmin: dict[bool, list[tuple[int, int, float]]] = field(default_factory=dict)
    #: the laws grouped by kind (`nodal.laws`): the Jacobian was derived once per kind
    kinds: list[laws.LawKind] = field(default_factory=list)
    #: the derivation cache's name for these equations (`nodal.derived`; '' when derived
    #: directly): it names the kernel source kept on disk (`fast.kernel`)
    derived_key: str = field(default="", compare=False)

    @property
    def n_inputs(self) -> int:
        return 1 + len(self.netlist.controls)

    @property
    def n_states(self) -> int:
        return len(self.reactive) + len(self.charges)

    @property
    def state_names(self) -> list[str]:
        return ([f"v({r.name})" if r.kind == "C" else f"i({r.name})" for r in self.reactive]
                + [f"q({c.name})" for c in self.charges])

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


def _dc_path_check(net: Netlist) -> list[str]:
    """Every node needs a DC path to ground, or the operating point is undefined.

    Union-find over the node pairs that each element's device record says conduct at DC
    (`Device.dc_pairs`): near-linear in the number of elements. A node without one that only
    capacitors and the sensing side of devices reach (an op-amp input fed through a capacitor)
    is where ngspice's gmin stepping settles it: at 0 V, as GMIN (1e-12 S) to ground would.
    Those nodes are returned (`derive` ties them to ground through GMIN, with a note); a
    floating node that a current source drives (its voltage would be I / GMIN) is an error.
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
    floating: dict[str, None] = {}
    for el in net.elements:
        device = devices.record(el.kind)
        for k, n in enumerate(el.nodes):
            if find(n) == ground:
                continue
            if _drives_current(device, k):
                raise net.error(
                    f"node {n!r} has no DC path to ground (only capacitors or current sources "
                    f"reach it) and {el.name.upper()} drives a current into it; add a resistor "
                    "to ground, e.g. 1G, as SPICE would need too", el)
            floating.setdefault(n, None)
    return list(floating)


def _drives_current(device: devices.Device, terminal: int) -> bool:
    """Whether `terminal` of `device` pushes a current set by something else (I, G, F): an
    output terminal (the first two) of a source or controlled source that does not conduct at
    DC. The controlling nodes of a linear E/G card (the third and fourth) only sense."""
    if device.card not in ("source", "controlled") or terminal > 1:
        return False
    return not any(terminal in pair for pair in device.dc_pairs)


def _gmin_to_ground(net: Netlist, floating: list[str]) -> list[tuple[Key, Key, sp.Expr]]:
    """GMIN from each DC-floating node to ground, and one note naming them."""
    if not floating:
        return []
    shown = ", ".join(floating[:8]) + (f" and {len(floating) - 8} more" if len(floating) > 8
                                       else "")
    note = (
        f"{net.file}: no DC path to ground from node(s) {shown} (only capacitors or sensing "
        f"inputs reach them): each is tied to ground through GMIN ({devices.GMIN:g} S), so the "
        "operating point puts them at 0 V as ngspice's gmin stepping does; add a resistor to "
        "ground (e.g. 1G) or a bias network if that is not what the circuit means")
    if note not in net.notes:               # derive may run more than once on one netlist
        net.notes.append(note)
    return [e for n in floating for e in devices.conductance(n, GROUND, sp.Float(devices.GMIN))]


def derive(net: Netlist) -> Equations:
    """Stamp every element of `net` and return its symbolic equations."""
    stamps: dict[str, devices.Stamp] = {}
    for el in net.elements:
        device = devices.record(el.kind)
        if device is None:
            raise net.error(f"element kind {el.kind} is read but has no model yet", el)
        stamps[el.name] = device.build(el, net)
    tied = _gmin_to_ground(net, _dc_path_check(net) or [])

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
        terms: dict[tuple[int, int], list[sp.Expr]] = {}
        for r, c, e in entries:
            terms.setdefault((idx[r], idx[c]), []).append(e)
        out = {k: v[0] if len(v) == 1 else sp.Add(*v) for k, v in terms.items()}
        return {k: v for k, v in out.items() if v != 0}

    # ngspice's GMIN across every junction: linear, so it belongs in the matrix.
    gmin = [e for st in stamps.values() for p in st.ports if p.junction
            for e in devices.conductance(p.p, p.m, sp.Float(devices.GMIN))]
    # and, as its gmin stepping settles them, GMIN from DC-floating nodes to ground
    gmin += tied
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
    # -- charges: one more port each (law q(v), no junction limiting of its own) ----------
    charges = [c for st in stamps.values() for c in st.charges]
    charge_ports = list(range(len(ports), len(ports) + len(charges)))
    ports += [Port(c.p, c.m) for c in charges]
    voltages += [c.voltage for c in charges]
    currents += [c.q for c in charges]
    # ------------------------------------------------------------------------------------
    port_incidence = np.zeros((len(ports), len(unknowns)))
    for k, p in enumerate(ports):
        for n, s in ((p.p, 1), (p.m, -1)):
            if node_key(n):
                port_incidence[k, index[node_key(n)]] += s
    symbols = [sp.Symbol(p) for p in net.defaults] + [SAMPLE_PERIOD]
    kinds = laws.group(currents, voltages, symbols, port_derivative)
    jacobian = laws.jacobian(kinds, voltages, symbols, len(ports))
    reduced, expand = _independent_ports(port_incidence)

    output_incidence = np.zeros(len(unknowns))
    for n, s in zip(net.output, (1, -1), strict=True):
        if node_key(n):
            output_incidence[index[node_key(n)]] += s

    gmin_where = {dc: [(i, j, float(v)) for (i, j), v in gather(gmin, idx).items()]
                  for dc, idx in ((False, index), (True, index_dc))}
    return Equations(
        netlist=net, parameters=list(net.defaults), unknowns=unknowns, unknowns_dc=unknowns_dc,
        matrix=matrix, matrix_dc=matrix_dc, sources=sources, source_rhs=source_rhs,
        source_rhs_dc=source_rhs_dc, reactive=reactive, ports=ports, port_voltages=voltages,
        currents=currents, jacobian=jacobian, port_incidence=port_incidence, reduced=reduced,
        expand=expand, reactive_incidence=reactive_incidence, output_incidence=output_incidence,
        charges=charges, charge_ports=charge_ports, gmin=gmin_where, kinds=kinds)


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


def numeric_entries(eq: Equations, dc: bool = False,
                    values: dict[str, float] | None = None) -> tuple[np.ndarray, np.ndarray,
                                                                     np.ndarray]:
    """(rows, columns, values) of the MNA matrix at `values` (default: the netlist's
    defaults; T = 1/48000 s). One cached walk over the entries' expression trees: a shared
    sub-expression (1/r1 in four entries) is evaluated once, and no entry is `subs`-tituted
    or printed, so the cost is linear in the size of the matrix."""
    entries = eq.matrix_dc if dc else eq.matrix
    env = {**eq.netlist.defaults, **(values or {}), SAMPLE_PERIOD.name: 1 / 48000}
    value = _Evaluator(env)
    keys = list(entries)
    numbers = np.fromiter((value(entries[k]) for k in keys), float, len(keys))
    rows = np.fromiter((k[0] for k in keys), int, len(keys))
    cols = np.fromiter((k[1] for k in keys), int, len(keys))
    return rows, cols, numbers


class _Evaluator:
    """Float value of a Sympy expression with symbols looked up by name, memoised per node;
    NaN where the value is not a finite real number (a zero division, a complex power)."""

    def __init__(self, env: dict[str, float]):
        self.env = env
        self.cache: dict[sp.Basic, float] = {}

    def __call__(self, expr: sp.Basic) -> float:
        found = self.cache.get(expr)
        if found is None:
            found = self.cache[expr] = self._value(expr)
        return found

    def _value(self, expr: sp.Basic) -> float:
        try:
            if expr.is_Symbol:
                return float(self.env[expr.name])
            if expr.is_Number:
                return float(expr)
            if expr.is_Add:
                return math.fsum(self(a) for a in expr.args)
            if expr.is_Mul:
                return math.prod(self(a) for a in expr.args)
            if expr.is_Pow:
                result = self(expr.base) ** self(expr.exp)
                return result if isinstance(result, float) else math.nan
        except (ZeroDivisionError, OverflowError, KeyError, TypeError, ValueError):
            return math.nan
        from .netlist import evaluate            # anything else: Sympy's own evaluation

        return evaluate(expr.xreplace({SAMPLE_PERIOD: sp.Float(self.env[SAMPLE_PERIOD.name])}),
                        self.env)


def _describe(eq: Equations, key: Key) -> tuple[str, Element | None]:
    """`v(node)` or `i(element)`, and an element to point at (the first on that node)."""
    kind, name = key
    if kind == "branch":
        return f"i({name})", next((e for e in eq.netlist.elements if e.name == name), None)
    return f"v({name})", next((e for e in eq.netlist.elements if name in e.nodes), None)


#: how much more GMIN's entries weigh in `check_solvable` (1e-12 S -> 1e-6 S)
GMIN_WEIGHT = 1e6


def check_solvable(eq: Equations) -> None:
    """Raise a NetlistError if the MNA matrices are singular at the default values.

    Two checks, both about linear in the number of entries:

    * structural: a maximum bipartite matching of rows to columns over the nonzero pattern
      (scipy.sparse.csgraph). An unknown no equation can be matched to (a loop of voltage
      sources or inductors, a node reached only by capacitors at DC) is named.
    * numeric: the matrix scaled so every row, then every column, has largest entry 1, then a
      sparse LU (scipy.sparse.linalg.splu); singular if the factorisation fails, a pivot is
      below 1e-13 of the largest, or the solution of a random right-hand side has a backward
      error (|Ax - b| / (|A||x| + |b|), 1-norms) above 1e-8. The scaling is what keeps an
      ill-conditioned but solvable circuit (10 MOhm resistors around a 1e6-gain VCVS op-amp)
      from being called singular.

    GMIN (1e-12 S across every junction, and from DC-floating nodes) counts as the path it is:
    a bridge rectifier's secondary reaches ground only through its diodes, as ngspice has it
    too. For these checks its entries weigh GMIN_WEIGHT times more (a 1 MOhm resistor), so
    that the pivot test does not call them zero beside milliohm series resistances.
    """
    for dc in (False, True):
        unknowns = eq.unknowns_dc if dc else eq.unknowns
        n = len(unknowns)
        if not n:
            continue
        what = "DC" if dc else "transient"
        rows, cols, vals = numeric_entries(eq, dc)
        bad = ~np.isfinite(vals)
        if bad.any():
            label, el = _describe(eq, unknowns[int(cols[np.argmax(bad)])])
            raise _singular(eq, f"the circuit's {what} equations have a non-finite entry at "
                            f"{label}: a component value is zero or infinite", el)
        extra = eq.gmin.get(dc, [])
        if extra:           # GMIN as a real path: weigh it like a 1 MOhm resistor (see above)
            rows = np.concatenate([rows, [e[0] for e in extra]]).astype(rows.dtype)
            cols = np.concatenate([cols, [e[1] for e in extra]]).astype(cols.dtype)
            vals = np.concatenate([vals, [e[2] * (GMIN_WEIGHT - 1) for e in extra]])
        keep = vals != 0
        rows, cols, vals = rows[keep], cols[keep], vals[keep]
        missing = _structural_deficiency(rows, cols, n)
        if missing:
            labels = [_describe(eq, unknowns[j])[0] for j in missing[:5]]
            el = _describe(eq, unknowns[missing[0]])[1]
            raise _singular(eq, f"the circuit's {what} equations are singular: nothing "
                            f"determines {', '.join(labels)}; look for a loop of voltage sources "
                            "(or inductors), or a node reached only through capacitors or "
                            "current sources", el)
        if not _numerically_regular(rows, cols, vals, n):
            raise _singular(eq, f"the circuit's {what} equations are singular: look for a "
                            "floating sub-circuit (no path to ground) or controlled sources "
                            "that cancel", None)


def _singular(eq: Equations, message: str, el: Element | None) -> NetlistError:
    if el is not None:
        return NetlistError(message, eq.netlist.file, el.line, el.text)
    return NetlistError(message, eq.netlist.file)


def _structural_deficiency(rows: np.ndarray, cols: np.ndarray, n: int) -> list[int]:
    """Columns (unknowns) that no row can be matched to; empty if structurally regular."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import maximum_bipartite_matching

    pattern = csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    match = maximum_bipartite_matching(pattern, perm_type="column")   # row -> column
    matched = np.zeros(n, bool)
    matched[match[match >= 0]] = True
    return [int(j) for j in np.flatnonzero(~matched)]


#: step functions of a behavioural law: their derivative is zero wherever it exists, and
#: ngspice's B source takes it as zero everywhere (Sympy leaves it unevaluated)
_STEPS = (sp.floor, sp.ceiling, sp.sign, sp.Heaviside)


def port_derivative(law: sp.Expr, voltage: sp.Symbol) -> sp.Expr:
    """d law / d voltage for the Newton Jacobian, steps differentiated as ngspice does (zero).

    A derivative Sympy cannot write out (a function nodalnet has no rule for) is a named
    error rather than a Jacobian that only autograd or nothing could evaluate.
    """
    d = sp.diff(law, voltage)
    def step(e) -> bool:
        if isinstance(e, sp.Subs):        # d/dv floor(g(v)) = Subs(Derivative(floor(u)), u, g)
            e = e.expr
        return isinstance(e, sp.Derivative) and isinstance(e.expr, _STEPS)

    d = d.replace(step, lambda e: sp.S.Zero)
    d = d.replace(lambda e: isinstance(e, sp.Subs), lambda e: e.doit())
    d = d.replace(lambda e: isinstance(e, sp.DiracDelta), lambda e: sp.S.Zero)
    left = d.atoms(sp.Derivative)
    if left:
        raise NetlistError(f"nodalnet cannot differentiate {sorted(map(str, left))[0]} in the "
                           f"law {law}; write the law without that function")
    return d


def _numerically_regular(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, n: int) -> bool:
    from scipy.sparse import csr_matrix, diags
    from scipy.sparse.linalg import splu

    a = csr_matrix((vals, (rows, cols)), shape=(n, n))
    row_scale = 1 / abs(a).max(axis=1).toarray().ravel()
    a = diags(row_scale) @ a
    col_scale = 1 / abs(a).max(axis=0).toarray().ravel()
    a = (a @ diags(col_scale)).tocsc()
    try:
        lu = splu(a)
    except RuntimeError:            # "Factor is exactly singular"
        return False
    pivots = np.abs(lu.U.diagonal())
    if not np.all(np.isfinite(pivots)) or pivots.min() <= 1e-13 * pivots.max():
        return False
    b = np.random.default_rng(0).standard_normal(n)
    x = lu.solve(b)
    if not np.all(np.isfinite(x)):
        return False
    # normwise backward error: a GMIN-tied node (1e-12 S beside millisiemens) makes x large
    # and its rounding with it, without the matrix being any less regular
    norm_a = abs(a).sum(axis=0).max()
    residual = np.linalg.norm(a @ x - b, 1) / (norm_a * np.linalg.norm(x, 1)
                                               + np.linalg.norm(b, 1))
    return bool(residual <= 1e-8)

"""Where the transient starts when the netlist gives initial conditions, as SPICE does.

* `uic` on `.tran`: no operating point. Every capacitor starts at its `IC=` voltage, or at the
  difference of its nodes' `.ic V(n)=` values (0 for a node not named); every inductor at its
  `IC=` current, or 0 (ngspice's capload.c / indload.c in MODEUIC).
* `.ic V(n)=...` without `uic`: the operating point with each named node held at its value
  (ngspice replaces the node's equation by V(n) = value during the operating point); the
  transient then starts from that point's capacitor voltages and inductor currents, with the
  nodes released. An element's `IC=` has no effect here (noted by the reader), as in ngspice.

Either way the solver needs the canonical state x~ before sample 0 such that sample 0's
capacitor voltages and inductor currents are those values: x~ is solved for from
x(x~) = x0, with x = Ds x~ + Es w0 + Fs i(q) and q = G x~ + H w0 + K i(Q q) (Newton in x~, the
Jacobian Ds + Fs (di/dq) (I - K di/dq)^-1 G from the device laws). The other node voltages at
sample 0 then follow from the circuit (consistent), where ngspice's t = 0 point holds the raw
`.ic` values: the two agree from the first step on. A set of initial conditions the circuit
cannot take (two capacitors in parallel at different voltages, a capacitor across a voltage
source) is an `InitialConditionError`, never a silent default. The start is not differentiable
in the component values (the operating point start is).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .errors import ConvergenceError, NetlistError
from .netlist import GROUND, Element, Netlist

F64 = torch.float64


class InitialConditionError(NetlistError):
    """Initial conditions the circuit cannot take as given."""


def _held_netlist(net: Netlist) -> Netlist:
    """`net` with a DC voltage source from ground holding each `.ic` node (for the OP)."""
    import copy

    import sympy as sp

    held = copy.copy(net)
    held.elements = list(net.elements)
    held.defaults = dict(net.defaults)
    held.__dict__.pop("_index", None)
    for node, value in net.initial.nodes.items():
        for el in net.elements:
            if el.kind in ("V", "E") and node in el.nodes[:2] and GROUND in el.nodes[:2]:
                raise InitialConditionError(
                    f"`.ic` holds node {node!r}, which {el.name.upper()} sets already: remove "
                    "the .ic of that node", net.file, net.initial.lines.get(f"v({node})"))
        name = f"__ic_{node}"
        held.defaults[name] = value
        held.elements.append(Element(name, "V", (node, GROUND), value=sp.Symbol(name)))
    return held


def target_states(solver, batch: int, u0: Tensor) -> Tensor:
    """The capacitor voltages and inductor currents at t = 0 [B, n_states]."""
    net = solver.eq.netlist
    ic = net.initial
    if ic.uic:
        values = []
        for r in solver.eq.reactive:
            if r.name in ic.elements:
                values.append(ic.elements[r.name])
            elif r.kind == "C":
                values.append(ic.nodes.get(r.a, 0.0) - ic.nodes.get(r.b, 0.0))
            else:
                values.append(0.0)
        return torch.tensor(values, dtype=F64).expand(batch, len(values))
    return held_operating_point(solver, batch, u0)


def held_operating_point(solver, batch: int, u0: Tensor) -> Tensor:
    """The states at the operating point with the `.ic` nodes held [B, n_states]."""
    from .dk import NumericEquations
    from .mna import check_solvable, derive
    from .solver import NodalSolver

    net = solver.eq.netlist
    held = _held_netlist(net)
    held.initial = type(net.initial)()          # no initial conditions: the plain OP
    try:
        eq = derive(held)
        check_solvable(eq)
    except NetlistError as exc:
        raise InitialConditionError(f"the `.ic` nodes cannot be held: {exc.reason}",
                                    net.file, exc.line, exc.text) from None
    values = {**net.defaults, **solver.values()}
    inner = NodalSolver.__new__(NodalSolver)
    torch.nn.Module.__init__(inner)
    inner.eq, inner.numeric = eq, NumericEquations(eq)
    inner.sample_rate, inner.newton = solver.sample_rate, solver.newton
    inner.n_inputs, inner.n_states = eq.n_inputs, eq.n_states
    inner.names = list(eq.parameters)
    inner._index = {n: k for k, n in enumerate(inner.names)}
    inner.register_buffer("fixed_values", torch.tensor(
        [values.get(n, held.defaults.get(n, 0.0)) for n in inner.names], dtype=F64))
    inner.trainable = torch.nn.ParameterDict()
    inner.fixed_sources = eq.sources[eq.n_inputs:]
    with torch.no_grad():
        s, _ = inner._plain_operating_point(batch, u0)
        return s / inner._state_scale(inner.theta())


def consistent_start(solver, batch: int, u0: Tensor, x0: Tensor) -> tuple[Tensor, Tensor]:
    """(canonical state x~ [B, n_states], Newton's port coordinates [B, r]) such that
    sample 0's states are x0."""
    net = solver.eq.netlist
    with torch.no_grad():
        w0 = solver.source_values(u0.to(F64)[:, None, :])[:, 0]
        theta = solver.theta()
        m = solver.matrices()
        r = m.K.shape[0]
        q = torch.zeros(batch, r, dtype=F64)
        laws = solver._laws(theta)
        junctions = solver._junctions(theta)
        expand = solver.numeric.expand
        base = w0 @ m.Es.T
        s = torch.linalg.lstsq(m.Ds.expand(batch, *m.Ds.shape),
                               (x0 - base).unsqueeze(-1)).solution.squeeze(-1)
        eye = torch.eye(r, dtype=F64)
        for _ in range(100):
            if r:
                p = s @ m.G.T + w0 @ m.H.T
                q, _, ok, _ = solver._solve(q, p, m.K, laws, junctions)
                if not bool(ok.all()):
                    raise ConvergenceError("Newton did not converge at the initial conditions",
                                           samples=[0])
                i, jac = laws(q @ expand.T)
                x = s @ m.Ds.T + base + i @ m.Fs.T
                dq = jac @ expand                                    # [B, ports, r]
                dq_dp = torch.linalg.inv(eye - m.K @ dq)             # [B, r, r]
                J = m.Ds + m.Fs @ dq @ dq_dp @ m.G                   # [B, nx, nx]
            else:
                x = s @ m.Ds.T + base
                J = m.Ds.expand(batch, *m.Ds.shape)
            residual = x - x0
            scale = 1e-9 + 1e-9 * x0.abs().max()
            if float(residual.abs().max()) <= scale:
                return s, q
            step = torch.linalg.lstsq(J, residual.unsqueeze(-1)).solution.squeeze(-1)
            if float(step.abs().max()) <= 1e-15 * (1 + float(s.abs().max())):
                break                                   # no move left: x0 is out of reach
            s = s - step
    names = [n for n, e in zip(solver.eq.state_names, residual.abs().amax(0).tolist(),
                               strict=True) if e > scale]
    raise InitialConditionError(
        "the initial conditions cannot all hold at once: " + ", ".join(names)
        + " are tied by the circuit (capacitors in parallel or in a loop with voltage sources, "
        "an inductor in series with a current source): give them consistent values",
        net.file, net.initial.lines.get("uic"))


def start(solver, batch: int, u0: Tensor) -> tuple[Tensor, Tensor]:
    """The solver's start from the netlist's initial conditions."""
    return consistent_start(solver, batch, u0, target_states(solver, batch, u0))

"""Put the derived equations into words and formulas a person can check."""

from __future__ import annotations

import sympy as sp

from .mna import Equations

SYMBOLIC_LIMIT = 4      # unknowns up to which the DK matrices are shown in closed form


def _key(k) -> str:
    return f"v({k[1]})" if k[0] == "node" else f"i({k[1]})"


def describe(eq: Equations) -> str:
    net = eq.netlist
    out: list[str] = [f"{net.title}   [{net.file}]", ""]
    out.append("unknowns z (modified nodal analysis): " + ", ".join(_key(k) for k in eq.unknowns))
    out.append("inputs u: " + ", ".join(eq.input_names)
               + ("   fixed sources: " + ", ".join(s.name for s in eq.sources[eq.n_inputs:])
                  if len(eq.sources) > eq.n_inputs else ""))
    out.append("output y: v(" + ",".join(net.output) + ")")
    out.append("parameters: " + ", ".join(f"{k}={v:g}" for k, v in eq.component_values.items()))
    out.append("")
    out.append(f"states x ({eq.n_states}), trapezoidal rule with sample period T:")
    for r in eq.reactive:
        if r.kind == "C":
            out.append(f"  v({r.name}) = v({r.a}) - v({r.b});  companion g = {r.g},  "
                       "x~[n] = 2 g v[n] - x~[n-1]")
        else:
            out.append(f"  i({r.name});  companion g = {r.g},  x~[n] = 2 g v[n] + x~[n-1]")
    for c in eq.charges:
        out.append(f"  q({c.name}) = q(v({c.p}) - v({c.m})), a nonlinear charge (its port below);"
                   "  h[n] = 2 (2/T) q[n] - h[n-1]")
    out.append("")
    if eq.ports:
        out.append(f"nonlinear ports ({len(eq.ports)}; Newton solves for {len(eq.reduced)} "
                   "independent port voltages):")
        for v, p, law in zip(eq.port_voltages, eq.ports, eq.currents, strict=True):
            out.append(f"  {v} = v({p.p}) - v({p.m}):   i = {law}")
        out.append("  Jacobian di/dv (sympy.diff):")
        for i in range(len(eq.ports)):
            for j in range(len(eq.ports)):
                if eq.jacobian[i, j] != 0:
                    out.append(f"    d i{i} / d {eq.port_voltages[j]} = {eq.jacobian[i, j]}")
        out.append("")
    s = eq.symbolic_matrix()
    out.append("MNA matrix S (transient):")
    out.append(sp.pretty(s, wrap_line=False) if len(eq.unknowns) <= 8 else
               f"  {len(eq.unknowns)}x{len(eq.unknowns)}, {len(eq.matrix)} nonzero entries")
    out.append("")
    out.append("per sample n (DK method):")
    out.append("  p = G x~[n-1] + H u[n];   solve q - p - K i(v(q)) = 0 (Newton);")
    out.append("  y[n] = D x~[n-1] + E u[n] + F i;   x~[n] = A x~[n-1] + B u[n] + C i")
    if len(eq.unknowns) <= SYMBOLIC_LIMIT and eq.reactive and not eq.charges:
        out.append("")
        out.append(_symbolic_dk(eq))
    return "\n".join(out)


def _symbolic_dk(eq: Equations) -> str:
    import numpy as np

    s = eq.symbolic_matrix()
    signs = np.array([r.sign for r in eq.reactive])[None, :]
    rx = sp.Matrix((eq.reactive_incidence.T * signs).astype(int))
    ru = sp.Matrix(eq.source_rhs.astype(int))
    m_x = sp.simplify(s.LUsolve(rx))
    m_u = sp.simplify(s.LUsolve(ru))
    px = sp.Matrix(eq.reactive_incidence.astype(int))
    po = sp.Matrix(eq.output_incidence[None, :].astype(int))
    g = sp.diag(*[r.g for r in eq.reactive])
    sign = sp.diag(*[r.sign for r in eq.reactive])
    a = sp.simplify(2 * g * px * m_x - sign)
    b = sp.simplify(2 * g * px * m_u)
    d = sp.simplify(po * m_x)
    e = sp.simplify(po * m_u)
    lines = ["state space in closed form (T = sample period):"]
    for name, mat in (("A", a), ("B", b), ("D", d), ("E", e)):
        lines.append(f"  {name} = {mat.tolist()}")
    if eq.ports:
        pq = sp.Matrix(eq.port_incidence[eq.reduced].astype(int))
        lines.append(f"  G = {sp.simplify(pq * m_x).tolist()}")
        lines.append(f"  H = {sp.simplify(pq * m_u).tolist()}")
    return "\n".join(lines)

"""From the symbolic MNA system to the numeric DK-method state space (float64 torch).

Per sample n, with canonical states x~ (`Reactive`), sources w and port coordinates q (the
independent nonlinear port voltages, v = Q q):

    p    = G x~[n-1] + H w[n]
    0    = q - p - K i(Q q)                       solved by Newton (`newton.py`)
    y[n] = D x~[n-1] + E w[n] + F i
    x[n] = Ds x~[n-1] + Es w[n] + Fs i            exposed states (capacitor voltages,
                                                  inductor currents)
    x~[n] = A x~[n-1] + B w[n] + C i

Every matrix follows from z = S^-1 (R_x x~ + R_u w + R_n i) by selecting rows; `S^-1` is taken
numerically (`torch.linalg.solve`), so everything is differentiable in the component values.

Nonlinear charges (`mna.Equations.charges`). The trapezoidal rule on a charge q(v) between p
and m gives the port current i[n] = (2/T) (q[n] - q[n-1]) - i[n-1]. Writing its history as
h[n-1] = (2/T) q[n-1] + i[n-1], the current is (2/T) q(v[n]) - h[n-1] and

    h[n] = (2/T) q[n] + i[n] = 2 (2/T) q(v[n]) - h[n-1],

which is a linear capacitor's companion (`Reactive`: x~[n] = 2 g v[n] - x~[n-1], g = 2C/T) with
g v replaced by (2/T) q(v). So a charge is a nonlinear port whose law is q(v) (coulombs), whose
column of R_n is scaled by 2/T, and a canonical state h, injected into p as a capacitor's x~
is: its row of A is -1 on the diagonal, of B zero, of C 2 (2/T) at its port. Its exposed state
is the charge q[n] itself (row of Fs: 1 at its port), and for a circuit at rest h = (2/T) q,
as x~ = g v for a capacitor, with g = 2/T; so every state rescaling written for capacitors (the
substeps at T/k, `encode`) holds for charges with g = 2/T. At DC a charge carries no current
(its R_n column is zero) and its state is h = (2/T) q(v0). The laws do not depend on T, so
the substeps of the fallback evaluate the same laws and only the matrices change.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy as sp
import torch
from torch import Tensor

from .mna import Equations


def _pairwise(pick):
    """Min/Max of any number of arguments as nested two-way Piecewise (torch.where): Sympy's
    torch printer writes torch.min/max, which refuse a float beside a tensor."""
    def build(*args):
        out = args[0]
        for a in args[1:]:
            out = sp.Piecewise((out, pick(out, a)), (a, True))
        return out
    return build


def _step(x, *_):
    """Heaviside (the derivative of Min/Max) as a Piecewise torch.where takes."""
    return sp.Piecewise((sp.Integer(0), x < 0), (sp.Integer(1), True))


def torch_function(exprs: list[sp.Expr], args: list[sp.Symbol]):
    """Compile Sympy expressions into one torch function of `args` returning a list."""
    # Arguments renamed to identifiers first: lambdify would otherwise replace each argument
    # whose name is not one (a model parameter `q2n5088.is`) by a dummy in every expression,
    # one walk per argument (seconds on a 24-port circuit); one xreplace does it for all.
    safe = {a: sp.Symbol(f"_a{k}", **a.assumptions0) for k, a in enumerate(args)}
    exprs = [sp.sympify(e).xreplace(safe).replace(sp.Min, _pairwise(lambda a, b: a <= b))
             .replace(sp.Max, _pairwise(lambda a, b: a >= b))
             .replace(sp.Heaviside, _step) for e in exprs]
    fn = sp.lambdify(list(safe.values()), list(exprs), modules="torch", cse=True,
                     dummify=False)
    return fn


def _broadcast(values: list, like: Tensor) -> list[Tensor]:
    out = []
    for v in values:
        if not torch.is_tensor(v):
            v = torch.full_like(like, float(v))
        else:
            if v.dtype != like.dtype:       # torch.where of two constants: default dtype
                v = v.to(like.dtype)
            if v.shape != like.shape:
                v = v.expand_as(like)
        out.append(v)
    return out


class _KindLaws:
    """The torch function of one kind of law (`nodal.laws.LawKind`): laws and Jacobian entries
    of every instance of the kind in one call, each argument a column [batch, instances]."""

    def __init__(self, kind, n_ports: int):
        entries = list(kind.jacobian)
        self.fn = torch_function(kind.laws + [kind.jacobian[e] for e in entries],
                                 kind.voltages + kind.parameters)
        self.n_laws = len(kind.laws)
        self.ports = torch.tensor(kind.ports, dtype=torch.long)             # [inst, k]
        self.arguments = torch.tensor(kind.arguments, dtype=torch.long).view(
            len(kind.ports), len(kind.parameters))                           # [inst, m]
        #: where the outputs go: currents by law, then Jacobian entries, instance fastest
        self.current_ports = self.ports.T.reshape(-1)
        self.jacobian_flat = torch.cat(
            [self.ports[:, a] * n_ports + self.ports[:, b] for a, b in entries]
        ) if entries else torch.zeros(0, dtype=torch.long)

    def __call__(self, v: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        vk = v[:, self.ports]                                   # [B, inst, k]
        pk = values[self.arguments]                             # [inst, m]
        out = _broadcast(self.fn(*vk.unbind(2), *pk.unbind(1)), vk[:, :, 0])
        i = torch.cat(out[: self.n_laws], 1)
        jac = (torch.cat(out[self.n_laws:], 1) if len(out) > self.n_laws
               else v.new_zeros(v.shape[0], 0))
        return i, jac


@dataclass
class DKMatrices:
    """The numeric state space at one set of component values (float64 tensors)."""

    G: Tensor
    H: Tensor
    K: Tensor
    A: Tensor
    B: Tensor
    C: Tensor
    D: Tensor
    E: Tensor
    F: Tensor
    Ds: Tensor
    Es: Tensor
    Fs: Tensor
    state_from_x: Tensor      # x~ = state_from_x * x for a circuit at rest (encode)


@dataclass
class DCMatrices:
    """The operating point: q = H w0 + K i(Q q); x~0 = Xw w0 + Xi i."""

    H: Tensor
    K: Tensor
    Xw: Tensor
    Xi: Tensor


class NumericEquations:
    """Evaluates an `Equations` at given parameter values, in torch."""

    def __init__(self, eq: Equations):
        self.eq = eq
        symbols = eq.symbols
        self._entries = list(eq.matrix)
        self._entries_dc = list(eq.matrix_dc)
        self._matrix_fn = torch_function([eq.matrix[k] for k in self._entries], symbols)
        self._matrix_dc_fn = torch_function([eq.matrix_dc[k] for k in self._entries_dc], symbols)
        self._g_fn = torch_function([r.g for r in eq.reactive], symbols)
        n, ndc = len(eq.unknowns), len(eq.unknowns_dc)
        self.n, self.ndc = n, ndc
        self._flat = torch.tensor([i * n + j for i, j in self._entries], dtype=torch.long)
        self._flat_dc = torch.tensor([i * ndc + j for i, j in self._entries_dc],
                                     dtype=torch.long)
        # Currents and Jacobian: one torch function per kind of law (`nodal.laws`), of the
        # kind's stand-in voltages and parameters, evaluated on every instance at once.
        self.n_ports = len(eq.ports)
        self._kinds = [_KindLaws(kind, self.n_ports) for kind in eq.kinds]
        order = [kind.current_ports for kind in self._kinds]
        self._current_order = (torch.argsort(torch.cat(order)) if order
                               else torch.zeros(0, dtype=torch.long))
        flat = [kind.jacobian_flat for kind in self._kinds]
        self._jac_flat = torch.cat(flat) if flat else torch.zeros(0, dtype=torch.long)
        self._junction_fn = torch_function(
            [e for p in eq.ports if p.junction for e in p.junction], symbols)
        self.junction_ports = [k for k, p in enumerate(eq.ports) if p.junction]
        f64 = torch.float64
        ports = eq.port_incidence
        nr, nc = len(eq.reactive), len(eq.charges)
        nx = nr + nc
        self.n_reactive, self.n_charges = nr, nc
        self.reactive_sign = torch.tensor([r.sign for r in eq.reactive] + [1] * nc, dtype=f64)
        self.is_inductor = torch.tensor([r.kind == "L" for r in eq.reactive] + [False] * nc,
                                        dtype=torch.bool)
        rx = eq.reactive_incidence.T * np.array([r.sign for r in eq.reactive])[None, :]
        # charges: the history h flows into p as a capacitor's x~; q(v) selected by Psel
        rx = np.concatenate([rx.reshape(n, nr), ports[eq.charge_ports].T.reshape(n, nc)], 1)
        psel = np.zeros((nx, self.n_ports))
        psel[np.arange(nr, nx), eq.charge_ports] = 1.0
        self.Psel = torch.tensor(psel, dtype=f64)
        self.charge_mask = torch.zeros(self.n_ports, dtype=torch.bool)
        self.charge_mask[eq.charge_ports] = True
        self.Rx = torch.tensor(rx.reshape(n, nx), dtype=f64)
        self.Ru = torch.tensor(eq.source_rhs, dtype=f64)
        self.Rn = torch.tensor(-ports.T.reshape(n, self.n_ports), dtype=f64)
        px = np.concatenate([eq.reactive_incidence.reshape(nr, n), np.zeros((nc, n))], 0)
        self.Px = torch.tensor(px.reshape(nx, n), dtype=f64)
        self.Pq = torch.tensor(ports[eq.reduced].reshape(len(eq.reduced), n), dtype=f64)
        self.Po = torch.tensor(eq.output_incidence[None, :], dtype=f64)
        self.expand = torch.tensor(eq.expand.reshape(self.n_ports, len(eq.reduced)), dtype=f64)
        # DC: the same rows, padded to the DC unknowns (nodes come first in both).
        nodes = sum(k[0] == "node" for k in eq.unknowns)
        pad = np.zeros((self.n_ports, ndc))
        pad[:, :nodes] = ports[:, :nodes]
        pad[eq.charge_ports] = 0.0         # a charge carries no current at DC
        self.Ru_dc = torch.tensor(eq.source_rhs_dc, dtype=f64)
        self.Rn_dc = torch.tensor(-pad.T.reshape(ndc, self.n_ports), dtype=f64)
        self.Pq_dc = torch.tensor(pad[eq.reduced].reshape(len(eq.reduced), ndc), dtype=f64)
        xsel = np.zeros((nx, ndc))
        self._dc_cap_rows = []
        index_dc = {k: i for i, k in enumerate(eq.unknowns_dc)}
        for k, r in enumerate(eq.reactive):
            if r.kind == "C":
                xsel[k, :nodes] = eq.reactive_incidence[k, :nodes]
            else:
                xsel[k, index_dc[("branch", r.name)]] = 1.0
        self.Xsel_dc = torch.tensor(xsel.reshape(nx, ndc), dtype=f64)

    # -- matrices -------------------------------------------------------------------------
    def _assemble(self, fn, flat, n, theta: list[Tensor]) -> Tensor:
        if not len(flat):
            return torch.zeros(n, n, dtype=torch.float64)
        values = _broadcast(fn(*theta), theta[-1])
        s = torch.zeros(n * n, dtype=theta[-1].dtype).index_add(0, flat, torch.stack(values))
        return s.view(n, n)

    def reactive_g(self, theta: list[Tensor]) -> Tensor:
        """Each state's companion conductance at T = theta[-1]: 2C/T or T/2L for the
        reactive elements, then 2/T for each charge (see the module docstring)."""
        g = (torch.stack(_broadcast(self._g_fn(*theta), theta[-1])) if self.eq.reactive
             else torch.zeros(0, dtype=torch.float64))
        if not self.n_charges:
            return g
        return torch.cat([g, (2 / theta[-1]).expand(self.n_charges)])

    def matrices(self, theta: list[Tensor]) -> DKMatrices:
        """theta: the parameter values (0-dim float64 tensors) in `eq.parameters` order, then T."""
        s = self._assemble(self._matrix_fn, self._flat, self.n, theta)
        rn = self.Rn
        if self.n_charges:                  # a charge's port current is (2/T) q(v) - h
            rn = rn * torch.where(self.charge_mask, 2 / theta[-1], torch.ones_like(rn[0]))
        rhs = torch.cat([self.Rx, self.Ru, rn], 1)
        try:
            m = torch.linalg.solve(s, rhs)
        except RuntimeError as exc:
            from .errors import NetlistError
            raise NetlistError(f"the circuit's equations are singular at these component "
                               f"values ({exc})", self.eq.netlist.file) from None
        if not (torch.isfinite(s).all() and torch.isfinite(m).all()):
            raise self._overflow(theta)
        nx, nw = self.Rx.shape[1], self.Ru.shape[1]
        mx, mu, mn = m[:, :nx], m[:, nx:nx + nw], m[:, nx + nw:]
        g = self.reactive_g(theta)
        two_g = 2 * g[:, None]
        vx, vu, vn = self.Px @ mx, self.Px @ mu, self.Px @ mn
        # exposed states: capacitor voltage v, or inductor current g v + x~
        scale = torch.where(self.is_inductor, g, torch.ones_like(g))[:, None]
        eye_l = torch.diag(self.is_inductor.to(torch.float64))
        state_from_x = torch.where(self.is_inductor, torch.ones_like(g), g)
        return DKMatrices(
            G=self.Pq @ mx, H=self.Pq @ mu, K=self.Pq @ mn,
            A=two_g * vx - torch.diag(self.reactive_sign), B=two_g * vu,
            C=two_g * (vn + self.Psel), D=self.Po @ mx, E=self.Po @ mu, F=self.Po @ mn,
            Ds=scale * vx + eye_l, Es=scale * vu, Fs=scale * vn + self.Psel,
            state_from_x=state_from_x)

    def _overflow(self, theta: list[Tensor]):
        """The named error for equations that float64 cannot hold at these values."""
        from .errors import NetlistError

        names = [str(p) for p in self.eq.parameters] + ["T"]
        extreme = [f"{n}={float(t):g}" for n, t in zip(names, theta, strict=False)
                   if float(t) != 0 and not 1e-30 <= abs(float(t)) <= 1e30]
        return NetlistError(
            "the circuit's equations overflow at these component values (an entry of its "
            "matrices is beyond float64" + (f"; extreme values: {', '.join(extreme)}"
                                             if extreme else "") + "); use realistic values",
            self.eq.netlist.file)

    def dc_matrices(self, theta: list[Tensor]) -> DCMatrices:
        s = self._assemble(self._matrix_dc_fn, self._flat_dc, self.ndc, theta)
        try:
            m = torch.linalg.solve(s, torch.cat([self.Ru_dc, self.Rn_dc], 1))
        except RuntimeError as exc:
            from .errors import NetlistError
            raise NetlistError(f"the circuit's DC equations are singular ({exc}): is every "
                               "node connected to ground through something other than "
                               "capacitors?", self.eq.netlist.file) from None
        nw = self.Ru_dc.shape[1]
        mu, mn = m[:, :nw], m[:, nw:]
        g = self.reactive_g(theta)
        xscale = torch.where(self.is_inductor, torch.ones_like(g), g)[:, None]
        return DCMatrices(H=self.Pq_dc @ mu, K=self.Pq_dc @ mn,
                          Xw=xscale * (self.Xsel_dc @ mu),
                          Xi=xscale * (self.Xsel_dc @ mn + self.Psel))

    # -- device laws ----------------------------------------------------------------------
    def laws(self, v: Tensor, theta: list[Tensor]) -> tuple[Tensor, Tensor]:
        """Port voltages v [B, ports] -> currents i [B, ports] and Jacobian di/dv
        [B, ports, ports]."""
        batch = v.shape[0]
        if not self._kinds:
            return v.new_zeros(batch, 0), v.new_zeros(batch, 0, 0)
        values = torch.stack(theta)
        currents, entries = [], []
        for kind in self._kinds:
            i_k, jac_k = kind(v, values)
            currents.append(i_k)
            entries.append(jac_k)
        i = torch.cat(currents, 1)[:, self._current_order]
        jac = v.new_zeros(batch, self.n_ports * self.n_ports)
        if len(self._jac_flat):
            jac = jac.index_copy(1, self._jac_flat, torch.cat(entries, 1))
        return i, jac.view(batch, self.n_ports, self.n_ports)

    def junctions(self, theta: list[Tensor]) -> tuple[Tensor, Tensor]:
        """(n Vt, Is) of each junction port, for SPICE-style voltage limiting."""
        if not self.junction_ports:
            z = torch.zeros(0, dtype=torch.float64)
            return z, z
        vals = _broadcast(self._junction_fn(*theta), theta[-1])
        vals = torch.stack(vals).view(-1, 2)
        return vals[:, 0], vals[:, 1]

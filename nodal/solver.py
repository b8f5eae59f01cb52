"""The white-box solver: the circuit's DK state space solved sample by sample in torch.

`NodalSolver` is a `StateSpaceModel` whose internal state is the trapezoidal rule's canonical
state x~ (one per capacitor/inductor) and whose exposed states are the capacitor voltages and
inductor currents. It runs batched `[batch, time, inputs]` in float64, starts from the DC
operating point as SPICE's transient analysis does, and is differentiable in every component
value and `.param` (Newton's solution enters the graph by one differentiable step: the
implicit function theorem).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from torch import Tensor, nn

from .arrays import as_numpy
from .dk import DKMatrices, NumericEquations
from .errors import ConvergenceError, SignalError, UnknownBackendError, UnknownParameterError
from .interface import StateSpaceModel, Trajectory
from .mna import Equations
from .netlist import check_values
from .newton import NewtonOptions, newton_step, solve

F64 = torch.float64


def _safe(name: str) -> str:
    return name.replace(".", "__").replace("#", "_")


class NodalSolver(StateSpaceModel):
    """Solve `equations` at `sample_rate` (Hz).

    values: overrides of parameter defaults, by name (`{"r1": 3.3e3, "drive": 1.0}`).
    trainable: names of parameters to expose as `nn.Parameter`s (float64, SI units).
    strict: raise `ConvergenceError` if Newton fails at any sample (else warn).
    """

    def __init__(self, equations: Equations, sample_rate: float = 48000.0,
                 values: dict[str, float] | None = None, trainable: tuple[str, ...] = (),
                 newton: NewtonOptions | None = None, strict: bool = True):
        super().__init__()
        self.eq = equations
        self.numeric = NumericEquations(equations)
        self.sample_rate = float(sample_rate)
        self.n_inputs = equations.n_inputs
        self.n_states = equations.n_states
        self.newton = newton or NewtonOptions()
        self.strict = strict
        self.names = list(equations.parameters)
        self._index = {n: k for k, n in enumerate(self.names)}
        check_values(equations.netlist, values)     # unknown names; values breaking a rule
        defaults = dict(equations.netlist.defaults)
        for name, value in (values or {}).items():
            defaults[self.resolve(name)] = float(value)
        self.register_buffer("fixed_values",
                             torch.tensor([defaults[n] for n in self.names], dtype=F64))
        self.trainable = nn.ParameterDict()
        for name in trainable:
            self.make_trainable(name)
        n_in = self.n_inputs
        self.fixed_sources = equations.sources[n_in:]
        self.last_iterations = 0.0
        self.last_failures: list[int] = []

    # -- parameters -----------------------------------------------------------------------
    def resolve(self, name: str) -> str:
        key = name.lower()
        if key not in self._index:
            raise UnknownParameterError(f"{name!r} is not a parameter of "
                                        f"{self.eq.netlist.file}; known: {', '.join(self.names)}")
        return key

    def make_trainable(self, name: str) -> nn.Parameter:
        key = self.resolve(name)
        param = nn.Parameter(self.fixed_values[self._index[key]].clone())
        self.trainable[_safe(key)] = param
        return param

    def value(self, name: str) -> Tensor:
        key = self.resolve(name)
        if _safe(key) in self.trainable:
            return self.trainable[_safe(key)]
        return self.fixed_values[self._index[key]]

    def set_value(self, name: str, value: float) -> None:
        key = self.resolve(name)
        with torch.no_grad():
            if _safe(key) in self.trainable:
                self.trainable[_safe(key)].fill_(value)
            else:
                self.fixed_values[self._index[key]] = value

    def values(self) -> dict[str, float]:
        return {n: float(self.value(n)) for n in self.names}

    def theta(self) -> list[Tensor]:
        """Parameter values in `eq.parameters` order, then the sample period T."""
        out = [self.value(n) for n in self.names]
        out.append(torch.tensor(1.0 / self.sample_rate, dtype=F64))
        return out

    def matrices(self) -> DKMatrices:
        return self.numeric.matrices(self.theta())

    # -- sources --------------------------------------------------------------------------
    def source_values(self, u: Tensor, start: int = 0) -> Tensor:
        """Every source's value [B, T, sources]: the inputs u, then the fixed sources."""
        batch, length, _ = u.shape
        if not self.fixed_sources:
            return u
        t = (np.arange(length) + start) / self.sample_rate
        cols = []
        for src in self.fixed_sources:
            if src.waveform is not None:
                col = torch.as_tensor(src.waveform.at(t, 1 / self.sample_rate), dtype=F64)
                cols.append(col[None, :].expand(batch, length))
            else:
                cols.append(self.value(src.name).expand(batch, length))
        return torch.cat([u, torch.stack(cols, -1)], -1)

    # -- laws -----------------------------------------------------------------------------
    def _laws(self, theta):
        return lambda v: self.numeric.laws(v, theta)

    def _junctions(self, theta):
        vte, i_s = self.numeric.junctions([t.detach() for t in theta])
        vcrit = vte * torch.log(vte / (math.sqrt(2.0) * i_s))
        return vte, vcrit

    def _solve(self, q0, p, K, laws, theta_j, options=None):
        return solve(q0, p, K, laws, self.numeric.expand, self.numeric.junction_ports,
                     *theta_j, options or self.newton)

    # -- the interface --------------------------------------------------------------------
    def initial_state(self, batch: int, u0: Tensor | None = None) -> Tensor:
        """The DC operating point's canonical state [B, n_states], inputs held at u0 [B, inputs]."""
        if u0 is None:
            u0 = torch.zeros(batch, self.n_inputs, dtype=F64)
        w0 = self.source_values(u0.to(F64)[:, None, :])[:, 0]
        theta = self.theta()
        dc = self.numeric.dc_matrices(theta)
        laws = self._laws(theta)
        junctions = self._junctions(theta)
        r = dc.H.shape[0]
        if r == 0:
            self._dc_ports = torch.zeros(batch, 0, dtype=F64)
            return w0 @ dc.Xw.T
        p_full = w0 @ dc.H.T
        with torch.no_grad():
            options = NewtonOptions(max_iter=200, abstol=self.newton.abstol,
                                    reltol=self.newton.reltol)
            q, _, ok = self._solve(torch.zeros_like(p_full), p_full, dc.K, laws, junctions,
                                   options)
            if not bool(ok.all()):
                # source stepping, as SPICE does when the direct operating point fails
                q = torch.zeros_like(p_full)
                for lam in np.linspace(0.05, 1.0, 40):
                    q, _, ok = self._solve(q, lam * p_full.detach(), dc.K.detach(), laws,
                                           junctions, options)
            if not bool(ok.all()):
                raise ConvergenceError(
                    "no DC operating point: Newton did not converge even with source stepping; "
                    "check the supply and the device models", samples=[0])
        self._dc_ports = q.detach()
        if torch.is_grad_enabled():
            q = newton_step(q, p_full, dc.K, laws, self.numeric.expand)
        i = laws(q @ self.numeric.expand.T)[0]
        return w0 @ dc.Xw.T + i @ dc.Xi.T

    def encode(self, x: Tensor) -> Tensor:
        """Circuit states -> canonical state, for a circuit at rest (capacitor currents zero).

        x~ = (2C/T) v_C for a capacitor (its current is taken as zero), x~ = i_L for an inductor.
        """
        theta = self.theta()
        g = self.numeric.reactive_g(theta)
        scale = torch.where(self.numeric.is_inductor, torch.ones_like(g), g)
        return x.to(F64) * scale

    def _report_failures(self, failures: list[int], length: int) -> None:
        """Raise `ConvergenceError` (strict) or warn: never hand back NaNs silently."""
        if not failures:
            return
        message = (f"Newton did not converge at {len(failures)} of {length} samples (first "
                   f"at sample {failures[0]}); lower the input level, oversample, or "
                   "raise the iteration limit")
        if self.strict:
            raise ConvergenceError(message, failures)
        warnings.warn(message, stacklevel=3)

    def step(self, s: Tensor, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        traj = self.forward(u[:, None, :], s0=s)
        return traj.s_final, traj.y[:, 0], traj.x[:, 0]

    def simulate(self, u: Tensor, s0: Tensor | None = None, backend: str = "fast") -> Trajectory:
        """Run the circuit forward only on u [B, T, n_inputs] (volts) -> Trajectory.

        backend: "fast" (`forward` without autograd: the compiled kernel of `fast.py` alone) or
        "torch" (`forward_reference`, the plain torch loop over `newton.solve`, no grad; slow);
        both give the same samples to round-off.
        """
        if backend == "fast":
            from . import fast
            return fast.simulate(self, u, s0)
        if backend == "torch":
            with torch.no_grad():
                return self.forward_reference(u, s0)
        raise UnknownBackendError(f"backend must be 'fast' or 'torch', not {backend!r}")

    def _start(self, u: Tensor, s0: Tensor | None, teacher: Tensor | None):
        """What both torch loops begin with: checked float64 inputs, theta, the DK matrices,
        the starting state (the operating point unless s0), every source's value w, where
        Newton starts (q0 [B, r]), and whether autograd needs the differentiable step.

        Newton starts from the operating point's port voltages (zeros when s0 is given), then
        from the last sample's; not from the linear prediction p: where a node is reached only
        through a junction, p is of the order of I / GMIN, megavolts.
        """
        self.check_inputs(u, teacher)
        u = u.to(F64)
        if not bool(torch.isfinite(u).all()):
            raise SignalError("the input contains NaN or infinite values")
        batch = u.shape[0]
        theta = self.theta()
        m = self.matrices()
        self._dc_ports = None
        s = self.initial_state(batch, u[:, 0]) if s0 is None else s0.to(F64)
        w = self.source_values(u)
        grad = torch.is_grad_enabled() and (
            any(t.requires_grad for t in theta) or s.requires_grad or w.requires_grad)
        r = m.K.shape[0]
        q0 = self._dc_ports if self._dc_ports is not None else torch.zeros(batch, r, dtype=F64)
        return u, theta, m, s, w, q0.detach(), grad

    def forward(self, u: Tensor, s0: Tensor | None = None, teacher: Tensor | None = None,
                every: int = 0, progress=None) -> Trajectory:
        """Run the circuit on inputs u [B, T, n_inputs] (volts) -> Trajectory.

        Newton runs in the compiled kernel of `fast.py` (no grad), for the whole signal. If
        autograd needs it (a trainable value, or s0 or u requiring grad), torch then takes one
        differentiable Newton step from each converged q (the implicit function theorem, as
        `newton.newton_step`) and recomputes y, x and x~ with the graph; else the kernel's
        samples are returned as they are. Same samples and gradients as `forward_reference`.

        progress: optional callable(n_done) called every few thousand samples.
        """
        from . import fast

        u, theta, m, s, w, q0, grad = self._start(u, s0, teacher)
        batch, length, _ = u.shape
        r = m.K.shape[0]
        q0 = q0.numpy()
        prepared = fast.prepare(self, m, theta)
        w_np = as_numpy(w, F64)
        # segments: teacher resets, and pieces of at most 2^16 samples (progress, memory)
        cuts = {0, length}
        if teacher is not None and every:
            cuts |= set(range(every, length, every))
        cuts |= set(range(1 << 16, length, 1 << 16))
        cuts = sorted(cuts)
        ys, xs, iterations, failed = [], [], [], []
        diff = _Differentiable(self, m, theta, w) if grad else None
        for a, b in zip(cuts[:-1], cuts[1:]):
            if teacher is not None and every and a > 0 and a % every == 0:
                s = self.encode(teacher[:, a - 1])
            out = fast.run(self, prepared, w_np[:, a:b], as_numpy(s, F64), q0)
            if r:
                q0 = out.q[:, -1]
            iterations.append(out.iterations)
            failed.append(out.failed)
            if grad:
                y, x, s = diff.run(s, a, b, torch.from_numpy(out.q))
            else:
                y, x = torch.from_numpy(out.y)[..., None], torch.from_numpy(out.x)
                s = torch.from_numpy(out.s_final)
            ys.append(y)
            xs.append(x)
            if progress is not None:
                progress(b)
        iterations = np.concatenate(iterations, 1) if iterations else np.zeros((batch, 0))
        failed = np.concatenate(failed, 1) if failed else np.zeros((batch, 0), dtype=bool)
        self.last_iterations = float(iterations.max(0).sum()) / max(length, 1) if batch else 0.0
        failures = np.flatnonzero(failed.any(0)).tolist()
        self.last_failures = failures
        self._report_failures(failures, length)
        if not ys:
            return Trajectory(torch.zeros(batch, 0, 1, dtype=F64),
                              torch.zeros(batch, 0, self.n_states, dtype=F64), s)
        return Trajectory(torch.cat(ys, 1), torch.cat(xs, 1), s)

    def forward_reference(self, u: Tensor, s0: Tensor | None = None, teacher: Tensor | None = None,
                every: int = 0, progress=None) -> Trajectory:
        """`forward` as a plain torch loop over `newton.solve`: the reference semantics.

        Per sample: p = G x~ + H w, Newton (no grad) from the last sample's q, one
        differentiable `newton_step`, then y, x and x~ from the currents at that q. About
        15 small torch ops per Newton iteration, so milliseconds per sample; `forward` gives
        the same samples and gradients much faster, and the tests hold it to this loop.
        """
        u, theta, m, s, w, q_start, grad = self._start(u, s0, teacher)
        batch, length, _ = u.shape
        laws = self._laws(theta)
        junctions = self._junctions(theta)
        hw, ew, bw, esw = w @ m.H.T, w @ m.E.T, w @ m.B.T, w @ m.Es.T
        expand = self.numeric.expand
        r = m.K.shape[0]
        q = q_start if r else None
        ys, xs = [], []
        failures: list[int] = []
        total_iter = 0
        Kd = m.K.detach()
        for n in range(length):
            if teacher is not None and every and n > 0 and n % every == 0:
                s = self.encode(teacher[:, n - 1])
            if r:
                p = s @ m.G.T + hw[:, n]
                previous = q
                with torch.no_grad():
                    q, iters, ok = self._solve(q, p.detach(), Kd, laws, junctions)
                total_iter += int(iters.max())
                if not bool(ok.all()):
                    failures.append(n)
                    q = torch.where(ok[:, None], q, previous)
                qn = newton_step(q, p, m.K, laws, expand) if grad else q
                i = laws(qn @ expand.T)[0]
                y = s @ m.D.T + ew[:, n] + i @ m.F.T
                x = s @ m.Ds.T + esw[:, n] + i @ m.Fs.T
                s = s @ m.A.T + bw[:, n] + i @ m.C.T
            else:
                y = s @ m.D.T + ew[:, n]
                x = s @ m.Ds.T + esw[:, n]
                s = s @ m.A.T + bw[:, n]
            ys.append(y)
            xs.append(x)
            if progress is not None and n % 4096 == 4095:
                progress(n + 1)
        self.last_iterations = total_iter / max(length, 1)
        self.last_failures = failures
        self._report_failures(failures, length)
        return Trajectory(torch.stack(ys, 1), torch.stack(xs, 1), s)


class _Differentiable:
    """The autograd half of `NodalSolver.forward`: given Newton's converged q* per sample (from
    the kernel, no grad), y, x and x~ with the graph, sample by sample.

    One differentiable Newton step from q* (J detached, as `newton.newton_step`):
    qn = q* - J^-1 f,  f = q* - p - K i(Q q*),  p = G x~ + H w,
    and the currents at qn to first order, i(qn) = i(q*) + (di/dv) Q (qn - q*): the same value
    (qn - q* is below Newton's tolerance, so the remainder is of its square) and the same
    derivative (at the root, d i(qn)/dtheta = di/dtheta + (di/dv) Q dqn/dtheta). Everything that
    does not depend on x~ is evaluated for a piece of the signal at once (the laws and their
    Jacobians at q*, J^-1, c = q* - K i(Q q*) - H w), so that a sample costs a few torch ops:
        d = g + (H w - c)[n]      (= p - c = -f, with g = G x~)
        i = i*[n] + L[n] d        (L = (di/dv) Q J^-1)
        [y, x, x~', g'] = x~ [D; Ds; A; G A]^T + i [F; Fs; C; G C]^T + [E; Es; B; G B] w[n]
    """

    def __init__(self, solver: NodalSolver, m: DKMatrices, theta, w: Tensor):
        self.solver, self.m, self.theta = solver, m, theta
        self.r = m.K.shape[0]
        self.n_y, self.n_x, self.nx = m.D.shape[0], m.Ds.shape[0], m.A.shape[0]
        self.hw = w @ m.H.T
        rows_s, rows_i, rows_w = [m.D, m.Ds, m.A], [m.F, m.Fs, m.C], [m.E, m.Es, m.B]
        if self.r:
            rows_s.append(m.G @ m.A)
            rows_i.append(m.G @ m.C)
            rows_w.append(m.G @ m.B)
        self.k = w @ torch.cat(rows_w, 0).T              # [B, T, 1 + nxs + nx (+ r)]
        self.W_s = torch.cat(rows_s, 0).T
        self.W_i = torch.cat(rows_i, 0).T

    def run(self, s: Tensor, start: int, stop: int, q: Tensor):
        """Samples start..stop from canonical state s [B, nx], with q* [B, stop - start, r]."""
        m, numeric = self.m, self.solver.numeric
        batch = s.shape[0]
        outs = []
        a_s, b_s = self.n_y + self.n_x, self.n_y + self.n_x + self.nx
        W_s, W_i = self.W_s, self.W_i
        if not self.r:
            for k in self.k[:, start:stop].unbind(1):
                out = torch.addmm(k, s, W_s)
                outs.append(out)
                s = out[:, a_s:b_s]
        else:
            expand, r = numeric.expand, self.r
            n_ports = expand.shape[0]
            # pieces short enough that the per-piece tensors stay small
            piece = max(64, (1 << 21) // max(1, batch * n_ports * r))
            K_T = m.K.T
            Kd = m.K.detach()
            eye = torch.eye(r, dtype=F64)
            g = s @ m.G.T
            for a in range(0, stop - start, piece):
                b = min(a + piece, stop - start)
                qs = q[:, a:b]                                        # [B, L, r], no grad
                v = (qs @ expand.T).reshape(-1, n_ports)
                i_star = numeric.laws(v, self.theta)[0].view(batch, b - a, n_ports)
                with torch.no_grad():
                    jac = numeric.laws(v, [t.detach() for t in self.theta])[1]
                    jq = jac @ expand                                # [BL, ports, r]
                    L = (jq @ torch.linalg.inv(eye - Kd @ jq)).view(batch, b - a, n_ports, r)
                hwc = self.hw[:, start + a:start + b] - (qs - i_star @ K_T)   # H w - c
                k = self.k[:, start + a:start + b]
                if r == 1:
                    L1 = L[..., 0]
                    for hwc_n, i_n, L_n, k_n in zip(hwc.unbind(1), i_star.unbind(1),
                                                    L1.unbind(1), k.unbind(1)):
                        i = torch.addcmul(i_n, L_n, g + hwc_n)
                        out = torch.addmm(torch.addmm(k_n, s, W_s), i, W_i)
                        outs.append(out)
                        s, g = out[:, a_s:b_s], out[:, b_s:]
                else:
                    for hwc_n, i_n, L_n, k_n in zip(hwc.unbind(1), i_star.unbind(1),
                                                    L.unbind(1), k.unbind(1)):
                        d = (g + hwc_n).unsqueeze(-1)
                        i = torch.baddbmm(i_n.unsqueeze(-1), L_n, d).squeeze(-1)
                        out = torch.addmm(torch.addmm(k_n, s, W_s), i, W_i)
                        outs.append(out)
                        s, g = out[:, a_s:b_s], out[:, b_s:]
        out = torch.stack(outs, 1)
        return out[..., :self.n_y], out[..., self.n_y:a_s], s

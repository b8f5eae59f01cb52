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

from .dk import DKMatrices, NumericEquations
from .errors import ConvergenceError, SignalError
from .interface import StateSpaceModel, Trajectory
from .mna import Equations
from .newton import NewtonOptions, newton_step, solve
from . import devices

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
            raise KeyError(f"{name!r} is not a parameter of {self.eq.netlist.file}; known: "
                           f"{', '.join(self.names)}")
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

    def step(self, s: Tensor, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        traj = self.forward(u[:, None, :], s0=s)
        return traj.s_final, traj.y[:, 0], traj.x[:, 0]

    def simulate(self, u: Tensor, s0: Tensor | None = None, backend: str = "fast") -> Trajectory:
        """Run the circuit forward only on u [B, T, n_inputs] (volts) -> Trajectory.

        backend: "fast" (the compiled kernel of `fast.py`) or "torch" (`forward`, no grad);
        both give the same samples to round-off.
        """
        if backend == "fast":
            from . import fast
            return fast.simulate(self, u, s0)
        if backend == "torch":
            with torch.no_grad():
                return self.forward(u, s0)
        raise ValueError(f"backend must be 'fast' or 'torch', not {backend!r}")

    def forward(self, u: Tensor, s0: Tensor | None = None, teacher: Tensor | None = None,
                every: int = 0, progress=None) -> Trajectory:
        """Run the circuit on inputs u [B, T, n_inputs] (volts) -> Trajectory.

        progress: optional callable(n_done) called every few thousand samples.
        """
        self.check_inputs(u, teacher)
        u = u.to(F64)
        if not bool(torch.isfinite(u).all()):
            raise SignalError("the input contains NaN or infinite values")
        batch, length, _ = u.shape
        theta = self.theta()
        m = self.matrices()
        laws = self._laws(theta)
        junctions = self._junctions(theta)
        s = self.initial_state(batch, u[:, 0]) if s0 is None else s0.to(F64)
        w = self.source_values(u)
        hw, ew, bw, esw = w @ m.H.T, w @ m.E.T, w @ m.B.T, w @ m.Es.T
        expand = self.numeric.expand
        grad = torch.is_grad_enabled() and (
            any(t.requires_grad for t in theta) or s.requires_grad or u.requires_grad)
        r = m.K.shape[0]
        q = (s @ m.G.T + hw[:, 0]).detach() if r else None
        ys, xs = [], []
        failures: list[int] = []
        total_iter = 0
        Kd = m.K.detach()
        for n in range(length):
            if teacher is not None and every and n > 0 and n % every == 0:
                s = self.encode(teacher[:, n - 1])
            if r:
                p = s @ m.G.T + hw[:, n]
                with torch.no_grad():
                    q, iters, ok = self._solve(q, p.detach(), Kd, laws, junctions)
                total_iter += int(iters.max())
                if not bool(ok.all()):
                    failures.append(n)
                    q = torch.where(ok[:, None], q, p.detach())
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
        if failures:
            message = (f"Newton did not converge at {len(failures)} of {length} samples (first "
                       f"at sample {failures[0]}); lower the input level, oversample, or "
                       "raise the iteration limit")
            if self.strict:
                raise ConvergenceError(message, failures)
            warnings.warn(message, stacklevel=2)
        return Trajectory(torch.stack(ys, 1), torch.stack(xs, 1), s)

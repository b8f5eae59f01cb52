"""The white-box solver: the circuit's DK state space solved sample by sample in torch.

`NodalSolver` is a `StateSpaceModel` whose internal state is the trapezoidal rule's canonical
state x~ (one per capacitor/inductor, then one per nonlinear junction or diffusion charge: its
history, `dk.py`) and whose exposed states are the capacitor voltages, inductor currents and
charges (coulombs). It runs batched `[batch, time, inputs]` in float64, starts from the DC
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

from . import fast
from .arrays import as_numpy
from .diagnostics import Diagnostics, SolverTrajectory
from .dk import DKMatrices, NumericEquations
from .errors import (ConvergenceError, NonFiniteOutputError, SignalError, UnknownBackendError,
                     UnknownParameterError)
from .interface import StateSpaceModel
from .mna import Equations
from .netlist import check_values
from .newton import (GMIN_STEPS, HOMOTOPY_STEPS, NewtonOptions, ladder_options,
                     line_search_level, newton_step, predict, shunted, solve_with_jacobian)

F64 = torch.float64
BACKENDS = ("fast", "torch")


def _safe(name: str) -> str:
    return name.replace(".", "__").replace("#", "_")


class NodalSolver(StateSpaceModel):
    """Solve `equations` at `sample_rate` (Hz).

    values: overrides of parameter defaults, by name (`{"r1": 3.3e3, "drive": 1.0}`).
    trainable: names of parameters to expose as `nn.Parameter`s (float64, SI units).
    strict: raise `ConvergenceError` if Newton fails at any sample even with the fallback
    ladder of `newton.py` (else warn).
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
        self.fixed_sources = equations.sources[self.n_inputs:]

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
        fixed = self._fixed_theta()
        if fixed is not None:
            return list(fixed)
        out = list(self.fixed_values.unbind(0))          # views, as `value` gives them
        if len(self.trainable):
            for k, name in enumerate(self.names):
                safe = _safe(name)
                if safe in self.trainable:
                    out[k] = self.trainable[safe]
        out.append(torch.tensor(1.0 / self.sample_rate, dtype=F64))
        if not len(self.trainable):
            self._theta_views = (self.fixed_values, self.sample_rate, tuple(out))
        return out

    def _fixed_theta(self) -> tuple[Tensor, ...] | None:
        """theta as last built where no value is trainable: views of `fixed_values`, which
        follow its in-place changes (`set_value`, `load_state_dict`); None where it must be
        built (a trainable value, another `fixed_values` tensor or sample rate)."""
        cached = getattr(self, "_theta_views", None)
        if (cached is None or len(self.trainable) or cached[0] is not self.fixed_values
                or cached[1] != self.sample_rate):
            return None
        return cached[2]

    def _values_key(self, theta) -> tuple:
        """What the values in theta are, to key the caches of what is computed from them: where
        theta is `_fixed_theta`'s views, the bytes of `fixed_values` and the sample rate (a
        short call does not read 30 scalars one by one); else every value."""
        fixed = self._fixed_theta()
        if fixed is not None and len(theta) == len(fixed) and all(
                a is b for a, b in zip(theta, fixed, strict=True)):
            return (self.fixed_values.detach().numpy().tobytes(), self.sample_rate)
        return tuple(float(t.detach()) for t in theta)

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

    def _solve(self, q0, p, K, laws, theta_j, options=None, line_search: bool = False):
        """(q, iterations, converged, last Jacobian): `newton.solve_with_jacobian`."""
        return solve_with_jacobian(q0, p, K, laws, self.numeric.expand,
                                   self.numeric.junction_ports, *theta_j, options or self.newton,
                                   line_search=line_search)

    def _level_theta(self, theta, level: int):
        """theta with the sample period T / 2^level (the fallback's substeps)."""
        return list(theta[:-1]) + [theta[-1] / (1 << level)]

    # -- the interface --------------------------------------------------------------------
    def initial_state(self, batch: int, u0: Tensor | None = None) -> Tensor:
        """The DC operating point's canonical state [B, n_states], inputs held at u0 [B, inputs]."""
        return self._operating_point(batch, u0)[0]

    def _operating_point(self, batch: int, u0: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(canonical state [B, n_states], Newton's port coordinates [B, r]) where the
        transient starts: the DC operating point, or the netlist's initial conditions (`.ic`,
        `IC=` with `uic`) as SPICE takes them (`nodal.initial`)."""
        if u0 is None:
            u0 = torch.zeros(batch, self.n_inputs, dtype=F64)
        if self.eq.netlist.initial:
            from . import initial

            return initial.start(self, batch, u0)
        return self._plain_operating_point(batch, u0)

    def _plain_operating_point(self, batch: int, u0: Tensor) -> tuple[Tensor, Tensor]:
        """(canonical state [B, n_states], Newton's port coordinates [B, r]) at DC; cached
        while the values, the sample rate, the inputs u0 and Newton's tolerances stay, where
        no graph is needed (a render or a bench calls it again with the same values)."""
        theta = self.theta()
        if torch.is_grad_enabled() and (u0.requires_grad or any(t.requires_grad for t in theta)):
            return self._solve_operating_point(batch, u0, theta)
        u0 = u0.detach().to(F64)
        key = (self._values_key(theta), self.sample_rate, u0.numpy().tobytes(), batch,
               float(self.newton.abstol), float(self.newton.reltol), self.newton.stopping,
               torch.is_grad_enabled())
        cached = getattr(self, "_dc_cache", None)
        if cached is None or cached[0] != key or cached[1] is not self.numeric:
            cached = self._dc_cache = (key, self.numeric,
                                       self._solve_operating_point(batch, u0, theta))
        s, q = cached[2]
        return s.clone(), q.clone()

    def _solve_operating_point(self, batch: int, u0: Tensor, theta) -> tuple[Tensor, Tensor]:
        w0 = self.source_values(u0.to(F64)[:, None, :])[:, 0]
        dc = self.numeric.dc_matrices(theta)
        laws = self._laws(theta)
        junctions = self._junctions(theta)
        r = dc.H.shape[0]
        if r == 0:
            return w0 @ dc.Xw.T, torch.zeros(batch, 0, dtype=F64)
        p_full = w0 @ dc.H.T
        with torch.no_grad():
            options = NewtonOptions(max_iter=200, abstol=self.newton.abstol,
                                    reltol=self.newton.reltol, stopping=self.newton.stopping)
            q, _, ok, _ = self._solve(torch.zeros_like(p_full), p_full, dc.K, laws, junctions,
                                   options)
            if not bool(ok.all()):
                # source stepping, as SPICE does when the direct operating point fails
                q = torch.zeros_like(p_full)
                for lam in np.linspace(0.05, 1.0, 40):
                    q, _, ok, _ = self._solve(q, lam * p_full.detach(), dc.K.detach(), laws,
                                           junctions, options)
            if not bool(ok.all()):
                raise ConvergenceError(
                    "no DC operating point: Newton did not converge even with source stepping; "
                    "check the supply and the device models", samples=[0])
        ports = q.detach()
        if torch.is_grad_enabled():
            q = newton_step(q, p_full, dc.K, laws, self.numeric.expand)
        i = laws(q @ self.numeric.expand.T)[0]
        return w0 @ dc.Xw.T + i @ dc.Xi.T, ports

    def encode(self, x: Tensor) -> Tensor:
        """Circuit states -> canonical state, for a circuit at rest (capacitor currents zero).

        x~ = (2C/T) v_C for a capacitor (its current is taken as zero), x~ = i_L for an inductor,
        h = (2/T) q for a nonlinear charge q.
        """
        return x.to(F64) * self._state_scale(self.theta())

    def _state_scale(self, theta) -> Tensor:
        """x~ / x per state (2C/T for a capacitor, 1 for an inductor); cached while the values
        stay, where none needs a graph."""
        def scale():
            g = self.numeric.reactive_g(theta)
            return torch.where(self.numeric.is_inductor, torch.ones_like(g), g)

        if any(t.requires_grad for t in theta):
            return scale()
        key = self._values_key(theta)
        cached = getattr(self, "_scale_cache", None)
        if cached is None or cached[0] != key:
            cached = self._scale_cache = (key, scale())
        return cached[1]

    def _report(self, diagnostics: Diagnostics) -> None:
        """Raise `ConvergenceError` (strict: at the first sample where even the fallbacks
        failed, as SPICE stops at its first failed time point) or warn naming every such
        sample: never hand back NaNs silently."""
        if not diagnostics.failed.any():
            return
        failures = diagnostics.failures
        if not failures:
            return
        if self.strict:
            raise self._failed_at(failures[0])
        warnings.warn(f"Newton did not converge at {len(failures)} of {diagnostics.length} "
                      f"samples (first at sample {failures[0]}), even with a line search, in "
                      f"{1 << self.newton.substep_levels} substeps and with gmin and source "
                      "stepping; their outputs hold the previous sample's solution",
                      stacklevel=3)

    def _failed_at(self, sample: int) -> ConvergenceError:
        return ConvergenceError(
            f"Newton did not converge at sample {sample}, even with a line search, in "
            f"{1 << self.newton.substep_levels} substeps and with gmin and source stepping: "
            "stopped there; check the component values, or oversample, or raise the "
            "iteration limit", [sample])

    @staticmethod
    def _check_finite(y: Tensor, x: Tensor, offset: int = 0) -> None:
        """A non-finite output sample is a `NonFiniteOutputError` naming it, never a NaN file."""
        y_np, x_np = y.detach().numpy(), x.detach().numpy()
        if np.isfinite(y_np.sum()) and np.isfinite(x_np.sum()):
            return      # one pass each (a sum is finite only if every term is, barring overflow)
        bad = torch.from_numpy(~np.isfinite(y_np).all(-1))
        if x.shape[-1]:
            bad = bad | torch.from_numpy(~np.isfinite(x_np).all(-1))
        if bool(bad.any()):
            where = torch.nonzero(bad.any(0)).flatten()
            raise NonFiniteOutputError(
                f"the solver's output is not finite at {len(where)} samples (first at sample "
                f"{int(where[0]) + offset}): a component value far outside its range, or a "
                "circuit without a stable solution", [int(k) + offset for k in where])

    def step(self, s: Tensor, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        traj = self.forward(u[:, None, :], s0=s)
        return traj.s_final, traj.y[:, 0], traj.x[:, 0]

    def simulate(self, u: Tensor, s0: Tensor | None = None, backend: str = "fast",
                 progress=None) -> SolverTrajectory:
        """Run the circuit forward only on u [B, T, n_inputs] (volts) -> SolverTrajectory
        (y, x, s_final and `.diagnostics`). The one place a backend is chosen:

        "fast": the compiled kernel of `fast.py` (`forward` without autograd); "torch":
        `forward_reference`, the plain torch loop over `newton.solve` (slow). Both give the
        same samples to round-off and the same diagnostics.
        """
        if backend not in BACKENDS:
            raise UnknownBackendError(f"backend must be 'fast' or 'torch', not {backend!r}")
        with torch.no_grad():
            if backend == "torch":
                return self.forward_reference(torch.as_tensor(u), s0, progress=progress)
            return self.forward(torch.as_tensor(u), s0, progress=progress)

    def _start(self, u: Tensor, s0: Tensor | None, teacher: Tensor | None,
               reads_kernel: bool = False):
        """What both loops begin with: checked float64 inputs, theta, the DK matrices (None
        where `forward` reads the kernel's arrays and no graph is needed), every source's
        value w, and a `fast.Start` in torch: the starting state (the operating point unless
        s0), the exposed states before it (those of a circuit at rest), the sources before it
        (held at the first sample's), and where Newton starts (the operating point's port
        voltages, zeros when s0 is given); and whether autograd needs the differentiable
        step. Newton starts not from the linear prediction p: where a node is
        reached only through a junction, p is of the order of I / GMIN, megavolts.
        """
        self.check_inputs(u, teacher)
        u = u.to(F64)
        if not np.isfinite(u.detach().numpy().sum()) and not bool(torch.isfinite(u).all()):
            raise SignalError("the input contains NaN or infinite values")
        batch = u.shape[0]
        theta = self.theta()
        r = len(self.eq.reduced)
        if s0 is None:
            s, q = self._operating_point(batch, u[:, 0])
        else:
            s, q = s0.to(F64), torch.zeros(batch, r, dtype=F64)
        w = self.source_values(u)
        grad = torch.is_grad_enabled() and (
            any(t.requires_grad for t in theta) or s.requires_grad or w.requires_grad)
        # the DK matrices in torch: for the graph, or for the torch loop; `forward` without
        # autograd reads the kernel's numpy arrays (cached while the values stay) instead, so
        # a short call (a block of a stream) does not rebuild them
        m = self.matrices() if grad or not reads_kernel else None
        x_prev = s / self._state_scale(theta)
        start = fast.Start(s=s, x=x_prev, w=w[:, 0], q=q.detach(), q_before=q.detach(), p=None)
        return u, theta, m, w, start, grad

    def _kernel_arrays(self, theta) -> fast.KernelArrays:
        """The kernel's constant arrays at these values (cached while the values stay)."""
        levels = min(int(self.newton.substep_levels), fast.MAX_LEVELS)
        key = (self._values_key(theta), levels)
        cached = getattr(self, "_arrays_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        values = tuple(float(t.detach()) for t in theta)
        detached = [t.detach() for t in theta]
        with torch.no_grad():
            per_level = [self.numeric.matrices(self._level_theta(detached, lev))
                         for lev in range(levels + 1)]
            stacked = {name: as_numpy(torch.stack([getattr(mk, name) for mk in per_level]),
                                      F64)
                       for name in fast.KernelArrays.MATRICES}
            arrays = fast.KernelArrays(
                **stacked, gx=as_numpy(self.numeric.reactive_g(detached), F64),
                is_ind=self.numeric.is_inductor.numpy().astype(np.bool_),
                expand=as_numpy(self.numeric.expand, F64),
                jports=np.asarray(self.numeric.junction_ports, dtype=np.int64),
                theta=np.array(values))
        self._arrays_cache = (key, arrays)
        return arrays

    def _kernel(self, arrays: fast.KernelArrays) -> fast.Kernel:
        """The compiled kernel of this circuit split into the blocks its couplings at these
        values allow (`fast.layout`; the same kernel while the couplings' pattern stays)."""
        cached = getattr(self, "_compiled", None)
        if cached is None or cached[0] is not self.eq:
            cached = (self.eq, {})
            self._compiled = cached
        split = bool(getattr(self.newton, "split", True))
        last = getattr(self, "_last_kernel", None)
        if last is not None and last[0] is arrays and last[1] == split and last[2] is self.eq:
            return last[3]      # the same values as the last call: the same split
        key = (split, fast.couplings(arrays.K).tobytes())
        if key not in cached[1]:
            plan = fast.layout(self.eq, arrays.K) if split else fast.one_block(self.eq)
            cached[1][key] = fast.kernel(self.eq, plan)
        self._last_kernel = (arrays, split, self.eq, cached[1][key])
        return cached[1][key]

    def forward(self, u: Tensor, s0: Tensor | None = None, teacher: Tensor | None = None,
                every: int = 0, progress=None) -> SolverTrajectory:
        """Run the circuit on inputs u [B, T, n_inputs] (volts) -> SolverTrajectory.

        Newton runs in the compiled kernel of `fast.py` (no grad), for the whole signal. If
        autograd needs it (a trainable value, or s0 or u requiring grad), torch then takes one
        differentiable Newton step from each converged q (the implicit function theorem, as
        `newton.newton_step`) and recomputes y, x and x~ with the graph (a sample the kernel
        solved in substeps is solved in the same substeps in torch); else the kernel's
        samples are returned as they are. Same samples and gradients as `forward_reference`.

        progress: optional callable(n_done) called every few thousand samples.
        """
        u, theta, m, w, start, grad = self._start(u, s0, teacher, reads_kernel=True)
        batch, length, _ = u.shape
        r = len(self.eq.reduced)
        arrays = self._kernel_arrays(theta)
        kernel_run = self._kernel(arrays)
        w_np = as_numpy(w, F64)
        # segments: teacher resets, and pieces of at most 2^16 samples for progress, and with
        # autograd for memory
        cuts = {0, length}
        if teacher is not None and every:
            cuts |= set(range(every, length, every))
        if progress is not None or grad:
            cuts |= set(range(1 << 16, length, 1 << 16))
        cuts = sorted(cuts)
        ys, xs, parts = [], [], []
        diff = _Differentiable(self, m, theta, w) if grad else None
        s, x_prev = start.s, start.x
        here = fast.Start(s=as_numpy(s, F64), x=as_numpy(start.x, F64),
                          w=as_numpy(start.w, F64), q=as_numpy(start.q, F64),
                          q_before=as_numpy(start.q_before, F64), p=None)
        for a, b in zip(cuts[:-1], cuts[1:], strict=True):
            if teacher is not None and every and a > 0 and a % every == 0:
                s = self.encode(teacher[:, a - 1])
                x_prev = teacher[:, a - 1].to(F64)
                here.x = as_numpy(x_prev, F64)
            here.s = as_numpy(s, F64)
            out = fast.run(kernel_run, arrays, w_np[:, a:b], here, self.newton, keep_q=grad)
            parts.append(Diagnostics(out.iterations, out.level, out.failed))
            if grad:
                y, x, s = diff.run(s, x_prev, a, b, out, here)
            else:
                y, x = torch.from_numpy(out.y)[..., None], torch.from_numpy(out.x)
                s = torch.from_numpy(out.s_final)
            here = fast.Start(s=None, x=out.x[:, -1], w=w_np[:, b - 1],
                              q=out.q_last if r else here.q,
                              q_before=(out.q_before if b - a > 1 else here.q) if r else here.q,
                              p=out.p_last, jac=out.jac_last)
            x_prev = x[:, -1]
            ys.append(y)
            xs.append(x)
            if progress is not None:
                progress(b)
        diagnostics = parts[0] if len(parts) == 1 else Diagnostics.concatenate(parts, batch)
        self._report(diagnostics)
        if not ys:
            return SolverTrajectory(torch.zeros(batch, 0, 1, dtype=F64),
                                    torch.zeros(batch, 0, self.n_states, dtype=F64), s,
                                    diagnostics)
        y, x = (ys[0], xs[0]) if len(ys) == 1 else (torch.cat(ys, 1), torch.cat(xs, 1))
        self._check_finite(y, x)
        return SolverTrajectory(y, x, s, diagnostics)

    # -- the torch ladder (the reference semantics of fast.py's) ---------------------------
    def _substeps(self, level: int, theta, s, x_prev, w_prev, w_n, q_start, grad: bool):
        """Sample n again in k = 2^level trapezoidal substeps from canonical state s, the
        previous exposed states x_prev and sources w_prev, to w_n (all [B, .]); Newton from
        q_start. Returns (y [B, 1], x, s_new, q, iterations [B], converged [B], the last
        Jacobian of each item's Newton)."""
        k = 1 << level
        rung = ladder_options(self.newton)
        mk = self.numeric.matrices(self._level_theta(theta, level))
        laws = self._laws(theta)
        junctions = self._junctions(theta)
        expand = self.numeric.expand
        g = self.numeric.reactive_g(theta)
        ind = self.numeric.is_inductor
        ss = torch.where(ind, x_prev + (s - x_prev) / k, s + (k - 1) * g * x_prev)
        q = q_start
        alive = torch.ones(q.shape[0], dtype=torch.bool)
        iterations = torch.zeros(q.shape[0], dtype=torch.long)
        Kd = mk.K.detach()
        jac_last = None
        for j in range(k):
            wsub = w_n if j == k - 1 else w_prev + ((j + 1) / k) * (w_n - w_prev)
            p = ss @ mk.G.T + wsub @ mk.H.T
            with torch.no_grad():
                q, it, ok, jac = self._solve(q, p.detach(), Kd, laws, junctions, rung)
            jac_last = jac if jac_last is None else torch.where(alive[:, None, None], jac,
                                                                jac_last)
            iterations += it * alive
            alive = alive & ok
            q = torch.where(alive[:, None], q, q_start)
            qn = newton_step(q, p, mk.K, laws, expand) if grad else q
            i = laws(qn @ expand.T)[0]
            y = ss @ mk.D.T + wsub @ mk.E.T + i @ mk.F.T
            x = ss @ mk.Ds.T + wsub @ mk.Es.T + i @ mk.Fs.T
            ss = ss @ mk.A.T + wsub @ mk.B.T + i @ mk.C.T
        s_new = torch.where(ind, x + k * (ss - x), ss - (k - 1) * g * x)
        return y, x, s_new, q, iterations, alive, jac_last

    def _continuation(self, theta, p, K, q_start):
        """Gmin stepping, then source stepping, at the full step, as `fast._continuation`.
        Returns (q, iterations [B], level [B], converged [B], last Jacobian)."""
        laws = self._laws(theta)
        junctions = self._junctions(theta)
        rung = ladder_options(self.newton)
        batch = q_start.shape[0]
        iterations = torch.zeros(batch, dtype=torch.long)
        q, gmin_ok = q_start, torch.ones(batch, dtype=torch.bool)
        jac_g = None
        for g in GMIN_STEPS:
            q, it, ok, jac = self._solve(q, p, K, shunted(laws, g, self.numeric.charge_mask),
                                         junctions, rung)
            jac_g = jac if jac_g is None else torch.where(gmin_ok[:, None, None], jac, jac_g)
            iterations += it * gmin_ok
            gmin_ok = gmin_ok & ok
        i = laws(q_start @ self.numeric.expand.T)[0]
        p0 = q_start - i @ K.T
        q2, alive, jac_h = q_start, ~gmin_ok, None
        for j in range(1, HOMOTOPY_STEPS + 1):
            pl = p if j == HOMOTOPY_STEPS else p0 + (j / HOMOTOPY_STEPS) * (p - p0)
            q2, it, ok, jac = self._solve(q2, pl, K, laws, junctions, rung)
            jac_h = jac if jac_h is None else torch.where(alive[:, None, None], jac, jac_h)
            iterations += it * alive
            alive = alive & ok
        top = fast.MAX_LEVELS
        level = torch.where(gmin_ok, top + 1, torch.where(alive, top + 2, 0))
        return (torch.where(gmin_ok[:, None], q, q2), iterations, level, gmin_ok | alive,
                torch.where(gmin_ok[:, None, None], jac_g, jac_h))

    def forward_reference(self, u: Tensor, s0: Tensor | None = None,
                          teacher: Tensor | None = None, every: int = 0,
                          progress=None) -> SolverTrajectory:
        """`forward` as a plain torch loop over `newton.solve`: the reference semantics.

        Per sample: p = G x~ + H w, Newton (no grad) from the predicted q (`newton.predict`), one
        differentiable `newton_step`, then y, x and x~ from the currents at that q; where
        Newton fails, the fallback ladder of `newton.py`. About 15 small torch ops per Newton
        iteration, so milliseconds per sample; `forward` gives the same samples and gradients
        much faster, and the tests hold it to this loop.
        """
        u, theta, m, w, start, grad = self._start(u, s0, teacher)
        batch, length, _ = u.shape
        laws = self._laws(theta)
        junctions = self._junctions(theta)
        hw, ew, bw, esw = w @ m.H.T, w @ m.E.T, w @ m.B.T, w @ m.Es.T
        expand = self.numeric.expand
        r = m.K.shape[0]
        s, x_prev, w_prev = start.s, start.x, start.w
        q1, q2 = start.q, start.q_before
        p_prev, jac_prev = None, None
        ys, xs, iterations, levels, failed = [], [], [], [], []
        Kd = m.K.detach()
        zeros = torch.zeros(batch, dtype=torch.long)
        for n in range(length):
            if teacher is not None and every and n > 0 and n % every == 0:
                s = self.encode(teacher[:, n - 1])
                x_prev = teacher[:, n - 1].to(F64)
            level, bad = zeros, torch.zeros(batch, dtype=torch.bool)
            if r:
                p = s @ m.G.T + hw[:, n]
                q_start = predict(q1, q2, p.detach(), p_prev, Kd, jac_prev, expand,
                                  self.newton.predictor, self.numeric.junction_ports,
                                  *junctions)
                with torch.no_grad():
                    q, its, ok, jac_n = self._solve(q_start, p.detach(), Kd, laws, junctions)
                sub = None
                if not bool(ok.all()):
                    with torch.no_grad():
                        q, its, level, ok, sub, jac_n = self._ladder(
                            theta, s, x_prev, w_prev, w[:, n], p.detach(), Kd, q, q1, its, ok,
                            jac_n)
                    if sub is not None and grad:
                        sub = self._ladder_outputs(theta, s, x_prev, w_prev, w[:, n], q1,
                                                   level)
                    bad = ~ok
                    q = torch.where(bad[:, None], q1, q)
                    if bool(bad.any()):
                        jac_n = torch.where(bad[:, None, None], laws(q1 @ expand.T)[1], jac_n)
                qn = newton_step(q, p, m.K, laws, expand) if grad else q
                i = laws(qn @ expand.T)[0]
                jac_prev = jac_n.detach()
                y = s @ m.D.T + ew[:, n] + i @ m.F.T
                x = s @ m.Ds.T + esw[:, n] + i @ m.Fs.T
                s_new = s @ m.A.T + bw[:, n] + i @ m.C.T
                if sub is not None:
                    take = ((level >= 1) & (level <= fast.MAX_LEVELS))[:, None]
                    y, x, s_new = (torch.where(take, a, b)
                                   for a, b in zip(sub, (y, x, s_new), strict=True))
                q2, q1 = q1, q
                p_prev = p.detach()
                iterations.append(its)
            else:
                y = s @ m.D.T + ew[:, n]
                x = s @ m.Ds.T + esw[:, n]
                s_new = s @ m.A.T + bw[:, n]
                iterations.append(zeros)
            levels.append(level)
            failed.append(bad)
            if self.strict and bool(bad.any()):
                raise self._failed_at(n)      # as `_report` would at the end, without the wait
            s, x_prev, w_prev = s_new, x, w[:, n]
            ys.append(y)
            xs.append(x)
            if progress is not None and n % 4096 == 4095:
                progress(n + 1)
        diagnostics = Diagnostics(
            torch.stack(iterations, 1).numpy() if iterations else np.zeros((batch, 0), int),
            torch.stack(levels, 1).numpy().astype(np.int8) if levels
            else np.zeros((batch, 0), np.int8),
            torch.stack(failed, 1).numpy() if failed else np.zeros((batch, 0), bool))
        self._report(diagnostics)
        if not ys:
            return SolverTrajectory(torch.zeros(batch, 0, 1, dtype=F64),
                                    torch.zeros(batch, 0, self.n_states, dtype=F64), s,
                                    diagnostics)
        y, x = torch.stack(ys, 1), torch.stack(xs, 1)
        self._check_finite(y, x)
        return SolverTrajectory(y, x, s, diagnostics)

    def _ladder(self, theta, s, x_prev, w_prev, w_n, p, K, q, q_prev, its, ok, jac):
        """The fallback ladder for the items where the full step's Newton failed (no grad):
        Newton with the line search, the substeps, the continuation (`newton.py`). Returns
        (q, iterations, level, converged, substep outputs (y, x, s_new) or None, the last
        Jacobian)."""
        batch = q.shape[0]
        need = ~ok
        level = torch.zeros(batch, dtype=torch.long)
        sub = None
        # rung 1: Newton with the line search at the full step, from the previous solution
        q_l, it_l, ok_l, jac_l = self._solve(q_prev, p, K, self._laws(theta),
                                             self._junctions(theta), ladder_options(self.newton),
                                             line_search=True)
        jac = torch.where(need[:, None, None], jac_l, jac)
        its = its + it_l * need
        take = need & ok_l
        q = torch.where(take[:, None], q_l, q)
        level = torch.where(take, line_search_level(), level)
        need = need & ~ok_l
        for lev in range(1, min(int(self.newton.substep_levels), fast.MAX_LEVELS) + 1):
            if not bool(need.any()):
                break
            y_l, x_l, s_l, q_l, it_l, ok_l, jac_l = self._substeps(
                lev, theta, s, x_prev, w_prev, w_n, q_prev, False)
            jac = torch.where(need[:, None, None], jac_l, jac)
            its = its + it_l * need
            take = need & ok_l
            if bool(take.any()):
                t = take[:, None]
                sub = (y_l, x_l, s_l) if sub is None else tuple(
                    torch.where(t, a, b) for a, b in zip((y_l, x_l, s_l), sub, strict=True))
                q = torch.where(t, q_l, q)
                level = torch.where(take, lev, level)
            need = need & ~ok_l
        if bool(need.any()):
            q_c, it_c, lev_c, ok_c, jac_c = self._continuation(theta, p, K, q_prev)
            jac = torch.where(need[:, None, None], jac_c, jac)
            its = its + it_c * need
            take = need & ok_c
            q = torch.where(take[:, None], q_c, q)
            level = torch.where(take, lev_c, level)
            need = need & ~ok_c
        return q, its, level, ~need, sub, jac

    def _ladder_outputs(self, theta, s, x_prev, w_prev, w_n, q_prev, level):
        """(y, x, s_new) with the graph for the items solved in substeps, at their level."""
        out = None
        for lev in sorted(set(level.tolist())):
            if not 1 <= lev <= fast.MAX_LEVELS:
                continue
            y_l, x_l, s_l, *_ = self._substeps(lev, theta, s, x_prev, w_prev, w_n, q_prev, True)
            t = (level == lev)[:, None]
            out = (y_l, x_l, s_l) if out is None else tuple(
                torch.where(t, a, b) for a, b in zip((y_l, x_l, s_l), out, strict=True))
        return out


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
        self.w = w
        rows_s, rows_i, rows_w = [m.D, m.Ds, m.A], [m.F, m.Fs, m.C], [m.E, m.Es, m.B]
        if self.r:
            rows_s.append(m.G @ m.A)
            rows_i.append(m.G @ m.C)
            rows_w.append(m.G @ m.B)
        self.k = w @ torch.cat(rows_w, 0).T              # [B, T, 1 + nxs + nx (+ r)]
        self.W_s = torch.cat(rows_s, 0).T
        self.W_i = torch.cat(rows_i, 0).T

    def run(self, s: Tensor, x_prev: Tensor, start: int, stop: int, out, here):
        """Samples start..stop from canonical state s [B, nx] (and the exposed states before
        it, x_prev), given the kernel's `fast.Run` `out` of them and the `fast.Start` it began
        from (numpy)."""
        m, numeric = self.m, self.solver.numeric
        batch = s.shape[0]
        outs = []
        a_s, b_s = self.n_y + self.n_x, self.n_y + self.n_x + self.nx
        W_s, W_i = self.W_s, self.W_i
        q = torch.from_numpy(out.q)
        top = fast.MAX_LEVELS
        in_substeps = (out.level >= 1) & (out.level <= top)          # [B, L] numpy
        special = in_substeps.any(0)
        if not self.r:
            for k in self.k[:, start:stop].unbind(1):
                row = torch.addmm(k, s, W_s)
                outs.append(row)
                s = row[:, a_s:b_s]
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
                for n, (hwc_n, i_n, L_n, k_n) in enumerate(zip(
                        hwc.unbind(1), i_star.unbind(1), L.unbind(1), k.unbind(1), strict=True),
                        start=a):
                    d = g + hwc_n
                    if r == 1:
                        i = torch.addcmul(i_n, L_n[..., 0], d)
                    else:
                        i = torch.baddbmm(i_n.unsqueeze(-1), L_n, d.unsqueeze(-1)).squeeze(-1)
                    row = torch.addmm(torch.addmm(k_n, s, W_s), i, W_i)
                    if special[n]:
                        row = self._substep_row(row, s, x_prev, n, start, out, here,
                                                in_substeps[:, n])
                    outs.append(row)
                    s, g = row[:, a_s:b_s], row[:, b_s:]
                    x_prev = row[:, self.n_y:a_s]
        rows = torch.stack(outs, 1)
        return rows[..., :self.n_y], rows[..., self.n_y:a_s], s

    def _substep_row(self, row, s, x_prev, n, start, out, here, mask):
        """Sample `start + n` for the items the kernel solved in substeps: the same substeps in
        torch, with the graph (`NodalSolver._substeps`), in place of the full step's row."""
        solver, m = self.solver, self.m
        w_n = self.w[:, start + n]
        w_prev = self.w[:, max(start + n - 1, 0)]     # before the first sample: held there
        q_prev = torch.from_numpy(out.q[:, n - 1] if n else np.asarray(here.q, np.float64))
        levels = out.level[:, n]
        for lev in sorted(set(levels[mask].tolist())):
            y, x, s_new, *_ = solver._substeps(lev, self.theta, s, x_prev, w_prev, w_n, q_prev,
                                               True)
            sub = torch.cat([y, x, s_new, s_new @ m.G.T], 1)
            take = torch.from_numpy(levels == lev)[:, None]
            row = torch.where(take, sub, row)
        return row

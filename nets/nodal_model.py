"""`nodal`: the circuit's own torch solver as a trainable model, the structured baseline.

The chosen component values / parameters p are trained as log p (always positive, updated in
relative steps) and start away from the circuit's values: p0 = p_true * f (`start_factor`,
2 by default: every value doubled, so that R and C cannot cancel in RC), unless `start`
gives them. Everything else is `nodal.NodalSolver`: float64, DK equations, Newton with
gradients by the implicit function theorem.

Not every set of values is identifiable: the diode clipper's output depends on R1 C1 and
IS / C1 only, so along R1 / a, C1 a, IS a the loss is flat and a run stops wherever the
optimiser's path leaves it (Adam from an equal start factor: near the true values, by luck of
the path). `unseen_directions` names such combinations; a run writes them to its info.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

import nodal
from nodal.interface import Trajectory

from .base import NeuralModel


class _Exp(nn.Module):
    def forward(self, log_value: Tensor) -> Tensor:
        return torch.exp(log_value)

    def right_inverse(self, value: Tensor) -> Tensor:
        return torch.log(value)


def default_trainable(solver: nodal.NodalSolver) -> list[str]:
    """Every R, C and L value and every device saturation current IS of the circuit."""
    names = solver.names
    inputs = {s.lower() for s in solver.eq.input_names}
    elements = [n for n in names if n[:1] in "rcl" and "." not in n and n not in inputs]
    return elements + [n for n in names if n.endswith(".is")]


class NodalModel(NeuralModel):
    """The solver of `circuit` (a built-in name or a netlist path) with trainable values.

    knobs: `.param` names whose values arrive as the last input channels (after the solver's
    own inputs): each run sets them as the solver's parameters, piece by piece where they
    change, so the model stays the physical circuit (a knob that only shapes a control
    waveform is already in the control channel). Knobs are never trained."""

    # The solver's state is the trapezoidal rule's companion history, which capacitor
    # voltages alone do not fix (it also holds the capacitor currents): its `encode` assumes a
    # circuit at rest, so resets would measure that assumption, not exposure bias.
    reset_sweep = False
    fast_path = "solver"
    circuit_bound = True
    tiny: dict = {}
    tiny_fit: dict = {"segment": 64, "window": 0, "warmup": 4, "lr": 0.05, "steps": 6}
    # warmup: each segment starts from `encode(x_prev)`, which takes the capacitor currents as
    # zero; the wrong history rings out (trapezoidal, nearly -1 per sample while a diode
    # conducts hard) before the loss starts. 16 samples left a loss of 1e-6..1e-5 at the true
    # values on the drive-stage clipper at gain 5 (1e-11 on the plain clipper); 64 leave < 1e-11.
    defaults = dict(window=0, state_weight=1.0, epochs=12, segment=128, batch=128, lr=5e-2,
                    warmup=64, steps_per_epoch=10)

    def __init__(self, n_inputs: int, n_states: int, sample_rate: float = 48000.0,
                 circuit: str = "diode_clipper", trainable: list[str] | None = None,
                 start: dict[str, float] | None = None, start_factor: float = 2.0,
                 values: dict[str, float] | None = None, scaling: dict | None = None,
                 knobs: list[str] | None = None):
        super().__init__(n_inputs, n_states, sample_rate, scaling)  # scaling: the state loss
        self.double()
        self.circuit = circuit
        self.solver = nodal.load(circuit, sample_rate=sample_rate, **(values or {}))
        self.knobs = [str(k).lower() for k in knobs or ()]
        from .knobs import in_solver
        # knobs that only shape a control waveform arrive in the control channel already
        self.knob_params = [k for k in self.knobs
                            if k in self.solver.names and in_solver(self.solver.eq, k)]
        if (self.solver.n_inputs + len(self.knobs), self.solver.n_states) != (n_inputs,
                                                                             n_states):
            from .errors import AudioShapeMismatchError
            raise AudioShapeMismatchError(
                f"{circuit} has {self.solver.n_inputs} inputs"
                + (f" and {len(self.knobs)} knobs" if self.knobs else "")
                + f" and {self.solver.n_states} states, the model was asked for {n_inputs} "
                f"inputs and {n_states} states")
        names = list(trainable) if trainable is not None else [
            n for n in default_trainable(self.solver) if n not in self.knobs]
        self.true_values = {n: float(self.solver.value(n)) for n in names}
        if start is None:
            start = {n: v * start_factor for n, v in self.true_values.items()}
        self.start = {n: float(start[n]) for n in names}
        self.keys: dict[str, str] = {}
        for name in names:
            before = set(self.solver.trainable.keys())
            self.solver.make_trainable(name)
            key = (set(self.solver.trainable.keys()) - before).pop()
            self.keys[name] = key
            parametrize.register_parametrization(self.solver.trainable, key, _Exp())
            with torch.no_grad():
                getattr(self.solver.trainable.parametrizations, key).original.fill_(
                    torch.log(torch.tensor(self.start[name], dtype=torch.float64)))

    @classmethod
    def build_kwargs(cls, data, hidden: int | None = None,
                     values: dict[str, float] | None = None) -> dict:
        if hidden is not None:
            from .errors import ConfigError
            raise ConfigError("hidden", hidden, "left out: the nodal model is the circuit "
                              "itself and has no hidden size")
        return {"scaling": data.scaling, "circuit": data.circuit, "values": values,
                "knobs": [k.name for k in data.knobs] or None}

    def spec_kwargs(self) -> dict:
        return {"start": self.start,  # the random-free start values, to rebuild exactly
                "trainable": list(self.keys)}

    def component_values(self) -> dict[str, float]:
        """The current values of the trained components (SI units)."""
        return {n: float(self.solver.value(n).detach()) for n in self.keys}

    def unseen_directions(self, u: Tensor, step: float = 1e-4,
                          tol: float = 1e-6) -> list[dict[str, float]]:
        """The combinations of the trained values that the output and the states do not see
        on the input u [B, T, n_inputs] (free-running from the operating point): each
        {name: exponent}, scaled so that the largest exponent is 1; moving the values by
        p -> p * a**exponent leaves the model's output unchanged for every a, so no training
        can recover them one by one (only the products that they leave alone).

        The diode clipper's [{"r1": -1, "c1": 1, "d1n4148.is": 1}]: its equation
        C dv/dt = (u - v) / R - 2 IS sinh(v / (N Vt)) divided by C holds R C and IS / C only.
        Found as the near-null right singular vectors (singular value below `tol` times the
        largest) of the Jacobian of (y / |y|, x_k / |x_k|) in the log-values, by central
        differences of relative size `step` on the compiled path."""
        names = list(self.keys)
        logs = {n: getattr(self.solver.trainable.parametrizations, self.keys[n]).original
                for n in names}
        u = u.double()

        def response() -> Tensor:
            with torch.no_grad():
                traj = self.run(u, self.initial_state(u.shape[0], u[:, 0]))
            parts = [traj.y.reshape(-1, traj.y.shape[-1]), traj.x.reshape(-1, traj.x.shape[-1])]
            return torch.cat(parts, -1)

        base = response()
        norm = base.norm(dim=0).clamp_min(1e-30)
        columns = []
        with torch.no_grad():
            for name in names:
                saved = logs[name].clone()
                ends = []
                for sign in (1.0, -1.0):
                    logs[name].copy_(saved + sign * step)
                    ends.append(response() / norm)
                logs[name].copy_(saved)
                columns.append(((ends[0] - ends[1]) / (2 * step)).flatten())
        _, sigma, vh = torch.linalg.svd(torch.stack(columns, 1), full_matrices=False)
        out = []
        for k in range(len(names)):
            if sigma[k] > tol * sigma[0]:
                continue
            v = vh[k]
            v = v / v[v.abs().argmax()]
            out.append({n: round(float(c), 3) for n, c in zip(names, v, strict=True)
                        if abs(float(c)) > 1e-3})
        return out

    # -- knobs ------------------------------------------------------------------------------
    def _solver_inputs(self, u: Tensor) -> Tensor:
        return u[..., :self.solver.n_inputs].double()

    @contextmanager
    def _knobs_at(self, values: Tensor | None):
        """The solver with its knob parameters at `values` [n_knobs] for the duration."""
        if values is None or not self.knob_params:
            yield
            return
        saved = {k: float(self.solver.value(k)) for k in self.knob_params}
        try:
            for k in self.knob_params:
                self.solver.set_value(k, float(values[self.knobs.index(k)]))
            yield
        finally:
            for k, v in saved.items():
                self.solver.set_value(k, v)

    def _pieces(self, u: Tensor) -> list[tuple[list[int], int, int, Tensor | None]]:
        """(rows, start, stop, knob values): stretches of constant knob values, the rows that
        share them run as one batch."""
        batch, length = u.shape[:2]
        if not self.knob_params:
            return [(list(range(batch)), 0, length, None)]
        k = u[..., self.solver.n_inputs:].double()
        pieces: dict[tuple, list[int]] = {}
        for b in range(batch):
            change = (k[b, 1:] != k[b, :-1]).any(-1).nonzero().flatten().tolist()
            edges = [0] + [c + 1 for c in change] + [length]
            for start, stop in zip(edges, edges[1:], strict=False):
                key = (start, stop, tuple(k[b, start].tolist()))
                pieces.setdefault(key, []).append(b)
        return [(rows, a, z, torch.tensor(v)) for (a, z, v), rows in pieces.items()]

    def initial_state(self, batch: int, u0: Tensor | None = None) -> Tensor:
        if u0 is None or not self.knob_params:
            return self.solver.initial_state(batch, None if u0 is None else
                                             self._solver_inputs(u0))
        rows = []
        for b in range(batch):
            with self._knobs_at(u0[b, self.solver.n_inputs:]):
                rows.append(self.solver.initial_state(1, self._solver_inputs(u0[b:b + 1])))
        return torch.cat(rows, 0)

    def encode(self, x: Tensor) -> Tensor:
        return self.solver.encode(x.double())

    def step(self, s: Tensor, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if not self.knob_params:
            return self.solver.step(s, self._solver_inputs(u))
        traj = self.run(u[:, None], s)
        return traj.s_final, traj.y[:, 0], traj.x[:, 0]

    def run(self, u: Tensor, s0: Tensor) -> Trajectory:
        return self._run(u, s0, lambda v, s: self.solver(v, s0=s))

    def _run(self, u: Tensor, s0: Tensor, solve) -> Trajectory:
        """`solve(u_solver, s0)` over each stretch of constant knob values, the state carried
        from one stretch to the next."""
        pieces = self._pieces(u)
        if len(pieces) == 1 and pieces[0][3] is None:
            return solve(self._solver_inputs(u), s0)
        batch, length = u.shape[:2]
        ys: list[list[Tensor]] = [[] for _ in range(batch)]
        xs: list[list[Tensor]] = [[] for _ in range(batch)]
        state = list(s0.double().unbind(0))
        for rows, start, stop, values in sorted(pieces, key=lambda p: p[1]):
            with self._knobs_at(values):
                traj = solve(self._solver_inputs(u[rows, start:stop]),
                             torch.stack([state[b] for b in rows]))
            for i, b in enumerate(rows):
                ys[b].append(traj.y[i])
                xs[b].append(traj.x[i])
                state[b] = traj.s_final[i]
        return Trajectory(torch.stack([torch.cat(r, 0) for r in ys]),
                          torch.stack([torch.cat(r, 0) for r in xs]), torch.stack(state))

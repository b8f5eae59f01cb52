"""`nodal`: the circuit's own torch solver as a trainable model, the structured baseline.

The chosen component values / parameters p are trained as log p (always positive, updated in
relative steps) and start away from the circuit's values: p0 = p_true * f (`start_factor`,
2 by default: every value doubled, so that R and C cannot cancel in RC), unless `start`
gives them. Everything else is `nodal.NodalSolver`: float64, DK equations, Newton with
gradients by the implicit function theorem.
"""

from __future__ import annotations

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
    """The solver of `circuit` (a built-in name or a netlist path) with trainable values."""

    def __init__(self, n_inputs: int, n_states: int, sample_rate: float = 48000.0,
                 circuit: str = "diode_clipper", trainable: list[str] | None = None,
                 start: dict[str, float] | None = None, start_factor: float = 2.0,
                 values: dict[str, float] | None = None, scaling: dict | None = None):
        super().__init__(n_inputs, n_states, sample_rate, scaling)  # scaling: the state loss
        self.double()
        self.circuit = circuit
        self.solver = nodal.load(circuit, sample_rate=sample_rate, **(values or {}))
        if (self.solver.n_inputs, self.solver.n_states) != (n_inputs, n_states):
            from .errors import AudioShapeMismatchError
            raise AudioShapeMismatchError(
                f"{circuit} has {self.solver.n_inputs} inputs and {self.solver.n_states} states, "
                f"the model was asked for {n_inputs} and {n_states}")
        names = list(trainable) if trainable is not None else default_trainable(self.solver)
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

    def component_values(self) -> dict[str, float]:
        """The current values of the trained components (SI units)."""
        return {n: float(self.solver.value(n).detach()) for n in self.keys}

    def initial_state(self, batch: int, u0: Tensor | None = None) -> Tensor:
        return self.solver.initial_state(batch, None if u0 is None else u0.double())

    def encode(self, x: Tensor) -> Tensor:
        return self.solver.encode(x.double())

    def step(self, s: Tensor, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.solver.step(s, u.double())

    def run(self, u: Tensor, s0: Tensor) -> Trajectory:
        return self.solver(u.double(), s0=s0)

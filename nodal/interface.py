"""The one interface: everything that maps inputs to circuit states and an output.

Sequences are `[batch, time, channels]`; units are SI (volts, amperes). The solver, the STN and
the GRUs are all `StateSpaceModel`s, so training, evaluation and the CLI treat them alike.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn


class Trajectory(NamedTuple):
    """y: output [B, T, 1]; x: circuit states [B, T, n_states]; s_final: internal state."""

    y: Tensor
    x: Tensor
    s_final: Tensor


class StateSpaceModel(nn.Module):
    """A model with an internal state s that can be reset from true circuit states x.

    `forward(u, s0, teacher, every)`: before step n (n > 0 and n % every == 0) the internal
    state is reset to `encode(teacher[:, n - 1])`, the true state after the previous sample;
    `every = 1` is one-step (teacher-forced) prediction, `every = 0` runs free.
    """

    n_inputs: int
    n_states: int
    sample_rate: float

    def initial_state(self, batch: int, u0: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def encode(self, x: Tensor) -> Tensor:
        """Circuit states [B, n_states] -> internal state."""
        raise NotImplementedError

    def step(self, s: Tensor, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One sample: state s, input u [B, n_inputs] -> (s', y [B, 1], x [B, n_states])."""
        raise NotImplementedError

    def check_inputs(self, u: Tensor, teacher: Tensor | None = None) -> None:
        from .errors import SignalError

        if u.dim() != 3 or u.shape[-1] != self.n_inputs:
            raise SignalError(f"{type(self).__name__} takes inputs [batch, time, "
                              f"{self.n_inputs}], got {list(u.shape)}")
        if teacher is not None and (teacher.shape[:2] != u.shape[:2]
                                    or teacher.shape[-1] != self.n_states):
            raise SignalError(f"teacher states must be [batch, time, {self.n_states}] like the "
                              f"input, got {list(teacher.shape)}")

    def forward(self, u: Tensor, s0: Tensor | None = None, teacher: Tensor | None = None,
                every: int = 0) -> Trajectory:
        self.check_inputs(u, teacher)
        batch, length, _ = u.shape
        s = self.initial_state(batch, u[:, 0]) if s0 is None else s0
        ys, xs = [], []
        for n in range(length):
            if teacher is not None and every and n > 0 and n % every == 0:
                s = self.encode(teacher[:, n - 1])
            s, y, x = self.step(s, u[:, n])
            ys.append(y)
            xs.append(x)
        return Trajectory(torch.stack(ys, 1), torch.stack(xs, 1), s)

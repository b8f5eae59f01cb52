"""The state trajectory network (Parker, Esqueda, Bergner 2019).

    x[n] = x[n-1] + MLP([u[n], u[n-1], x[n-1]])    (scaled circuit states, tanh MLP)
    y[n] = L [x[n], u[n]] + R([x[n], u[n]])        (linear readout + a small tanh correction)

Why u[n-1]: the circuit data come from the trapezoidal rule, whose discrete-time state is the
capacitor voltages *and* the previous input (equivalently the capacitor currents); from x[n-1]
and u[n] alone x[n] is ambiguous (on the diode clipper, a 4x larger one-step error).
`input_history=0` gives the original STN. The internal state is s = [x_scaled, u[n-1]_scaled];
`encode(x)` takes the input as its training mean, `reset(x, u_prev)` (used by `forward`'s
resets and by training) the true previous input. With teacher forcing every step (`every=1`)
all steps are independent and run as one batch.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nodal.interface import Trajectory

from .base import NeuralModel, mlp
from .stn_kernel import stn_recurrence
from .weights import stn_layers


class STN(NeuralModel):
    """STN with a `depth`-layer tanh MLP of `hidden` units. Shapes: u [B, T, n_inputs]."""

    fast_path = "stn"
    default_hidden = 16
    # steps per epoch: the budget is steps, not data (88 = one pass over 30 s of 512-segments),
    # so longer material means more variety at the same cost
    defaults = dict(window=1, state_weight=1.0, epochs=60, segment=512, batch=32, lr=5e-3,
                    steps_per_epoch=88)

    def __init__(self, n_inputs: int, n_states: int, sample_rate: float = 48000.0,
                 hidden: int = 16, depth: int = 2, readout_hidden: int = 8,
                 input_history: int = 1, scaling: dict | None = None, fused: bool = True):
        super().__init__(n_inputs, n_states, sample_rate, scaling)
        self.fused = fused  # free-running stretches in the compiled kernel (False: torch loop)
        self.hidden, self.depth, self.readout_hidden = hidden, depth, readout_hidden
        self.history = int(bool(input_history))
        self.mlp = mlp(n_inputs * (1 + self.history) + n_states, hidden, depth, n_states)
        self.readout = nn.Linear(n_states + n_inputs, 1)
        self.correction = mlp(n_states + n_inputs, readout_hidden, 1, 1) if readout_hidden else None
        with torch.no_grad():  # start as the identity map x' = x with a plain linear readout
            self.mlp[-1].weight.mul_(0.1)
            self.mlp[-1].bias.zero_()
            if self.correction is not None:
                self.correction[-1].weight.zero_()
                self.correction[-1].bias.zero_()

    # -- the state ---------------------------------------------------------------------------
    def initial_state(self, batch: int, u0: Tensor | None = None) -> Tensor:
        """The mean training state, the input held at u0 (or its mean)."""
        s = torch.zeros(batch, self.n_states + self.history * self.n_inputs, dtype=self.dtype,
                        device=self.u_mean.device)
        if self.history and u0 is not None:
            s[:, self.n_states:] = self.scale_u(u0.to(self.dtype))
        return s

    def encode(self, x: Tensor) -> Tensor:
        xs = self.scale_x(x.to(self.dtype))
        if not self.history:
            return xs
        return torch.cat([xs, xs.new_zeros(xs.shape[0], self.n_inputs)], -1)

    def reset(self, x: Tensor, u_previous: Tensor) -> Tensor:
        if not self.history:
            return self.encode(x)
        return torch.cat([self.scale_x(x.to(self.dtype)),
                          self.scale_u(u_previous.to(self.dtype))], -1)

    # -- the map -----------------------------------------------------------------------------
    def _increment(self, un: Tensor, s: Tensor) -> Tensor:
        """MLP([u[n], u[n-1], x[n-1]]) for s = [x, u_prev] (any leading shape)."""
        ns = self.n_states
        features = [un, s[..., ns:], s[..., :ns]] if self.history else [un, s]
        return self.mlp(torch.cat(features, -1))

    def _next(self, s: Tensor, un: Tensor) -> Tensor:
        x = s[..., :self.n_states] + self._increment(un, s)
        return torch.cat([x, un], -1) if self.history else x

    def _readout(self, xs: Tensor, un: Tensor) -> Tensor:
        z = torch.cat([xs, un], -1)
        out = self.readout(z)
        if self.correction is not None:
            out = out + self.correction(z)
        return self.unscale_y(out)

    def _trajectory(self, states: Tensor, un: Tensor, s_final: Tensor) -> Trajectory:
        xs = states[..., :self.n_states]
        return Trajectory(self._readout(xs, un), self.unscale_x(xs), s_final)

    def step(self, s: Tensor, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        un = self.scale_u(u.to(self.dtype))
        s = self._next(s, un)
        xs = s[:, :self.n_states]
        return s, self._readout(xs, un), self.unscale_x(xs)

    def run(self, u: Tensor, s0: Tensor) -> Trajectory:
        un = self.scale_u(u)
        if u.shape[1] == 1:  # one step for every batch item: the teacher-forced (k = 1) case
            s = self._next(s0, un[:, 0])
            return self._trajectory(s[:, None], un, s)
        if self.fused and self.depth and un.device.type == "cpu":
            states = self._recur(un, s0)
            return self._trajectory(states, un, states[:, -1])
        s, states = s0, []
        for n in range(u.shape[1]):
            s = self._next(s, un[:, n])
            states.append(s)
        return self._trajectory(torch.stack(states, 1), un, s)

    def _recur(self, un: Tensor, s0: Tensor) -> Tensor:
        """The loop of `run` in the compiled kernel of `nets.stn_kernel` (same equations)."""
        ns = self.n_states
        layers = stn_layers(self)
        features = torch.cat([un, torch.cat([s0[:, None, ns:], un[:, :-1]], 1)], -1) \
            if self.history else un
        a = features @ layers.w_u.T + layers.b_1
        xs = stn_recurrence(a, s0[:, :ns], layers.w_x, layers.w_h, layers.b_h, layers.w_o,
                            layers.b_o)
        return torch.cat([xs, un], -1) if self.history else xs

    def forward(self, u: Tensor, s0: Tensor | None = None, teacher: Tensor | None = None,
                every: int = 0) -> Trajectory:
        if teacher is not None and every == 1:  # every step from a true state: one batch
            self.check_inputs(u, teacher)
            u = u.to(self.dtype)
            batch, length, _ = u.shape
            s = self.initial_state(batch, u[:, 0]) if s0 is None else s0
            un = self.scale_u(u)
            x_prev = torch.cat([s[:, None, :self.n_states],
                                self.scale_x(teacher[:, :-1].to(self.dtype))], 1)
            prev = torch.cat([x_prev, torch.cat([s[:, None, self.n_states:], un[:, :-1]], 1)], -1) \
                if self.history else x_prev
            states = self._next(prev, un)
            return self._trajectory(states, un, states[:, -1])
        return super().forward(u, s0, teacher, every)

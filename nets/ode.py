"""A neural ODE: the continuous-time form of the STN (torchdiffeq).

    dx/dt = MLP([u(t), x]),  t in samples, u held over each sample (zero-order hold)
    x[n] = odeint(dx/dt, x[n-1], [0, 1])     (one fixed `method` step per sample, RK4 default)
    y[n] = readout([x[n], u[n]])             (as the STN)

Continuous in time, it needs no previous input (`input_history=0`); everything else, including
the one-batch teacher-forced path, is the STN's.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchdiffeq import odeint

from .stn import STN


class _Field(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.u: Tensor | None = None

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        return self.net(torch.cat([self.u, x], -1))


class NeuralODE(STN):
    validate_every = 4096  # a Python loop of odeint calls: validate in parallel windows
    fast_path = None
    defaults = dict(window=1, state_weight=1.0, epochs=20, segment=512, batch=32, lr=5e-3,
                    steps_per_epoch=88)

    def __init__(self, n_inputs: int, n_states: int, sample_rate: float = 48000.0,
                 hidden: int = 16, depth: int = 2, readout_hidden: int = 8,
                 method: str = "rk4", scaling: dict | None = None):
        super().__init__(n_inputs, n_states, sample_rate, hidden, depth, readout_hidden,
                         input_history=0, scaling=scaling, fused=False)  # the STN kernel is
        # the discrete map; here each sample is an odeint call
        self.method = method
        self.field = _Field(self.mlp)
        self.register_buffer("span", torch.tensor([0.0, 1.0]), persistent=False)

    def _next(self, s: Tensor, un: Tensor) -> Tensor:
        """One sample of the ODE from s with the input un held (any leading shape)."""
        self.field.u = un
        return odeint(self.field, s, self.span.to(s.dtype), method=self.method)[-1]

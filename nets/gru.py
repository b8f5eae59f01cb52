"""GRU models: `gru` (black box, started from a warm-up) and `gru-sm` (state matching).

    h[n] = GRU(h[n-1], u[n]);  y[n] = W_y h[n] + b_y + w_skip u[n]
    gru-sm: x[n] = W h[n] + b (the state head, trained against the circuit states) and
            encode(x) = tanh(A x + c) (circuit states -> h, learned jointly through resets)

Both have the head and the encoder, so both satisfy the interface; only `gru-sm` is trained
against the states and reset from them (`resettable`, `exposes_states`). Sequences run through
`nn.GRU` (one fused call per window batch), single steps through the same module.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nodal.interface import Trajectory

from .base import NeuralModel
from .gru_kernel import gru_recurrence
from .weights import recurrent_layers


class RecurrentModel(NeuralModel):
    """A recurrent network with linear output, state head and state encoder."""

    cell = nn.GRU
    state_factor = 1  # internal state size / hidden size
    default_hidden = 8  # the diode-clipper target

    def __init__(self, n_inputs: int, n_states: int, sample_rate: float = 48000.0,
                 hidden: int = 8, state_matching: bool = False, scaling: dict | None = None):
        super().__init__(n_inputs, n_states, sample_rate, scaling)
        self.hidden = int(hidden)
        self.state_matching = bool(state_matching)
        self.resettable = self.state_matching
        self.exposes_states = self.state_matching
        self.rnn = self.cell(n_inputs, hidden, batch_first=True)
        self.out = nn.Linear(hidden, 1)
        self.skip = nn.Linear(n_inputs, 1, bias=False)
        self.head = nn.Linear(hidden, n_states)
        self.encoder = nn.Linear(n_states, hidden * self.state_factor)
        with torch.no_grad():  # the dry signal passes straight through at the start
            self.skip.weight.zero_()
            self.skip.weight[0, 0] = float(self.u_std[0] / self.y_std[0])

    def initial_state(self, batch: int, u0: Tensor | None = None) -> Tensor:
        return torch.zeros(batch, self.hidden * self.state_factor, dtype=self.dtype,
                           device=self.u_mean.device)

    def encode(self, x: Tensor) -> Tensor:
        return torch.tanh(self.encoder(self.scale_x(x.to(self.dtype))))

    def _recur(self, un: Tensor, s0: Tensor) -> tuple[Tensor, Tensor]:
        seq, h = self.rnn(un, s0[None].contiguous())
        return seq, h[0]

    def run(self, u: Tensor, s0: Tensor) -> Trajectory:
        un = self.scale_u(u)
        seq, s = self._recur(un, s0)
        y = self.unscale_y(self.out(seq) + self.skip(un))
        return Trajectory(y, self.unscale_x(self.head(seq)), s)

    def step(self, s: Tensor, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        traj = self.run(u[:, None].to(self.dtype), s)
        return traj.s_final, traj.y[:, 0], traj.x[:, 0]


class GRU(RecurrentModel):
    """`gru`: the black box (state_matching=False; `GRUSM` is `gru-sm`).

    The recurrence runs in the compiled kernel of `nets.gru_kernel` (forward and backward),
    with `nn.GRU`'s weights and equations; `fused=False` uses `nn.GRU` itself.
    """

    fast_path = "gru"
    # the recurrent nets learn the highs (where their free-running error sits) only with
    # pre-emphasis: diode clipper gru-8 test ESR 2.3e-3 without, 9.6e-4 with
    defaults = dict(window=0, state_weight=0.0, epochs=100, segment=512, batch=32, lr=5e-3,
                    warmup=64, steps_per_epoch=60, emphasis=0.85)

    def __init__(self, n_inputs: int, n_states: int, sample_rate: float = 48000.0,
                 hidden: int = 8, state_matching: bool = False, fused: bool = True,
                 scaling: dict | None = None):
        super().__init__(n_inputs, n_states, sample_rate, hidden, state_matching, scaling)
        self.fused = fused

    def _recur(self, un: Tensor, s0: Tensor) -> tuple[Tensor, Tensor]:
        if not self.fused or un.device.type != "cpu":
            return super()._recur(un, s0)
        layers = recurrent_layers(self)
        gi = un @ layers.w_ih.T + layers.b_ih
        seq = gru_recurrence(gi, s0.to(gi.dtype), layers.w_hh, layers.b_hh)
        return seq, seq[:, -1]


class GRUSM(GRU):
    """`gru-sm`: the GRU with state matching (trained against the states, reset from them)."""

    defaults = dict(window=0, state_weight=1.0, epochs=100, segment=512, batch=32, lr=5e-3,
                    steps_per_epoch=60, emphasis=0.85)

    def __init__(self, n_inputs: int, n_states: int, sample_rate: float = 48000.0,
                 hidden: int = 8, fused: bool = True, scaling: dict | None = None,
                 state_matching: bool = True):
        if not state_matching:
            raise TypeError("gru-sm is the state-matching GRU; use gru without it")
        super().__init__(n_inputs, n_states, sample_rate, hidden, True, fused, scaling)

"""LSTM, the usual black-box baseline: the GRU's recipe with an `nn.LSTM`.

The internal state is [h, c] concatenated ([B, 2 * hidden]); `encode` maps circuit states to
h = tanh(A_h x + c_h) and c = A_c x + c_c.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .gru import RecurrentModel


class LSTM(RecurrentModel):
    cell = nn.LSTM
    state_factor = 2
    # the GRU's schedule (15 short epochs left it at a Tube Screamer test ESR of 0.18; 100: 2.8e-2)
    defaults = dict(window=0, state_weight=0.0, epochs=100, segment=512, batch=32, lr=5e-3,
                    warmup=32, steps_per_epoch=60, emphasis=0.85)

    def encode(self, x: Tensor) -> Tensor:
        z = self.encoder(self.scale_x(x.to(self.dtype)))
        return torch.cat([torch.tanh(z[:, :self.hidden]), z[:, self.hidden:]], -1)

    def _recur(self, un: Tensor, s0: Tensor) -> tuple[Tensor, Tensor]:
        h0, c0 = s0[:, :self.hidden], s0[:, self.hidden:]
        seq, (h, c) = self.rnn(un, (h0[None].contiguous(), c0[None].contiguous()))
        return seq, torch.cat([h[0], c[0]], -1)

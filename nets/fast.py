"""Fast free-running inference: the trained weights in compiled per-sample kernels (numba).

Only the recurrence is sequential, so only it is compiled; the parts that do not feed back
(input projections, scaling, readouts, state heads) run vectorised over the whole signal:

    STN:  s[n] = s[n-1] + W_L tanh(... tanh(W_1u u[n] + W_1s s[n-1] + b_1) ...) + b_L
    GRU:  r, z = sigma(W_i u + b_i + W_h h + b_h);  n = tanh(W_in u + b_in + r (W_hn h + b_hn))
          h[n] = (1 - z) n + z h[n-1]        (torch.nn.GRU's equations)

Kernels run in float64 on one thread. `compile(model)` returns a callable with the model's
`forward(u, s0)` signature (free-running, no gradients) for every model that declares a
`fast_path` (STN, GRU, gru-sm, and `nodal`: its solver's own fast backend);
`supports(model)` says whether one exists.
"""

from __future__ import annotations

from functools import partial

import numba
import numpy as np
import torch
from numba.typed import List
from torch import Tensor

from nodal.arrays import as_numpy
from nodal.interface import Trajectory

from . import weights
from .gru import GRU
from .nodal_model import NodalModel
from .stn import STN
from .weights import recurrent_layers, stn_layers


@numba.njit(cache=True, fastmath=True)
def _stn_states(drive, s0, w_state, hidden_w, hidden_b, w_out, b_out):
    """drive [B, T, H] = W_1u u + b_1; s0 [B, S] -> states [B, T, S] (scaled units)."""
    batch, length, width = drive.shape
    n_states = s0.shape[1]
    out = np.empty((batch, length, n_states))
    a = np.empty(width)
    tmp = np.empty(width)
    for b in range(batch):
        s = s0[b].copy()
        for n in range(length):
            for i in range(width):
                acc = drive[b, n, i]
                for j in range(n_states):
                    acc += w_state[i, j] * s[j]
                a[i] = np.tanh(acc)
            for layer in range(len(hidden_w)):
                w = hidden_w[layer]
                bias = hidden_b[layer]
                for i in range(width):
                    acc = bias[i]
                    for j in range(width):
                        acc += w[i, j] * a[j]
                    tmp[i] = np.tanh(acc)
                a[:] = tmp
            for i in range(n_states):
                acc = b_out[i]
                for j in range(w_out.shape[1]):
                    acc += w_out[i, j] * a[j]
                s[i] += acc
                out[b, n, i] = s[i]
    return out


def _gru_hidden(gi, h0, w_hh, b_hh):
    """gi [B, T, 3H] = W_ih u + b_ih; h0 [B, H] -> hidden states [B, T, H] (the training
    kernel's recurrence, one implementation; its gate buffer is scratch here)."""
    from .gru_kernel import _forward

    batch, length, three = gi.shape
    hidden = three // 3
    hs = np.empty((batch, length, hidden))
    _forward(gi, np.ascontiguousarray(h0, dtype=np.float64), w_hh, b_hh, hs,
             np.empty((batch, length, 4, hidden)))
    return hs


_np = partial(as_numpy, dtype=torch.float64)   # tensors to the float64 kernels


def supports(model) -> bool:
    """Whether the model declares a compiled runner (`NeuralModel.fast_path`)."""
    return getattr(model, "fast_path", None) in RUNNERS


class FastSTN:
    def __init__(self, model: STN):
        self.model = model
        layers = stn_layers(model)
        self.w_input = layers.w_u.detach().double()
        self.b_input = layers.b_1.detach().double()
        arrays = weights.numpy(layers)
        self.w_state = arrays.w_x
        if len(arrays.w_h):
            self.hidden_w = List([np.ascontiguousarray(w) for w in arrays.w_h])
            self.hidden_b = List([np.ascontiguousarray(b) for b in arrays.b_h])
        else:
            self.hidden_w = List.empty_list(numba.float64[:, ::1])
            self.hidden_b = List.empty_list(numba.float64[::1])
        self.w_out, self.b_out = arrays.w_o, arrays.b_o

    @torch.no_grad()
    def __call__(self, u: Tensor, s0: Tensor | None = None) -> Trajectory:
        m = self.model
        m.check_inputs(u)
        u = u.to(m.dtype)
        s0 = m.initial_state(u.shape[0], u[:, 0]) if s0 is None else s0
        un = m.scale_u(u)
        ns = m.n_states
        features = un.double()
        if m.history:
            u_prev = torch.cat([s0[:, None, ns:], un[:, :-1]], 1)
            features = torch.cat([features, u_prev.double()], -1)
        drive = _np(features @ self.w_input.T + self.b_input)
        states = torch.from_numpy(_stn_states(drive, _np(s0[:, :ns]), self.w_state,
                                              self.hidden_w, self.hidden_b, self.w_out, self.b_out))
        states = states.to(m.dtype)
        s_final = torch.cat([states[:, -1], un[:, -1]], -1) if m.history else states[:, -1]
        return Trajectory(m._readout(states, un), m.unscale_x(states), s_final)


class FastGRU:
    def __init__(self, model: GRU):
        self.model = model
        layers = recurrent_layers(model)
        self.w_ih, self.b_ih = layers.w_ih.detach().double(), layers.b_ih.detach().double()
        arrays = weights.numpy(layers)
        self.w_hh, self.b_hh = arrays.w_hh, arrays.b_hh

    @torch.no_grad()
    def __call__(self, u: Tensor, s0: Tensor | None = None) -> Trajectory:
        m = self.model
        m.check_inputs(u)
        u = u.to(m.dtype)
        s0 = m.initial_state(u.shape[0]) if s0 is None else s0
        un = m.scale_u(u)
        gi = _np(un.double() @ self.w_ih.T + self.b_ih)
        seq = torch.from_numpy(_gru_hidden(gi, _np(s0), self.w_hh, self.b_hh)).to(m.dtype)
        y = m.unscale_y(m.out(seq) + m.skip(un))
        return Trajectory(y, m.unscale_x(m.head(seq)), seq[:, -1])


class FastNodal:
    """The solver's own compiled backend, at the model's current component values (and its
    knob values, stretch by stretch)."""

    def __init__(self, model: NodalModel):
        self.model = model

    @torch.no_grad()
    def __call__(self, u: Tensor, s0: Tensor | None = None) -> Trajectory:
        m = self.model
        if s0 is None:
            s0 = m.initial_state(u.shape[0], u[:, 0])
        return m._run(u, s0, lambda v, s: m.solver.simulate(v, s0=s, backend="fast"))


#: `NeuralModel.fast_path` -> its runner
RUNNERS = {"stn": FastSTN, "gru": FastGRU, "solver": FastNodal}


def compile(model):
    """A fast forward-only runner for `model` (see `supports`)."""
    if not supports(model):
        raise TypeError(f"no fast path for {type(model).__name__}; use the model itself")
    return RUNNERS[model.fast_path](model)

"""A GRU layer's recurrence compiled (numba), forward and backward, for training on the CPU.

`nn.GRU` on the CPU records every time step in autograd; for the small hidden sizes of
circuit models that overhead dominates (about 1 ms per time step, whatever the batch). Here
the recurrence over [B, T] is one kernel call each way, with the gates kept from the forward
pass for the backward (backpropagation through time written out):

    gh = W_hh h + b_hh;  r = sigma(gi_r + gh_r);  z = sigma(gi_z + gh_z)
    n = tanh(gi_n + r gh_n);  h' = (1 - z) n + z h                (torch.nn.GRU's equations)

gi = W_ih u + b_ih is computed by torch outside, so its gradients flow as usual.
`gru_recurrence(gi, h0, w_hh, b_hh)` -> hidden states [B, T, H]; matches `nn.GRU` (tested).
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from torch import Tensor

from nodal.arrays import as_numpy


@numba.njit(cache=True, fastmath=False)
def _forward(gi, h0, w_hh, b_hh, hs, gates):
    """gates [B, T, 4, H] keeps r, z, n and gh_n for the backward pass."""
    batch, length, three = gi.shape
    hidden = three // 3
    gh = np.empty(three, dtype=gi.dtype)
    for b in range(batch):
        h = h0[b].copy()
        for t in range(length):
            for i in range(three):
                acc = b_hh[i]
                for j in range(hidden):
                    acc += w_hh[i, j] * h[j]
                gh[i] = acc
            for i in range(hidden):
                r = 1.0 / (1.0 + np.exp(-(gi[b, t, i] + gh[i])))
                z = 1.0 / (1.0 + np.exp(-(gi[b, t, hidden + i] + gh[hidden + i])))
                n = np.tanh(gi[b, t, 2 * hidden + i] + r * gh[2 * hidden + i])
                gates[b, t, 0, i] = r
                gates[b, t, 1, i] = z
                gates[b, t, 2, i] = n
                gates[b, t, 3, i] = gh[2 * hidden + i]
                h[i] = (1.0 - z) * n + z * h[i]
                hs[b, t, i] = h[i]


@numba.njit(cache=True, fastmath=False)
def _backward(grad_hs, h0, hs, gates, w_hh, dgi, dh0, dw_hh, db_hh):
    batch, length, hidden = hs.shape
    dgh = np.empty(3 * hidden, dtype=hs.dtype)
    for b in range(batch):
        dh = np.zeros(hidden, dtype=hs.dtype)
        for t in range(length - 1, -1, -1):
            for i in range(hidden):
                dh[i] += grad_hs[b, t, i]
            for i in range(hidden):
                h_prev = hs[b, t - 1, i] if t > 0 else h0[b, i]
                r = gates[b, t, 0, i]
                z = gates[b, t, 1, i]
                n = gates[b, t, 2, i]
                ghn = gates[b, t, 3, i]
                g = dh[i]
                dpre_n = g * (1.0 - z) * (1.0 - n * n)
                dpre_z = g * (h_prev - n) * z * (1.0 - z)
                dpre_r = dpre_n * ghn * r * (1.0 - r)
                dgi[b, t, i] = dpre_r
                dgi[b, t, hidden + i] = dpre_z
                dgi[b, t, 2 * hidden + i] = dpre_n
                dgh[i] = dpre_r
                dgh[hidden + i] = dpre_z
                dgh[2 * hidden + i] = dpre_n * r
                dh[i] = g * z
            for k in range(3 * hidden):
                db_hh[k] += dgh[k]
                for j in range(hidden):
                    h_prev = hs[b, t - 1, j] if t > 0 else h0[b, j]
                    dw_hh[k, j] += dgh[k] * h_prev
            for j in range(hidden):
                acc = 0.0
                for k in range(3 * hidden):
                    acc += w_hh[k, j] * dgh[k]
                dh[j] += acc
        for i in range(hidden):
            dh0[b, i] = dh[i]


class _GRURecurrence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gi: Tensor, h0: Tensor, w_hh: Tensor, b_hh: Tensor) -> Tensor:
        gi_np, h0_np = as_numpy(gi), as_numpy(h0)
        batch, length, three = gi_np.shape
        hs = np.empty((batch, length, three // 3), dtype=gi_np.dtype)
        gates = np.empty((batch, length, 4, three // 3), dtype=gi_np.dtype)
        _forward(gi_np, h0_np, as_numpy(w_hh), as_numpy(b_hh), hs, gates)
        ctx.arrays = (h0_np, hs, gates, as_numpy(w_hh))
        return torch.from_numpy(hs)

    @staticmethod
    def backward(ctx, grad_hs: Tensor):
        h0_np, hs, gates, w_hh = ctx.arrays
        dgi = np.empty((hs.shape[0], hs.shape[1], 3 * hs.shape[2]), dtype=hs.dtype)
        dh0 = np.empty_like(h0_np)
        dw_hh = np.zeros_like(w_hh)
        db_hh = np.zeros(w_hh.shape[0], dtype=hs.dtype)
        _backward(as_numpy(grad_hs.to(torch.from_numpy(hs).dtype)), h0_np, hs, gates, w_hh, dgi,
                  dh0, dw_hh, db_hh)
        return (torch.from_numpy(dgi), torch.from_numpy(dh0), torch.from_numpy(dw_hh),
                torch.from_numpy(db_hh))


def gru_recurrence(gi: Tensor, h0: Tensor, w_hh: Tensor, b_hh: Tensor) -> Tensor:
    """Hidden states [B, T, H] of a GRU from gi = W_ih u + b_ih [B, T, 3H] and h0 [B, H]."""
    return _GRURecurrence.apply(gi.contiguous(), h0.contiguous(), w_hh, b_hh)

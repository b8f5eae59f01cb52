"""The STN's recurrence compiled (numba), forward and backward, for free-running training.

Teacher-forced STN training is one batched MLP call; with a window k > 1 the states feed back
and torch would record every time step in autograd (about 0.4 ms a step whatever the batch).
Here the whole recurrence over [B, T] is one kernel call each way, with the activations kept
from the forward pass for backpropagation through time:

    z_1 = tanh(a[t] + W_x x[t-1])                  a[t] = W_u [u[t], u[t-1]] + b_1 (torch)
    z_l = tanh(W_l z_{l-1} + b_l),  l = 2..depth
    x[t] = x[t-1] + W_o z_depth + b_o

The input part `a` of the first layer is computed by torch outside (vectorised over time), so
its gradients flow as usual. `stn_recurrence(a, x0, w_x, w_h, b_h, w_o, b_o)` -> states
[B, T, n_states]; w_h [depth-1, H, H] and b_h [depth-1, H] stack the hidden layers.
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from torch import Tensor

from nodal.arrays import as_numpy


@numba.njit(cache=True, fastmath=False)
def _forward(a, x0, w_x, w_h, b_h, w_o, b_o, xs, zs):
    """zs [B, T, depth, H] keeps the activations for the backward pass."""
    batch, length, hidden = a.shape
    n_states = x0.shape[1]
    depth = w_h.shape[0] + 1
    for b in range(batch):
        x = x0[b].copy()
        for t in range(length):
            for i in range(hidden):
                acc = a[b, t, i]
                for j in range(n_states):
                    acc += w_x[i, j] * x[j]
                zs[b, t, 0, i] = np.tanh(acc)
            for layer in range(1, depth):
                for i in range(hidden):
                    acc = b_h[layer - 1, i]
                    for j in range(hidden):
                        acc += w_h[layer - 1, i, j] * zs[b, t, layer - 1, j]
                    zs[b, t, layer, i] = np.tanh(acc)
            for i in range(n_states):
                acc = b_o[i]
                for j in range(hidden):
                    acc += w_o[i, j] * zs[b, t, depth - 1, j]
                x[i] += acc
                xs[b, t, i] = x[i]


@numba.njit(cache=True, fastmath=False)
def _output_layer_back(dx, z_last, w_o, dw_o, db_o, dz):
    """x[t] = x[t-1] + W_o z_depth + b_o: W_o's and b_o's gradients; dz = W_o^T dx."""
    n_states, hidden = w_o.shape
    for i in range(n_states):
        db_o[i] += dx[i]
        for j in range(hidden):
            dw_o[i, j] += dx[i] * z_last[j]
    for j in range(hidden):
        acc = 0.0
        for i in range(n_states):
            acc += w_o[i, j] * dx[i]
        dz[j] = acc


@numba.njit(cache=True, fastmath=False)
def _hidden_layers_back(z, w_h, dw_h, db_h, dz, dpre):
    """z_l = tanh(W_l z_{l-1} + b_l) for l = depth..2 (z [depth, H]: one step's activations):
    their gradients; dz goes in as dL/dz_depth and comes out as dL/dz_1."""
    depth, hidden = z.shape
    for layer in range(depth - 1, 0, -1):
        for i in range(hidden):
            dpre[i] = dz[i] * (1.0 - z[layer, i] * z[layer, i])
            db_h[layer - 1, i] += dpre[i]
            for j in range(hidden):
                dw_h[layer - 1, i, j] += dpre[i] * z[layer - 1, j]
        for j in range(hidden):
            acc = 0.0
            for i in range(hidden):
                acc += w_h[layer - 1, i, j] * dpre[i]
            dz[j] = acc


@numba.njit(cache=True, fastmath=False)
def _first_layer_back(dz, z_first, x_prev, w_x, dw_x, da, dpre, dx):
    """z_1 = tanh(a[t] + W_x x[t-1]): a's gradient (da, one step), W_x's, and x[t-1]'s added
    to dx (which already holds the direct path x[t-1] -> x[t])."""
    hidden, n_states = w_x.shape
    for i in range(hidden):
        dpre[i] = dz[i] * (1.0 - z_first[i] * z_first[i])
        da[i] = dpre[i]
    for j in range(n_states):
        acc = 0.0
        for i in range(hidden):
            dw_x[i, j] += dpre[i] * x_prev[j]
            acc += w_x[i, j] * dpre[i]
        dx[j] += acc


@numba.njit(cache=True, fastmath=False)
def _backward(grad_xs, x0, xs, zs, w_x, w_h, w_o, da, dx0, dw_x, dw_h, db_h, dw_o, db_o):
    """Backpropagation through time of the module doc's recurrence, last step first."""
    batch, length, n_states = xs.shape
    depth, hidden = zs.shape[2], zs.shape[3]
    dz = np.empty(hidden, dtype=xs.dtype)
    dpre = np.empty(hidden, dtype=xs.dtype)
    for b in range(batch):
        dx = np.zeros(n_states, dtype=xs.dtype)
        for t in range(length - 1, -1, -1):
            for i in range(n_states):
                dx[i] += grad_xs[b, t, i]
            _output_layer_back(dx, zs[b, t, depth - 1], w_o, dw_o, db_o, dz)
            _hidden_layers_back(zs[b, t], w_h, dw_h, db_h, dz, dpre)
            x_prev = xs[b, t - 1] if t > 0 else x0[b]
            _first_layer_back(dz, zs[b, t, 0], x_prev, w_x, dw_x, da[b, t], dpre, dx)
        for i in range(n_states):
            dx0[b, i] = dx[i]


class _STNRecurrence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, x0, w_x, w_h, b_h, w_o, b_o):
        a_np, x0_np = as_numpy(a), as_numpy(x0.to(a.dtype))
        weights = [as_numpy(w.to(a.dtype)) for w in (w_x, w_h, b_h, w_o, b_o)]
        batch, length, hidden = a_np.shape
        xs = np.empty((batch, length, x0_np.shape[1]), dtype=a_np.dtype)
        zs = np.empty((batch, length, weights[1].shape[0] + 1, hidden), dtype=a_np.dtype)
        _forward(a_np, x0_np, *weights, xs, zs)
        ctx.arrays = (x0_np, xs, zs, weights[0], weights[1], weights[3])
        return torch.from_numpy(xs)

    @staticmethod
    def backward(ctx, grad_xs):
        x0_np, xs, zs, w_x, w_h, w_o = ctx.arrays
        dtype = xs.dtype
        da = np.empty((xs.shape[0], xs.shape[1], zs.shape[3]), dtype=dtype)
        dx0 = np.empty_like(x0_np)
        dw_x, dw_h, dw_o = np.zeros_like(w_x), np.zeros_like(w_h), np.zeros_like(w_o)
        db_h = np.zeros((w_h.shape[0], zs.shape[3]), dtype=dtype)
        db_o = np.zeros(w_o.shape[0], dtype=dtype)
        _backward(as_numpy(grad_xs.to(torch.from_numpy(xs).dtype)), x0_np, xs, zs, w_x, w_h,
                  w_o, da, dx0, dw_x, dw_h, db_h, dw_o, db_o)
        return tuple(torch.from_numpy(g) for g in (da, dx0, dw_x, dw_h, db_h, dw_o, db_o))


def stn_recurrence(a: Tensor, x0: Tensor, w_x: Tensor, w_h: Tensor, b_h: Tensor, w_o: Tensor,
                   b_o: Tensor) -> Tensor:
    """States [B, T, n_states] of the STN recurrence of the module doc."""
    return _STNRecurrence.apply(a.contiguous(), x0.contiguous(), w_x, w_h, b_h, w_o, b_o)

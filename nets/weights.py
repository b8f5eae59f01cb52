"""A trained network's weights as plain matrices: the one place they are unpacked.

The compiled kernels (`nets.stn_kernel`, `nets.fast`) and the exporters (`nets.export`) all
read a model through these two functions, so a change to how a model stores its layers is
made here once:

    stn_layers(model)        STN: x[n] = x[n-1] + MLP([u[n], u[n-1], x[n-1]]), its readout
    recurrent_layers(model)  GRU / LSTM: nn.GRU / nn.LSTM weights, output and skip layers

Both return the model's own tensors (autograd flows through them, so training uses them too);
`numpy(layers)` gives float64 copies for the compiled and exported paths. Everything is in
the model's scaled units: un = (u - u_mean) / u_std, x_scaled, y = y_scaled * y_std + y_mean.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class STNLayers:
    """The STN map in scaled units. H hidden units, S states, F = n_inputs * (1 + history).

        z_1 = tanh(w_u [u[n], u[n-1]] + w_x x[n-1] + b_1)
        z_l = tanh(w_h[l-2] z_{l-1} + b_h[l-2]),  l = 2..depth
        x[n] = x[n-1] + w_o z_depth + b_o                  (depth 0: w_o acts on the features)
        y = readout [x, u] + sum(correction: tanh layers, then a linear one)
    """

    w_u: Tensor            # [H, F]  first layer, input part (u[n], then u[n-1] with history)
    w_x: Tensor            # [H, S]  first layer, state part
    b_1: Tensor            # [H]
    w_h: Tensor            # [depth - 1, H, H] the hidden layers after the first
    b_h: Tensor            # [depth - 1, H]
    w_o: Tensor            # [S, H]  the increment layer
    b_o: Tensor            # [S]
    readout_w: Tensor      # [1, S + n_inputs]
    readout_b: Tensor      # [1]
    correction: tuple      # ((w, b), ...): tanh layers, the last one linear; () if none
    depth: int


@dataclass(frozen=True)
class RecurrentLayers:
    """A one-layer GRU or LSTM with linear output and skip, in PyTorch's gate order
    (GRU r, z, n; LSTM i, f, g, o), on scaled input, with scaled output:

        y_scaled = out_w h + out_b + skip_w un
    """

    cell: str              # "gru" or "lstm"
    w_ih: Tensor           # [G H, n_inputs]
    b_ih: Tensor           # [G H]
    w_hh: Tensor           # [G H, H]
    b_hh: Tensor           # [G H]
    out_w: Tensor          # [1, H]
    out_b: Tensor          # [1]
    skip_w: Tensor         # [1, n_inputs]


def _linears(sequential: nn.Module) -> list[nn.Linear]:
    return [m for m in sequential if isinstance(m, nn.Linear)]


def stn_layers(model) -> STNLayers:
    """The layers of an `nets.STN` (its own tensors)."""
    linears = _linears(model.mlp)
    n_features = model.n_inputs * (1 + model.history)
    first, last = linears[0], linears[-1]
    depth = len(linears) - 1
    if depth:
        hidden = linears[1:-1]
        w_u, w_x, b_1 = first.weight[:, :n_features], first.weight[:, n_features:], first.bias
        w_o, b_o = last.weight, last.bias
    else:  # no hidden layer: the increment is linear in the features
        hidden = []
        w_u = first.weight.new_zeros(0, n_features)
        w_x = first.weight.new_zeros(0, model.n_states)
        b_1 = first.bias.new_zeros(0)
        w_o, b_o = last.weight, last.bias
    width = model.hidden
    if hidden:
        w_h = torch.stack([m.weight for m in hidden])
        b_h = torch.stack([m.bias for m in hidden])
    else:
        w_h = first.weight.new_zeros(0, width, width)
        b_h = first.weight.new_zeros(0, width)
    correction = ()
    if model.correction is not None:
        correction = tuple((m.weight, m.bias) for m in _linears(model.correction))
    return STNLayers(w_u, w_x, b_1, w_h, b_h, w_o, b_o, model.readout.weight,
                     model.readout.bias, correction, depth)


def recurrent_layers(model) -> RecurrentLayers:
    """The layers of a `nets.GRU` (gru, gru-sm) or `nets.LSTM` (its own tensors)."""
    rnn = model.rnn
    if rnn.num_layers != 1 or rnn.bidirectional:
        raise NotImplementedError("only one-layer, one-directional recurrent models exist")
    cell = "lstm" if isinstance(rnn, nn.LSTM) else "gru"
    return RecurrentLayers(cell, rnn.weight_ih_l0, rnn.bias_ih_l0, rnn.weight_hh_l0,
                           rnn.bias_hh_l0, model.out.weight, model.out.bias, model.skip.weight)


def _to_numpy(value):
    if isinstance(value, Tensor):
        return np.ascontiguousarray(value.detach().double().cpu().numpy())
    if isinstance(value, tuple):
        return tuple(_to_numpy(v) for v in value)
    return value


def numpy(layers):
    """The same dataclass with every tensor as a contiguous float64 numpy array."""
    return dataclasses.replace(layers, **{f.name: _to_numpy(getattr(layers, f.name))
                                          for f in dataclasses.fields(layers)})


def scaling(model) -> dict[str, np.ndarray]:
    """The model's input, state and output statistics as float64 arrays."""
    return {key: _to_numpy(getattr(model, key)) for key in
            ("u_mean", "u_std", "x_mean", "x_std", "y_mean", "y_std")}

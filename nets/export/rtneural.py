"""RTNeural's JSON model format (what AIDA-X, GuitarML's Proteus and ChowDSP plug-ins load).

    {"in_shape": [null, null, 1 + K],
     "layers": [{"type": "gru", "shape": [null, null, W], "activation": "",
                 "weights": [kernel [1][3W], recurrent [W][3W], bias [2][3W]]},
                {"type": "dense", "shape": [null, null, 1], "activation": "",
                 "weights": [kernel [W][1], bias [1]]}],
     "in_skip": 0, "metadata": {"samplerate": ..., provenance}}

A model trained with knobs (`nodalnet train --knob drive=0:1`) takes K more inputs after the
audio, the knob values as the netlist's `.param`s take them (raw, the scaling is folded in);
metadata.knobs gives each one's name, range and default, in input order (AIDA-X and Proteus
feed parameter values the same way, as extra inputs beside the audio).

Weights are in the Keras layout RTNeural's `json_parser` reads: kernels [inputs][gates * W]
with the gates in Keras's order (GRU z, r, h; LSTM i, f, c, o), a GRU's bias as two rows
(input, recurrent: Keras's reset_after layout, h = tanh(W_h u + b_0h + r (U_h h + b_1h))), an
LSTM's as one. PyTorch orders a GRU's gates r, z, n, so they are permuted; its n gate is
Keras's h with reset_after. The network is `plugin.plugin_rnn`: input scaling, readout and
skip folded in, so `in_skip` is 0 (AIDA-X adds the dry input only when it is 1). The layer is
widened with inert units to the next size AIDA-X compiles in (8, 12, 16, 20, 32, 40), which
changes nothing for any other RTNeural loader. RTNeural starts every layer at zero: a model
that `simulate --model` starts from the circuit's rest state (gru-sm) differs for the first
moments; that state is in metadata.initial_state for loaders that can set it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..inference import knob_values, run_knobs
from .plugin import PluginRNN, plugin_rnn, provenance

KINDS = ("gru", "gru-sm", "lstm")
#: RNN widths that AIDA-X has compiled model types for
AIDA_X_WIDTHS = (8, 12, 16, 20, 32, 40)
#: PyTorch gate blocks in Keras order: GRU (r, z, n) -> (z, r, h); LSTM unchanged
KERAS_ORDER = {"gru": (1, 0, 2), "lstm": (0, 1, 2, 3)}


def _width(hidden: int) -> int:
    return next((w for w in AIDA_X_WIDTHS if w >= hidden + 1), hidden + 1)


def _keras(rows: np.ndarray, net: PluginRNN) -> np.ndarray:
    """[G W, ...] in PyTorch gate order -> the same in Keras gate order."""
    blocks = np.split(rows, net.gates, axis=0)
    return np.concatenate([blocks[g] for g in KERAS_ORDER[net.cell]], axis=0)


def _plain(a: np.ndarray) -> list:
    return np.asarray(a, dtype=np.float64).tolist()


def model_dict(model, run_dir: str | Path) -> dict:
    """The RTNeural JSON document of a gru, gru-sm or lstm model."""
    net = plugin_rnn(model, _width(model.hidden), knobs=True)
    kernel = _keras(net.w_ih, net).T                 # [1 + K, G W]
    recurrent = _keras(net.w_hh, net).T              # [W, G W]
    if net.cell == "gru":
        bias = [_plain(_keras(net.b_ih, net)), _plain(_keras(net.b_hh, net))]
    else:
        bias = _plain(net.b_ih + net.b_hh)
    info = provenance(model, run_dir)
    meta = {"samplerate": info["sample_rate"],
            "name": f"{info['circuit'] or 'model'} {info['model']}",
            "esr": info["test_esr"], **info,
            "hidden_units": {"trained": net.hidden, "skip": 1,
                             "inert": net.width - net.hidden - 1}}
    if np.any(net.h0):
        meta["initial_state"] = _plain(net.h0)
    knobs = run_knobs(model)
    if knobs:  # the inputs after the audio: knob values as the netlist's .params take them
        meta["inputs"] = ["audio (V)"] + [k.name for k in knobs]
        meta["knobs"] = [{"name": k.name, "min": k.low, "max": k.high,
                          "default": v} for k, v in zip(knobs, knob_values(model, None).values(),
                                                       strict=True)]
    return {
        "in_shape": [None, None, 1 + len(knobs)],
        "in_skip": 0,
        "layers": [
            {"type": net.cell, "activation": "", "shape": [None, None, net.width],
             "weights": [_plain(kernel), _plain(recurrent), bias]},
            {"type": "dense", "activation": "", "shape": [None, None, 1],
             "weights": [_plain(net.head_w[:, None]), [float(net.head_b)]]},
        ],
        "metadata": meta,
    }

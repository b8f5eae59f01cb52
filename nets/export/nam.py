"""Neural Amp Modeler's `.nam` file, architecture "LSTM" (what the NAM plug-in loads).

    {"version": "0.5.4", "architecture": "LSTM",
     "config": {"input_size": 1, "hidden_size": W, "num_layers": 1},
     "weights": [...], "sample_rate": 48000.0, "metadata": {...}}

The flat weights, per layer: the matrix [W_ih | W_hh] ([4W, inputs + W], rows in PyTorch's
gate order i, f, g, o) row by row, the bias b_ih + b_hh [4W], the initial hidden state [W],
the initial cell state [W]; then the head's weights [W] and bias [1]. The network is
`plugin.plugin_rnn` (scaling, readout and skip folded in; the skip is one more unit).
Version 0.5.x is the file version every NAM plug-in since 2023 reads. `input_level_dbu` and
`output_level_dbu` say that a sample value of 1.0 is 1 V, for the plug-in's calibration.
The plug-in "pre-warms" a model on silence before it plays; the Python loader does not.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .plugin import VOLT_PEAK_DBU, plugin_rnn, provenance

KINDS = ("lstm",)
VERSION = "0.5.4"


def model_dict(model, run_dir: str | Path) -> dict:
    """The .nam document of an lstm model."""
    net = plugin_rnn(model)
    flat = np.concatenate([np.concatenate([net.w_ih, net.w_hh], axis=1).ravel(),
                           net.b_ih + net.b_hh, net.h0, net.c0, net.head_w, [net.head_b]])
    info = provenance(model, run_dir)
    now = datetime.now(timezone.utc)
    metadata = {
        "date": {"year": now.year, "month": now.month, "day": now.day, "hour": now.hour,
                 "minute": now.minute, "second": now.second},
        "name": f"{info['circuit'] or 'model'} {info['model']}",
        "modeled_by": "nodalnet",
        "input_level_dbu": VOLT_PEAK_DBU,
        "output_level_dbu": VOLT_PEAK_DBU,
        "nodalnet": info,
    }
    return {
        "version": VERSION,
        "architecture": "LSTM",
        "config": {"input_size": 1, "hidden_size": net.width, "num_layers": 1},
        "weights": flat.tolist(),
        "sample_rate": info["sample_rate"],
        "metadata": metadata,
    }

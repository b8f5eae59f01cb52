"""What every plug-in format needs from a run: its provenance, its start state, and its
recurrent network with our scaling, readout and skip folded into the layers.

Plug-in engines run a bare recurrent layer and a dense layer on the raw sample values:

    h[n] = GRU or LSTM(h[n-1], u[n]);   y[n] = w . h[n] + b

Our models read the scaled input un = (u - u_mean) / u_std and add a linear skip path,
y = y_std (out(h) + skip un) + y_mean. The scaling folds into the input weights and the
dense layer exactly. The skip has no place in such a network, so it becomes one extra unit
that runs in its linear range: its update gate is held shut (z = sigmoid(-30), about 1e-13;
for an LSTM the input and output gates open and the forget gate shut the same way), so it
holds tanh(a) with a = d (u - u_mean), d = 1e-4 per volt, and the dense layer reads it with
weight y_std skip / (d u_std). tanh(a) = a (1 - a^2 / 3): the skip term is off by a^2 / 3
relative, 3e-9 at 1 V and 3e-7 at 10 V (an LSTM unit applies tanh twice: twice that). The
unit reads no other unit and no other unit reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import weights
from .errors import UnsupportedExportError

#: a gate pre-activation that holds a sigmoid at 1 (float32 rounds it to 1) or at ~9e-14
SATURATE = 30.0
#: the skip unit's input gain per volt: tanh(a) stays linear to a^2 / 3
LINEAR_GAIN = 1e-4
#: the 1 kHz sine of 0 dBFS peak is 1 V peak (sample value 1.0 = 1 V): 20 log10(0.7071/0.7746)
VOLT_PEAK_DBU = float(20.0 * np.log10(np.sqrt(0.5) / np.sqrt(0.6)))


def check_single_input(model, fmt: str) -> None:
    if model.n_inputs != 1:
        raise UnsupportedExportError(
            f"the model has {model.n_inputs} inputs (its circuit has control sources); "
            f"{fmt} files take one audio input: export a model of a circuit without "
            "`*@ control` sources")


def provenance(model, run_dir: str | Path) -> dict:
    """Where a model comes from: circuit, values, kind, size, rate, test figures."""
    info = getattr(model, "run_info", None) or {}
    data = info.get("data", {})
    test = info.get("test") or {}
    circuit = data.get("circuit")
    return {
        "exported_by": "nodalnet",
        "run": Path(run_dir).name,
        "circuit": Path(str(circuit)).name if circuit else None,
        "values": data.get("values") or {},
        "model": model.spec["name"],
        "hidden": getattr(model, "hidden", None),
        "sample_rate": float(model.sample_rate),
        "test_esr": test.get("esr"),
        "test_esr_emphasis": test.get("esr_emphasis"),
        "test_state_esr": test.get("state_esr"),
        "units": "volts in, volts out (sample value 1.0 = 1 V)",
    }


def start_state(model) -> np.ndarray:
    """The state `simulate --model` starts a signal beginning at 0 V from [state size]."""
    from ..inference import start_state as start

    return start(model, np.zeros(model.n_inputs))[0].double().numpy()


@dataclass(frozen=True)
class PluginRNN:
    """A one-layer GRU/LSTM on raw volts, in PyTorch's gate order (GRU r, z, n; LSTM i, f,
    g, o), `width` units: the trained ones, the skip unit, then inert padding."""

    cell: str
    w_ih: np.ndarray       # [G W, 1]
    b_ih: np.ndarray       # [G W]
    w_hh: np.ndarray       # [G W, W]
    b_hh: np.ndarray       # [G W]
    head_w: np.ndarray     # [W]
    head_b: float
    h0: np.ndarray         # [W] the start state (zero but for gru-sm / resettable models)
    c0: np.ndarray         # [W] the LSTM cell's start state (zeros for a GRU)
    hidden: int            # trained units
    width: int

    @property
    def gates(self) -> int:
        return 3 if self.cell == "gru" else 4


def plugin_rnn(model, width: int | None = None) -> PluginRNN:
    """The model's recurrent network on raw volts, with the skip unit, `width` units (at
    least hidden + 1; the rest are inert: all their weights zero, so they stay at 0)."""
    check_single_input(model, "plug-in")
    layers = weights.numpy(weights.recurrent_layers(model))
    scale = weights.scaling(model)
    mu, sd = float(scale["u_mean"][0]), float(scale["u_std"][0])
    y_mean, y_std = float(scale["y_mean"][0]), float(scale["y_std"][0])
    hidden = layers.w_hh.shape[1]
    gates = 3 if layers.cell == "gru" else 4
    width = max(int(width or 0), hidden + 1)

    w_ih, b_ih = np.zeros((gates * width, 1)), np.zeros(gates * width)
    w_hh, b_hh = np.zeros((gates * width, width)), np.zeros(gates * width)
    for g in range(gates):
        rows, src = slice(g * width, g * width + hidden), slice(g * hidden, (g + 1) * hidden)
        w_ih[rows, 0] = layers.w_ih[src, 0] / sd
        b_ih[rows] = layers.b_ih[src] - layers.w_ih[src, 0] * mu / sd
        w_hh[rows, :hidden] = layers.w_hh[src]
        b_hh[rows] = layers.b_hh[src]

    k, d = hidden, LINEAR_GAIN  # the skip unit
    candidate = 2  # GRU n, LSTM g: the gate whose tanh carries d un
    w_ih[candidate * width + k, 0] = d
    b_ih[candidate * width + k] = -d * mu
    if layers.cell == "gru":
        b_ih[1 * width + k] = -SATURATE          # z = 0: h = n, no memory
    else:
        b_ih[0 * width + k] = SATURATE           # i = 1
        b_ih[1 * width + k] = -SATURATE          # f = 0: c = g, no memory
        b_ih[3 * width + k] = SATURATE           # o = 1: h = tanh(c)

    head_w = np.zeros(width)
    head_w[:hidden] = y_std * layers.out_w[0]
    head_w[k] = y_std * layers.skip_w[0, 0] / (d * sd)
    head_b = y_std * float(layers.out_b[0]) + y_mean

    s0 = start_state(model)
    h0, c0 = np.zeros(width), np.zeros(width)
    h0[:hidden] = s0[:hidden]
    if layers.cell == "lstm":
        c0[:hidden] = s0[hidden:2 * hidden]
    return PluginRNN(layers.cell, w_ih, b_ih, w_hh, b_hh, head_w, head_b, h0, c0, hidden, width)

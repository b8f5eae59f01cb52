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


def knob_names(model) -> list[str]:
    """The knobs a run was trained with (its inputs after the audio and the controls)."""
    from ..inference import run_knobs
    return [k.name for k in run_knobs(model)]


def check_single_input(model, fmt: str, knobs: bool = False) -> None:
    """UnsupportedExportError unless the model's inputs are the audio alone (or, with `knobs`,
    the audio and its knob values: no control sources)."""
    extra = len(knob_names(model)) if knobs else 0
    if model.n_inputs != 1 + extra:
        controls = model.n_inputs - 1 - len(knob_names(model))
        why = (f"its circuit has {controls} control source(s)" if controls else
               f"it takes {model.n_inputs - 1} knob value(s)")
        raise UnsupportedExportError(
            f"the model has {model.n_inputs} inputs ({why}); {fmt} files take one audio "
            + ("input and the knob values" if knobs else "input") + ": export a model of a "
            "circuit without `*@ control` sources"
            + ("" if knobs or controls else " trained without --knob (or use --format "
               "rtneural, whose files carry knob inputs)"))


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
    """The state `simulate --model` starts a signal beginning at 0 V from [state size] (its
    knobs at their defaults)."""
    from ..inference import knob_values
    from ..inference import start_state as start

    values = knob_values(model, None)
    u0 = np.concatenate([np.zeros(model.n_inputs - len(values)), list(values.values())])
    return start(model, u0, values)[0].double().numpy()


@dataclass(frozen=True)
class PluginRNN:
    """A one-layer GRU/LSTM on raw volts, in PyTorch's gate order (GRU r, z, n; LSTM i, f,
    g, o), `width` units: the trained ones, the skip unit, then inert padding."""

    cell: str
    w_ih: np.ndarray       # [G W, 1 + K]: the audio, then the K knob values
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


def plugin_rnn(model, width: int | None = None, knobs: bool = False) -> PluginRNN:
    """The model's recurrent network on raw volts, with the skip unit, `width` units (at
    least hidden + 1; the rest are inert: all their weights zero, so they stay at 0).
    knobs: the model may take knob values as inputs after the audio (raw values too)."""
    check_single_input(model, "plug-in", knobs)
    layers = weights.numpy(weights.recurrent_layers(model))
    scale = weights.scaling(model)
    n_in = model.n_inputs
    mu = np.asarray(scale["u_mean"], dtype=np.float64).reshape(-1)[:n_in]
    sd = np.asarray(scale["u_std"], dtype=np.float64).reshape(-1)[:n_in]
    y_mean, y_std = float(scale["y_mean"][0]), float(scale["y_std"][0])
    hidden = layers.w_hh.shape[1]
    gates = 3 if layers.cell == "gru" else 4
    width = max(int(width or 0), hidden + 1)

    w_ih, b_ih = np.zeros((gates * width, n_in)), np.zeros(gates * width)
    w_hh, b_hh = np.zeros((gates * width, width)), np.zeros(gates * width)
    for g in range(gates):
        rows, src = slice(g * width, g * width + hidden), slice(g * hidden, (g + 1) * hidden)
        w_ih[rows] = layers.w_ih[src] / sd
        b_ih[rows] = layers.b_ih[src] - layers.w_ih[src] @ (mu / sd)
        w_hh[rows, :hidden] = layers.w_hh[src]
        b_hh[rows] = layers.b_hh[src]

    # the skip unit carries d sum_j c_j (u_j - mu_j), c_j = skip_j / sd_j (relative to the
    # audio's: c_0 = 1 for a model with one input, as before)
    k, d = hidden, LINEAR_GAIN
    c = layers.skip_w[0, :n_in] / sd
    c0 = c[0] if c[0] != 0 else 1.0
    candidate = 2  # GRU n, LSTM g: the gate whose tanh carries d un
    w_ih[candidate * width + k] = d * c / c0
    b_ih[candidate * width + k] = -d * float(c @ mu) / c0
    if layers.cell == "gru":
        b_ih[1 * width + k] = -SATURATE          # z = 0: h = n, no memory
    else:
        b_ih[0 * width + k] = SATURATE           # i = 1
        b_ih[1 * width + k] = -SATURATE          # f = 0: c = g, no memory
        b_ih[3 * width + k] = SATURATE           # o = 1: h = tanh(c)

    head_w = np.zeros(width)
    head_w[:hidden] = y_std * layers.out_w[0]
    head_w[k] = y_std * c0 / d
    head_b = y_std * float(layers.out_b[0]) + y_mean

    s0 = start_state(model)
    h0, c0 = np.zeros(width), np.zeros(width)
    h0[:hidden] = s0[:hidden]
    if layers.cell == "lstm":
        c0[:hidden] = s0[hidden:2 * hidden]
    return PluginRNN(layers.cell, w_ih, b_ih, w_hh, b_hh, head_w, head_b, h0, c0, hidden, width)

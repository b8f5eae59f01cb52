"""Pictures of a circuit at work: input, output and states over time; the output's spectrogram.

matplotlib with the Agg backend (no screen needed); every figure is written atomically as PNG.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import signals
from .files import OutputSet, atomic_write
from .mna import Equations
from .render import render


def circuit_figure(eq: Equations, path: str | Path, sample_rate: float = 48000.0,
                   duration: float = 2.0, peak: float = 1.0, oversample: int = 1,
                   outputs: OutputSet | None = None) -> Path:
    """Plot a plucked string (peak volts) and white noise (peak/10) through the circuit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = signals.plucked_string(duration, sample_rate, peak=peak, seed=11)
    y, states = render(eq, x, sample_rate, oversample=oversample)
    noise = np.random.default_rng(0).uniform(-peak / 10, peak / 10, int(duration * sample_rate))
    y_noise, _ = render(eq, noise, sample_rate, oversample=oversample)
    t = np.arange(len(x)) / sample_rate
    # waveforms over 60 ms around the second note's onset; the spectrogram over all of it
    window = slice(int(0.28 * sample_rate), int(0.34 * sample_rate)) if duration > 0.4 else \
        slice(None)
    t, x, y, states = t[window], x[window], y[window], states[window]
    fig, axes = plt.subplots(3, 1, figsize=(9, 8), constrained_layout=True)
    ax = axes[0]
    ax.plot(t, x, lw=0.6, label="input v(" + eq.input_names[0] + ")")
    ax.plot(t, y, lw=0.6, label="output v(" + ",".join(eq.netlist.output) + ")")
    ax.set_ylabel("volts")
    ax.set_title(f"{eq.netlist.title}", fontsize=10)
    ax.legend(loc="upper right", fontsize=8)
    ax = axes[1]
    for k, name in enumerate(eq.state_names):
        ax.plot(t, states[:, k], lw=0.6, label=name)
    if eq.n_inputs > 1:
        from .render import input_matrix
        u = input_matrix(eq, np.zeros(int(duration * sample_rate)), sample_rate)[window]
        for k, name in enumerate(eq.input_names[1:], start=1):
            ax.plot(t, u[:, k], lw=1.0, ls="--", label=f"control {name}")
    ax.set_ylabel("volts")
    ax.set_title("circuit states (capacitor voltages)", fontsize=10)
    ax.legend(loc="upper right", fontsize=8, ncol=2)
    ax = axes[2]
    ax.specgram(y_noise, NFFT=2048, Fs=sample_rate, noverlap=1536, cmap="magma")
    ax.set_ylim(0, 8000)
    ax.set_xlabel("seconds")
    ax.set_ylabel("Hz")
    ax.set_title(f"output spectrogram, white noise input ({peak / 10:g} V peak)", fontsize=10)
    return save_png(fig, path, outputs=outputs)


def save_png(fig, path: str | Path, dpi: int = 90, outputs: OutputSet | None = None) -> Path:
    """Write a matplotlib figure as PNG atomically (a reader never sees half a file); close it.

    With `outputs`, the PNG joins that set: it appears when the set commits, with the others.
    """
    import matplotlib.pyplot as plt

    path = Path(path)
    try:
        def draw(f):
            fig.savefig(f, format="png", dpi=dpi)
        if outputs is None:
            atomic_write(path, draw)
        else:
            outputs.write(path, draw)
    finally:
        plt.close(fig)
    return path

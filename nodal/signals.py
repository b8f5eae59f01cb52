"""Test material made here, never downloaded: sines, sweeps and plucked strings (volts, SI).

All functions return float64 numpy arrays `[time]` at the given sample rate.
"""

from __future__ import annotations

import numpy as np
from scipy import signal


def sine(frequency: float, duration: float, sample_rate: float = 48000.0,
         amplitude: float = 1.0) -> np.ndarray:
    t = np.arange(int(round(duration * sample_rate))) / sample_rate
    return amplitude * np.sin(2 * np.pi * frequency * t)


def sweep(f0: float, f1: float, duration: float, sample_rate: float = 48000.0,
          amplitude: float = 1.0) -> np.ndarray:
    """A logarithmic sine sweep from f0 to f1 Hz (scipy.signal.chirp)."""
    t = np.arange(int(round(duration * sample_rate))) / sample_rate
    return amplitude * signal.chirp(t, f0, duration, f1, method="logarithmic", phi=-90)


def karplus_strong(frequency: float, duration: float, sample_rate: float,
                   rng: np.random.Generator, damping: float = 0.996,
                   brightness: float = 0.5) -> np.ndarray:
    """One plucked note: a noise burst in a delay line with a low-pass loop (Karplus-Strong)."""
    n = int(round(duration * sample_rate))
    period = max(2, int(round(sample_rate / frequency)))
    burst = rng.uniform(-1, 1, period)
    # A one-pole low-pass on the excitation sets how bright the pluck is.
    burst = signal.lfilter([1 - brightness], [1, -brightness], burst)
    # y[n] = burst[n] + damping * (y[n-P] + y[n-P-1]) / 2, as a recursive filter.
    a = np.zeros(period + 2)
    a[0] = 1.0
    a[period] = -damping / 2
    a[period + 1] = -damping / 2
    excitation = np.zeros(n)
    excitation[: min(period, n)] = burst[: min(period, n)]
    return signal.lfilter([1.0], a, excitation)


def plucked_string(duration: float = 1.0, sample_rate: float = 48000.0, peak: float = 1.0,
                   cutoff: float = 5000.0, seed: int = 0, notes_per_second: float = 4.0,
                   low: float = 82.4, high: float = 660.0) -> np.ndarray:
    """Plucked-string notes of random pitch and level, band-limited below `cutoff` Hz.

    The guitar-like test signal of the acceptance tests: notes between `low` and `high` Hz,
    each overlapping the last, low-passed (8th-order Butterworth, zero phase) and scaled to
    `peak` volts. It starts at exactly zero volts.
    """
    rng = np.random.default_rng(seed)
    n = int(round(duration * sample_rate))
    out = np.zeros(n)
    hop = int(sample_rate / notes_per_second)
    start = 0
    while start < n:
        f = float(np.exp(rng.uniform(np.log(low), np.log(high))))
        note = karplus_strong(f, (n - start) / sample_rate, sample_rate, rng,
                              damping=rng.uniform(0.990, 0.999), brightness=rng.uniform(0.1, 0.7))
        out[start:] += rng.uniform(0.3, 1.0) * note[: n - start]
        start += int(hop * rng.uniform(0.5, 1.5))
    if cutoff and cutoff < sample_rate / 2:
        sos = signal.butter(8, cutoff, fs=sample_rate, output="sos")
        out = signal.sosfiltfilt(sos, out)
    # a string has no DC: Karplus-Strong's loop keeps its burst's mean, so block below 20 Hz
    out = signal.sosfiltfilt(signal.butter(2, 20.0, "highpass", fs=sample_rate, output="sos"),
                             out)
    out -= out[0]
    fade = min(n, int(0.002 * sample_rate))
    out[:fade] *= np.linspace(0, 1, fade)
    m = np.max(np.abs(out))
    return out * (peak / m) if m > 0 else out

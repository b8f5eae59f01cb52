"""Oversampling around a solver: polyphase resampling (scipy.signal.resample_poly).

Distortion circuits create harmonics above Nyquist; running the solver at N times the rate
and filtering back down keeps them from aliasing and shrinks the trapezoidal rule's error by
about N^2 in amplitude.
"""

from __future__ import annotations

import numpy as np
from scipy import signal


def upsample(x: np.ndarray, factor: int, axis: int = 0) -> np.ndarray:
    """x [time, ...] at rate fs -> [time * factor, ...] at rate factor * fs."""
    if factor == 1:
        return np.asarray(x, dtype=float)
    return signal.resample_poly(x, factor, 1, axis=axis)


def downsample(x: np.ndarray, factor: int, axis: int = 0) -> np.ndarray:
    """x [time * factor, ...] at rate factor * fs -> [time, ...] at rate fs."""
    if factor == 1:
        return np.asarray(x, dtype=float)
    return signal.resample_poly(x, 1, factor, axis=axis)

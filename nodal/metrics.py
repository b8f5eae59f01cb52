"""Figures of merit used everywhere in nodalnet: the error-to-signal ratio and real-time factor.

    esr(target, estimate)                        float for numpy, a tensor for torch
    esr(y, y_hat, reduction="none")              one ratio per batch item and channel
    real_time_factor(audio_seconds, wall)        seconds of audio per second of wall time
    measure_real_time_factor(fn, audio_seconds)  one thread, warmed up, best of `repeats`

The error-to-signal ratio of an estimate y_hat of a target y (the definition of the study's
paper, and the one every nodalnet table and loss uses):

    ESR = sum_t (y[t] - y_hat[t])^2 / sum_t y[t]^2

The target comes FIRST, everywhere (`esr(target, estimate)`): the ratio is not symmetric
(`esr(y, 0.5 y)` is 0.25, `esr(0.5 y, y)` is 1). It is 0 for a perfect estimate and 1 for an
estimate of silence. A target with less energy than `ENERGY_FLOOR` is divided by the floor
instead, so a silent target gives a finite figure (never NaN or inf).

Arrays are numpy arrays or torch tensors (torch stays differentiable), both of one shape laid
out [time], [time, channels] or [batch, time, channels]. The ratio is taken per batch item and
channel, then reduced: "mean" (the reported figure), "sum", "none" (the ratios themselves) or
"pooled" (one ratio per channel over the whole batch, sum of errors over sum of energies, then
the mean over channels: a training loss that a quiet segment cannot dominate).
This module imports nothing of `nets`; `nets` builds its losses and metrics on it.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator

import numpy as np
import torch

from .errors import MetricError

ENERGY_FLOOR = 1e-12
REDUCTIONS = ("mean", "sum", "none", "pooled")
_TIME_AXIS = {1: 0, 2: 0, 3: 1}        # [time], [time, channels], [batch, time, channels]
_POOLED_AXES = {1: (0,), 2: (0,), 3: (0, 1)}


def _check(target, estimate, reduction: str) -> None:
    if tuple(target.shape) != tuple(estimate.shape):
        raise MetricError(f"ESR needs a target and an estimate of one shape; got target "
                          f"{list(target.shape)} and estimate {list(estimate.shape)}")
    if target.ndim not in _TIME_AXIS:
        raise MetricError(f"ESR takes [time], [time, channels] or [batch, time, channels]; got "
                          f"{target.ndim} axes {list(target.shape)}")
    if reduction not in REDUCTIONS:
        raise MetricError(f"ESR reduction must be one of {REDUCTIONS}, got {reduction!r}")


def esr(target, estimate, reduction: str = "mean"):
    """sum((target - estimate)^2) / sum(target^2) along time (see the module doc).

    numpy in: a float (an array for reduction="none"); torch in (either argument): a tensor in
    the inputs' dtype, with gradients.
    """
    if isinstance(target, torch.Tensor) or isinstance(estimate, torch.Tensor):
        ref = target if isinstance(target, torch.Tensor) else estimate
        target = torch.as_tensor(target, dtype=ref.dtype, device=ref.device)
        estimate = torch.as_tensor(estimate, dtype=ref.dtype, device=ref.device)
        floor = torch.clamp
    else:
        target = np.asarray(target, dtype=np.float64)
        estimate = np.asarray(estimate, dtype=np.float64)
        floor = np.clip
    _check(target, estimate, reduction)
    error = (target - estimate) ** 2
    energy = target ** 2
    axes = _POOLED_AXES[target.ndim] if reduction == "pooled" else _TIME_AXIS[target.ndim]
    ratio = error.sum(axis=axes) / floor(energy.sum(axis=axes), ENERGY_FLOOR, None)
    if reduction == "none":
        return ratio
    value = ratio.sum() if reduction == "sum" else ratio.mean()
    return value if isinstance(value, torch.Tensor) else float(value)


# -- real-time factor -----------------------------------------------------------------------
def real_time_factor(audio_seconds: float, wall_seconds: float) -> float:
    """Seconds of audio per second of wall time (above 1: faster than real time)."""
    return float(audio_seconds) / max(float(wall_seconds), 1e-9)


def best_wall_time(fn: Callable[[], object], repeats: int) -> float:
    """The shortest wall time (s) of `repeats` calls of fn: the least disturbed by other load."""
    best = float("inf")
    for _ in range(max(1, int(repeats))):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


@contextmanager
def one_thread() -> Iterator[None]:
    """torch on one thread inside the block, its previous thread count restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def measure_real_time_factor(fn: Callable[[], object], audio_seconds: float, repeats: int = 1,
                             warm_up: Callable[[], object] | None = None) -> float:
    """The real-time factor of `fn` (which processes `audio_seconds` of audio) on one torch
    thread: one call of `warm_up` (default: `fn` itself; compilation happens there), then the
    best of `repeats` timed calls."""
    with one_thread():
        (warm_up or fn)()
        return real_time_factor(audio_seconds, best_wall_time(fn, repeats))

"""`nodal.metrics`: the ESR against closed forms worked out by hand, in numpy and torch alike,
and the real-time factor's arithmetic."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nodal.errors import MetricError, NodalError
from nodal.metrics import (ENERGY_FLOOR, best_wall_time, esr, measure_real_time_factor,
                           real_time_factor)

RATE = 48000.0


def sine(frequency=1000.0, n=4800, delay=0):
    """n samples of a unit sine, `delay` samples late (4800 samples: whole periods of 1 kHz)."""
    return np.sin(2 * np.pi * frequency * (np.arange(n) - delay) / RATE)


def as_torch(a):
    return torch.tensor(a)[None, :, None]           # [batch, time, channels]


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_a_scaled_copy_gives_the_squared_gain_error(kind):
    # sum((y - g y)^2) / sum(y^2) = (1 - g)^2 for any y
    y = np.random.default_rng(0).standard_normal(1000)
    wrap = as_torch if kind == "torch" else np.asarray
    assert float(esr(wrap(y), wrap(0.9 * y))) == pytest.approx(0.01, rel=1e-12)
    assert float(esr(wrap(y), wrap(y))) == 0.0
    assert float(esr(wrap(y), wrap(0 * y))) == pytest.approx(1.0, rel=1e-12)   # silence


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_a_delayed_sine_gives_2_minus_2_cos_of_its_phase(kind):
    # over whole periods, |e^{j w n} - e^{j w (n - d)}|^2 / |e^{j w n}|^2 = 2 - 2 cos(w d)
    wrap = as_torch if kind == "torch" else np.asarray
    phase = 2 * math.pi * 1000 * 3 / RATE
    value = esr(wrap(sine()), wrap(sine(delay=3)))
    assert float(value) == pytest.approx(2 - 2 * math.cos(phase), rel=1e-9)


def test_the_target_comes_first():
    # not symmetric: a half-size estimate errs by 1/4 of the target's energy, while the target
    # measured against its half errs by all of the half's energy
    y = sine()
    assert esr(y, 0.5 * y) == pytest.approx(0.25, rel=1e-12)
    assert esr(0.5 * y, y) == pytest.approx(1.0, rel=1e-12)
    t = as_torch(y)
    assert float(esr(t, 0.5 * t)) == pytest.approx(0.25, rel=1e-12)


def test_reductions_per_item_summed_and_pooled():
    loud, quiet = sine(), 0.1 * sine()                # energies 100 : 1
    y = torch.tensor(np.stack([loud, quiet]))[:, :, None]
    y_hat = torch.tensor(np.stack([1.1 * loud, quiet]))[:, :, None]   # error on the loud one
    per_item = esr(y, y_hat, reduction="none")
    assert per_item.shape == (2, 1)
    assert per_item[:, 0].tolist() == pytest.approx([0.01, 0.0], abs=1e-15)
    assert float(esr(y, y_hat)) == pytest.approx(0.005, rel=1e-12)           # mean of items
    assert float(esr(y, y_hat, "sum")) == pytest.approx(0.01, rel=1e-12)
    # pooled: (0.01 E) / (E + 0.01 E), energy-weighted
    assert float(esr(y, y_hat, "pooled")) == pytest.approx(0.01 / 1.01, rel=1e-12)


def test_layouts_time_then_channels():
    y = np.stack([sine(), 2 * sine(delay=7)], -1)    # [time, 2 channels]
    y_hat = y * np.array([0.9, 0.5])                 # gains 0.9 and 0.5 per channel
    assert esr(y, y_hat, "none") == pytest.approx([0.01, 0.25], rel=1e-12)
    assert esr(y, y_hat) == pytest.approx(0.13, rel=1e-12)
    assert esr(y[None], y_hat[None]) == pytest.approx(0.13, rel=1e-12)  # [1, time, 2]


def test_numpy_gives_floats_and_torch_gives_differentiable_tensors():
    y = sine()
    assert type(esr(y, 0.5 * y)) is float
    target = as_torch(y)
    estimate = (0.5 * target).requires_grad_()
    value = esr(target, estimate)
    value.backward()
    # d/dy_hat of sum((y - y_hat)^2) / sum(y^2) = -2 (y - y_hat) / sum(y^2)
    expected = -2 * (target - 0.5 * target) / target.pow(2).sum()
    torch.testing.assert_close(estimate.grad, expected, rtol=1e-12, atol=0)
    assert esr(torch.ones(4, dtype=torch.float32), torch.zeros(4)).dtype == torch.float32


def test_a_silent_target_is_finite_not_nan():
    silent = np.zeros(100)
    assert esr(silent, silent) == 0.0
    # divided by the energy floor: the error energy (100 * 1e-6^2) / 1e-12 = 100
    assert esr(silent, np.full(100, 1e-6)) == pytest.approx(1e-10 / ENERGY_FLOOR, rel=1e-9)
    value = esr(torch.zeros(1, 100, 1), torch.full((1, 100, 1), 1e-3))
    assert torch.isfinite(value)


def test_bad_input_is_a_named_error():
    with pytest.raises(MetricError, match="one shape"):
        esr(np.zeros(10), np.zeros(11))
    with pytest.raises(MetricError, match="one shape"):
        esr(torch.zeros(1, 10, 1), torch.zeros(1, 11, 1))
    with pytest.raises(MetricError, match="reduction"):
        esr(np.ones(10), np.ones(10), reduction="median")
    with pytest.raises(MetricError, match="axes"):
        esr(np.ones((1, 2, 3, 4)), np.ones((1, 2, 3, 4)))
    assert issubclass(MetricError, NodalError)


def test_real_time_factor_is_audio_over_wall_time():
    assert real_time_factor(10.0, 0.5) == 20.0
    assert real_time_factor(1.0, 0.0) > 1e8                       # never a division by zero
    calls = []
    assert best_wall_time(lambda: calls.append(1), 3) >= 0 and len(calls) == 3
    # one warm-up call, then the timed ones; torch's thread count is restored afterwards
    threads = torch.get_num_threads()
    seen = []
    rtf = measure_real_time_factor(lambda: seen.append(torch.get_num_threads()), 1.0, repeats=2)
    assert seen == [1, 1, 1] and rtf > 0
    assert torch.get_num_threads() == threads

"""ESR on signals with known answers, and the pre-emphasis filter."""

from __future__ import annotations

import math

import pytest
import torch

from nets import AudioShapeMismatchError
from nets.losses import ESRLoss, StateSpaceLoss, esr, pre_emphasis


def sine(frequency=1000.0, n=48000, rate=48000.0, delay=0):
    t = (torch.arange(n, dtype=torch.float64) - delay) / rate
    return torch.sin(2 * math.pi * frequency * t)[None, :, None]


def test_esr_of_a_scaled_copy_is_the_squared_gain_error():
    y = sine()
    assert float(esr(0.9 * y, y)) == pytest.approx(0.01, rel=1e-12)
    assert float(esr(y, y)) == 0.0


def test_esr_of_a_delayed_sine_is_2_minus_2_cos_of_the_phase():
    # a delay of d samples at f: error energy / signal energy = |1 - e^{-jwd}|^2 = 2 - 2 cos(wd)
    y, late = sine(), sine(delay=3)
    expected = 2 - 2 * math.cos(2 * math.pi * 1000 * 3 / 48000)
    assert float(esr(late, y)) == pytest.approx(expected, rel=1e-3)


def test_esr_reductions_per_item_and_pooled():
    y = torch.cat([sine(), 0.1 * sine()])            # two items, energies 100:1
    y_hat = torch.cat([1.1 * sine(), 0.1 * sine()])  # error only on the loud one
    per_item = esr(y_hat, y, reduction="none")
    assert per_item.shape == (2, 1)
    assert per_item[:, 0].tolist() == pytest.approx([0.01, 0.0])
    assert float(esr(y_hat, y)) == pytest.approx(0.005)          # mean of items
    assert float(esr(y_hat, y, "sum")) == pytest.approx(0.01)
    assert float(esr(y_hat, y, "pooled")) == pytest.approx(0.01 / 1.01)  # energy-weighted


def test_pre_emphasis_is_one_minus_085_z_inverse():
    step = torch.ones(1, 5, 1)
    assert pre_emphasis(step)[0, :, 0].tolist() == pytest.approx([1.0, 0.15, 0.15, 0.15, 0.15])
    # it weights highs: a DC error on an 8 kHz tone shrinks by 0.15^2 / |1 - 0.85 e^{-jw}|^2
    y = sine(8000.0)
    plain = float(esr(y + 0.1, y))
    emphasised = float(ESRLoss(emphasis=0.85)(y + 0.1, y))
    w = 2 * math.pi * 8000 / 48000
    gain = 1 + 0.85 ** 2 - 2 * 0.85 * math.cos(w)
    assert emphasised == pytest.approx(plain * 0.15 ** 2 / gain, rel=1e-2)


def test_state_space_loss_adds_the_weighted_state_term():
    y, x = sine(), torch.cat([sine(), 2 * sine()], -1)
    loss = StateSpaceLoss(state_weight=0.5)
    value = loss(0.9 * y, y, 0.8 * x, x)
    assert float(value) == pytest.approx(0.01 + 0.5 * 0.04)


def test_shape_mismatch_is_a_named_error():
    with pytest.raises(AudioShapeMismatchError):
        esr(torch.zeros(1, 10, 1), torch.zeros(1, 11, 1))

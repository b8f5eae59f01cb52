"""The losses: pre-emphasis against its closed-form frequency response, and the ESR losses
against closed forms (the ESR itself is tested in tests/nodal/test_metrics.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import signal

from nets.losses import ESRLoss, StateSpaceLoss, pre_emphasis
from nodal.errors import MetricError

RATE = 48000.0


def sine(frequency=1000.0, n=48000, delay=0):
    t = (torch.arange(n, dtype=torch.float64) - delay) / RATE
    return torch.sin(2 * math.pi * frequency * t)[None, :, None]


def test_pre_emphasis_on_a_step_is_one_then_1_minus_c():
    step = torch.ones(1, 5, 1)
    assert pre_emphasis(step)[0, :, 0].tolist() == pytest.approx([1.0, 0.15, 0.15, 0.15, 0.15])


@pytest.mark.parametrize("frequency", [50.0, 1000.0, 8000.0, 20000.0])
def test_pre_emphasis_has_the_frequency_response_of_1_minus_085_z_inverse(frequency):
    # a sine through H(z) = 1 - 0.85 z^-1 is |H| sin(w n + arg H) from its second sample on;
    # H(e^{jw}) from scipy.signal.freqz
    w = 2 * math.pi * frequency / RATE
    _, h = signal.freqz([1.0, -0.85], [1.0], worN=[w])
    n = np.arange(1, 2000)
    expected = np.abs(h[0]) * np.sin(w * n + np.angle(h[0]))
    out = pre_emphasis(sine(frequency, 2000), 0.85)[0, 1:, 0].numpy()
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-9)


def test_emphasised_esr_weights_an_error_by_the_filter_gain():
    # an error of gain g on a tone at w and a DC offset: after 1 - c z^-1 the tone's energy
    # scales by |H(w)|^2 and the DC error's by (1 - c)^2 = 0.15^2
    y = sine(8000.0)
    plain = float(ESRLoss()(y + 0.1, y))
    emphasised = float(ESRLoss(emphasis=0.85)(y + 0.1, y))
    w = 2 * math.pi * 8000 / RATE
    gain = 1 + 0.85 ** 2 - 2 * 0.85 * math.cos(w)      # |1 - 0.85 e^{-jw}|^2
    assert plain == pytest.approx(0.1 ** 2 / 0.5, rel=1e-3)   # DC^2 / mean(sin^2)
    assert emphasised == pytest.approx(plain * 0.15 ** 2 / gain, rel=1e-2)


def test_esr_loss_takes_prediction_then_target():
    # torch's loss order: loss(prediction, target); a half-size prediction errs by 1/4
    y = sine()
    assert float(ESRLoss()(0.5 * y, y)) == pytest.approx(0.25, rel=1e-12)
    assert float(ESRLoss()(y, 0.5 * y)) == pytest.approx(1.0, rel=1e-12)


def test_state_space_loss_adds_the_weighted_state_term():
    y, x = sine(), torch.cat([sine(), 2 * sine()], -1)
    loss = StateSpaceLoss(state_weight=0.5)
    value = loss(0.9 * y, y, 0.8 * x, x)
    assert float(value) == pytest.approx(0.01 + 0.5 * 0.04)


def test_bad_shapes_and_reductions_are_named_errors():
    with pytest.raises(MetricError, match="one shape"):
        ESRLoss()(torch.zeros(1, 10, 1), torch.zeros(1, 11, 1))
    with pytest.raises(MetricError, match="reduction"):
        ESRLoss("median")

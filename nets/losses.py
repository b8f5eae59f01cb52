"""Losses on sequences `[batch, time, channels]`: the error-to-signal ratio and pre-emphasis.

The ESR is `nodal.metrics.esr(target, estimate)`: sum_t (y - y_hat)^2 / sum_t y^2 per batch item
and channel, then reduced; the one definition used for training losses and for every reported
metric (`nets.metrics`). The losses here take their arguments in torch's order,
`loss(prediction, target)`, and may pre-emphasise both first.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

import nodal.metrics
from nodal.errors import MetricError
from nodal.metrics import REDUCTIONS


def pre_emphasis(y: Tensor, coefficient: float = 0.85) -> Tensor:
    """The first-order high-pass 1 - c z^-1 along time: y[n] - c y[n-1] (y[-1] = 0)."""
    previous = torch.nn.functional.pad(y[:, :-1], (0, 0, 1, 0))
    return y - coefficient * previous


class ESRLoss(nn.Module):
    """The ESR as a loss: `ESRLoss(emphasis=0.85, reduction="pooled")(y_hat, y)` is
    `esr(y, y_hat, "pooled")` after the pre-emphasis filter 1 - 0.85 z^-1 on both.

    reduction: as `nodal.metrics.esr` ("mean" is the reported metric, "pooled" what training
    uses, so a silent segment cannot dominate a batch).
    """

    def __init__(self, reduction: str = "mean", emphasis: float | None = None):
        super().__init__()
        if reduction not in REDUCTIONS:
            raise MetricError(f"ESR reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction
        self.emphasis = emphasis

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        if self.emphasis:
            prediction = pre_emphasis(prediction, self.emphasis)
            target = pre_emphasis(target, self.emphasis)
        return nodal.metrics.esr(target, prediction, self.reduction)


class StateSpaceLoss(nn.Module):
    """L = ESR(y) + state_weight * ESR(x), states given already centred and scaled.

    Shapes: y [B, T, 1], x [B, T, n_states]. With `emphasis` the output term is pre-emphasised;
    the state term never is (states are smooth by nature and the weight sets their share).
    """

    def __init__(self, state_weight: float = 0.0, emphasis: float | None = None,
                 reduction: str = "pooled"):
        super().__init__()
        self.state_weight = float(state_weight)
        self.output = ESRLoss(reduction, emphasis)
        self.states = ESRLoss(reduction)

    def forward(self, y_hat: Tensor, y: Tensor, x_hat: Tensor | None = None,
                x: Tensor | None = None) -> Tensor:
        loss = self.output(y_hat, y)
        if self.state_weight and x_hat is not None and x is not None:
            loss = loss + self.state_weight * self.states(x_hat, x)
        return loss

"""Losses on sequences `[batch, time, channels]`: the error-to-signal ratio and pre-emphasis.

ESR = sum_t (y_hat - y)^2 / sum_t y^2, per batch item and channel, then reduced. It is the one
definition used for training losses and for every reported metric (`nets.metrics`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

EPS = 1e-12
REDUCTIONS = ("mean", "sum", "none", "pooled")


def pre_emphasis(y: Tensor, coefficient: float = 0.85) -> Tensor:
    """The first-order high-pass 1 - c z^-1 along time: y[n] - c y[n-1] (y[-1] = 0)."""
    previous = torch.nn.functional.pad(y[:, :-1], (0, 0, 1, 0))
    return y - coefficient * previous


def esr(prediction: Tensor, target: Tensor, reduction: str = "mean",
        emphasis: float | None = None) -> Tensor:
    """Error-to-signal ratio of `prediction` against `target`, both [B, T, C].

    reduction: "none" -> [B, C]; "mean" -> mean over batch items and channels (the reported
    metric: per item, then averaged); "sum" -> sum of the per-item values; "pooled" -> one ratio
    per channel over the whole batch (sum of errors / sum of energies), then averaged over
    channels: what training uses, so a silent segment cannot dominate a batch.
    emphasis: apply the pre-emphasis filter 1 - emphasis z^-1 to both first.
    """
    if prediction.shape != target.shape:
        from .errors import AudioShapeMismatchError
        raise AudioShapeMismatchError(f"prediction {list(prediction.shape)} and target "
                                      f"{list(target.shape)} must have the same shape")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if emphasis:
        prediction, target = pre_emphasis(prediction, emphasis), pre_emphasis(target, emphasis)
    error = (prediction - target).pow(2)
    energy = target.pow(2)
    if reduction == "pooled":
        return (error.sum((0, 1)) / (energy.sum((0, 1)) + EPS)).mean()
    ratio = error.sum(1) / (energy.sum(1) + EPS)
    if reduction == "none":
        return ratio
    return ratio.mean() if reduction == "mean" else ratio.sum()


class ESRLoss(nn.Module):
    """`esr` as a module: `ESRLoss(emphasis=0.85, reduction="pooled")(y_hat, y)`."""

    def __init__(self, reduction: str = "mean", emphasis: float | None = None):
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction
        self.emphasis = emphasis

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        return esr(prediction, target, self.reduction, self.emphasis)


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

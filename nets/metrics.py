"""Evaluation of a model on a split: output ESR (plain and pre-emphasised) and state ESR.

One definition each, all from `nodal.metrics.esr` (per batch item, then averaged):
    esr            ESR(y, y_hat), target first, over the whole signal
    esr_emphasis   the same after the pre-emphasis filter 1 - 0.85 z^-1 (a separate column)
    state_esr      ESR per circuit state, averaged over the states (None when the model's
                   states are not trained against the circuit's, e.g. plain `gru`)
Free-running (`every=0`) is the default and what "test ESR" means: the model starts from the
state before the split (`encode(x_init)`) if it can be reset, else from its initial state,
and runs to the end on its own outputs. `every=k` resets to true states every k samples.
"""

from __future__ import annotations

import torch

import nodal.metrics
from nodal.interface import Trajectory

from . import fast
from .data import Split
from .losses import ESRLoss

EMPHASIS = 0.85


def output_esr(y_hat: torch.Tensor, y: torch.Tensor, emphasis: float | None = None) -> float:
    """ESR of outputs [B, T, 1] (per item, averaged), pre-emphasised first with `emphasis`."""
    return float(ESRLoss("mean", emphasis)(y_hat.double(), y.double()))


def state_esr(x_hat: torch.Tensor, x: torch.Tensor) -> float:
    """ESR per state [B, T, n_states], averaged over items and states."""
    return float(nodal.metrics.esr(x.double(), x_hat.double(), "mean"))


def start_state(model, split: Split) -> torch.Tensor:
    if getattr(model, "resettable", True):
        return model.reset(split.x_init, split.u[:, 0])
    return model.initial_state(split.u.shape[0], split.u[:, 0])


@torch.no_grad()
def predict(model, split: Split, every: int = 0, use_fast: bool = True) -> Trajectory:
    """The model's trajectory over a split, free-running (every=0) or reset every k samples."""
    s0 = start_state(model, split)
    if every == 0 and use_fast and fast.supports(model) and _fast_available(model):
        return fast.compile(model)(split.u, s0)
    return model(split.u, s0=s0, teacher=split.x if every else None, every=every)


def _fast_available(model) -> bool:
    solver = getattr(model, "solver", None)
    return solver is None or hasattr(solver, "simulate")


def validation_window(model) -> int:
    """The k of per-epoch validation: the model's `validate_every` (0, free-running, for all
    but the slow neural ODE, which resets to true states every 4096 samples so that the
    windows run side by side as one batch)."""
    return int(getattr(model, "validate_every", 0))


def evaluate(model, split: Split, every: int = 0, use_fast: bool = True) -> dict:
    """{"esr", "esr_emphasis", "state_esr"} of `model` on `split` (see the module doc)."""
    was_training = model.training
    model.eval()
    try:
        traj = predict(model, split, every, use_fast)
    finally:
        model.train(was_training)
    return {"esr": output_esr(traj.y, split.y),
            "esr_emphasis": output_esr(traj.y, split.y, EMPHASIS),
            "state_esr": state_esr(traj.x, split.x) if getattr(model, "exposes_states", True)
            else None}


def esr_by_knob(y_hat: torch.Tensor, split: Split, knob_names: list[str]) -> list[dict]:
    """Output ESR of each stretch of constant knob values of a split (the test split's grid
    points): [{"values": {knob: value}, "esr": ...}], in the order they come. The knob values
    are the split's last len(knob_names) input channels."""
    if not knob_names:
        return []
    k = split.u[0, :, -len(knob_names):].double()
    change = (k[1:] != k[:-1]).any(-1).nonzero().flatten().tolist()
    edges = [0] + [c + 1 for c in change] + [split.length]
    pooled: dict[tuple, list[tuple[int, int]]] = {}
    for a, z in zip(edges, edges[1:], strict=False):
        pooled.setdefault(tuple(round(float(v), 12) for v in k[a]), []).append((a, z))
    out = []
    for values, spans in pooled.items():
        index = torch.cat([torch.arange(a, z) for a, z in spans])
        out.append({"values": dict(zip(knob_names, values, strict=True)),
                    "esr": output_esr(y_hat[:, index], split.y[:, index])})
    return out

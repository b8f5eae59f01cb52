"""Training: one scheme for every model, the window length k is the knob.

Each training segment (true states x_prev before it) is cut into windows of k samples; every
window starts from the true state (`encode`), runs free for k samples with gradients, and the
loss is

    L = ESR(y, y_hat) + state_weight * ESR(x_scaled, x_hat_scaled)    (target first)

pooled over the batch, states scaled by the training statistics (so every state counts alike).
`window=1` is teacher forcing (one step from every true state, all in one batch for the STN),
`window=0` means k = inf: the whole segment free-running, started from the true state for
models that can be reset, else from the initial state after `warmup` samples without loss.
Adam, a cosine learning-rate schedule, gradient clipping; validation free-running each epoch;
the best checkpoint is kept; a NaN loss rolls back to the epoch's start and halves the rate.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable

import torch

from nodal.errors import ConvergenceError

from . import checkpoint, metrics
from .checkpoint import Progress
from .data import Batch, CircuitDataset, check_compatible
from .errors import ConfigError, TrainingDivergedError
from .losses import StateSpaceLoss


def parse_window(value, what: str = "window") -> int:
    """A training window as a person writes it ("inf", "0", "16") or a config holds it (int)
    -> the int a `TrainConfig` holds: k >= 1, or 0 for inf (free-running). ConfigError else.
    (The same reading as `nets.windows.parse_window` + `to_config` where that module exists.)"""
    allowed = "inf (or 0: free-running) or a whole number of samples >= 1"
    if isinstance(value, str):
        word = value.strip().lower()
        if word == "inf":
            return 0
        if not word.isdigit():
            raise ConfigError("window", value, allowed, what)
        value = int(word)
    if isinstance(value, float) and math.isinf(value) and value > 0:
        return 0
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError("window", value, allowed, what)
    return value


def _whole(name: str, value, low: int, high: int | None = None, allowed: str | None = None):
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low \
        and (high is None or value <= high)
    if not ok:
        raise ConfigError(name, value, allowed or (
            f"a whole number >= {low}" if high is None else f"a whole number from {low} to {high}"))


def _real(name: str, value, low: float, high: float | None = None, low_open: bool = False,
          high_open: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value) and (value > low if low_open else value >= low) \
        and (high is None or (value < high if high_open else value <= high))
    if not ok:
        lo = f"> {low:g}" if low_open else f">= {low:g}"
        hi = "" if high is None else f" and {'<' if high_open else '<='} {high:g}"
        raise ConfigError(name, value, f"a finite number {lo}{hi}")


@dataclass
class TrainConfig:
    """Training settings. window: k samples between resets to true states (0 = inf).

    Every field is checked on construction (`check`): ConfigError names the field and its
    allowed range."""

    window: int = 1
    state_weight: float = 1.0
    epochs: int = 20
    segment: int = 2048          # samples per training segment
    batch: int = 32              # segments per batch
    lr: float = 3e-3
    lr_final: float = 0.03       # the cosine schedule ends at lr * lr_final
    warmup: int = 0              # samples run without loss first (k = inf, non-resettable)
    emphasis: float | None = None  # pre-emphasis coefficient of the output loss
    grad_clip: float = 1.0
    steps_per_epoch: int = 0     # at most this many batches per epoch (0: the whole split)
    seed: int = 0
    threads: int = 1
    max_rollbacks: int = 6

    def __post_init__(self) -> None:
        self.window = parse_window(self.window)
        self.check()

    def check(self) -> None:
        """ConfigError (field, value, allowed range) for the first setting out of range."""
        _whole("epochs", self.epochs, 1)
        _whole("batch", self.batch, 1)
        _whole("segment", self.segment, 2)
        if isinstance(self.window, bool) or not isinstance(self.window, int) \
                or not 0 <= self.window <= self.segment:
            raise ConfigError("window", self.window, "inf (or 0: free-running) or a whole "
                              f"number of samples from 1 to the segment length ({self.segment})")
        _real("lr", self.lr, 0.0, low_open=True)
        _real("lr_final", self.lr_final, 0.0, 1.0)
        _real("state_weight", self.state_weight, 0.0)
        _whole("warmup", self.warmup, 0)
        if self.warmup >= self.segment:
            raise ConfigError("segment", self.segment, "a whole number above the warm-up of "
                              f"{self.warmup} samples (run without loss before each segment)")
        if self.emphasis is not None:
            _real("emphasis", self.emphasis, -1.0, 1.0, low_open=True, high_open=True)
        _real("grad_clip", self.grad_clip, 0.0, low_open=True)
        _whole("steps_per_epoch", self.steps_per_epoch, 0)
        _whole("seed", self.seed, 0, 2**32 - 1)
        _whole("threads", self.threads, 1)
        _whole("max_rollbacks", self.max_rollbacks, 0)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def config_for(model_name: str, **overrides) -> TrainConfig:
    """The defaults the model `model_name` declares (`NeuralModel.defaults`: chosen to reach
    the diode-clipper targets in a few minutes on 2 cores) with the given (non-None) settings
    on top."""
    from .registry import MODELS

    cls = MODELS.get(model_name)
    base = dict(cls.defaults) if cls is not None else {}
    base.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig.from_dict(base)


def window_loss(model, batch: Batch, config: TrainConfig,
                criterion: StateSpaceLoss) -> torch.Tensor:
    """The scheme's loss on one batch of segments (see the module doc)."""
    u, x, y = batch.u, batch.x, batch.y
    k = config.window
    if k and k < u.shape[1]:
        traj = model(u, s0=model.reset(batch.x_prev, batch.u_prev), teacher=x, every=k)
    else:
        if getattr(model, "resettable", True):
            s0 = model.reset(batch.x_prev, batch.u_prev)
        else:
            s0 = model.initial_state(u.shape[0], u[:, 0])
        if config.warmup:
            w = config.warmup
            with torch.no_grad():
                s0 = model(u[:, :w], s0=s0).s_final
            u, x, y = u[:, w:], x[:, w:], y[:, w:]
        traj = model(u, s0=s0)
    dtype = traj.y.dtype
    x_true = model.scale_x(x.to(dtype))
    x_hat = model.scale_x(traj.x)
    return criterion(traj.y, y.to(dtype), x_hat, x_true)


def _learning_rate(config: TrainConfig, epoch: int, scale: float) -> float:
    progress = epoch / max(1, config.epochs - 1)
    cosine = config.lr_final + (1 - config.lr_final) * 0.5 * (1 + math.cos(math.pi * progress))
    return config.lr * scale * cosine


def train(model, data: CircuitDataset, config: TrainConfig | None = None,
          out: str | Path | None = None, resume: bool = False,
          on_step: Callable | None = None, on_epoch: Callable | None = None,
          log: Callable | None = None, **overrides) -> dict:
    """Train `model` on `data` with `config` (defaults of the model's name, then overrides).

    out: run directory (`nets.checkpoint`: one checkpoint per epoch, holding the history too;
    the folder is locked while training); resume: continue the run in `out` from its newest
    checkpoint. on_step(epoch, step, steps, running_loss) and on_epoch(record) report progress.
    Returns the run's info dict (what run.json holds).
    """
    name = getattr(model, "spec", {}).get("name", type(model).__name__.lower())
    config = config or config_for(name, **overrides)
    config.check()
    check_compatible(model, data)
    if config.segment > data.train.length:
        raise ConfigError("segment", config.segment, "a whole number from 2 to the training "
                          f"split's length ({data.train.length} samples)")
    torch.set_num_threads(max(1, config.threads))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    info = {"model": getattr(model, "spec", None), "data": data.spec(),
            "config": asdict(config), "history": [], "best": None, "test": None,
            "status": "running", "parameters": sum(p.numel() for p in model.parameters())}
    if out is None:
        return _fit(model, optimizer, data, config, info, None, Progress(), on_step, on_epoch,
                    log)
    out = Path(out)
    with checkpoint.locked(out):
        state = checkpoint.recover(out, log) if resume else None
        if state is None:
            if not resume:
                checkpoint.check_new(out)
            elif log:
                log(f"{out}: no epoch had finished; starting it from its first epoch")
            torch.manual_seed(config.seed)
            progress = Progress()
            checkpoint.begin(out, progress.state(model, optimizer, info))
        else:
            progress = checkpoint.restore(model, optimizer, state, out)
            info = state["info"]
            done = progress.epoch + 1
            if info.get("status") == "done" and done >= config.epochs:
                return info
            if done > config.epochs:
                raise ConfigError("epochs", config.epochs, f"at least the {done} epochs this "
                                  "run has done")
            info.update(config=asdict(config), status="running", test=None)
        return _fit(model, optimizer, data, config, info, out, progress, on_step, on_epoch, log)


def _fit(model, optimizer, data: CircuitDataset, config: TrainConfig, info: dict,
         out: Path | None, progress: Progress, on_step: Callable | None,
         on_epoch: Callable | None, log: Callable | None) -> dict:
    """The epochs after `progress.epoch`, a checkpoint after each, then the test metrics."""
    state_weight = config.state_weight if getattr(model, "exposes_states", True) else 0.0
    criterion = StateSpaceLoss(state_weight, config.emphasis)
    history = info["history"]
    best = min((r["val_esr"] for r in history if math.isfinite(r["val_esr"])), default=math.inf)
    best_state = progress.best_state or copy.deepcopy(model.state_dict())
    seconds = history[-1]["seconds"] if history else 0.0
    for epoch in range(progress.epoch + 1, config.epochs):
        began = time.perf_counter()
        total, count, lr = _epoch(model, optimizer, data, config, criterion, epoch, progress,
                                  on_step, log, lambda: _diverged(model, optimizer, info,
                                                                  out, progress))
        val = metrics.evaluate(model, data.val, metrics.validation_window(model))
        seconds += time.perf_counter() - began
        record = {"epoch": epoch, "train_loss": total / max(count, 1), "val_esr": val["esr"],
                  "val_esr_emphasis": val["esr_emphasis"], "val_state_esr": val["state_esr"],
                  "lr": lr, "seconds": round(seconds, 3)}
        history.append(record)
        improved = math.isfinite(val["esr"]) and val["esr"] < best
        if improved:
            best = val["esr"]
            best_state = progress.best_state = copy.deepcopy(model.state_dict())
            info["best"] = record
        progress.epoch = epoch
        if out:
            checkpoint.save(out, progress.state(model, optimizer, info), best=improved)
        if on_epoch:
            on_epoch(record)
    last = copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    info["test"] = metrics.evaluate(model, data.test)
    if hasattr(model, "component_values"):
        info["components"] = {"trained": model.component_values(), "true": model.true_values,
                              "start": model.start}
        if hasattr(model, "unseen_directions"):  # value combinations the output cannot see
            second = int(data.sample_rate)
            info["components"]["unseen"] = model.unseen_directions(data.val.u[:, :second])
    info["status"] = "done"
    if out:
        state = progress.state(model, optimizer, info)
        state["model"] = last  # the last weights stay the ones to continue from
        checkpoint.save(out, state)
    return info


def _diverged(model, optimizer, info: dict, out: Path | None, progress: Progress) -> None:
    info["status"] = "diverged"
    if out:
        checkpoint.save(out, progress.state(model, optimizer, info), best=False)


def _epoch(model, optimizer, data: CircuitDataset, config: TrainConfig,
           criterion: StateSpaceLoss, epoch: int, progress: Progress,
           on_step: Callable | None, log: Callable | None,
           give_up: Callable) -> tuple[float, int, float]:
    """One epoch of steps (total loss, steps, rate), repeated from its start with half the
    rate after a NaN loss; after `max_rollbacks` of them, `give_up()` and
    TrainingDivergedError."""
    good_model = copy.deepcopy(model.state_dict())
    good_optimizer = copy.deepcopy(optimizer.state_dict())
    while True:
        lr = _learning_rate(config, epoch, progress.lr_scale)
        for group in optimizer.param_groups:
            group["lr"] = lr
        generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
        batches = list(data.segments(config.segment, config.batch, generator))
        if config.steps_per_epoch:
            batches = batches[:config.steps_per_epoch]
        total, count, diverged = 0.0, 0, False
        model.train()
        for step, batch in enumerate(batches):
            try:
                loss = window_loss(model, batch, config, criterion)
            except ConvergenceError:
                loss = torch.tensor(math.nan)
            if not bool(torch.isfinite(loss)):
                diverged = True
                break
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            total += float(loss.detach())
            count += 1
            checkpoint.fault_point("step")
            if on_step:
                on_step(epoch, step + 1, len(batches), total / count)
        if not diverged:
            return total, count, lr
        model.load_state_dict(good_model)
        optimizer.load_state_dict(good_optimizer)
        progress.rollbacks += 1
        if progress.rollbacks > config.max_rollbacks:
            give_up()
            raise TrainingDivergedError(
                f"the loss was NaN/inf {progress.rollbacks} times by epoch {epoch}, even at a "
                f"learning rate of {lr:.2e}; lower --lr or the --window")
        progress.lr_scale *= 0.5
        if log:
            log(f"epoch {epoch}: NaN loss, rolled back and halved the learning rate")

"""Put trained models (and the solver itself) side by side on the same held-out test signal.

For each model, on the test split of its circuit (all sequences [batch, time, channels], SI):

    esr            free-running output ESR (the model runs on its own from the split's start)
    esr_emphasis   the same after pre-emphasis 1 - 0.85 z^-1
    state_esr      ESR of the circuit states, averaged over states (models that expose them)
    esr_teacher    teacher-forced (k = 1) ESR: one step from every true state
    exposure_bias  esr / esr_teacher: how much worse the model does on its own outputs than
                   one step from the true state (above 1: the error feeds on itself)
    esr_by_window  ESR with a reset to the true states every k samples, k in RESET_WINDOWS
    growth         ESR versus time since the last reset (resets every GROWTH_WINDOW samples)
    parameters, rtf (real-time factor of free-running inference, one thread), train_seconds

Models that cannot be started from circuit states (plain GRU, LSTM) have no teacher-forced
figures: they start from their initial state and run the whole split free. Nor have the
solver-based rows (the reference solver and trained `nodal` runs): see `evaluate_model`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from nodal.metrics import measure_real_time_factor

from . import checkpoint, metrics
from .checkpoint import load_run
from .data import CircuitDataset, MaterialSpec, Split, dataset
from .windows import INF, format_window, parse_window

RESET_WINDOWS = (1, 4, 16, 64, 256, 1024)
GROWTH_WINDOW = 1024     # many windows per test split, so each offset averages many resets


@dataclass
class Evaluation:
    label: str
    model: str
    circuit: str
    window: int | float | None  # training window k (int >= 1 or math.inf); None: the solver
    state_weight: float | None
    seed: int | None
    hidden: int | None
    parameters: int
    esr: float
    esr_emphasis: float
    state_esr: float | None
    esr_teacher: float | None
    exposure_bias: float | None
    esr_by_window: dict[str, float] = field(default_factory=dict)
    growth: list[tuple[int, float]] = field(default_factory=list)
    rtf: float = math.nan
    train_seconds: float | None = None
    run_dir: str | None = None
    status: str | None = None         # a run's: done, stopped, training, diverged
    epochs_done: int | None = None
    epochs_asked: int | None = None
    #: free-running ESR at each knob setting of the test split: [{"values": {...}, "esr"}]
    esr_by_knob: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _excerpt(split: Split, length: int) -> Split:
    if split.length <= length:
        return split
    return Split(split.u[:, :length], split.x[:, :length], split.y[:, :length], split.x_init)


def error_growth(model, split: Split, window: int = GROWTH_WINDOW) -> list[tuple[int, float]]:
    """ESR of the samples n steps after a reset to the true state, for log-spaced n.

    The model is reset every `window` samples; the squared error at each offset is pooled over
    all windows and divided by the mean output power.
    """
    window = min(window, split.length)
    traj = metrics.predict(model, split, every=window)
    err = (traj.y.double() - split.y.double())[0, :, 0].numpy() ** 2
    power = float(np.mean(split.y.double().numpy() ** 2)) or 1e-30
    n = len(err) // window * window
    if n == 0:
        return []
    per_offset = err[:n].reshape(-1, window).mean(0) / power
    offsets = np.unique(np.round(np.geomspace(1, window, 40)).astype(int)) - 1
    # pool each log-spaced offset with its neighbours so the curve is readable
    out = []
    for k, o in enumerate(offsets):
        hi = offsets[k + 1] if k + 1 < len(offsets) else window
        out.append((int(o) + 1, float(per_offset[o:max(hi, o + 1)].mean())))
    return out


def real_time_factor(model, split: Split, repeats: int = 1) -> float:
    """Seconds of audio per second of wall time, free-running, one thread (best of repeats),
    after a warm-up (compilation) on a short excerpt."""
    return measure_real_time_factor(lambda: metrics.predict(model, split),
                                    split.length / model.sample_rate, repeats,
                                    warm_up=lambda: metrics.predict(model, _excerpt(split, 2048)))


def evaluate_model(model, data: CircuitDataset, label: str, meta: dict | None = None,
                   windows: tuple[int, ...] = RESET_WINDOWS, timing: bool = True) -> Evaluation:
    """Every figure of the module docstring for one model on `data.test`."""
    meta = meta or {}
    test = data.test
    model.eval()
    knob_names = [k.name for k in data.knobs]
    with torch.no_grad():
        free = metrics.evaluate(model, test)
        by_knob = []
        if knob_names:
            by_knob = metrics.esr_by_knob(metrics.predict(model, test).y, test, knob_names)
        # a model whose resets measure something else than exposure bias (the solver's, see
        # `NodalModel.reset_sweep`) is reported free-running only
        resettable = getattr(model, "resettable", True) and getattr(model, "reset_sweep", True)
        sweep_split = test
        by_window: dict[str, float] = {}
        teacher = None
        growth: list[tuple[int, float]] = []
        if resettable:
            for k in windows:
                by_window[format_window(k)] = metrics.evaluate(model, sweep_split,
                                                               every=k)["esr"]
            teacher = by_window.get(format_window(1))
            growth = error_growth(model, sweep_split)
        by_window.setdefault(format_window(INF), free["esr"])
        esr_free = free["esr"]
        rtf = real_time_factor(model, test) if timing else math.nan
    return Evaluation(
        label=label, model=meta.get("model", type(model).__name__.lower()),
        circuit=data.circuit, window=meta.get("window"), state_weight=meta.get("state_weight"),
        seed=meta.get("seed"), hidden=meta.get("hidden"),
        parameters=int(sum(p.numel() for p in model.parameters())),
        esr=free["esr"], esr_emphasis=free["esr_emphasis"], state_esr=free["state_esr"],
        esr_teacher=teacher,
        exposure_bias=(esr_free / teacher) if teacher and teacher > 0 else None,
        esr_by_window=by_window, growth=growth, rtf=rtf,
        train_seconds=meta.get("train_seconds"), run_dir=meta.get("run_dir"),
        status=meta.get("status"), epochs_done=meta.get("epochs_done"),
        epochs_asked=meta.get("epochs_asked"), esr_by_knob=by_knob)


def run_label(info: dict) -> str:
    m = info["model"]["name"]
    k = format_window(info["config"]["window"])
    return f"{m} k={k} seed={info['config']['seed']}"


def run_meta(run_dir: Path, info: dict) -> dict:
    kwargs = info["model"].get("kwargs", {})
    history = info.get("history") or [{}]
    return {"model": info["model"]["name"],
            "window": parse_window(info["config"]["window"], f"{run_dir}: config window"),
            "state_weight": info["config"]["state_weight"], "seed": info["config"]["seed"],
            "hidden": kwargs.get("hidden"), "train_seconds": history[-1].get("seconds"),
            "run_dir": str(run_dir), "status": checkpoint.status(run_dir, info),
            "epochs_done": len(info.get("history") or []),
            "epochs_asked": info["config"]["epochs"]}


def group_name(info: dict) -> str:
    """The runs compared on one test split: those of a circuit, apart for each set of knobs
    (a knob run's inputs and test grid are its own)."""
    knobs = MaterialSpec.from_dict(info["data"]["material"]).knobs
    name = info["data"]["circuit"]
    if not knobs:
        return name
    return f"{name} (knobs " + ", ".join(f"{n}={lo:g}:{hi:g}" for n, lo, hi in knobs) + ")"


def run_dataset(info: dict) -> CircuitDataset:
    spec = info["data"]
    return dataset(spec["circuit"], spec["sample_rate"], MaterialSpec.from_dict(spec["material"]),
                   spec["values"])


def evaluate_run(run_dir: str | Path, data: CircuitDataset | None = None,
                 timing: bool = True) -> Evaluation:
    """Load the best checkpoint of a run directory and evaluate it on its test split."""
    run_dir = Path(run_dir)
    model = load_run(run_dir)
    info = model.run_info
    data = data or run_dataset(info)
    return evaluate_model(model, data, run_label(info), run_meta(run_dir, info), timing=timing)


def evaluate_solver(data: CircuitDataset, timing: bool = True) -> Evaluation:
    """The white-box solver at the circuit's true values: the reference row of every table.

    Its free-running ESR measures only the data path (fast kernel for the data, the same
    kernel here): zero up to round-off. Its real-time factor is the point of the row.
    """
    from .nodal_model import NodalModel

    model = NodalModel(data.n_inputs, data.n_states, data.sample_rate, circuit=data.circuit,
                       values=data.values, start_factor=1.0,
                       knobs=[k.name for k in data.knobs] or None)
    return evaluate_model(model, data, "solver (true values)", {"model": "nodal"},
                          timing=timing)


@dataclass
class Comparison:
    """Evaluations grouped by circuit, and each circuit's dataset (for plots)."""

    groups: dict[str, list[Evaluation]]
    data: dict[str, CircuitDataset]


def compare(run_dirs: list[str | Path], circuit: str | None = None, with_solver: bool = True,
            timing: bool = True) -> Comparison:
    """Evaluate every run (grouped by circuit; `circuit` keeps only that one), plus the solver."""
    groups: dict[str, list[Evaluation]] = {}
    datasets: dict[str, CircuitDataset] = {}
    for run_dir in run_dirs:
        model = load_run(run_dir)
        info = model.run_info
        name = info["data"]["circuit"]
        if circuit and name != circuit:
            continue
        group = group_name(info)
        if group not in datasets:
            datasets[group] = run_dataset(info)
        ev = evaluate_model(model, datasets[group], run_label(info),
                            run_meta(Path(run_dir), info), timing=timing)
        groups.setdefault(group, []).append(ev)
    if with_solver:
        for name, data in datasets.items():
            groups[name].insert(0, evaluate_solver(data, timing))
    return Comparison(groups, datasets)

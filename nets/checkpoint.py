"""Run directories: the one owner of what a training run leaves behind.

    RUN_DIR/last.pt      the truth: weights, optimizer, epoch, learning-rate scale, the best
                         weights so far and the run's whole info (model spec, circuit, data
                         spec, training config, metrics history, best epoch, test metrics,
                         status), all in ONE file written atomically
    RUN_DIR/model.pt     view: the best weights (state_dict) by free-running validation ESR
    RUN_DIR/run.json     view: the run's info as JSON
    RUN_DIR/curves.csv   view: one row per epoch, the learning curves
    RUN_DIR/.lock        held (flock) by the process that trains the run

Why the history lives inside the checkpoint: a rename is the only atomic step a file system
offers, so one file has to hold everything that must agree (weights and the epochs that made
them). A kill at any moment leaves the previous or the next complete `last.pt`; the views are
rewritten from it after each epoch and whenever the run is opened for training again, so they
can lag behind by at most one epoch after a kill, never disagree with the weights after a
resume. Every file goes through `nodal.files.atomic_write` (temp file, fsync, rename); temp
files that a kill left behind are removed when a run is opened, under its lock.

`last.pt` is written only by `_commit` and read only by `_load_last`; its content is made by
`Progress.state` and loaded back by `restore` (the training loop holds neither format).
Folders of the first format (last.pt with weights, optimizer, epoch and lr scale only; history in
run.json) still load and resume.
"""

from __future__ import annotations

import copy
import csv
import errno
import fcntl
import io
import json
import os
import signal
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch

from nodal.files import atomic_write, remove_orphans, to_json

from .errors import CircuitMismatchError, RunBusyError, RunDirectoryError
from .registry import from_spec

RUN_JSON, BEST, LAST, CURVES, LOCK = "run.json", "model.pt", "last.pt", "curves.csv", ".lock"
FORMAT = 2
_KEYS = ("model", "optimizer", "epoch", "lr_scale")

#: test hook: "POINT" or "POINT@N" kills this process (SIGKILL) the N-th time it reaches POINT:
#: write:<file> (temp file written, not yet renamed), saved:<file> (renamed), step, genesis
FAULT_ENV = "NODALNET_FAULT"
_fault_counts: dict[str, int] = {}


def fault_point(name: str) -> None:
    """Die here if $NODALNET_FAULT names this point (kill tests; a no-op otherwise)."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    point, _, nth = spec.partition("@")
    if point != name:
        return
    key = f"{spec}#{os.getpid()}"  # a forked child counts from zero
    _fault_counts[key] = _fault_counts.get(key, 0) + 1
    if _fault_counts[key] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def _write(path: Path, fill: Callable) -> None:
    def payload(f):
        fill(f)
        fault_point(f"write:{path.name}")
    atomic_write(path, payload)
    fault_point(f"saved:{path.name}")


# -- the lock ---------------------------------------------------------------------------------
@contextmanager
def locked(run_dir: str | Path) -> Iterator[Path]:
    """Hold the run folder's lock (created with the folder) for training it; RunBusyError if
    another process holds it. The kernel releases it when the process dies, however. Temp files
    that killed writers left are removed once the lock is held."""
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise RunDirectoryError(f"cannot create the run folder {run_dir}: {exc.strerror}; "
                                "pick another --out") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise RunDirectoryError(f"cannot lock {run_dir / LOCK}: {exc.strerror}") from None
        raise RunBusyError(
            f"{run_dir} is being trained by another process"
            + (f" (pid {holder})" if holder.isdigit() else "")
            + f"; wait for it to finish (or stop it), then `nodalnet train --resume {run_dir}`"
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        remove_orphans(run_dir)
        yield run_dir
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def is_training(run_dir: str | Path) -> bool:
    """Whether a process holds the folder's lock now (without creating anything)."""
    try:
        fd = os.open(Path(run_dir) / LOCK, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


# -- the checkpoint's content ----------------------------------------------------------------
@dataclass
class Progress:
    """What a checkpoint holds besides weights, optimizer and info."""

    epoch: int = -1              # the last finished epoch (-1: none yet)
    lr_scale: float = 1.0        # halved at every NaN roll-back
    rollbacks: int = 0
    best_state: dict | None = None

    def state(self, model, optimizer, info: dict) -> dict:
        """The checkpoint (what `save` and `begin` commit) of a model, its optimizer and its
        run's info at this progress."""
        return {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "epoch": self.epoch, "lr_scale": self.lr_scale, "rollbacks": self.rollbacks,
                "best_state": self.best_state, "info": info}


def restore(model, optimizer, state: dict, out: str | Path) -> Progress:
    """Load a checkpoint (`read_checkpoint`'s) into model and optimizer; its progress."""
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise RunDirectoryError(
            f"{Path(out) / LAST}: its weights do not fit the model of its run.json "
            f"({str(exc).splitlines()[0][:120]}); delete {out} and train the run again") from None
    return Progress(state["epoch"], state["lr_scale"], state.get("rollbacks", 0),
                    state.get("best_state"))


# -- writing --------------------------------------------------------------------------------
def _torch_bytes(obj) -> Callable:
    return lambda f: torch.save(obj, f)


def curves_text(history: list[dict]) -> str:
    columns = list(dict.fromkeys(k for row in history for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    return buffer.getvalue()


def write_views(run_dir: Path, state: dict, best: bool = True) -> None:
    """model.pt (when `best` and the run has best weights), run.json and curves.csv, from a
    checkpoint state."""
    if best and state.get("best_state") is not None:
        _write(run_dir / BEST, _torch_bytes(state["best_state"]))
    _write(run_dir / RUN_JSON, lambda f: f.write(to_json(state["info"]).encode()))
    if state["info"]["history"]:
        text = curves_text(state["info"]["history"])
        _write(run_dir / CURVES, lambda f: f.write(text.encode()))


def _commit(run_dir: Path, state: dict) -> None:
    """The one writer of last.pt."""
    _write(run_dir / LAST, _torch_bytes({"format": FORMAT, **state}))


def save(run_dir: str | Path, state: dict, best: bool = True) -> None:
    """Commit a checkpoint, then rewrite the views from it.

    state: model, optimizer (state_dicts), epoch (the last finished one, -1 before the first),
    lr_scale, rollbacks, best_state (state_dict or None), info (the run.json dict)."""
    run_dir = Path(run_dir)
    _commit(run_dir, state)
    write_views(run_dir, state, best)


def begin(run_dir: str | Path, state: dict) -> None:
    """A new run: run.json first (so a folder never holds a checkpoint without it), then the
    checkpoint of epoch -1 (the initial weights), so that a run killed before its first epoch
    resumes like any other."""
    run_dir = Path(run_dir)
    _write(run_dir / RUN_JSON, lambda f: f.write(to_json(state["info"]).encode()))
    fault_point("genesis")
    _commit(run_dir, state)


def holds_run(run_dir: str | Path) -> bool:
    run_dir = Path(run_dir)
    return (run_dir / LAST).is_file() or (run_dir / RUN_JSON).is_file()


def check_new(run_dir: str | Path) -> None:
    """RunDirectoryError if `run_dir` already holds a run (or is not a folder)."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirectoryError(f"{run_dir} is a file, not a folder; pick another --out")
    if holds_run(run_dir):
        raise RunDirectoryError(f"{run_dir} already holds a run; continue it with "
                                f"`nodalnet train --resume {run_dir}` or pick another --out")


# -- reading --------------------------------------------------------------------------------
def _damaged(path: Path, exc: BaseException, remedy: str) -> RunDirectoryError:
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return RunDirectoryError(f"{path} is damaged or not a nodalnet file ({reason[:160]}); "
                             f"{remedy}")


def _load_torch(path: Path, remedy: str):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # a truncated zip, a pickle error, anything torch raises
        raise _damaged(path, exc, remedy) from None


def _read_json(path: Path, remedy: str) -> dict:
    try:
        info = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise _damaged(path, exc, remedy) from None
    if not isinstance(info, dict) or not {"model", "data", "config"} <= set(info):
        raise _damaged(path, ValueError("no model, data and config"), remedy)
    info.setdefault("history", [])
    return info


def _load_last(run_dir: Path) -> dict:
    """The one reader of last.pt (any format), checked to be a checkpoint."""
    path = run_dir / LAST
    retrain = f"delete {run_dir} and train the run again"
    state = _load_torch(path, retrain)
    if not isinstance(state, dict) or any(k not in state for k in _KEYS) or (
            state.get("format") == FORMAT and not isinstance(state.get("info"), dict)):
        raise _damaged(path, ValueError(f"a checkpoint holds {', '.join(_KEYS)}"), retrain)
    return state


def read_checkpoint(run_dir: str | Path) -> dict:
    """The run's newest complete checkpoint (the one reader of last.pt), in the current
    format whatever format it was written in. RunDirectoryError if missing or damaged."""
    run_dir = Path(run_dir)
    path = run_dir / LAST
    retrain = f"delete {run_dir} and train the run again"
    if not path.is_file():
        raise RunDirectoryError(f"{run_dir} holds no checkpoint ({LAST}): "
                                + ("the run was stopped before its first epoch; continue it with "
                                   f"`nodalnet train --resume {run_dir}`"
                                   if (run_dir / RUN_JSON).is_file() else
                                   "it is not a run directory; train one with "
                                   "`nodalnet train ... --out DIR`"))
    state = _load_last(run_dir)
    if state.get("format") == FORMAT:
        return state
    # first format: weights and optimizer only; the history is run.json's, the best weights
    # are model.pt's
    info = _read_json(run_dir / RUN_JSON, retrain)
    done = state["epoch"] + 1
    info["history"] = [r for r in info["history"] if r.get("epoch", 0) < done]
    best = run_dir / BEST
    best_state = _load_torch(best, retrain) if best.is_file() else None
    return {**state, "format": FORMAT, "rollbacks": 0, "best_state": best_state, "info": info}


def read_info(run_dir: str | Path) -> dict:
    """The run's info (what run.json shows): from the checkpoint when there is one (the truth),
    else from run.json (a run stopped before its first epoch, or written by older code)."""
    run_dir = Path(run_dir)
    path = run_dir / LAST
    if path.is_file():
        state = _load_last(run_dir)
        if state.get("format") == FORMAT:
            return state["info"]
    if not (run_dir / RUN_JSON).is_file():
        raise RunDirectoryError(f"{run_dir} is not a run directory (no {LAST} or {RUN_JSON}); "
                                f"start a run there with `nodalnet train CIRCUIT --out {run_dir}`")
    return _read_json(run_dir / RUN_JSON, f"delete {run_dir} and train the run again")


def recover(run_dir: str | Path, log: Callable | None = None) -> dict | None:
    """Open a run for more training (call it holding `locked`): its newest checkpoint, with
    the views rewritten from it (a kill may have left them one epoch behind); None when the run
    has no checkpoint yet (stopped before its first epoch by older code)."""
    run_dir = Path(run_dir)
    if not (run_dir / LAST).is_file():
        if not (run_dir / RUN_JSON).is_file():
            raise RunDirectoryError(f"nothing to resume in {run_dir}: no {LAST} or {RUN_JSON}; "
                                    "start the run with `nodalnet train CIRCUIT --out "
                                    f"{run_dir}`")
        _read_json(run_dir / RUN_JSON, f"delete {run_dir} and train the run again")
        return None
    state = read_checkpoint(run_dir)
    history = state["info"]["history"]
    epochs = [r.get("epoch") for r in history]
    missing = sorted(set(range(state["epoch"] + 1)) - set(epochs))
    if missing and log:
        log(f"{run_dir}: epochs {missing[0] + 1}..{missing[-1] + 1} have no history (the "
            "run.json of an older nodalnet, killed while writing); their curves stay missing")
    write_views(run_dir, state)
    return state


def check_circuit(run_dir: str | Path, circuit: str | None) -> None:
    """Refuse a circuit (name or .cir path) other than the one the run was trained on."""
    if circuit is None:
        return
    trained = read_info(Path(run_dir))["data"]["circuit"]
    if Path(str(circuit)).stem.lower() != Path(str(trained)).stem.lower():
        raise CircuitMismatchError(
            f"{run_dir} was trained on {trained!r}, not {circuit!r}: drop the circuit "
            "argument or give a run of that circuit")


def status(run_dir: str | Path, info: dict) -> str:
    """done, diverged, training (another process holds the lock now) or stopped."""
    if info.get("status") in ("done", "diverged"):
        return info["status"]
    return "training" if is_training(run_dir) else "stopped"


def load_run(run_dir: str | Path, which: str = "best"):
    """The model of a run directory, with the best (or `which="last"`) weights, in eval mode.

    `model.run_info` holds the run's info (spec, data, config, history, test metrics)."""
    run_dir = Path(run_dir)
    if which not in ("best", "last"):
        raise ValueError(f"which is 'best' or 'last', not {which!r}")
    if not (run_dir / LAST).is_file():
        read_info(run_dir)  # not a run directory / damaged run.json: its own message
        raise RunDirectoryError(f"{run_dir} has not finished an epoch yet: no weights to load")
    state = read_checkpoint(run_dir)
    info = state["info"]
    weights = state["best_state"] if which == "best" else state["model"]
    if weights is None or (which == "last" and state["epoch"] < 0):
        raise RunDirectoryError(f"{run_dir} has not finished an epoch yet: no weights to load")
    try:
        model = from_spec(info["model"])
        model.load_state_dict(weights)
    except (KeyError, TypeError, RuntimeError) as exc:
        raise _damaged(run_dir / LAST, exc, "its weights do not fit its model spec; delete "
                       f"{run_dir} and train the run again") from None
    model.run_info = copy.deepcopy(info)
    return model.eval()

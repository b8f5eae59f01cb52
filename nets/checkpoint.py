"""Run directories: what a training run leaves behind, written atomically.

    RUN_DIR/run.json     model spec, circuit, data spec, training config, metrics history,
                         best epoch, test metrics, status
    RUN_DIR/model.pt     the best weights (state_dict) by free-running validation ESR
    RUN_DIR/last.pt      everything needed to resume: weights, optimizer, epoch, lr scale
    RUN_DIR/curves.csv   one row per epoch: the learning curves

Every file is written to a temporary file in the same folder and moved into place with
`os.replace`, so an interruption leaves the previous version intact, never half a file.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path

import torch

from nodal.files import to_json

from .errors import CircuitMismatchError, RunDirectoryError
from .registry import from_spec

RUN_JSON, BEST, LAST, CURVES = "run.json", "model.pt", "last.pt", "curves.csv"


def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_torch(obj, path: Path) -> None:
    _atomic(Path(path), lambda f: torch.save(obj, f))


def save_text(text: str, path: Path) -> None:
    _atomic(Path(path), lambda f: f.write(text.encode()))


def write_info(run_dir: Path, info: dict) -> None:
    save_text(to_json(info), Path(run_dir) / RUN_JSON)


def read_info(run_dir: Path) -> dict:
    path = Path(run_dir) / RUN_JSON
    if not path.is_file():
        raise RunDirectoryError(f"{run_dir} is not a run directory (no {RUN_JSON}); train one "
                                "with `nodalnet train ... --out DIR`")
    return json.loads(path.read_text())


def write_curves(run_dir: Path, history: list[dict]) -> None:
    if not history:
        return
    columns = list(dict.fromkeys(k for row in history for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    save_text(buffer.getvalue(), Path(run_dir) / CURVES)


def check_circuit(run_dir: str | Path, circuit: str | None) -> None:
    """Refuse a circuit (name or .cir path) other than the one the run was trained on."""
    if circuit is None:
        return
    trained = read_info(Path(run_dir))["data"]["circuit"]
    if Path(str(circuit)).stem.lower() != Path(str(trained)).stem.lower():
        raise CircuitMismatchError(
            f"{run_dir} was trained on {trained!r}, not {circuit!r}: drop the circuit "
            "argument or give a run of that circuit")


def load_run(run_dir: str | Path, which: str = "best"):
    """The model of a run directory, with the best (or `which="last"`) weights, in eval mode.

    `model.run_info` holds the run's JSON (spec, data, config, history, test metrics)."""
    run_dir = Path(run_dir)
    info = read_info(run_dir)
    model = from_spec(info["model"])
    path = run_dir / (BEST if which == "best" else LAST)
    if not path.is_file():
        raise RunDirectoryError(f"{path} is missing: the run has not finished an epoch yet")
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"] if which != "best" else state)
    model.run_info = info
    return model.eval()

"""A run folder survives SIGKILL at any moment: `resume` always completes, the history holds every
epoch exactly once, and the weights equal those of a run that was never interrupted.

Training runs in forked children (everything is imported and compiled once, in this process)
and dies by SIGKILL: at named points through $NODALNET_FAULT (a temp file written but not yet
renamed, a file renamed but the next not yet written, a training step), and at random moments
chosen by the parent. Training is deterministic (one thread, seeds, data order from the epoch
number), so "the same weights" is bit-for-bit.

NODALNET_KILL_LONG=1 adds more random moments (NODALNET_KILL_SEED picks them).
"""

from __future__ import annotations

import csv
import os
import random
import signal
import time
import traceback

import pytest
import torch

from nets import checkpoint, runs
from nets.data import MaterialSpec
from nets.errors import RunBusyError
from nodal.files import orphans

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")

MATERIAL = MaterialSpec(train_seconds=0.4, val_seconds=0.15, test_seconds=0.1, seed=3)
EPOCHS = 5
SETTINGS = dict(material=MATERIAL, hidden=4, epochs=EPOCHS, segment=256, batch=8,
                steps_per_epoch=3, window=0, threads=1)
KEYS = ("epoch", "train_loss", "val_esr", "val_esr_emphasis", "val_state_esr", "lr")
LONG = bool(os.environ.get("NODALNET_KILL_LONG"))

#: named kill points of a first `train`: the genesis (run.json, then last.pt of epoch -1),
#: each epoch (last.pt, model.pt when better, run.json, curves.csv) and the final commit
FINAL = EPOCHS + 2  # last.pt writes: genesis, one per epoch, the final one
FAULTS = ["write:run.json@1", "genesis", "write:last.pt@1", "saved:last.pt@1", "step@4",
          "write:last.pt@3", "saved:last.pt@3", "write:model.pt@2", "saved:model.pt@2",
          "write:run.json@3", "saved:run.json@3", "write:curves.csv@2", "saved:curves.csv@2",
          f"write:last.pt@{FINAL}", f"saved:last.pt@{FINAL}", f"write:run.json@{FINAL}"]


def _fork(job, fault: str | None = None) -> int:
    pid = os.fork()
    if pid == 0:  # the child never returns into pytest
        code = 1
        try:
            if fault:
                os.environ[checkpoint.FAULT_ENV] = fault
            else:
                os.environ.pop(checkpoint.FAULT_ENV, None)
            job()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    return pid


def _wait(pid: int, kill_after: float | None = None) -> str:
    """"killed", "done" or "failed"; SIGKILL the child after `kill_after` seconds."""
    if kill_after is None:
        _, status = os.waitpid(pid, 0)
    else:
        end = time.monotonic() + kill_after
        while True:
            got, status = os.waitpid(pid, os.WNOHANG)
            if got:
                break
            if time.monotonic() >= end:
                os.kill(pid, signal.SIGKILL)
                _, status = os.waitpid(pid, 0)
                break
            time.sleep(0.002)
    if os.WIFSIGNALED(status):
        assert os.WTERMSIG(status) == signal.SIGKILL
        return "killed"
    return "done" if os.WEXITSTATUS(status) == 0 else "failed"


def _job(out):
    """What `nodalnet train` does with this folder: a new run into a folder that holds none
    (killed before anything was committed), else --resume."""
    if checkpoint.holds_run(out):
        return lambda: runs.resume(out)
    return lambda: runs.start("diode_clipper", "gru-sm", out=out, **SETTINGS)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cache_root):
    os.environ["NODALNET_CACHE"] = str(cache_root)
    out = tmp_path_factory.mktemp("kill") / "straight"
    info = runs.start("diode_clipper", "gru-sm", out=out, **SETTINGS)
    state = checkpoint.read_checkpoint(out)
    began = time.perf_counter()  # a forked run's wall time, for the random moments
    assert _wait(_fork(_job(tmp_path_factory.mktemp("kill") / "timed"))) == "done"
    return {"history": [[r[k] for k in KEYS] for r in info["history"]],
            "last": state["model"], "best": state["best_state"],
            "wall": time.perf_counter() - began}


def _same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _check(out, reference) -> None:
    info = checkpoint.read_info(out)
    assert info["status"] == "done"
    assert [r["epoch"] for r in info["history"]] == list(range(EPOCHS))
    assert [[r[k] for k in KEYS] for r in info["history"]] == reference["history"]
    view = checkpoint._read_json(out / checkpoint.RUN_JSON, "")
    assert [r["epoch"] for r in view["history"]] == list(range(EPOCHS))
    assert view["status"] == "done" and view["test"] == info["test"]
    with open(out / checkpoint.CURVES) as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == list(range(EPOCHS))
    state = checkpoint.read_checkpoint(out)
    assert _same_weights(state["model"], reference["last"])
    assert _same_weights(state["best_state"], reference["best"])
    best = torch.load(out / checkpoint.BEST, weights_only=True)
    assert _same_weights(best, reference["best"])
    assert orphans(out) == []
    mask = os.umask(0)
    os.umask(mask)
    for name in (checkpoint.LAST, checkpoint.BEST, checkpoint.RUN_JSON, checkpoint.CURVES):
        assert (out / name).stat().st_mode & 0o777 == 0o666 & ~mask, name


def _finish(out, kill_times=(), faults=()) -> dict:
    """Resume (or start) until the run is done: first with the given kills, then without."""
    counts = {"killed": 0, "done": 0}
    plans = [(f, None) for f in faults] + [(None, t) for t in kill_times] + [(None, None)] * 3
    for fault, after in plans:
        outcome = _wait(_fork(_job(out), fault), after)
        assert outcome != "failed", f"a resume of {out} failed (see the captured stderr)"
        counts[outcome] += 1
        if outcome == "done" and checkpoint.read_info(out)["status"] == "done" and \
                fault is None and after is None:
            break
    return counts


@pytest.mark.parametrize("fault", FAULTS)
def test_killed_at_a_named_point_resumes_to_the_same_run(reference, tmp_path, fault):
    out = tmp_path / "run"
    assert _wait(_fork(_job(out), fault)) == "killed", f"{fault} was never reached"
    if fault.startswith("write:"):
        assert orphans(out), "a temp file was written but not renamed"
    _finish(out)
    _check(out, reference)


def test_killed_while_resuming(reference, tmp_path):
    out = tmp_path / "run"
    assert _wait(_fork(_job(out), "saved:last.pt@3")) == "killed"
    # killed again while the resume rewrites the views, then in its first step
    counts = _finish(out, faults=("write:run.json@1", "saved:model.pt@1", "step@2"))
    assert counts["killed"] == 3
    _check(out, reference)


def test_killed_at_random_moments(reference, tmp_path):
    rng = random.Random(int(os.environ.get("NODALNET_KILL_SEED", "7")))
    chains, kills_per_chain = (12, 4) if LONG else (3, 2)
    wall = reference["wall"]
    killed = 0
    for chain in range(chains):
        out = tmp_path / f"run{chain}"
        first = rng.uniform(0.0, 1.1 * wall)
        outcome = _wait(_fork(_job(out)), first)
        killed += outcome == "killed"
        counts = _finish(out, kill_times=[rng.uniform(0.0, 1.1 * wall)
                                          for _ in range(kills_per_chain)])
        killed += counts["killed"]
        _check(out, reference)
    print(f"random kills: {killed} of {chains * (kills_per_chain + 1)} moments landed "
          f"(a forked run takes {wall:.2f} s)")
    assert killed >= chains  # most moments fall inside the run


def test_a_second_trainer_of_a_folder_is_refused_until_the_first_dies(reference, tmp_path):
    out = tmp_path / "run"
    assert _wait(_fork(_job(out), "saved:last.pt@3")) == "killed"
    ready, go = os.pipe()

    def hold():
        with checkpoint.locked(out):
            os.write(go, b"x")
            time.sleep(60)

    holder = _fork(hold)
    os.read(ready, 1)
    try:
        with pytest.raises(RunBusyError, match=str(out)):
            runs.resume(out)
        with pytest.raises(RunBusyError, match=f"pid {holder}"), checkpoint.locked(out):
            pass
        assert checkpoint.status(out, checkpoint.read_info(out)) == "training"
    finally:
        os.kill(holder, signal.SIGKILL)
        assert _wait(holder) == "killed"
    assert checkpoint.status(out, checkpoint.read_info(out)) == "stopped"
    runs.resume(out)  # the kernel released the dead holder's lock
    _check(out, reference)


def test_compare_marks_an_unfinished_run(reference, tmp_path):
    from nets import compare
    from nets.report import aggregate

    out = tmp_path / "run"
    assert _wait(_fork(_job(out), "saved:last.pt@3")) == "killed"  # epochs 1 and 2 done
    ev, = compare.compare([out], with_solver=False, timing=False).groups["diode_clipper"]
    assert (ev.status, ev.epochs_done, ev.epochs_asked) == ("stopped", 2, EPOCHS)
    assert aggregate([ev])[0]["config"].endswith("[stopped: 2/5 epochs]")

"""Run directories: a checkpoint loads back bit-exactly; a resumed run continues the curve."""

from __future__ import annotations

import json

import pytest
import torch

import nets
from nets.train import TrainConfig

CONFIG = dict(window=4, state_weight=1.0, segment=256, batch=8, lr=3e-3, steps_per_epoch=6,
              threads=1)


def fresh(data, name="gru-sm"):
    torch.manual_seed(0)
    return nets.build(name, 1, 1, hidden=6, scaling=data.scaling)


@pytest.mark.parametrize("name", ["stn", "gru-sm"])
def test_checkpoint_round_trips_bit_exactly(tiny_data, tmp_path, name):
    model = fresh(tiny_data, name)
    info = nets.train(model, tiny_data, TrainConfig(epochs=2, **CONFIG), out=tmp_path / "run")
    loaded = nets.load_run(tmp_path / "run")
    assert loaded.spec == model.spec
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    u = tiny_data.test.u
    with torch.no_grad():
        assert torch.equal(loaded(u).y, model(u).y)
    saved = json.loads((tmp_path / "run" / "run.json").read_text())
    assert saved["status"] == "done" and saved["test"] == info["test"]
    assert (tmp_path / "run" / "curves.csv").read_text().count("\n") == 3


def test_resumed_run_continues_the_same_curve(tiny_data, tmp_path):
    straight = nets.train(fresh(tiny_data), tiny_data, TrainConfig(epochs=4, **CONFIG),
                          out=tmp_path / "straight")
    def interrupt(record):
        if record["epoch"] == 1:
            raise KeyboardInterrupt  # Ctrl-C after the second epoch's checkpoint

    with pytest.raises(KeyboardInterrupt):
        nets.train(fresh(tiny_data), tiny_data, TrainConfig(epochs=4, **CONFIG),
                   out=tmp_path / "cut", on_epoch=interrupt)
    assert json.loads((tmp_path / "cut" / "run.json").read_text())["status"] == "running"
    resumed = nets.runs.resume(tmp_path / "cut")
    keys = ("train_loss", "val_esr", "val_state_esr")
    assert [[r[k] for k in keys] for r in resumed["history"]] == \
        [[r[k] for k in keys] for r in straight["history"]]


def test_an_existing_run_is_not_overwritten(tiny_data, tmp_path):
    nets.train(fresh(tiny_data), tiny_data, TrainConfig(epochs=1, **CONFIG), out=tmp_path / "r")
    with pytest.raises(nets.RunDirectoryError, match="--resume"):
        nets.train(fresh(tiny_data), tiny_data, TrainConfig(epochs=1, **CONFIG), out=tmp_path / "r")


def test_a_nan_loss_rolls_back_and_lowers_the_rate(tiny_data, monkeypatch):
    import importlib

    training = importlib.import_module("nets.train")  # the module, not `nets.train` the function

    real, calls = training.window_loss, {"n": 0}

    def sometimes_nan(*args):
        calls["n"] += 1
        loss = real(*args)
        return loss * float("nan") if calls["n"] == 3 else loss

    monkeypatch.setattr(training, "window_loss", sometimes_nan)
    model = fresh(tiny_data)
    info = nets.train(model, tiny_data, TrainConfig(epochs=1, **CONFIG))
    assert info["history"][0]["lr"] == pytest.approx(CONFIG["lr"] / 2)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_a_missing_run_directory_is_a_named_error(tmp_path):
    with pytest.raises(nets.RunDirectoryError, match="not a run directory"):
        nets.load_run(tmp_path)

"""Run directories: a checkpoint loads back bit-exactly; a resumed run continues the curve."""

from __future__ import annotations

import json
import os
from dataclasses import asdict

import pytest
import torch

import nets
from nets import checkpoint
from nets.data import MaterialSpec
from nets.errors import ConfigError
from nets.train import TrainConfig, parse_window
from nodal.files import orphans

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


# -- the run folder: one checkpoint holds the truth ----------------------------------------
def _first_format(out):
    """Rewrite a run folder as the first format wrote it: last.pt with weights, optimizer,
    epoch and lr scale only, the best weights in model.pt, the history in run.json."""
    state = checkpoint.read_checkpoint(out)
    torch.save({k: state[k] for k in ("model", "optimizer", "epoch", "lr_scale")},
               out / checkpoint.LAST)
    torch.save(state["best_state"], out / checkpoint.BEST)
    (out / checkpoint.RUN_JSON).write_text(json.dumps(state["info"], indent=2))
    return state


def test_a_first_format_run_folder_loads_and_resumes(tiny_data, tmp_path):
    straight = nets.train(fresh(tiny_data), tiny_data, TrainConfig(epochs=3, **CONFIG),
                          out=tmp_path / "straight")
    out = tmp_path / "old"

    def interrupt(record):
        if record["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        nets.train(fresh(tiny_data), tiny_data, TrainConfig(epochs=3, **CONFIG), out=out,
                   on_epoch=interrupt)
    state = _first_format(out)
    loaded = nets.load_run(out)
    for key, value in state["best_state"].items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert loaded.run_info["history"] == state["info"]["history"]
    resumed = nets.runs.resume(out)
    keys = ("epoch", "train_loss", "val_esr", "val_state_esr")
    assert [[r[k] for k in keys] for r in resumed["history"]] == \
        [[r[k] for k in keys] for r in straight["history"]]
    assert checkpoint.read_checkpoint(out)["info"]["status"] == "done"


def test_a_done_run_resumed_returns_it_and_repairs_its_views(tiny_data, tmp_path):
    out = tmp_path / "run"
    info = nets.train(fresh(tiny_data), tiny_data, TrainConfig(epochs=2, **CONFIG), out=out)
    (out / checkpoint.RUN_JSON).write_text("{ half a fi")
    (out / checkpoint.BEST).write_bytes(b"not a checkpoint")
    (out / checkpoint.CURVES).unlink()
    (out / ".last.pt.abc123.tmp").write_bytes(b"left by a killed writer")
    assert nets.load_run(out).run_info["test"] == info["test"]  # the truth is last.pt
    again = nets.runs.resume(out)
    assert again["history"] == info["history"] and again["status"] == "done"
    assert json.loads((out / checkpoint.RUN_JSON).read_text())["test"] == info["test"]
    assert (out / checkpoint.CURVES).read_text().count("\n") == 3
    torch.load(out / checkpoint.BEST, weights_only=True)
    assert not (out / ".last.pt.abc123.tmp").exists()


@pytest.mark.parametrize("damage", ["truncated", "garbage", "not a checkpoint"])
def test_a_damaged_last_pt_is_a_named_error(tiny_data, tmp_path, damage):
    out = tmp_path / "run"
    nets.train(fresh(tiny_data), tiny_data, TrainConfig(epochs=1, **CONFIG), out=out)
    path = out / checkpoint.LAST
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "garbage":
        path.write_bytes(b"\x00" * 64)
    else:
        torch.save({"weights": torch.zeros(3)}, path)
    for action in (lambda: nets.load_run(out), lambda: nets.runs.resume(out),
                   lambda: checkpoint.read_info(out)):
        with pytest.raises(nets.RunDirectoryError, match="last.pt is damaged.*train the run"):
            action()


def test_damaged_files_of_a_first_format_folder_are_named(tiny_data, tmp_path):
    out = tmp_path / "run"
    nets.train(fresh(tiny_data), tiny_data, TrainConfig(epochs=1, **CONFIG), out=out)
    _first_format(out)
    (out / checkpoint.BEST).write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(nets.RunDirectoryError, match="model.pt is damaged"):
        nets.load_run(out)
    (out / checkpoint.RUN_JSON).write_text("[1, 2")
    with pytest.raises(nets.RunDirectoryError, match="run.json is damaged"):
        nets.load_run(out)


def test_a_folder_without_a_checkpoint(tiny_data, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".run.json.x1.tmp").write_text("{")  # killed while writing the very first file
    with pytest.raises(nets.RunDirectoryError, match="not a run directory.*--out"):
        nets.runs.resume(out)
    nets.train(fresh(tiny_data), tiny_data, TrainConfig(epochs=1, **CONFIG), out=out)  # taken
    assert orphans(out) == []
    (out / checkpoint.LAST).unlink()  # as the first format left a run killed before epoch 1
    with pytest.raises(nets.RunDirectoryError, match="has not finished an epoch"):
        nets.load_run(out)
    with pytest.raises(nets.RunDirectoryError, match="--resume"):
        nets.train(fresh(tiny_data), tiny_data, TrainConfig(epochs=1, **CONFIG), out=out)
    (out / checkpoint.RUN_JSON).write_text(json.dumps(
        {"model": fresh(tiny_data).spec, "data": tiny_data.spec(),
         "config": asdict(TrainConfig(epochs=1, **CONFIG)), "history": []}))
    info = nets.runs.resume(out)  # started again from its own settings
    assert info["status"] == "done" and len(info["history"]) == 1


def test_files_get_the_users_permissions(tiny_data, tmp_path):
    out = tmp_path / "run"
    old = os.umask(0o027)
    try:
        nets.train(fresh(tiny_data), tiny_data, TrainConfig(epochs=1, **CONFIG), out=out)
    finally:
        os.umask(old)
    for name in (checkpoint.LAST, checkpoint.BEST, checkpoint.RUN_JSON, checkpoint.CURVES):
        assert (out / name).stat().st_mode & 0o777 == 0o640, name


# -- settings checked before any work ---------------------------------------------------
@pytest.mark.parametrize("field, value, allowed", [
    ("epochs", 0, ">= 1"), ("batch", 0, ">= 1"), ("segment", 1, ">= 2"),
    ("window", -5, "whole number of samples"), ("window", "abc", "inf"),
    ("window", 4096, "from 1 to the segment length \\(2048\\)"), ("lr", float("nan"), "> 0"),
    ("lr", 0.0, "> 0"), ("state_weight", -1.0, ">= 0"), ("threads", 0, ">= 1"),
    ("emphasis", 1.0, "< 1"), ("epochs", 2.5, "whole number"), ("warmup", 4096, "warm-up")])
def test_a_setting_out_of_range_is_named_with_its_range(field, value, allowed):
    with pytest.raises(ConfigError, match=allowed) as caught:
        TrainConfig(**{field: value})
    assert caught.value.field == (field if field != "warmup" else "segment")


def test_parse_window():
    assert [parse_window(w) for w in ("inf", "INF", " 0 ", "16", 0, 16, float("inf"))] == \
        [0, 0, 0, 16, 0, 16, 0]
    for bad in ("abc", "-5", "1.5", "", True, -1, None):
        with pytest.raises(ConfigError, match="window"):
            parse_window(bad)


@pytest.mark.parametrize("argument, field", [
    (dict(hidden=0), "hidden"), (dict(sample_rate=0.0), "sample_rate"),
    (dict(sample_rate=float("inf")), "sample_rate"),
    (dict(material=MaterialSpec(train_seconds=0.0)), "train_seconds"),
    (dict(material=MaterialSpec(wav=("missing.wav",))), "wav"),
    (dict(material=MaterialSpec(train_seconds=0.001)), "segment"),
    (dict(window=1024, segment=512), "window")])
def test_start_checks_before_any_work(tmp_path, argument, field):
    out = tmp_path / "never"
    with pytest.raises(ConfigError) as caught:
        nets.runs.start("diode_clipper", "stn", out=out, **argument)
    assert caught.value.field == field
    assert not out.exists()


def test_start_refuses_a_wav_that_is_not_audio_and_an_out_that_is_a_file(tmp_path):
    (tmp_path / "noise.wav").write_bytes(b"RIFF....not really")
    with pytest.raises(ConfigError, match="readable WAV"):
        nets.runs.check_start("diode_clipper", "stn",
                              material=MaterialSpec(wav=(str(tmp_path / "noise.wav"),)))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="a folder"):
        nets.runs.check_start("diode_clipper", "stn", out=tmp_path / "file")

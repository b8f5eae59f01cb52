"""`nodalnet train` writes a run; `nodalnet simulate --model` runs it on a WAV file."""

from __future__ import annotations

import json

import numpy as np
import soundfile
from typer.testing import CliRunner

from cli import app


def test_train_then_simulate_with_the_model(tmp_path):
    runner = CliRunner()
    run = tmp_path / "stn"
    result = runner.invoke(app, ["train", "diode_clipper", "--model", "stn", "--epochs", "1",
                                 "--train-seconds", "0.5", "--threads", "1", "--out", str(run)])
    assert result.exit_code == 0, result.output
    assert "free-running test ESR" in result.output
    info = json.loads((run / "run.json").read_text())
    assert info["model"]["name"] == "stn" and info["config"]["window"] == 1
    assert info["data"]["material"]["train_seconds"] == 0.5

    source = tmp_path / "in.wav"
    soundfile.write(source, 0.5 * np.sin(np.arange(4410) * 2 * np.pi * 220 / 44100), 44100,
                    subtype="FLOAT")
    out = tmp_path / "out.npy"
    result = runner.invoke(app, ["simulate", "--model", str(run), "--input", str(source),
                                 "--output", str(out)])
    assert result.exit_code == 0, result.output
    y = np.load(out)
    assert y.shape == (4410,) and np.isfinite(y).all()   # back at the input's 44.1 kHz

    result = runner.invoke(app, ["train", "diode_clipper", "--model", "stn", "--out", str(run)])
    assert result.exit_code == 2 and "--resume" in result.output
    result = runner.invoke(app, ["simulate", "diode_clipper", "--model", str(run), "--input",
                                 str(source), "--output", str(out)])
    assert result.exit_code == 0, result.output   # naming the run's own circuit is fine

    out.unlink()
    result = runner.invoke(app, ["simulate", "tube_screamer", "--model", str(run), "--input",
                                 str(source), "--output", str(out)])
    assert result.exit_code != 0
    assert "trained on 'diode_clipper'" in " ".join(result.output.split())  # rich may wrap
    assert not out.exists()

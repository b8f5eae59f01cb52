"""`nodalnet train` writes a run; `nodalnet simulate --model` runs it on a WAV file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from typer.testing import CliRunner

from cli import app
from nets import checkpoint


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
    result = runner.invoke(app, ["simulate", "--model", str(run), "--input", str(source),
                                 "--output", str(out), "--set", "drive=0.5"])
    assert result.exit_code == 2
    assert "drive: not a knob of the run" in " ".join(result.output.split())
    assert not out.exists()
    result = runner.invoke(app, ["simulate", "tube_screamer", "--model", str(run), "--input",
                                 str(source), "--output", str(out)])
    assert result.exit_code != 0
    assert "trained on 'diode_clipper'" in " ".join(result.output.split())  # rich may wrap
    assert not out.exists()


BAD_ARGUMENTS = [
    (["--epochs", "0"], "--epochs 0: must be a whole number >= 1"),
    (["--batch", "0"], "--batch 0: must be a whole number >= 1"),
    (["--segment", "0"], "--segment 0: must be a whole number >= 2"),
    (["--window", "abc"], "--window abc: must be inf"),
    (["--window", "-5"], "--window -5: must be inf"),
    (["--window", "1024", "--segment", "512"], "--window 1024: must be inf (or 0: free-running) "
                                               "or a whole number of samples from 1 to the "
                                               "segment length (512)"),
    (["--lr", "nan"], "--lr nan: must be a finite number > 0"),
    (["--wav", "missing.wav"], "--wav missing.wav: must be an existing, readable WAV file"),
    (["--rate", "0"], "--rate 0.0: must be a finite number > 0"),
    (["--hidden", "0"], "--hidden 0: must be a whole number >= 1"),
    (["--train-seconds", "0"], "--train-seconds 0.0: must be a finite number > 0"),
    (["--state-weight", "-1"], "--state-weight -1.0: must be a finite number >= 0"),
    (["--threads", "0"], "--threads 0: must be a whole number >= 1"),
    (["--model", "gru", "--segment", "32"], "--segment 32: must be a whole number above the "
                                            "warm-up of 64 samples"),
    # the stn's own 512-sample segments: a longer window is refused before anything is made
    (["--window", "1024"], "--window 1024: must be inf (or 0: free-running) or a whole number "
                           "of samples from 1 to the segment length (512)"),
    (["--model", "nodal", "--hidden", "4"], "--hidden 4: must be left out: the nodal model has "
                                            "no hidden size"),
    (["--knob", "drive=0:1"], "--knob drive: diode_clipper has no .param 'drive'"),
    (["--knob", "x=1:0"], "--knob x=1:0: the range is reversed; give LOW < HIGH"),
    (["--knob", "x=1:1"], "--knob x=1:1: the range is empty; give LOW < HIGH"),
    (["--knob", "x0:1"], "--knob x0:1: write NAME=LOW:HIGH"),
    (["--knob", "x=a:1"], "--knob x=a:1: LOW and HIGH must be numbers"),
    (["--knob-motion"], "--knob-motion: moves the --knob knobs; give at least one --knob"),
]


@pytest.mark.parametrize("arguments, message", BAD_ARGUMENTS,
                         ids=[" ".join(a) for a, _ in BAD_ARGUMENTS])
def test_a_bad_train_argument_is_one_line_and_writes_nothing(tmp_path, arguments, message):
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "diode_clipper", *arguments, "--out", str(out)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [f"error: {message}"] or (len(lines) == 1 and lines[0].startswith(
        f"error: {message}")), result.output
    assert not out.exists()


def test_resume_keeps_the_runs_own_settings(tmp_path):
    result = CliRunner().invoke(app, ["train", "--resume", str(tmp_path), "--window", "4",
                                      "--lr", "1e-3"])
    assert result.exit_code == 2
    assert "--window, --lr: a resumed run keeps its own settings" in result.output


def test_a_killed_train_resumes_from_the_command_line(tmp_path):
    """A real process killed (SIGKILL) right after its first epoch's checkpoint, then
    `train --resume`; a damaged checkpoint is one line, not a traceback."""
    run = tmp_path / "stn"
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), checkpoint.FAULT_ENV: "saved:last.pt@2"}
    killed = subprocess.run([sys.executable, "-c", "import cli; cli.app()", "train",
                             "diode_clipper", "--model", "stn", "--epochs", "2",
                             "--train-seconds", "0.5", "--out", str(run)],
                            cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert checkpoint.read_checkpoint(run)["epoch"] == 0
    result = CliRunner().invoke(app, ["train", "--resume", str(run)])
    assert result.exit_code == 0, result.output
    info = json.loads((run / "run.json").read_text())
    assert [r["epoch"] for r in info["history"]] == [0, 1] and info["status"] == "done"

    (run / "last.pt").write_bytes(b"\0" * 10)
    result = CliRunner().invoke(app, ["train", "--resume", str(run)])
    assert result.exit_code == 2
    assert "last.pt is damaged" in result.output and "Traceback" not in result.output

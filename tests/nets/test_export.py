"""Exported models, run by the programs that load them, equal `nodalnet simulate --model RUN`.

Each kind gets a tiny trained run whose weights are moved off their initial values (so the
skip path, the STN's readout correction and the biases are all in play). The reference is
`simulate --model` through the CLI on 2 s of a plucked string (peak 1 V: a hundred times the
training signal's standard deviation, so the folded input scaling and the skip unit are far
from their comfortable range). The exported files are run by:

- RTNeural JSON: an independent float32 numpy implementation of RTNeural's documented layer
  equations (GRU with Keras's z, r, h gates and reset_after biases; LSTM i, f, c, o; dense);
- .nam: the `neural-amp-modeler` package's own loader (`nam.models.init_from_nam`);
- C: the system C compiler, then the library called through ctypes.
"""

from __future__ import annotations

import ctypes
import json
import shutil
import subprocess

import numpy as np
import pytest
import soundfile
import torch
from typer.testing import CliRunner

import nets
import nets.export
from cli import app
from nets.export import rtneural
from nets.train import TrainConfig
from nodal import signals

runner = CliRunner()
RATE = 48000
TOLERANCE = 1e-5  # max |exported - simulate| / max |simulate|
CONFIG = dict(window=4, state_weight=1.0, segment=256, batch=8, lr=3e-3, steps_per_epoch=2,
              threads=1)


@pytest.fixture(scope="module")
def runs(tiny_data, tmp_path_factory):
    """One finished run folder per exportable kind."""
    root = tmp_path_factory.mktemp("runs")
    folders = {}
    for kind in ("gru", "gru-sm", "lstm", "stn"):
        torch.manual_seed(0)
        model = nets.build(kind, 1, 1, hidden=6, scaling=tiny_data.scaling)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.3 * torch.randn_like(p))
        nets.train(model, tiny_data, TrainConfig(epochs=1, **CONFIG), out=root / kind)
        folders[kind] = root / kind
    return folders


@pytest.fixture(scope="module")
def signal(tmp_path_factory):
    """2 s of plucked string as a float32 WAV, and its sample values."""
    x = signals.plucked_string(2.0, RATE, peak=1.0, seed=1).astype(np.float32)
    path = tmp_path_factory.mktemp("signal") / "in.wav"
    soundfile.write(str(path), x, RATE, subtype="FLOAT")
    return path, x


def simulate(run, signal, tmp_path, *extra) -> np.ndarray:
    out = tmp_path / "simulated.npy"
    result = runner.invoke(app, ["simulate", "--model", str(run), "-i", str(signal[0]),
                                 "-o", str(out), *extra])
    assert result.exit_code == 0, result.output
    return np.load(out)


def export(run, fmt, out) -> None:
    result = runner.invoke(app, ["export", str(run), "--format", fmt, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file()


def relative_error(y, reference) -> float:
    return float(np.max(np.abs(np.asarray(y, np.float64) - reference)) / np.max(np.abs(reference)))


# -- RTNeural: the layer equations of its documentation, in float32 -----------------------------
def _sigmoid(x):
    with np.errstate(over="ignore"):
        return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


def rtneural_run(doc: dict, u: np.ndarray, h0=None) -> np.ndarray:
    """RTNeural's json_parser model: one recurrent layer, then a dense layer, from zero state
    (or from h0, for the state a loader could set)."""
    f32 = np.float32
    u = np.asarray(u).reshape(len(u), -1)            # [time, inputs]: audio, knob values
    assert doc["in_shape"][-1] == u.shape[1] and len(doc["layers"]) == 2
    rnn, dense = doc["layers"]
    assert dense["type"] == "dense" and dense["activation"] == ""
    kernel = np.array(rnn["weights"][0], f32)      # [inputs][gates * W], Keras layout
    assert kernel.shape[0] == u.shape[1]
    recurrent = np.array(rnn["weights"][1], f32)   # [W][gates * W]
    width = rnn["shape"][-1]
    assert recurrent.shape[0] == width
    head_w = np.array(dense["weights"][0], f32)[:, 0]   # [W][1]
    head_b = f32(dense["weights"][1][0])
    h = np.zeros(width, f32) if h0 is None else np.array(h0, f32)
    c = np.zeros(width, f32)
    y = np.empty(len(u), f32)
    gates = slice(0, width), slice(width, 2 * width), slice(2 * width, 3 * width)
    if rnn["type"] == "gru":  # z, r, h; bias rows: input, recurrent (reset_after)
        b_in, b_rec = (np.array(b, f32) for b in rnn["weights"][2])
        z_, r_, h_ = gates
        for n, x in enumerate(u.astype(f32)):
            gi = x @ kernel + b_in
            gh = h @ recurrent + b_rec
            z = _sigmoid(gi[z_] + gh[z_])
            r = _sigmoid(gi[r_] + gh[r_])
            cand = np.tanh(gi[h_] + r * gh[h_])
            h = (1 - z) * cand + z * h
            y[n] = h @ head_w + head_b
    else:  # lstm: i, f, c, o; one bias
        assert rnn["type"] == "lstm"
        bias = np.array(rnn["weights"][2], f32)
        i_, f_, c_ = gates
        o_ = slice(3 * width, 4 * width)
        for n, x in enumerate(u.astype(f32)):
            g = x @ kernel + h @ recurrent + bias
            c = _sigmoid(g[f_]) * c + _sigmoid(g[i_]) * np.tanh(g[c_])
            h = _sigmoid(g[o_]) * np.tanh(c)
            y[n] = h @ head_w + head_b
    return y


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_rtneural_file_reproduces_simulate(runs, signal, tmp_path, kind):
    reference = simulate(runs[kind], signal, tmp_path)
    export(runs[kind], "rtneural", tmp_path / "model.json")
    doc = json.loads((tmp_path / "model.json").read_text())
    assert relative_error(rtneural_run(doc, signal[1]), reference) < TOLERANCE
    # what AIDA-X needs: a width it has compiled, no dry signal added, the rate and provenance
    assert doc["layers"][0]["shape"][-1] in rtneural.AIDA_X_WIDTHS and doc["in_skip"] == 0
    info = json.loads((runs[kind] / "run.json").read_text())
    meta = doc["metadata"]
    assert meta["samplerate"] == RATE and meta["circuit"] == "diode_clipper"
    assert meta["test_esr"] == info["test"]["esr"] and meta["values"] == info["data"]["values"]
    assert "initial_state" not in meta  # these start from zero, as RTNeural does


def test_rtneural_gate_order_is_checked(runs, signal, tmp_path):
    """The reference can fail: the same file with PyTorch's gate order (r, z) is far off."""
    reference = simulate(runs["gru"], signal, tmp_path)
    export(runs["gru"], "rtneural", tmp_path / "model.json")
    doc = json.loads((tmp_path / "model.json").read_text())
    width = doc["layers"][0]["shape"][-1]

    def swap(rows):
        a = np.array(rows)
        z, r = a[..., :width].copy(), a[..., width:2 * width].copy()
        a[..., :width], a[..., width:2 * width] = r, z
        return a.tolist()

    doc["layers"][0]["weights"] = [swap(w) for w in doc["layers"][0]["weights"]]
    assert relative_error(rtneural_run(doc, signal[1]), reference) > 1e-2


def test_rtneural_state_matching_gru_starts_from_rest(runs, signal, tmp_path):
    """gru-sm starts from the circuit at rest (encoded); RTNeural starts from zero. With the
    recorded initial state the file is exact; from zero it joins after a short transient."""
    reference = simulate(runs["gru-sm"], signal, tmp_path)
    export(runs["gru-sm"], "rtneural", tmp_path / "model.json")
    doc = json.loads((tmp_path / "model.json").read_text())
    h0 = doc["metadata"]["initial_state"]
    assert relative_error(rtneural_run(doc, signal[1], h0), reference) < TOLERANCE
    zero = rtneural_run(doc, signal[1])
    settle = RATE // 10
    assert relative_error(zero[settle:], reference[settle:]) < TOLERANCE
    assert relative_error(zero[:settle], reference[:settle]) > TOLERANCE  # the start differs


# -- NAM: the package's own loader --------------------------------------------------------------
def test_nam_file_loads_in_neural_amp_modeler(runs, signal, tmp_path):
    models = pytest.importorskip("nam.models", reason="the test extra installs "
                                 "neural-amp-modeler, whose loader this test uses")
    reference = simulate(runs["lstm"], signal, tmp_path)
    export(runs["lstm"], "nam", tmp_path / "model.nam")
    doc = json.loads((tmp_path / "model.nam").read_text())
    assert doc["architecture"] == "LSTM" and doc["version"].startswith("0.5.")
    net = models.init_from_nam(doc).eval()
    assert net.sample_rate == RATE
    with torch.no_grad():
        y = net(torch.from_numpy(signal[1])).numpy()
    assert y.dtype == np.float32 and y.shape == reference.shape
    assert relative_error(y, reference) < TOLERANCE


# -- C: the system compiler ------------------------------------------------------------------------
@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc) on this machine")
def test_stn_c_file_compiles_and_reproduces_simulate(runs, signal, tmp_path):
    reference = simulate(runs["stn"], signal, tmp_path)
    export(runs["stn"], "c", tmp_path / "stn.c")
    library = tmp_path / "libstn.so"
    subprocess.run(["cc", "-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror", "-O2",
                    "-shared", "-fPIC", str(tmp_path / "stn.c"), "-o", str(library), "-lm"],
                   check=True, capture_output=True)
    stn = ctypes.CDLL(str(library))
    pointer = ctypes.POINTER(ctypes.c_float)
    x = np.ascontiguousarray(signal[1], dtype=np.float32)
    first, second = np.zeros_like(x), np.zeros_like(x)
    for out in (first, second):  # init() starts over
        stn.init()
        stn.process(x.ctypes.data_as(pointer), out.ctypes.data_as(pointer), len(x))
    assert relative_error(first, reference) < TOLERANCE
    np.testing.assert_array_equal(first, second)


# -- what cannot be exported --------------------------------------------------------------------
def _fails(args, *words):
    result = runner.invoke(app, ["export", *map(str, args)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "error:" in result.output
    for word in words:
        assert word in result.output
    return result


def test_a_kind_the_format_cannot_hold_is_named(runs, tmp_path):
    _fails([runs["gru"], "--format", "nam", "--out", tmp_path / "x.nam"], "'gru'", "rtneural")
    _fails([runs["stn"], "--format", "rtneural", "--out", tmp_path / "x.json"], "'stn'", "c")
    _fails([runs["lstm"], "--format", "c", "--out", tmp_path / "x.c"], "stn")
    _fails([runs["lstm"], "--format", "onnx", "--out", tmp_path / "x"], "onnx", "rtneural")
    assert list(tmp_path.iterdir()) == []


def test_a_folder_that_is_not_a_run_is_named(runs, tmp_path):
    (tmp_path / "empty").mkdir()
    _fails([tmp_path / "empty", "--format", "rtneural", "--out", tmp_path / "x.json"],
           "not a run directory")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "run.json").write_text("{ not json")
    _fails([broken, "--format", "rtneural", "--out", tmp_path / "x.json"], "run.json", "damaged")
    garbled = tmp_path / "garbled"
    shutil.copytree(runs["gru"], garbled)
    (garbled / "last.pt").write_bytes(b"not a checkpoint")  # the weights live in last.pt
    _fails([garbled, "--format", "rtneural", "--out", tmp_path / "x.json"], "last.pt", "damaged")
    assert not (tmp_path / "x.json").exists()


def test_an_output_that_cannot_be_written_is_named(runs, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    _fails([runs["gru"], "--format", "rtneural", "--out", blocker / "model.json"], "cannot write")
    _fails([runs["gru"], "--format", "rtneural", "--out", tmp_path], "is a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_a_model_with_control_inputs_is_refused(tiny_data):
    model = nets.build("gru", 2, 1, hidden=4)
    model.run_info = {}
    with pytest.raises(nets.export.UnsupportedExportError, match="2 inputs"):
        nets.export.render(model, "rtneural")


def test_rtneural_file_carries_the_knob_inputs(knob_data, signal, tmp_path):
    """A GRU trained with --knob drive=0:1 exports with in_shape 1 + 1; the file, fed the
    audio and drive = 0.3, gives what `simulate --model RUN --set drive=0.3` gives."""
    torch.manual_seed(0)
    model = nets.build("gru", knob_data.n_inputs, knob_data.n_states, hidden=6,
                       scaling=knob_data.scaling)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    run = tmp_path / "run"
    nets.train(model, knob_data, TrainConfig(epochs=1, **{**CONFIG, "window": 0}), out=run)
    reference = simulate(run, signal, tmp_path, "--set", "drive=0.3")
    export(run, "rtneural", tmp_path / "model.json")
    doc = json.loads((tmp_path / "model.json").read_text())
    assert doc["in_shape"] == [None, None, 2]
    assert [k["name"] for k in doc["metadata"]["knobs"]] == ["drive"]
    u = np.stack([signal[1], np.full(len(signal[1]), 0.3)], -1)
    assert relative_error(rtneural_run(doc, u), reference) < TOLERANCE
    other = simulate(run, signal, tmp_path, "--set", "drive=0.9")
    assert relative_error(other, reference) > 100 * TOLERANCE  # the knob input is read

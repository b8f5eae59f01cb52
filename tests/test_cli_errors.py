"""Every bad argument: one red line naming it and what is allowed, exit code 2, nothing written.

Each test snapshots the folder the command would write into and checks that the refused
command left it exactly as it was: no output, no temporary file, no new folder.
"""

import os
import struct

import numpy as np
import pytest
import soundfile
from typer.testing import CliRunner

from cli import app
from nodal import signals

runner = CliRunner()


def wav(path, x, rate=48000):
    soundfile.write(str(path), np.asarray(x, dtype=np.float32), rate, subtype="FLOAT")
    return path


def snapshot(folder):
    return {p: p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


def refused(args, folder, *words):
    """Run the command; it must fail with exit code 2 and one line holding `words`, and leave
    `folder` as it was."""
    before = snapshot(folder)
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    line = lines[0]
    assert line.startswith("error: "), line
    for word in words:
        assert word in line, (word, line)
    assert "Traceback" not in result.output
    assert snapshot(folder) == before
    return line


@pytest.fixture
def pluck(tmp_path):
    return wav(tmp_path / "in.wav", signals.plucked_string(0.01, 48000, peak=0.5, seed=2))


@pytest.fixture
def npy_input(tmp_path):
    path = tmp_path / "in.npy"
    np.save(path, signals.sine(1000, 0.005, 48000, amplitude=0.5))
    return path


# -- simulate: numbers ---------------------------------------------------------------------
@pytest.mark.parametrize("rate", ["0", "-48000", "nan", "inf"])
def test_npy_input_with_a_bad_rate(tmp_path, npy_input, rate):
    line = refused(["simulate", "rc_lowpass", "-i", npy_input, "-o", tmp_path / "out.npy",
                    "--rate", rate], tmp_path, f"--rate {rate}", "sample rate in Hz", "> 0")
    assert "out.npy" not in line


def test_npy_input_without_a_rate(tmp_path, npy_input):
    refused(["simulate", "rc_lowpass", "-i", npy_input, "-o", tmp_path / "out.npy"], tmp_path,
            "--rate", "has no rate of its own")


def test_a_rate_that_contradicts_the_wav(tmp_path, pluck):
    refused(["simulate", "rc_lowpass", "-i", pluck, "-o", tmp_path / "out.npy", "--rate",
             "44100"], tmp_path, "--rate 44100", "48000 Hz")


@pytest.mark.parametrize("n", ["0", "-2"])
def test_oversample_below_one(tmp_path, pluck, n):
    refused(["simulate", "diode_clipper", "-i", pluck, "-o", tmp_path / "out.npy",
             "--oversample", n], tmp_path, f"--oversample {n}", "an integer >= 1")


@pytest.mark.parametrize("gain", ["nan", "inf", "-inf"])
def test_gain_not_finite(tmp_path, pluck, gain):
    refused(["simulate", "diode_clipper", "-i", pluck, "-o", tmp_path / "out.npy", "--gain",
             gain], tmp_path, "--gain", "finite number")


def test_an_integer_option_given_text_is_one_line_too(tmp_path, pluck):
    """Typer's own parse errors are the same one line, not a framed usage box."""
    refused(["simulate", "diode_clipper", "-i", pluck, "-o", tmp_path / "out.npy",
             "--oversample", "abc"], tmp_path, "--oversample", "integer", "simulate --help")


def test_a_missing_required_option_is_one_line(tmp_path, pluck):
    refused(["simulate", "diode_clipper", "-i", pluck], tmp_path, "--output")


def test_unknown_backend(tmp_path, pluck):
    refused(["simulate", "diode_clipper", "-i", pluck, "-o", tmp_path / "out.npy",
             "--backend", "gpu"], tmp_path, "--backend gpu", "fast, torch")


# -- simulate: --set and --control ---------------------------------------------------------
def test_set_value_not_a_number(tmp_path, pluck):
    refused(["simulate", "diode_clipper", "-i", pluck, "-o", tmp_path / "out.npy", "--set",
             "R1=abc"], tmp_path, "--set R1=abc", "not a number")


def test_set_a_name_the_circuit_lacks(tmp_path, pluck):
    refused(["simulate", "diode_clipper", "-i", pluck, "-o", tmp_path / "out.npy", "--set",
             "X=abc"], tmp_path, "--set X=abc", "no 'X'", "r1")


@pytest.mark.parametrize("item", ["R1", "=1k", "R1=", "R1=1e999"])
def test_set_malformed_or_infinite(tmp_path, pluck, item):
    refused(["simulate", "diode_clipper", "-i", pluck, "-o", tmp_path / "out.npy", "--set",
             item], tmp_path, "--set")


def test_control_naming_a_source_the_circuit_lacks(tmp_path, pluck):
    lfo = wav(tmp_path / "lfo.wav", np.full(480, -2.0))
    refused(["simulate", "phase90", "-i", pluck, "-o", tmp_path / "out.npy", "--control",
             f"Vfoo={lfo}"], tmp_path, "--control Vfoo=", "no control source 'Vfoo'", "vlfo")


def test_control_on_a_circuit_without_controls(tmp_path, pluck):
    lfo = wav(tmp_path / "lfo.wav", np.full(480, -2.0))
    refused(["simulate", "diode_clipper", "-i", pluck, "-o", tmp_path / "out.npy",
             "--control", f"Vlfo={lfo}"], tmp_path, "--control Vlfo=", "none")


def test_control_file_missing(tmp_path, pluck):
    refused(["simulate", "phase90", "-i", pluck, "-o", tmp_path / "out.npy", "--control",
             f"Vlfo={tmp_path / 'nope.wav'}"], tmp_path, "--control", "nope.wav",
            "no such file")


# -- simulate: input files -----------------------------------------------------------------
def test_input_that_does_not_exist(tmp_path):
    refused(["simulate", "diode_clipper", "-i", tmp_path / "missing.wav", "-o",
             tmp_path / "out.npy"], tmp_path, "--input", "missing.wav", "no such file")


def test_input_that_is_a_folder(tmp_path):
    (tmp_path / "d.wav").mkdir()
    refused(["simulate", "diode_clipper", "-i", tmp_path / "d.wav", "-o",
             tmp_path / "out.npy"], tmp_path, "--input", "is a folder")


def test_input_that_cannot_be_read(tmp_path, pluck, monkeypatch):
    """(As root a chmod does not stop a read: the check asks the OS, so ask it to say no.)"""
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(pluck)
                        and mode & os.R_OK else real(p, mode))
    refused(["simulate", "diode_clipper", "-i", pluck, "-o", tmp_path / "out.npy"], tmp_path,
            "--input", "in.wav", "not readable")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_input_without_read_permission(tmp_path, pluck):
    pluck.chmod(0)
    try:
        refused(["simulate", "diode_clipper", "-i", pluck, "-o", tmp_path / "out.npy"],
                tmp_path, "--input", "not readable")
    finally:
        pluck.chmod(0o644)


def test_truncated_wav(tmp_path):
    """A WAV cut short: libsndfile reads the frames that are there without a word; we name it."""
    whole = wav(tmp_path / "whole.wav", signals.sine(440, 0.02, 48000, amplitude=0.5))
    data = whole.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[:len(data) - 1600])          # 400 float32 frames short of 960
    assert len(soundfile.read(str(cut))[0]) == 560    # what libsndfile alone would give
    refused(["simulate", "rc_lowpass", "-i", cut, "-o", tmp_path / "out.npy"], tmp_path,
            "cut.wav", "truncated WAV", "promises 960 frames", "holds 560")


def test_truncated_wav_with_a_list_chunk_before_the_data(tmp_path):
    """The data chunk found by walking the chunks, not at a fixed offset."""
    x = np.linspace(-0.5, 0.5, 100).astype("<i2")
    fmt = struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16)
    info = b"INFOISFT" + struct.pack("<I", 5) + b"test\0" + b"\0"
    chunks = (b"fmt " + struct.pack("<I", len(fmt)) + fmt
              + b"LIST" + struct.pack("<I", len(info) - 1) + info
              + b"data" + struct.pack("<I", 2 * 100) + x.tobytes()[:120])
    path = tmp_path / "list.wav"
    path.write_bytes(b"RIFF" + struct.pack("<I", 4 + len(chunks) + 80) + b"WAVE" + chunks)
    refused(["simulate", "rc_lowpass", "-i", path, "-o", tmp_path / "out.npy"], tmp_path,
            "truncated WAV", "promises 100 frames", "holds 60")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_wav_not_finite(tmp_path, bad):
    x = np.zeros(200)
    x[123] = bad
    src = wav(tmp_path / "in.wav", x)
    refused(["simulate", "rc_lowpass", "-i", src, "-o", tmp_path / "out.npy"], tmp_path,
            "in.wav", "NaN or infinite", "sample 123")


@pytest.mark.parametrize("bad", [np.nan, -np.inf])
def test_npy_not_finite(tmp_path, bad):
    x = np.zeros(200)
    x[7] = bad
    np.save(tmp_path / "in.npy", x)
    refused(["simulate", "rc_lowpass", "-i", tmp_path / "in.npy", "-o", tmp_path / "out.npy",
             "--rate", "48000"], tmp_path, "in.npy", "NaN or infinite", "sample 7")


@pytest.mark.parametrize("array, words", [(np.zeros((100, 2)), ("one-dimensional", "(100, 2)")),
                                          (np.zeros(0), ("is empty",)),
                                          (np.zeros(10, complex), ("complex", "real numbers")),
                                          (np.array(["a", "b"]), ("real numbers",))])
def test_npy_of_the_wrong_shape_or_kind(tmp_path, array, words):
    np.save(tmp_path / "in.npy", array)
    refused(["simulate", "rc_lowpass", "-i", tmp_path / "in.npy", "-o", tmp_path / "out.npy",
             "--rate", "48000"], tmp_path, "in.npy", *words)


def test_npy_that_is_not_an_array(tmp_path):
    (tmp_path / "in.npy").write_bytes(b"not numpy at all")
    refused(["simulate", "rc_lowpass", "-i", tmp_path / "in.npy", "-o", tmp_path / "out.npy",
             "--rate", "48000"], tmp_path, "in.npy", "not a readable .npy")


def test_stereo_wav(tmp_path):
    src = tmp_path / "st.wav"
    soundfile.write(str(src), np.zeros((100, 2), dtype=np.float32), 48000)
    refused(["simulate", "rc_lowpass", "-i", src, "-o", tmp_path / "o.npy"], tmp_path,
            "2 channels", "mono")


# -- simulate: outputs ---------------------------------------------------------------------
def test_output_folder_without_write_permission(tmp_path, pluck, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(locked)
                        and mode & os.W_OK else real(p, mode))
    refused(["simulate", "diode_clipper", "-i", pluck, "-o", locked / "out.wav"], tmp_path,
            "--output", "no permission to write in", "locked")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_output_folder_read_only(tmp_path, pluck):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        refused(["simulate", "diode_clipper", "-i", pluck, "-o", locked / "out.wav"],
                tmp_path, "--output", "no permission to write")
    finally:
        locked.chmod(0o755)


def test_output_under_a_file(tmp_path, pluck):
    (tmp_path / "afile").write_text("x")
    refused(["simulate", "diode_clipper", "-i", pluck, "-o", tmp_path / "afile" / "o.wav"],
            tmp_path, "--output", "afile is a file")


@pytest.mark.parametrize("flag, name, words", [("-o", "out.mp3", (".npy or .wav",)),
                                               ("--states", "states.wav", (".npy",))])
def test_output_types(tmp_path, pluck, flag, name, words):
    args = ["simulate", "diode_clipper", "-i", pluck, "-o", tmp_path / "out.npy"]
    if flag == "-o":
        args[-1] = tmp_path / name
    else:
        args += [flag, tmp_path / name]
    refused(args, tmp_path, flag if flag != "-o" else "--output", name, *words)


def test_output_and_states_the_same_file(tmp_path, pluck):
    refused(["simulate", "diode_clipper", "-i", pluck, "-o", tmp_path / "x.npy", "--states",
             tmp_path / "x.npy"], tmp_path, "--states", "the same file as --output")


def test_normalize_with_an_npy_output(tmp_path, pluck):
    refused(["simulate", "diode_clipper", "-i", pluck, "-o", tmp_path / "x.npy",
             "--normalize"], tmp_path, "--normalize", ".wav")


def test_no_output_when_the_states_cannot_be_written(tmp_path, pluck, monkeypatch):
    """out.wav and states.npy appear together or not at all: a failure writing the states
    (a full disk, here) leaves neither, and no temporary file."""
    from nodal import audio

    real = audio.signal_writer

    def writer(path, x, rate, normalize=False):
        if str(path).endswith("states.npy"):
            def fail(f):
                raise OSError(28, "No space left on device", str(path))
            return fail
        return real(path, x, rate, normalize)

    monkeypatch.setattr(audio, "signal_writer", writer)
    refused(["simulate", "diode_clipper", "-i", pluck, "-o", tmp_path / "out.wav", "--states",
             tmp_path / "states.npy"], tmp_path, "states.npy", "No space left")
    monkeypatch.undo()
    result = runner.invoke(app, ["simulate", "diode_clipper", "-i", str(pluck), "-o",
                                 str(tmp_path / "out.wav"), "--states",
                                 str(tmp_path / "states.npy")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out.wav").is_file() and (tmp_path / "states.npy").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_model_with_solver_options(tmp_path, pluck):
    (tmp_path / "run").mkdir()
    refused(["simulate", "-i", pluck, "-o", tmp_path / "o.npy", "--model", tmp_path / "run",
             "--oversample", "2"], tmp_path, "--model", "--oversample")


def test_model_folder_missing(tmp_path, pluck):
    refused(["simulate", "-i", pluck, "-o", tmp_path / "o.npy", "--model", tmp_path / "run"],
            tmp_path, "--model", "no such folder")


def test_unknown_circuit(tmp_path, pluck):
    refused(["simulate", "diode_clippr", "-i", pluck, "-o", tmp_path / "o.npy"], tmp_path,
            "diode_clippr", "neither a built-in circuit")


# -- the other commands --------------------------------------------------------------------
@pytest.mark.parametrize("args, words", [
    (["--duration", "0"], ("--duration 0", "seconds > 0")),
    (["--duration", "nan"], ("--duration nan",)),
    (["--oversample", "0"], ("--oversample 0", "an integer >= 1")),
    (["--backend", "spice"], ("--backend spice", "fast, torch")),
])
def test_verify_arguments(tmp_path, args, words):
    refused(["verify", "rc_lowpass", *args], tmp_path, *words)


@pytest.mark.parametrize("args, words", [
    (["--duration", "0.01"], ("--duration 0.01", "> 0.1")),
    (["--duration", "-1"], ("--duration -1",)),
    (["--peak", "0"], ("--peak 0", "volts, a finite number > 0")),
    (["--peak", "nan"], ("--peak nan",)),
    (["--oversample", "0"], ("--oversample 0",)),
])
def test_plot_arguments(tmp_path, args, words):
    refused(["plot", "rc_lowpass", "--out", tmp_path / "p.png", *args], tmp_path, *words)


def test_plot_output_type_and_folder(tmp_path):
    refused(["plot", "rc_lowpass", "--out", tmp_path / "p.jpg"], tmp_path, "--out", ".png")
    (tmp_path / "p.png").mkdir()
    refused(["plot", "rc_lowpass", "--out", tmp_path / "p.png"], tmp_path, "--out",
            "is a folder")


def test_plot_writes_one_png_atomically(tmp_path):
    result = runner.invoke(app, ["plot", "rc_lowpass", "--out", str(tmp_path / "p.png"),
                                 "--duration", "0.2"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["p.png"]     # no temporary file left


@pytest.mark.parametrize("args, words", [
    (["--seconds", "0"], ("--seconds 0",)),
    (["--seconds", "nan"], ("--seconds nan",)),
    (["--seconds", "1", "--spice-seconds", "2"], ("--spice-seconds 2", "<= 1")),
    (["nonesuch"], ("nonesuch", "neither a built-in circuit")),
])
def test_bench_arguments(tmp_path, args, words):
    refused(["bench", *args], tmp_path, *words)


@pytest.mark.parametrize("args, words", [
    (["--jobs", "0"], ("--jobs 0", "an integer from 1 to")),
    (["--jobs", "100000"], ("--jobs 100000",)),
])
def test_study_arguments(tmp_path, args, words):
    refused(["study", "exposure-bias", "--out", tmp_path / "s", *args], tmp_path, *words)


def test_study_on_a_circuit_that_does_not_exist(tmp_path):
    refused(["study", "exposure-bias", "--out", tmp_path / "s", "--circuit",
             tmp_path / "nope.cir"], tmp_path, "nope.cir", "neither a built-in circuit")


def test_study_out_is_a_file(tmp_path):
    (tmp_path / "s").write_text("x")
    refused(["study", "exposure-bias", "--out", tmp_path / "s"], tmp_path, "--out", "is a file")


def test_demo_out_is_a_file(tmp_path):
    (tmp_path / "d").write_text("x")
    refused(["demo", "--out", tmp_path / "d"], tmp_path, "--out", "is a file")


def test_compare_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "notarun").mkdir()
    refused(["compare", tmp_path / "notarun", "--report", tmp_path / "r"], tmp_path,
            "notarun", "not a run directory")
    refused(["compare", tmp_path / "missing", "--report", tmp_path / "r"], tmp_path,
            "missing", "no such folder")


def test_equations_of_a_missing_netlist(tmp_path):
    refused(["equations", tmp_path / "x.cir"], tmp_path, "x.cir", "neither a built-in")


# -- compare: the report folder ------------------------------------------------------------
@pytest.fixture(scope="module")
def one_run(tmp_path_factory, shared_cache):
    from nets import runs
    from nets.data import MaterialSpec

    root = tmp_path_factory.mktemp("compare")
    os.environ["NODALNET_CACHE"] = str(shared_cache)
    out = root / "stn"
    runs.start("diode_clipper", "stn", out=out, epochs=1, steps_per_epoch=2, segment=256,
               batch=4, window=1, material=MaterialSpec(train_seconds=0.4, val_seconds=0.05,
                                                        test_seconds=0.2, seed=3))
    return out


def test_compare_report_onto_an_existing_file(tmp_path, one_run):
    (tmp_path / "report").write_text("my notes")
    refused(["compare", one_run, "--report", tmp_path / "report", "--no-solver"], tmp_path,
            "--report", "is a file, not a folder")


def test_compare_replaces_an_earlier_report_all_or_nothing(tmp_path, one_run, monkeypatch):
    """A second `compare` into the same folder replaces the report (re-running a comparison
    is how a report is brought up to date); one that fails half-way leaves the earlier report
    whole: no file of the new one, no temporary file."""
    import json

    from nets import report

    folder = tmp_path / "r"
    args = ["compare", str(one_run), "--report", str(folder), "--no-solver"]
    first = runner.invoke(app, args, env={"COLUMNS": "250"})
    assert first.exit_code == 0, first.output
    names = {p.name for p in folder.iterdir()}
    assert {"report.md", "results.json", "diode_clipper_error_spectra.png"} <= names
    results = json.loads((folder / "results.json").read_text(),   # strict: no NaN, Infinity
                         parse_constant=lambda c: pytest.fail(f"{c} in results.json"))
    [run] = results["diode_clipper"]["runs"]
    assert run["window"] == 1 and run["label"].startswith("stn k=1")

    (folder / "report.md").write_text("an older report")

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device", str(folder / "x.png"))

    monkeypatch.setattr(report, "plot_error_spectra", broken)
    before = snapshot(tmp_path)
    failed = runner.invoke(app, args, env={"COLUMNS": "250"})
    assert failed.exit_code == 2 and "Traceback" not in failed.output
    assert failed.output.strip().splitlines()[-1].startswith("error: ")   # after the table
    assert "No space left" in failed.output
    assert snapshot(tmp_path) == before
    assert (folder / "report.md").read_text() == "an older report"
    monkeypatch.undo()
    again = runner.invoke(app, args, env={"COLUMNS": "250"})
    assert again.exit_code == 0, again.output
    assert (folder / "report.md").read_text().startswith("# nodalnet compare")
    assert {p.name for p in folder.iterdir()} == names


def test_compare_a_circuit_no_run_has(tmp_path, one_run):
    refused(["compare", one_run, "--circuit", "tube_screamer", "--report", tmp_path / "r"],
            tmp_path, "--circuit tube_screamer", "none of the runs")

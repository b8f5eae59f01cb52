"""The command line as a user meets it: real files in, clear errors out, nothing half-written."""

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


def test_circuits_lists_the_builtins():
    result = runner.invoke(app, ["circuits"])
    assert result.exit_code == 0, result.output
    assert "diode_clipper" in result.output and "rc_lowpass" in result.output


def test_equations_prints_the_derivation():
    result = runner.invoke(app, ["equations", "rc_lowpass"])
    assert result.exit_code == 0, result.output
    assert "trapezoidal" in result.output
    assert "A = [[(-T + 2*c1*r1)/(T + 2*c1*r1)]]" in result.output


def test_simulate_writes_output_and_states(tmp_path):
    x = signals.plucked_string(0.02, 48000, peak=1.0, seed=0)
    src = wav(tmp_path / "in.wav", x)
    out, states = tmp_path / "out.npy", tmp_path / "states.npy"
    result = runner.invoke(app, ["simulate", "diode_clipper", "--input", str(src),
                                 "--output", str(out), "--states", str(states)])
    assert result.exit_code == 0, result.output
    y, s = np.load(out), np.load(states)
    assert y.dtype == np.float64 and y.shape == (len(x),) and s.shape == (len(x), 1)
    np.testing.assert_allclose(y, s[:, 0], atol=1e-12)  # the output is the capacitor voltage
    assert 0.2 < np.max(np.abs(y)) < 0.9


RC_WITH_CARDS = ("* rc\n*@ input Vin\n*@ output out\nVin in 0 DC 0\nR1 in out 1k\nC1 out 0 1u\n"
                 ".model unused TRIODE(MU=100)\n.options reltol=1e-4\n.tran 1u 1m\n.end\n")


@pytest.mark.parametrize("command", ["simulate", "export", "train"])
def test_a_command_names_the_cards_it_read_without_effect(tmp_path, command):
    """A netlist someone else wrote carries analyses, options and models nodalnet does not
    use: `simulate`, `export` and `train` name each with its line, as `equations` does."""
    net = tmp_path / "rc.cir"
    net.write_text(RC_WITH_CARDS)
    src = wav(tmp_path / "in.wav", signals.sine(1000, 0.01, 48000, amplitude=0.5))
    args = {"simulate": ["simulate", str(net), "-i", str(src), "-o", str(tmp_path / "out.wav")],
            "export": ["export", str(net), "--format", "c", "-o", str(tmp_path / "rc.c")],
            "train": ["train", str(net), "--model", "stn", "--epochs", "1", "--train-seconds",
                      "0.5", "--threads", "1", "--out", str(tmp_path / "run")]}[command]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    _names_the_cards(result.output)


def _names_the_cards(output: str) -> None:
    assert "notes on the netlist" in output
    assert "rc.cir:7" in output and "TRIODE" in output
    assert "rc.cir:8" in output and ".options" in output
    assert "rc.cir:9" in output and ".tran" in output


def test_compare_and_study_name_the_cards_of_their_circuits(tmp_path, monkeypatch):
    """`compare` reads its runs' netlists again and `study` the circuits it trains on: each
    names the cards it read without effect, with the circuit they are in."""
    import json

    from nets import study

    net = tmp_path / "rc.cir"
    net.write_text(RC_WITH_CARDS)
    run = tmp_path / "run"
    trained = runner.invoke(app, ["train", str(net), "--model", "stn", "--epochs", "1",
                                  "--train-seconds", "0.5", "--threads", "1", "--out", str(run)])
    assert trained.exit_code == 0, trained.output
    result = runner.invoke(app, ["compare", str(run), "--report", str(tmp_path / "r"),
                                 "--no-solver"])
    assert result.exit_code == 0, result.output
    _names_the_cards(result.output)
    assert f"notes on the netlist {net}" in " ".join(result.output.split())

    def fake_run(which, profile, out, on_job=None, workers=1, circuits=(), models=()):
        out.mkdir(parents=True)
        (out / "results.json").write_text(json.dumps({"minutes": 0.1}))
        return out / "report.md"

    monkeypatch.setattr(study, "run", fake_run)
    result = runner.invoke(app, ["study", "exposure-bias", "--circuit", str(net), "--out",
                                 str(tmp_path / "study")])
    assert result.exit_code == 0, result.output
    _names_the_cards(result.output)


def test_simulate_set_gain_and_wav_output(tmp_path):
    x = signals.sine(1000, 0.01, 48000, amplitude=0.5)
    src = wav(tmp_path / "in.wav", x)
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    first = runner.invoke(app, ["simulate", "rc_lowpass", "-i", str(src), "-o", str(a)])
    assert first.exit_code == 0, first.output
    result = runner.invoke(app, ["simulate", "rc_lowpass", "-i", str(src), "-o", str(b),
                                 "--set", "R1=100", "--gain", "2"])
    assert result.exit_code == 0, result.output
    ya, rate = soundfile.read(str(a))
    yb, _ = soundfile.read(str(b))
    assert rate == 48000
    # a tenth of the resistance: the pole moves up, so at 1 kHz the gain is nearly 1 (x2 gain)
    assert np.max(np.abs(yb[240:])) > 1.9 * 0.5 * 0.98 > np.max(np.abs(ya[240:]))


def test_simulate_oversampled_is_close_to_native(tmp_path):
    x = signals.plucked_string(0.01, 48000, seed=1)
    src = wav(tmp_path / "in.wav", x)
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    runner.invoke(app, ["simulate", "diode_clipper", "-i", str(src), "-o", str(a)])
    result = runner.invoke(app, ["simulate", "diode_clipper", "-i", str(src), "-o", str(b),
                                 "--oversample", "4"])
    assert result.exit_code == 0, result.output
    ya, yb = np.load(a), np.load(b)
    assert np.sum((ya - yb) ** 2) / np.sum(yb ** 2) < 1e-3


def test_wav_with_nan_is_refused_and_nothing_written(tmp_path):
    x = np.zeros(100)
    x[50] = np.nan
    src = wav(tmp_path / "in.wav", x)
    out = tmp_path / "out.npy"
    result = runner.invoke(app, ["simulate", "diode_clipper", "-i", str(src), "-o", str(out)])
    assert result.exit_code == 2
    assert "NaN" in result.output and not out.exists()
    assert list(tmp_path.iterdir()) == [src]


def test_stereo_wav_is_refused(tmp_path):
    src = tmp_path / "st.wav"
    soundfile.write(str(src), np.zeros((100, 2), dtype=np.float32), 48000)
    result = runner.invoke(app, ["simulate", "diode_clipper", "-i", str(src), "-o",
                                 str(tmp_path / "o.npy")])
    assert result.exit_code == 2 and "2 channels" in result.output
    assert not (tmp_path / "o.npy").exists()


def test_bad_netlist_reports_file_and_line(tmp_path):
    bad = tmp_path / "bad.cir"
    bad.write_text("* bad\n*@ input Vin\n*@ output out\nVin in 0 DC 0\nR1 in out 1k\nW1 out 0 1\n")
    src = wav(tmp_path / "in.wav", np.zeros(10))
    result = runner.invoke(app, ["simulate", str(bad), "-i", str(src), "-o",
                                 str(tmp_path / "o.npy")])
    assert result.exit_code == 2
    assert "bad.cir:6" in result.output and "W1" in result.output
    assert "Traceback" not in result.output


def test_unknown_parameter_is_named(tmp_path):
    src = wav(tmp_path / "in.wav", np.zeros(10))
    result = runner.invoke(app, ["simulate", "diode_clipper", "-i", str(src), "-o",
                                 str(tmp_path / "o.npy"), "--set", "R9=1k"])
    assert result.exit_code == 2 and "r9" in result.output.lower()


def test_control_source_follows_the_given_signal(tmp_path):
    """The phaser's LFO: by default its own SIN, or the signal given with --control."""
    x = signals.plucked_string(0.05, 48000, peak=0.5, seed=4)
    src = wav(tmp_path / "in.wav", x)
    lfo_low = wav(tmp_path / "low.wav", np.full(len(x), -2.4))
    lfo_high = wav(tmp_path / "high.wav", np.full(len(x), -1.4))
    outs = {}
    for name, extra in (("own", []), ("low", ["--control", f"Vlfo={lfo_low}"]),
                        ("high", ["--control", f"Vlfo={lfo_high}"])):
        out = tmp_path / f"{name}.npy"
        result = runner.invoke(app, ["simulate", "phase90", "-i", str(src), "-o", str(out),
                                     *extra])
        assert result.exit_code == 0, result.output
        outs[name] = np.load(out)
    # a different gate voltage moves the notches: a different output
    assert np.sum((outs["low"] - outs["high"]) ** 2) > 1e-3 * np.sum(outs["low"] ** 2)
    bad = runner.invoke(app, ["simulate", "phase90", "-i", str(src), "-o",
                              str(tmp_path / "x.npy"), "--control", f"Vfoo={lfo_low}"])
    assert bad.exit_code == 2 and "vfoo" in bad.output.lower()


def test_set_a_param_knob(tmp_path):
    x = signals.plucked_string(0.03, 48000, peak=0.05, seed=5)
    src = wav(tmp_path / "in.wav", x)
    peaks = []
    for drive in ("0.05", "1"):
        out = tmp_path / f"d{drive}.npy"
        result = runner.invoke(app, ["simulate", "tube_screamer", "-i", str(src), "-o", str(out),
                                     "--set", f"drive={drive}"])
        assert result.exit_code == 0, result.output
        peaks.append(np.max(np.abs(np.load(out))))
    assert peaks[1] > peaks[0]  # more drive, more gain


def test_demo_wires_the_quick_study(tmp_path, monkeypatch):
    """Regression: `make demo` called the `study` command as a function and passed typer's
    option objects on as values ('OptionInfo' object is not iterable)."""
    import json

    from nets import study

    calls = []

    def fake_run(which, profile, out, on_job=None, workers=1, circuits=(), models=()):
        calls.append((which, profile, workers, circuits, models))
        out.mkdir(parents=True)
        (out / "results.json").write_text(json.dumps({"verdicts": {"a": {"verdict": "holds"}},
                                                      "minutes": 0.1}))
        (out / "report.md").write_text("# report\n")
        return out / "report.md"

    monkeypatch.setattr(study, "run", fake_run)
    result = runner.invoke(app, ["demo", "--out", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    [(which, profile, workers, circuits, models)] = calls
    assert (which, profile, circuits, models) == ("exposure-bias", "quick", (), ())
    assert isinstance(workers, int) and workers >= 1
    assert "report" in result.output


def test_an_unknown_study_or_profile_is_named_and_nothing_is_written(tmp_path):
    for args, words in ((["study", "exposure-biass"], "unknown study 'exposure-biass'"),
                        (["study", "exposure-bias", "--profile", "huge"], "unknown profile 'huge'"),
                        (["study", "exposure-bias", "--model", "transformer"],
                         "unknown model 'transformer'")):
        result = runner.invoke(app, args + ["--out", str(tmp_path / "s")])
        assert result.exit_code != 0
        assert words in " ".join(result.output.split()) and "Traceback" not in result.output
        assert not (tmp_path / "s").exists()

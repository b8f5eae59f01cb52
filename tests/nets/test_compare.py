"""`nodalnet compare` and the study: every column and plot, and evaluation that is really
free-running (the ESR itself: tests/nodal/test_metrics.py)."""

import json
import math

import pytest
import torch

from nets import checkpoint, compare, report, runs, study
from nets.base import NeuralModel
from nets.errors import UnknownModelError, UnknownStudyError

from nets.data import MaterialSpec

SMALL = MaterialSpec(train_seconds=0.4, val_seconds=0.05, test_seconds=0.3, seed=3)


class HoldState(NeuralModel):
    """Predicts that nothing changes: perfect one step after a reset, useless when free."""

    def __init__(self):
        super().__init__(n_inputs=1, n_states=1)
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def initial_state(self, batch, u0=None):
        return torch.zeros(batch, 1)

    def encode(self, x):
        return x.float()

    def step(self, s, u):
        return s, s.clone(), s.clone()


def test_evaluation_is_free_running(tiny_data):
    """A model that only works teacher-forced scores badly: the table's ESR is free-running."""
    import copy

    import nodal
    from nets.data import simulate_split
    from nodal import signals

    data = copy.copy(tiny_data)
    pluck = simulate_split(nodal.load("diode_clipper"), signals.plucked_string(0.1, 48000, seed=2))
    data.splits = {**tiny_data.splits, "test": pluck}
    ev = compare.evaluate_model(HoldState(), data, "hold", timing=False)
    assert ev.esr_teacher < 0.2           # one step ahead, the capacitor barely moves
    assert ev.esr > 0.5                   # on its own it never moves at all
    assert ev.exposure_bias > 10
    # and the error grows with the time since the last reset
    first, last = ev.growth[0][1], ev.growth[-1][1]
    assert last > 10 * first


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, cache_root):
    import os
    os.environ["NODALNET_CACHE"] = str(cache_root)
    root = tmp_path_factory.mktemp("runs")
    dirs = []
    for model, window in (("stn", 1), ("gru-sm", 0)):
        out = root / f"{model}"
        runs.start("diode_clipper", model, out=out, material=SMALL, epochs=1, steps_per_epoch=2,
                   segment=256, batch=4, window=window)
        dirs.append(out)
    return dirs


def test_compare_writes_every_column_and_plot(two_runs, tmp_path):
    result = compare.compare(two_runs)
    evals = result.groups["diode_clipper"]
    assert float(result.data["diode_clipper"].test.y.abs().max()) > 0.05  # not silence
    assert [e.label.split()[0] for e in evals] == ["solver", "stn", "gru-sm"]
    for ev in evals:
        assert math.isfinite(ev.esr) and math.isfinite(ev.esr_emphasis)
        assert ev.parameters > 0 and ev.rtf > 0
    for ev in evals[1:]:
        assert ev.esr_teacher is not None and ev.exposure_bias is not None and ev.growth
        assert set(ev.esr_by_window) == {"1", "4", "16", "64", "256", "1024", "inf"}
    assert evals[0].esr < 1e-12            # the solver reproduces its own data
    path = report.write_comparison(result, tmp_path)
    text = path.read_text()
    for header in report.HEADERS.values():
        assert header in text
    for name in ("waveforms", "error_growth", "esr_vs_window", "error_spectra"):
        png = tmp_path / f"diode_clipper_{name}.png"
        assert png.is_file() and png.stat().st_size > 5000
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["diode_clipper"]) >= {"runs", "table", "plots"}


def test_cli_compare(two_runs, tmp_path):
    from typer.testing import CliRunner

    from cli import app
    result = CliRunner().invoke(app, ["compare", *map(str, two_runs), "--report",
                                      str(tmp_path / "r"), "--no-solver"],
                                     env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    report = tmp_path / "r" / "report.md"      # the table's width depends on the terminal
    assert "report.md" in result.output and "exposure bias" in report.read_text().lower()


def _cell(v):
    return {"mean": v[0], "min": v[1], "max": v[2]} if v else None


def _row(model, window, esr, eb=None):
    return {"model": model, "window": window, "esr": _cell(esr), "exposure_bias": _cell(eb)}


def test_verdicts_follow_the_numbers():
    rows = [_row("stn", 1, (1e-2, 8e-3, 1.2e-2), (5.0, 3.0, 7.0)),
            _row("stn", 16, (5e-3, 4e-3, 6e-3)), _row("stn", 0, (1e-3, 8e-4, 1.2e-3))]
    v = study.verdict_exposure_bias(rows)
    assert v["a"]["verdict"] == "holds" and v["b"]["verdict"] == "holds"
    worse = [_row("stn", 1, (1e-3, 8e-4, 1.2e-3), (0.9, 0.8, 1.1)),
             _row("stn", 0, (1e-2, 8e-3, 1.2e-2))]
    v = study.verdict_exposure_bias(worse)
    assert v["a"]["verdict"].startswith("inconclusive") and v["b"]["verdict"] == "does not hold"
    sm = {"tube_screamer": [_row("gru", None, (2e-2, 1e-2, 3e-2)),
                            _row("gru-sm", None, (1e-2, 9e-3, 1.1e-2))],
          "phase90": [_row("gru", None, (4e-2, 3e-2, 5e-2)),
                      _row("gru-sm", None, (1e-2, 9e-3, 1.1e-2))]}
    v = study.verdict_state_matching(sm)
    assert v["c"]["verdict"].startswith("inconclusive")   # tube screamer spreads overlap
    assert v["c"]["largest_gain_on_the_phaser"] is True


def test_study_jobs_cover_the_sweep():
    quick = study.PROFILES["quick"]
    eb = study.jobs("exposure-bias", quick)
    assert {(j.model, j.window) for j in eb} == {(m, k) for m in ("stn", "gru-sm")
                                                  for k in quick.windows}
    assert len(eb) == 2 * len(quick.windows) * len(quick.seeds)
    full = study.jobs("exposure-bias", study.PROFILES["full"])
    assert {j.window for j in full} == {1, 4, 16, 64, 256, 1024, math.inf}
    assert {j.seed for j in full} == {0, 1, 2}
    sm = study.jobs("state-matching", study.PROFILES["full"])
    assert {j.circuit for j in sm} == {"tube_screamer", "phase90"}
    gru = {j.hidden for j in sm if j.model in ("gru", "gru-sm")}
    assert len(gru) == 1                    # equal hidden size for gru and gru-sm


def test_the_quick_exposure_bias_runs_are_runs_of_the_full_study():
    """The quick profile is a subset of the full sweep with the same material and settings,
    so `make demo` shows real figures, not those of undertrained models."""
    quick, full = study.PROFILES["quick"], study.PROFILES["full"]
    full_jobs = study.jobs("exposure-bias", full)
    assert quick.material == full.material
    for job in study.jobs("exposure-bias", quick):
        assert job in full_jobs
        assert study._settings(job, quick) == study._settings(job, full)


def test_a_study_narrowed_to_another_circuit_and_model():
    full = study.PROFILES["full"]
    ts = study.narrow(full, "exposure-bias", ("tube_screamer",), ("stn",))
    todo = study.jobs("exposure-bias", ts)
    assert {(j.circuit, j.model) for j in todo} == {("tube_screamer", "stn")}
    assert len(todo) == len(full.windows) * len(full.seeds)
    phaser = study.jobs("state-matching", study.narrow(full, "state-matching", ("phase90",),
                                                       ("nodal",)))
    assert {j.circuit for j in phaser} == {"phase90"}
    assert {j.model for j in phaser} == {"gru", "gru-sm", "nodal"}   # the compared pair stays
    with pytest.raises(UnknownModelError, match="unknown model"):
        study.narrow(full, "exposure-bias", (), ("transformer",))
    with pytest.raises(UnknownStudyError, match="state-matching compares on"):
        study.narrow(full, "state-matching", ("diode_clipper",))


def test_exposure_bias_verdict_reports_the_ratio_per_window():
    rows = [_row("stn", 1, (1e-3, 9e-4, 1.1e-3), (1.1, 1.05, 1.15)),
            _row("stn", 0, (2e-3, 1.8e-3, 2.2e-3), (1.02, 1.01, 1.03))]
    b = study.verdict_exposure_bias(rows)["b"]
    # the ratio falls with the window while the model gets worse: not a reduction of the error
    assert b["verdict"] == "does not hold"
    assert b["by_model"]["stn"]["exposure_bias"] == {"1": 1.1, "inf": 1.02}


def test_study_trains_in_parallel_workers_with_the_same_results(tmp_path, monkeypatch):
    """`study --jobs 2`: runs in spawned worker processes give the weights of a sequential run,
    and a second call keeps the finished runs instead of training them again."""
    monkeypatch.setenv("NODALNET_CACHE", str(tmp_path / "cache"))
    tiny = study.Profile(material=SMALL, seeds=(0, 1), windows=(1,), sm_circuits=(),
                         sm_models=(), sm_references=(), epochs=2, steps_per_epoch=2,
                         eb_models=("stn",), settings={"segment": 256, "batch": 4})
    todo = study.jobs("exposure-bias", tiny)
    assert len(todo) == 2
    parallel = study.train_all(todo, tiny, tmp_path / "parallel", workers=2)
    serial = study.train_all(todo, tiny, tmp_path / "serial", workers=1)
    for a, b in zip(parallel, serial, strict=True):
        wa = torch.load(a / checkpoint.BEST, weights_only=True)
        wb = torch.load(b / checkpoint.BEST, weights_only=True)
        assert wa.keys() == wb.keys()
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
    stamp = (parallel[0] / checkpoint.RUN_JSON).stat().st_mtime_ns
    study.train_all(todo, tiny, tmp_path / "parallel", workers=2)
    assert (parallel[0] / checkpoint.RUN_JSON).stat().st_mtime_ns == stamp


def test_a_whole_study_writes_its_report_with_verdicts(tmp_path, monkeypatch):
    """`nodalnet study`: train a (tiny) sweep, compare, and end the report with the verdicts."""
    monkeypatch.setenv("NODALNET_CACHE", str(tmp_path / "cache"))
    tiny = study.Profile(material=SMALL, seeds=(0,), windows=(1, 0), sm_circuits=(),
                         sm_models=(), sm_references=(), epochs=1, steps_per_epoch=2,
                         eb_models=("stn", "gru"), settings={"segment": 256, "batch": 4})
    monkeypatch.setitem(study.PROFILES, "tiny", tiny)
    path = study.run("exposure-bias", "tiny", tmp_path / "eb", models=("stn",))
    text = path.read_text()
    assert "## Verdicts" in text and "(a) " in text and "(b) " in text
    assert "Training the runs took" in text
    assert "stn h=16 k=1" in text and "gru " not in text    # narrowed to the stn
    results = json.loads((tmp_path / "eb" / "results.json").read_text())
    assert set(results["verdicts"]) == {"a", "b"}
    # the summed training time is the runs' own, not this call's
    seconds = [json.loads(p.read_text())["history"][-1]["seconds"]
               for p in (tmp_path / "eb" / "runs").rglob(checkpoint.RUN_JSON)]
    assert len(seconds) == 2
    assert results["training_minutes"] == round(sum(seconds) / 60, 2)
    assert set(results["verdicts"]["b"]["by_model"]["stn"]["exposure_bias"]) == {"1", "inf"}

"""The bench's ngspice reference and its rows: a reference that stops short falls back to a
looser setting and says so; one that never finishes is never a figure. No timings here."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import nodal
from nodal import bench, signals, spice
from nodal.render import input_matrix

BIG = Path(__file__).resolve().parents[2] / "bench" / "netlists" / "big_muff_pair.cir"


def _drive(name: str, samples: int):
    eq = nodal.equations(name)
    audio = signals.plucked_string(samples / 48000.0, 48000.0, peak=1.0)
    u = input_matrix(eq, audio, 48000.0)
    return eq.netlist, {s.name: u[:, k] for k, s in enumerate(eq.sources[: eq.n_inputs])}


def test_bench_circuits_resolve_by_name():
    assert bench.resolve("big_muff_pair") == str(BIG)
    assert bench.resolve("diode_clipper") == "diode_clipper"          # a built-in stays a name
    assert bench.resolve("/no/such.cir") == "/no/such.cir"
    assert bench._label(str(BIG)) == "big_muff_pair"


def test_bench_scripts_resolve_bench_circuits_by_name():
    """`python bench/scale.py --startup big_muff_pair` puts bench/ first on the import path:
    a folder there named like one of nodalnet's packages (it was bench/circuits) shadows
    that package as a namespace package, and `bench.resolve` then failed in the script."""
    root = Path(__file__).resolve().parents[2]
    script = "from nodal import bench; print(bench.resolve('big_muff_pair'))"
    # run from bench/, which is then first on the path, as a script's own folder is
    out = subprocess.run([sys.executable, "-c", script], cwd=root / "bench", capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(BIG)


@pytest.mark.skipif(not spice.available(), reason="ngspice is not installed")
def test_big_muff_reference_falls_back_where_the_tight_one_stops():
    """ngspice itself stops the DC-card Big Muff pair at the tight options within its first
    microseconds ("timestep too small"); the reference then finishes at a looser rung and
    names the one that stopped."""
    net, drive = _drive(str(BIG), 96)
    logged = []
    ref = bench.spice_reference(net, drive, 48000.0, 16, log=logged.append)
    assert ref.result is not None
    assert ref.label != bench.REFERENCE_LADDER[0][0]
    assert ref.failures and ref.failures[0].startswith(bench.REFERENCE_LADDER[0][0])
    assert "timestep too small" in ref.failures[0].lower()
    y = ref.result.voltage(*net.output)
    assert len(y) == 96 and np.all(np.isfinite(y))


def _stopping(stop_at: int):
    """A stand-in for spice.simulate whose first `stop_at` rungs stop short."""
    seen = []

    def simulate(net, drive, sample_rate, substeps=16, options=None, **_):
        seen.append(options)
        rung = [o for _, o in bench.REFERENCE_LADDER].index(options) if substeps == 16 else 99
        if rung < stop_at:
            raise spice.IncompleteTransient(net.file, 1e-6, 0.01, "Timestep too small",
                                            options or {})
        n = len(next(iter(drive.values())))
        return spice.SpiceResult({"out": np.zeros(n)}, {}, 0.5, options=options)

    return simulate, seen


def test_the_ladder_takes_the_first_setting_that_finishes(monkeypatch):
    simulate, seen = _stopping(2)
    monkeypatch.setattr(spice, "simulate", simulate)
    net, drive = _drive("diode_clipper", 480)
    ref = bench.spice_reference(net, drive, 48000.0, log=lambda m: None)
    assert ref.label == bench.REFERENCE_LADDER[2][0]
    assert ref.options == bench.REFERENCE_LADDER[2][1]
    assert len(ref.failures) == 2 and "Timestep too small" in ref.failures[1]
    assert seen == [o for _, o in bench.REFERENCE_LADDER[:3]]


def test_a_reference_that_never_finishes_is_no_figure(monkeypatch):
    """Every rung stops: the row has no ngspice figure and no ESR, the table says 'did not
    finish', and a note says why, setting by setting."""
    from rich.console import Console

    simulate, _ = _stopping(len(bench.REFERENCE_LADDER))
    monkeypatch.setattr(spice, "simulate", simulate)
    net, drive = _drive("diode_clipper", 480)
    notes: list[str] = []
    out = bench._spice_part(net, drive, 48000.0, 480, np.zeros(480), 1.0, notes, lambda m: None)
    assert out["reference"].result is None and "ref_y" not in out
    assert len(notes) == 1 and "did not finish at any setting" in notes[0]
    assert all(label in notes[0] for label, _ in bench.REFERENCE_LADDER)
    required = {f.name: ("x" if f.type == "str" else 1.0) for f in dataclasses.fields(
        bench.BenchResult) if f.default is dataclasses.MISSING and f.default_factory is
        dataclasses.MISSING}
    spice_fields = [f.name for f in dataclasses.fields(bench.BenchResult)
                    if f.name.startswith(("spice_", "esr_", "speedup_"))
                    and f.name not in ("spice_seconds", "spice_matched", "esr_fast",
                                       "esr_torch")]
    row = bench.BenchResult(**{**required, **dict.fromkeys(spice_fields), "esr_fast": None,
                               "esr_torch": None, "notes": notes,
                               "reference_setting": "did not finish at any setting"})
    console = Console(width=250, record=True)
    console.print(bench.table([row]))
    text = console.export_text()
    assert "did not finish" in text
    for label in ("ngspice RTF, reference, step 1/16", "ESR fast path",
                  "fast / ngspice matched ESR"):
        line = next(ln for ln in text.splitlines() if label in ln)
        assert "did not finish" in line, line


def test_startup_rows_read_their_figures():
    cold = {"import": 3.0, "derive": 2.0, "solver": 1.0, "kernel": 20.0, "total": 23.0}
    assert bench._startup(cold).startswith("23.0 (2.0 + 1.0 + 20.0")
    assert bench._startup(None) == "not measured"


def test_the_streamed_row_is_not_measured_on_a_signal_shorter_than_two_blocks():
    """`--seconds 0.01` is 480 samples: no block after the first to time, so no figure (not
    a real-time factor of nothing)."""
    solver = nodal.load("diode_clipper")
    u = torch.zeros(1, bench.STREAM_BLOCK + 100, 1, dtype=torch.float64)
    assert bench._stream_rtf(solver, u, log=lambda m: None) is None

"""Knobs: datasets swept over a circuit's `.param`s, models conditioned on them, runs played
and compared at given knob values, and the run folders of earlier versions still loading."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from typer.testing import CliRunner

import nets
import nodal
from cli import app
from nets import knobs, metrics
from nets.data import MaterialSpec, dataset
from nets.errors import KnobError
from nets.nodal_model import NodalModel

runner = CliRunner()
#: the main-branch commit whose writer made run folders before knobs and model declarations
OLD_VERSION = "30ddf0b3ba38ec47503628640e6c32bbc3cff6bb"


def test_knob_specs_and_their_errors():
    assert knobs.parse_specs(["drive=0:1", "tone=100:2k"]) == (
        knobs.Knob("drive", 0.0, 1.0), knobs.Knob("tone", 100.0, 2000.0))
    for bad, message in [("drive", "NAME=LOW:HIGH"), ("drive=1:0", "reversed"),
                         ("drive=0.5:0.5", "empty"), ("drive=x:1", "must be numbers")]:
        with pytest.raises(KnobError, match=message):
            knobs.parse_specs([bad])
    with pytest.raises(KnobError, match="more than once"):
        knobs.parse_specs(["drive=0:1", "drive=0:0.5"])
    with pytest.raises(KnobError, match="no .param 'tone'"):
        knobs.check("tube_screamer", knobs.parse_specs(["tone=0:1"]))
    assert knobs.check("tube_screamer", knobs.parse_specs(["drive=0:1"])) == {"drive": "solver"}
    # the phaser's rate reaches the circuit only through its LFO's waveform; such a knob
    # cannot move within a segment (the LFO's phase would jump)
    assert knobs.check("phase90", knobs.parse_specs(["rate=0.2:2"])) == {"rate": "waveform"}
    with pytest.raises(KnobError, match="knob-motion"):
        knobs.check("phase90", knobs.parse_specs(["rate=0.2:2"]), motion=True)


def test_knob_dataset_grid_and_the_knob_as_a_param(knob_data):
    """The test grid lies between the training draws, one stretch per grid value; a knob
    channel at 0.1 is the solver loaded with `drive=0.1` (the `--set drive=` path)."""
    test = knob_data.test
    pieces = metrics.esr_by_knob(test.y, test, ["drive"])
    assert [round(p["values"]["drive"], 6) for p in pieces] == [0.1, 0.3, 0.5, 0.7, 0.9]
    drawn = set(np.unique(knob_data.train.u[0, :, -1].numpy()).round(6).tolist())
    assert not drawn & {0.1, 0.3, 0.5, 0.7, 0.9} and len(drawn) >= 5
    assert all(0.0 <= d <= 1.0 for d in drawn)
    each = test.length // 5
    solver = nodal.load("tube_screamer", sample_rate=knob_data.sample_rate, drive=0.1)
    u = test.u[:, :each, :1].double()
    u[..., 0] += 0.3 * torch.sin(torch.arange(each) * 2 * torch.pi * 440 / 48e3)
    ref = solver.simulate(u)            # from rest, as the split starts (held first input)
    model = NodalModel(2, knob_data.n_states, knob_data.sample_rate, circuit="tube_screamer",
                       start_factor=1.0, knobs=["drive"])
    with torch.no_grad():
        ours = model(torch.cat([u, torch.full_like(u, 0.1)], -1))
    torch.testing.assert_close(ours.y, ref.y, rtol=1e-6, atol=1e-9)
    # a dataset without knobs keeps its spec (and cache key) of before
    assert "knobs" not in MaterialSpec().to_dict()


def test_nodal_model_with_knobs_is_the_circuit_at_every_setting(knob_data):
    """The nodal model at the true values, fed the knob channel, gives the dataset's output
    at every drive of the grid (it sets its .param stretch by stretch)."""
    model = NodalModel(knob_data.n_inputs, knob_data.n_states, knob_data.sample_rate,
                       circuit="tube_screamer", start_factor=1.0, knobs=["drive"])
    assert "drive" not in model.keys          # a knob is never trained
    with torch.no_grad():
        traj = metrics.predict(model, knob_data.test)
    for piece in metrics.esr_by_knob(traj.y, knob_data.test, ["drive"]):
        assert piece["esr"] < 1e-6, piece


@pytest.fixture(scope="module")
def knob_run(tmp_path_factory, cache_root, knob_data):
    import os
    os.environ["NODALNET_CACHE"] = str(cache_root)
    out = tmp_path_factory.mktemp("knob") / "run"
    nets.runs.start("tube_screamer", "gru", out=out, hidden=4, material=knob_data.material,
                    epochs=1, segment=256, steps_per_epoch=2, batch=4)
    return out


@pytest.fixture(scope="module")
def pluck(tmp_path_factory):
    path = tmp_path_factory.mktemp("wav") / "in.wav"
    t = np.arange(4800) / 48000
    soundfile.write(path, 0.3 * np.sin(2 * np.pi * 330 * t) * np.exp(-20 * t), 48000,
                    subtype="FLOAT")
    return path


def test_simulate_a_knob_run_at_given_values(knob_run, pluck, tmp_path):
    outs = {}
    for drive in ("0.2", "0.9"):
        out = tmp_path / f"y{drive}.npy"
        result = runner.invoke(app, ["simulate", "--model", str(knob_run), "-i", str(pluck),
                                     "-o", str(out), "--set", f"drive={drive}"])
        assert result.exit_code == 0, result.output
        assert f"drive={drive}" in result.output
        outs[drive] = np.load(out)
    assert not np.allclose(outs["0.2"], outs["0.9"])
    for bad, message in [("drive=1.5", "outside the range the run was trained on"),
                         ("tone=0.5", "tone: not a knob of the run")]:
        out = tmp_path / "bad.npy"
        result = runner.invoke(app, ["simulate", "--model", str(knob_run), "-i", str(pluck),
                                     "-o", str(out), "--set", bad])
        assert result.exit_code == 2
        assert message in " ".join(result.output.split())
        assert not out.exists()


def test_compare_reports_esr_against_knob_value(knob_run, tmp_path):
    report = tmp_path / "report"
    result = runner.invoke(app, ["compare", str(knob_run), "--report", str(report)])
    assert result.exit_code == 0, result.output
    text = (report / "report.md").read_text()
    assert "knob setting" in text and "drive=0.5" in text
    results = json.loads((report / "results.json").read_text())
    (group,) = results
    assert group.startswith("tube_screamer (knobs drive=0:1)")
    runs = results[group]["runs"]
    solver, model = runs[0], runs[1]
    assert [round(r["values"]["drive"], 6) for r in model["esr_by_knob"]] == \
        [0.1, 0.3, 0.5, 0.7, 0.9]
    assert max(r["esr"] for r in solver["esr_by_knob"]) < 1e-6   # the solver row is exact
    assert (report / results[group]["plots"]["knobs"]).is_file()


def _old_writer(tmp_path: Path) -> Path | None:
    """The nets/nodal/circuits of OLD_VERSION, unpacked (None without git or that commit)."""
    root = Path(__file__).resolve().parents[2]
    folder = tmp_path / "old"
    folder.mkdir()
    try:
        archive = subprocess.run(["git", "-C", str(root), "archive", OLD_VERSION, "nets",
                                  "nodal", "circuits"], capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def _old_cache(tmp_path: Path) -> Path:
    """A cache root of its own for the previous version (its datasets are not ours), whose
    kernel folder is this session's: a kernel is keyed by its whole source, so the previous
    version reuses a kernel only where it would generate the very same one, and is spared a
    cold compile of the diode clipper in each test."""
    root = tmp_path / "cache"
    root.mkdir()
    kernels = nodal.files.cache_dir("kernels")
    if kernels is not None:
        kernels.mkdir(parents=True, exist_ok=True)
        (root / "kernels").symlink_to(kernels.resolve(), target_is_directory=True)
    return root


@pytest.mark.parametrize("kind", ["gru-sm", "nodal"])
def test_a_run_folder_of_the_previous_version_loads_runs_and_resumes(tmp_path, kind):
    old = _old_writer(tmp_path)
    if old is None:
        pytest.skip("the previous version's sources are not in this checkout's history")
    run = tmp_path / "run"
    script = (f"import nets, nets.runs\nfrom nets.data import MaterialSpec\n"
              f"m = MaterialSpec(train_seconds=0.3, val_seconds=0.05, test_seconds=0.05)\n"
              f"nets.runs.start('diode_clipper', {kind!r}, out={str(run)!r}, material=m, "
              f"epochs=1, segment=128, batch=4, steps_per_epoch=2)\n")
    subprocess.run([sys.executable, "-c", script], cwd=old, check=True, capture_output=True,
                   env={"PYTHONPATH": str(old), "NODALNET_CACHE": str(_old_cache(tmp_path)),
                        "PATH": "/usr/bin:/bin"})
    info = json.loads((run / "run.json").read_text())
    model = nets.load_run(run)                       # this version's reader and registry
    assert model.spec["name"] == kind == info["model"]["name"]
    data = dataset("diode_clipper", 48000.0, MaterialSpec.from_dict(
        info["data"]["material"]), info["data"]["values"], cache=False)
    assert data.n_inputs == model.n_inputs
    again = metrics.evaluate(model, data.test)
    assert again["esr"] == pytest.approx(info["test"]["esr"], rel=1e-4)
    resumed = nets.runs.resume(run, epochs=2)
    assert resumed["status"] == "done" and len(resumed["history"]) == 2


def test_simulate_set_of_a_param_that_shapes_a_control_waveform(tmp_path):
    """`simulate phase90 --set rate=2` moves the LFO (the .param reaches the circuit only
    through the SIN of its control source); rate=0.5, the netlist's own value, changes
    nothing."""
    source = tmp_path / "in.npy"
    np.save(source, 0.3 * np.sin(2 * np.pi * 800 * np.arange(9600) / 48000))
    outs = {}
    for rate in (None, "0.5", "2"):
        out = tmp_path / f"y{rate}.npy"
        extra = [] if rate is None else ["--set", f"rate={rate}"]
        result = runner.invoke(app, ["simulate", "phase90", "-i", str(source), "--rate",
                                     "48000", "-o", str(out), *extra])
        assert result.exit_code == 0, result.output
        outs[rate] = np.load(out)
    np.testing.assert_array_equal(outs[None], outs["0.5"])
    assert np.max(np.abs(outs["2"] - outs["0.5"])) > 1e-3 * np.max(np.abs(outs["0.5"]))


#: the diode clipper behind an ideal drive stage (gain 1 + 4 drive): the README's nodal figure
CLIPPER_DRIVE = """* Diode clipper behind a drive stage: gain 1 + 4 drive (ideal VCVS)
*@ input Vin
*@ output out
.param drive=0.5
.model D1N4148 D(IS=2.52n N=1.752)
Vin in 0 DC 0
E1 x 0 in 0 {1+4*drive}
R1 x out 2.2k
C1 out 0 10n
D1 out 0 D1N4148
D2 0 out D1N4148
.end
"""


@pytest.fixture()
def clipper_drive(tmp_path) -> str:
    path = tmp_path / "clipper_drive.cir"
    path.write_text(CLIPPER_DRIVE)
    return str(path)


def test_the_clipper_output_sees_r1_c1_and_is_only_as_r1_c1_and_is_over_c1(clipper_drive):
    """C dv/dt = (g u - v) / R - 2 IS sinh(v / (N Vt)) divided by C holds R C and IS / C only:
    R / a, C a, IS a give the same output at every drive, so no data recovers C1 (nor R1, IS)
    alone; the nodal model names that direction and no other."""
    t = np.arange(4800) / 48000
    u = torch.from_numpy(2.0 * np.sin(2 * np.pi * 220 * t) * np.exp(-8 * t))[None, :, None]
    for drive in (0.1, 0.9):
        ref = nodal.load(clipper_drive, drive=drive).simulate(u).y
        moved = nodal.load(clipper_drive, drive=drive, r1=2.2e3 / 1.5, c1=15e-9,
                           **{"d1n4148.is": 2.52e-9 * 1.5}).simulate(u).y
        assert float((moved - ref).abs().max()) < 1e-8
        c1_only = nodal.load(clipper_drive, drive=drive, c1=10.1e-9).simulate(u).y
        assert float((c1_only - ref).abs().max()) > 1e-4
    model = NodalModel(2, 1, circuit=clipper_drive, knobs=["drive"])
    assert list(model.keys) == ["r1", "c1", "d1n4148.is"]
    u_knob = torch.cat([u, torch.full_like(u, 0.7)], -1)
    assert model.unseen_directions(u_knob) == [{"r1": -1.0, "c1": 1.0, "d1n4148.is": 1.0}]
    # with C1 known (not trained), R1 and IS are seen
    known = NodalModel(2, 1, circuit=clipper_drive, knobs=["drive"],
                       trainable=["r1", "d1n4148.is"])
    assert known.unseen_directions(u_knob) == []


def test_nodal_defaults_start_the_loss_after_the_start_error_rings_out(clipper_drive):
    """Each training segment starts from `encode(x_prev)` (capacitor current taken as zero);
    at a high drive the diodes conduct hard and that error rings (trapezoidal) for tens of
    samples. With the nodal model's default warm-up the true values score zero loss, so the
    optimum of training is the circuit (16 samples left 1e-6..1e-5 at gain 5)."""
    from nets.losses import StateSpaceLoss
    from nets.train import config_for, window_loss

    spec = MaterialSpec(train_seconds=0.5, val_seconds=0.1, test_seconds=0.1,
                        knobs=(("drive", 0.8, 1.0),))
    data = dataset(clipper_drive, material_spec=spec, cache=False)
    model = NodalModel(data.n_inputs, data.n_states, circuit=clipper_drive, start_factor=1.0,
                       knobs=["drive"])
    criterion = StateSpaceLoss(1.0, None)
    losses = {}
    for warmup in (None, 16):
        config = config_for("nodal", warmup=warmup)
        batch = next(data.segments(config.segment, config.batch,
                                   torch.Generator().manual_seed(0)))
        with torch.no_grad():
            losses[warmup] = float(window_loss(model, batch, config, criterion))
    assert losses[None] < 1e-9
    assert losses[16] > 1e-8     # what the default warm-up is for

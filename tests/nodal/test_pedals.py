"""The pedals against ngspice: same `.cir` file, same input, 48 kHz, plucked string to 5 kHz.

Native rate: both simulators see the 48 kHz samples (ngspice as PWL with a step of T/16).
Oversampled x8: both see the same 384 kHz upsampled input (ngspice's step T/16 of the native
sample), and both outputs are brought back to 48 kHz by the same polyphase filter. The white-box
solver runs on its compiled fast path. Units: volts, seconds, hertz.
"""

import subprocess

import numpy as np
import pytest
import torch

import circuits
import nodal
from nodal import resample, signals, spice
from nodal.errors import ConvergenceError
from nodal.metrics import esr
from nodal.netlist import read
from nodal.newton import NewtonOptions

FS = 48000.0
PEDALS = ["tube_screamer", "phase90"]


def lfo_sweep(length: int, rate: float) -> np.ndarray:
    """The phaser's gate voltage run fast (10 Hz) so a short test crosses its whole range."""
    t = np.arange(length) / rate
    return -1.9 + 0.5 * np.sin(2 * np.pi * 10 * t)


def both(name: str, audio: np.ndarray, factor: int, substeps: int, **values):
    """(ours, ngspice) output at the native rate for `audio` at 48 kHz."""
    net = read(nodal.netlist_path(name))
    rate = FS * factor
    x = resample.upsample(audio, factor)
    inputs = {net.input: x}
    for control in net.controls:
        inputs[control] = lfo_sweep(len(x), rate)
    solver = nodal.load(name, sample_rate=rate, **values)
    u = torch.tensor(np.stack(list(inputs.values()), -1)[None])
    ours = solver.simulate(u, backend="fast").y[0, :, 0].numpy()
    theirs = spice.simulate(net, inputs, rate, substeps=substeps,
                            values=values or None).voltage(*net.output)
    return resample.downsample(ours, factor), resample.downsample(theirs, factor)


@pytest.mark.parametrize("name", PEDALS)
def test_pedal_is_registered_and_starts_at_its_operating_point(name):
    entry = circuits.registry()[name]
    assert entry.description
    solver = nodal.load(name)
    assert 0 < solver.n_states <= 6
    assert solver.n_inputs == (2 if name == "phase90" else 1)
    u0 = torch.zeros(1, solver.n_inputs, dtype=torch.float64)
    if name == "phase90":
        u0[0, 1] = -1.9
    with torch.no_grad():
        s0 = solver.initial_state(1, u0)
    assert torch.isfinite(s0).all()


@pytest.mark.parametrize("name", PEDALS)
def test_ngspice_runs_the_netlist_unmodified(name):
    path = circuits.path_of(name)
    out = subprocess.run(["ngspice", "-b", str(path)], capture_output=True, text=True,
                         timeout=120)
    text = (out.stdout + out.stderr).lower()
    assert out.returncode == 0 and "error" not in text, text[-2000:]


# At 1 V peak and drive 0.5 the Tube Screamer's native-rate ESR is ~2e-3: the trapezoidal rule
# at 48 kHz rounds the hard clipping corners (gain ~65 into the diodes). At guitar level
# (0.1 V peak, still clipping hard) it is ~3e-4; oversampling removes the difference.
@pytest.mark.parametrize("name, peak", [("tube_screamer", 0.1), ("phase90", 1.0)])
def test_agrees_with_ngspice_at_the_native_rate(name, peak):
    audio = signals.plucked_string(0.05, FS, peak=peak, cutoff=5000, seed=1)
    ours, theirs = both(name, audio, factor=1, substeps=16)
    assert esr(theirs, ours) <= 1e-3


@pytest.mark.parametrize("name", PEDALS)
def test_agrees_with_ngspice_to_1e_5_when_oversampled_8x(name):
    audio = signals.plucked_string(0.02, FS, peak=1.0, cutoff=5000, seed=1)
    ours, theirs = both(name, audio, factor=8, substeps=2)
    assert esr(theirs, ours) <= 1e-5


def test_tube_screamer_at_full_drive_and_2v_peak_converges_at_every_sample():
    solver = nodal.load("tube_screamer", drive=1.0)
    audio = signals.plucked_string(0.25, FS, peak=2.0, cutoff=5000, seed=3)
    traj = solver.simulate(torch.tensor(audio)[None, :, None], backend="fast")
    assert traj.diagnostics.failures == []
    assert torch.isfinite(traj.y).all()
    # the diodes hold the clipping node near a diode drop above the input: well under the input
    # times the small-signal gain (~107)
    assert float(traj.y.abs().max()) < 3.5


def test_phaser_at_2v_peak_with_the_lfo_converges_at_every_sample():
    solver = nodal.load("phase90")
    audio = signals.plucked_string(0.25, FS, peak=2.0, cutoff=5000, seed=3)
    u = torch.tensor(np.stack([audio, lfo_sweep(len(audio), FS)], -1)[None])
    traj = solver.simulate(u, backend="fast")
    assert traj.diagnostics.failures == []
    assert torch.isfinite(traj.y).all()


def test_a_newton_that_cannot_converge_names_the_samples_instead_of_returning_nan():
    solver = nodal.load("tube_screamer", drive=1.0)
    solver.newton = NewtonOptions(max_iter=1, ladder_iter=1)
    audio = signals.plucked_string(0.02, FS, peak=2.0, cutoff=5000, seed=3)
    with pytest.raises(ConvergenceError) as info:
        solver.simulate(torch.tensor(audio)[None, :, None], backend="fast")
    assert info.value.samples and all(0 <= n < len(audio) for n in info.value.samples)
    assert f"sample {info.value.samples[0]}" in str(info.value)


def test_the_oversampled_ngspice_reference_is_converged_in_its_step():
    # halving ngspice's step moves its answer far less than the 1e-5 the comparison allows
    net = read(nodal.netlist_path("phase90"))
    x = resample.upsample(signals.plucked_string(0.02, FS, peak=1.0, cutoff=5000, seed=1), 8)
    inputs = {"vin": x, "vlfo": lfo_sweep(len(x), 8 * FS)}
    coarse, fine = (spice.simulate(net, inputs, 8 * FS, substeps=k).voltage("out") for k in (2, 4))
    assert esr(fine, coarse) <= 1e-7

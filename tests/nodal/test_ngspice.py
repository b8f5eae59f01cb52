"""Agreement with ngspice on the same `.cir` file and input, read at the sample times.

The reference is ngspice's own transient on a PWL copy of the input with a maximum step of a
sixteenth of a sample. The solver's trapezoidal rule at the sample rate is the only
approximation measured here.
"""

import pytest

import nodal
from nodal import resample, signals, spice
from nodal.render import render
from nodal.metrics import esr

FS = 48000.0




def against_ngspice(name, x, oversample=1):
    eq = nodal.equations(name)
    net = eq.netlist
    rate = FS * oversample
    drive = resample.upsample(x, oversample)
    ref = spice.simulate(net, {net.input: drive}, rate, substeps=16 // oversample or 1)
    reference = resample.downsample(ref.voltage(*net.output), oversample)[: len(x)]
    y, _ = render(eq, x, FS, oversample=oversample)
    return esr(reference, y)


def test_ngspice_is_installed():
    assert spice.available(), "install ngspice (Debian: apt-get install ngspice)"


def test_diode_clipper_sine_1khz_1v():
    assert against_ngspice("diode_clipper", signals.sine(1000, 0.02, FS)) <= 1e-4


PLUCK = signals.plucked_string(0.06, FS, peak=1.0, cutoff=5000, seed=3)


def test_diode_clipper_plucked_string_native_rate():
    assert against_ngspice("diode_clipper", PLUCK) <= 2e-4


def test_diode_clipper_plucked_string_oversampled_8x():
    assert against_ngspice("diode_clipper", PLUCK, oversample=8) <= 1e-6


def test_rc_lowpass_is_the_bilinear_transform_of_what_ngspice_solves():
    """On a linear circuit the trapezoidal rule is exactly the bilinear transform, and ngspice
    (fine steps) is the analog circuit driven by the piecewise-linear input, i.e. the exact
    first-order-hold discretisation. So: solver == bilinear(RC), ngspice == FOH(RC), and their
    difference is the bilinear warping alone, which halves with every doubling of the rate."""
    from scipy import signal as sg

    x = signals.plucked_string(0.1, FS, peak=1.0, cutoff=5000, seed=0)
    eq = nodal.equations("rc_lowpass")
    ref = spice.simulate(eq.netlist, {"vin": x}, FS).voltage("out")
    y, _ = render(eq, x, FS)
    rc = ([1.0], [1e3 * 100e-9, 1.0])
    bilinear = sg.cont2discrete(rc, 1 / FS, method="bilinear")
    foh = sg.cont2discrete(rc, 1 / FS, method="foh")
    y_bilinear = sg.lfilter(bilinear[0].ravel(), bilinear[1], x)
    y_analog = sg.lfilter(foh[0].ravel(), foh[1], x)
    assert esr(y_bilinear, y) < 1e-24
    assert esr(y_analog, ref) < 1e-9
    assert esr(ref, y) == pytest.approx(esr(y_analog, y_bilinear), rel=0.01)
    assert esr(ref, y) <= 1e-5
    # oversampled 2x, the warping error falls by 2^4 and the native-rate target of 1e-6 holds
    assert against_ngspice("rc_lowpass", x, oversample=2) <= 1e-6


def test_states_are_the_capacitor_voltages_ngspice_sees():
    eq = nodal.equations("diode_clipper")
    net = eq.netlist
    ref = spice.simulate(net, {net.input: PLUCK}, FS)
    _, x = render(eq, PLUCK, FS)
    cap = eq.reactive[0]
    assert esr(ref.voltage(cap.a, cap.b), x[:, 0]) <= 2e-4


def test_reference_is_converged():
    """Halving ngspice's step changes its answer far less than our tolerance."""
    net = nodal.equations("diode_clipper").netlist
    x = PLUCK[:1500]
    a = spice.simulate(net, {net.input: x}, FS, substeps=16).voltage("out")
    b = spice.simulate(net, {net.input: x}, FS, substeps=32).voltage("out")
    assert esr(b, a) < 1e-9

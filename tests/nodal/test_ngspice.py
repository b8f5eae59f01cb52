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


# A KiCad export keeps the whole circuit, its sources included, in a subcircuit of an
# included file, its ground named GND; the models it reads are included from that file.
_BOARD = """* board
.include "models/diode.lib"
.subckt board
V2 in GND DC 0 SIN(0 100m 146)
R1 in mid 1k
C1 mid GND 100n
D1 mid out DCLIP
R2 out GND 10k
.ends
"""


def _kicad_like(tmp_path, instances=1, section=""):
    """The export; with `section`, the board is that section of a library file (its `.lib`
    and `.endl` lines must survive the copy)."""
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "diode.lib").write_text(".model DCLIP D(IS=2.52n N=1.752)\n")
    board = f".lib {section}\n{_BOARD}.endl\n" if section else _BOARD
    (tmp_path / "board.cir").write_text(board)
    xs = "\n".join(f"X{k} board" for k in range(1, instances + 1))
    read = f'.lib "board.cir" {section}' if section else '.include "board.cir"'
    top = tmp_path / "top.cir"
    top.write_text(f"* top\n*@ input x1.v2\n*@ output x1.out\n{read}\n{xs}\n"
                   ".tran 10u 10m\n.end\n")
    return top


@pytest.mark.parametrize("section", ["", "boards"])


def test_a_source_inside_an_included_subcircuit_is_driven_where_it_is_written(tmp_path,
                                                                           monkeypatch,
                                                                           section):
    """ngspice runs the source as written into a copy of its file (the includes that lead to
    it, and the copy's own, still found), so the solver is checked against ngspice on a
    netlist as exported, named by a relative path as a user types it; before, the deck
    refused such a source."""
    _kicad_like(tmp_path, section=section)
    monkeypatch.chdir(tmp_path)
    eq = nodal.equations("top.cir")
    x = signals.plucked_string(0.03, FS, peak=1.0, cutoff=5000, seed=2)
    ref = spice.simulate(eq.netlist, {"x1.v2": x}, FS, substeps=16)
    assert "gnd" not in ref.voltages            # GND is ngspice's ground in the file source too
    y, _ = render(eq, x, FS)
    theirs = ref.voltage(*eq.netlist.output)
    assert max(abs(theirs)) > 0.05                # the drive reached the diode's far side
    assert esr(theirs, y) <= 1e-3
    board = f".lib {section}\n{_BOARD}.endl\n" if section else _BOARD
    assert (tmp_path / "board.cir").read_text() == board       # the user's files untouched


def test_a_source_in_a_subcircuit_of_two_instances_is_refused_by_name(tmp_path):
    eq = nodal.equations(_kicad_like(tmp_path, instances=2))
    with pytest.raises(spice.NgspiceError, match="2 instances .also x2.v2."):
        spice.simulate(eq.netlist, {"x1.v2": signals.sine(1000, 0.001, FS)}, FS)

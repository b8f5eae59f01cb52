"""LTspice and KiCad dialects, potentiometers and switches, temperature, initial conditions.

Every construct is compared with ngspice on the same circuit at 8x oversampling (48 kHz x 8),
sample by sample at the solver's rate: where ngspice reads the card itself (SIN, the XSPICE
potentiometer and aswitch, sw, .temp, IC= with uic, .ic), on the same file; where it does not
(LTspice's SINE, Rser=, Rpar=, Cpar=), on the circuit written out for ngspice by hand.
"""

import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from nodal import signals, spice
from nodal.devices import BOLTZMANN, CHARGE
from nodal.errors import NetlistError
from nodal.initial import InitialConditionError
from nodal.metrics import esr
from nodal.mna import derive
from nodal.netlist import check_values, parse, read
from nodal.netlist.dialects import NOTED, REFUSED
from nodal.solver import NodalSolver

FIXTURES = Path(__file__).parent / "fixtures" / "dialects"
RATE = 48000.0 * 8
needs_ngspice = pytest.mark.skipif(not spice.available(), reason="ngspice is not installed")

HEAD = "* t\n*@ input v1\n*@ output out\nV1 in 0 DC 0\nR1 in out 1k\nC1 out 0 1u\n"


def ours(net, u, rate=RATE, values=None):
    solver = NodalSolver(derive(net), sample_rate=rate, values=values)
    return solver.simulate(torch.from_numpy(np.ascontiguousarray(u))[None, :, None]).y[0, :, 0] \
        .numpy()


def ngspice(net, u, rate=RATE, substeps=2):
    """ngspice on `net`'s own text (its input driven by u), tight tolerances, at the sample
    times; `uic` on its `.tran` card where the netlist's has it."""
    tran_suffix = "uic" if net.initial.uic else ""
    with tempfile.TemporaryDirectory() as tmp:
        raw = str(Path(tmp) / "out.raw")
        text = spice.deck(net, {net.input: u}, rate, len(u), raw, substeps, folder=tmp)
        text = re.sub(r"^(\.tran .*)$", r"\1 " + tran_suffix, text, flags=re.M)
        (Path(tmp) / "deck.cir").write_text(text)
        proc = subprocess.run(["ngspice", "-b", "deck.cir"], cwd=tmp, capture_output=True,
                              text=True, timeout=300)
        assert Path(raw).exists(), proc.stdout + proc.stderr
        names, data = spice.read_raw(raw)
    want = np.arange(len(u)) / rate
    column = names.index(f"v({net.output[0]})")
    return np.interp(want, data[:, 0], data[:, column])


def sine(amplitude=1.0, duration=0.005):
    return signals.sine(1000, duration, RATE) * amplitude


# -- dot cards ---------------------------------------------------------------------------------

def test_every_noted_card_is_accepted_with_one_note_at_its_line():
    cards = [w for w in NOTED if w not in (".control",)]
    text = HEAD + "".join(f"{w} x\n" if w not in (".tran",) else ".tran 0 1m\n" for w in cards)
    net = parse(text, "n.cir")
    for k, word in enumerate(cards):
        line = 7 + k
        assert any(n.startswith(f"n.cir:{line}: {word}") for n in net.notes), word
    assert len(net.notes) == len(cards)


def test_a_control_block_is_one_note_and_its_lines_are_not_read():
    net = parse(HEAD + ".control\nrun\nfoo bar baz\nplot v(out)\n.endc\n.end\n", "c.cir")
    assert net.notes == [f"c.cir:7: .control ignored: {NOTED['.control']}"]


@pytest.mark.parametrize("word", sorted(REFUSED))
def test_refused_cards_are_named_errors_at_their_line(word):
    with pytest.raises(NetlistError) as info:
        parse(HEAD + f"{word} x\n", "r.cir")
    assert info.value.line == 7 and word in str(info.value)


def test_an_unknown_card_is_a_named_error():
    with pytest.raises(NetlistError, match=r"\.frobnicate"):
        parse(HEAD + ".frobnicate 1\n")


def test_tran_zero_step_end_and_text_after_end():
    net = parse(HEAD + ".tran 0 10m 0 1u\n.end\nZZZ this is not read\n")
    assert len(net.elements) == 3 and not net.initial.uic


def test_semicolon_and_dollar_comments_and_the_dos_end_of_file_byte():
    text = ("* t\n*@ input v1\n*@ output out\nV1 in 0 DC 0 ; LTspice comment\n"
            "R1 in out 1k $ngspice comment\n$ a whole-line comment\nC1 out 0 1u\t$ tab\n"
            "; another\n\x1a")
    net = parse(text)
    assert [e.name for e in net.elements] == ["v1", "r1", "c1"]
    assert net.defaults["r1"] == 1e3 and net.defaults["c1"] == 1e-6


def test_a_dollar_inside_a_name_is_not_a_comment():
    net = parse(HEAD.replace("R1 in out 1k", "R$1 in out 1k"))
    assert "r$1" in net.defaults


def test_an_unknown_model_type_unused_is_noted_used_is_an_error():
    net = parse(HEAD + ".model M1 VDMOS(Rg=3 Vto=4)\n", "m.cir")
    assert len(net.notes) == 1 and net.notes[0].startswith("m.cir:7: ")
    assert "VDMOS" in net.notes[0] and "no element uses it" in net.notes[0]
    with pytest.raises(NetlistError, match="VDMOS") as info:
        parse(HEAD + ".model M1 VDMOS(Rg=3)\nD9 out 0 M1\n")
    assert info.value.line == 8
    with pytest.raises(NetlistError, match="filesource") as info:
        parse(HEAD + ".model F1 filesource(file=\"x.txt\")\nA1 %vd(out 0) F1\n")


def test_temperature_cards_set_kelvin():
    assert parse(HEAD).temperature == pytest.approx(300.15)
    assert parse(HEAD + ".temp 50\n").temperature == pytest.approx(323.15)
    net = parse(HEAD + ".options reltol=1e-4 temp=0 tnom=25\n", "o.cir")
    assert net.temperature == pytest.approx(273.15)
    assert net.nominal_temperature == pytest.approx(298.15)
    assert net.notes == [f"o.cir:7: .options reltol=1e-4 ignored: {NOTED['.options']}"]
    with pytest.raises(NetlistError, match="sweep"):
        parse(HEAD + ".temp 0 25 50\n")
    with pytest.raises(NetlistError, match="absolute zero"):
        parse(HEAD + ".temp -300\n")


# -- sources and element options ---------------------------------------------------------------

def test_sine_is_sin_and_ac_is_noted():
    a = parse(HEAD + "V2 x 0 SINE(0.5 1 2k 1m 10 30) AC 1 0\nR2 x 0 1k\n", "s.cir")
    b = parse(HEAD + "V2 x 0 SIN(0.5 1 2k 1m 10 30)\nR2 x 0 1k\n")
    assert a.element("v2").waveform == b.element("v2").waveform
    assert a.notes == ["s.cir:7: AC on V2 ignored: the small-signal stimulus has no effect on "
                       "a transient"]


def test_ltspice_pwl_relative_times():
    net = parse(HEAD + "V2 x 0 PWL(0 0 +1m 1 +1m 0)\nR2 x 0 1k\n")
    assert net.element("v2").waveform.args == (0, 0, 1e-3, 1, 2e-3, 0)


@pytest.mark.parametrize("card, word", [
    ("V2 x 0 PWL(0 0 1m 1) r=0", "R"),
    ("V2 x 0 PWL REPEAT FOREVER (0 0 1m 1) ENDREPEAT", "REPEAT"),
    ("V2 x 0 PWL file=wave.txt", "FILE"),
    ("V2 x 0 SINE(0 1 1k 0 0 0 5)", "Ncycles"),
    ("V2 x 0 PULSE(0 1 0 1u 1u 1m 2m 3)", "Ncycles"),
    ("V2 x 0 DC 1 Lser=1n", "LSER"),
    ("R2 x 0 1k tc1=0.001", "TC1"),
    ("R2 x 0 1k 5", "'5'"),
    ("C2 x 0 1u Lser=1n", "LSER"),
    ("D2 x 0 dd perim=2", "PERIM"),
])
def test_what_is_not_modelled_on_a_card_is_named(card, word):
    with pytest.raises(NetlistError, match=word) as info:
        parse(HEAD + ".model dd D\n" + card + "\nR3 x 0 1k\n")
    assert info.value.line == 8


def test_rser_rpar_cpar_become_elements_that_are_knobs():
    net = read(FIXTURES / "ltspice_rlc.cir")
    kinds = {e.name: (e.kind, e.nodes) for e in net.elements}
    assert kinds["v1"] == ("V", ("in", "v1#rser"))
    assert kinds["v1.rser"] == ("R", ("v1#rser", "0"))
    assert kinds["c1"] == ("C", ("in", "c1#rser")) and kinds["c1.rser"][1] == ("c1#rser", "mid")
    assert kinds["l1.rpar"] == ("R", ("mid", "out")) and kinds["c2.cpar"] == ("C", ("out", "0"))
    assert net.defaults["c1.rser"] == 2 and net.defaults["l1.rpar"] == 1e5
    assert parse(HEAD + "C2 out 0 1n Rser=0\n").element("c2").nodes == ("out", "0")
    with pytest.raises(NetlistError, match="C1.RSER"):
        check_values(net, {"c1.rser": -1})


@needs_ngspice
def test_ltspice_rlc_file_against_ngspice_on_the_hand_written_circuit():
    net = read(FIXTURES / "ltspice_rlc.cir")
    assert [n.split(": ")[1].split()[0] for n in net.notes] == [
        "AC", ".tran", ".backanno", ".wav", ".meas", ".options"]
    ref_net = read(FIXTURES / "ltspice_rlc_ngspice.cir")
    n = int(RATE * 0.01)
    # the SINE of V1 is the input: the same samples drive both
    u = np.sin(2 * np.pi * 1000 * np.arange(n) / RATE)
    assert esr(ngspice(ref_net, u), ours(net, u)) <= 1e-6


# -- potentiometer -----------------------------------------------------------------------------

def pot_circuit(extra="", position=0.3, log=""):
    return ("* pot\n*@ input v1\n*@ output out\nV1 in 0 DC 0\n"
            f".model pm potentiometer(r=10k position={position} {log})\n"
            "ARV1 in out mid pm\nR2 mid 0 1k\nC1 out 0 100n\n" + extra)


def test_the_potentiometer_is_two_resistors_with_a_position_knob():
    net = parse(pot_circuit())
    el = net.element("arv1")
    assert el.kind == "A" and el.nodes == ("in", "out", "mid")
    assert net.defaults["rv1_position"] == 0.3
    with pytest.raises(NetlistError, match="between 0 and 1"):
        check_values(net, {"rv1_position": 1.5})
    with pytest.raises(NetlistError, match="between 0 and 1"):
        parse(pot_circuit(position=2))
    with pytest.raises(NetlistError, match="three nodes"):
        parse(pot_circuit().replace("ARV1 in out mid pm", "ARV1 in out pm"))


@needs_ngspice
@pytest.mark.parametrize("log", ["", "log=true log_multiplier=2"])
def test_potentiometer_at_two_positions_against_ngspice_code_model(log):
    u = sine(1.0)
    at_03 = ours(parse(pot_circuit(log=log)), u)
    at_08 = ours(parse(pot_circuit(log=log)), u, values={"rv1_position": 0.8})
    ref_03 = ngspice(parse(pot_circuit(log=log)), u)
    ref_08 = ngspice(parse(pot_circuit(position=0.8, log=log)), u)
    assert esr(ref_03, at_03) <= 1e-6 and esr(ref_08, at_08) <= 1e-6
    assert esr(at_03, at_08) > 1e-2         # the knob turns


@needs_ngspice
def test_kicad_export_with_potentiometer_and_diodes_against_ngspice():
    net = read(FIXTURES / "kicad_pot.cir")
    assert {n.split(": ")[1].split()[0] for n in net.notes} == {".save", ".probe", ".tran"}
    u = signals.plucked_string(0.01, RATE, peak=1.0, cutoff=5000, seed=2)
    for position in (0.5, 0.9):
        spiced = parse(net.text.replace("position=0.5", f"position={position}"), "k.cir")
        assert esr(ngspice(spiced, u), ours(net, u, values={"rv1_position": position})) <= 1e-4


# -- switches ----------------------------------------------------------------------------------

def switch_circuit(control, model=".model sm sw(ron=10 roff=1meg vt=0.5 vh=0.1)",
                   card="S1 out 0 c 0 sm", extra=""):
    return ("* sw\n*@ input v1\n*@ output out\nV1 in 0 DC 0\nR1 in out 1k\nC1 out 0 100n\n"
            f"Vc c 0 DC {control}\n{model}\n{card}{extra}\n")


@needs_ngspice
@pytest.mark.parametrize("control, extra, on", [
    (0.7, "", True), (0.3, "", False), (0.55, "", False), (0.55, " ON", True)])
def test_sw_with_a_constant_control_against_ngspice(control, extra, on):
    net = parse(switch_circuit(control, extra=extra))
    u = sine()
    y, ref = ours(net, u), ngspice(net, u)
    assert esr(ref, y) <= 1e-6
    assert (np.abs(y).max() < 0.1) == on        # on: 10 ohm to ground


@needs_ngspice
@pytest.mark.parametrize("log", ["log=false", "log=true"])
def test_aswitch_with_a_constant_control_against_ngspice(log):
    model = f".model am aswitch(cntl_off=0 cntl_on=1 r_off=1e5 r_on=10 {log})"
    net = parse(switch_circuit(0.4, model, "A1 c %gd(out 0) am"))
    assert net.element("a1").kind == "S"
    u = sine()
    assert esr(ngspice(net, u), ours(net, u)) <= 1e-6


def test_a_switch_whose_control_moves_is_a_named_error():
    net = parse(switch_circuit(0.7, card="S1 out 0 in 0 sm"))
    with pytest.raises(NetlistError, match="moves") as info:
        derive(net)
    assert info.value.line == 9
    net = parse(switch_circuit(0.7, card="S1 out 0 out 0 sm").replace("Vc c 0 DC 0.7\n", ""))
    with pytest.raises(NetlistError, match="not held by a DC voltage source"):
        derive(net)


# -- temperature -------------------------------------------------------------------------------

def diode_circuit(temp):
    return ("* d\n*@ input v1\n*@ output a\nV1 in 0 DC 0\nR1 in 0 1k\nVs s 0 DC 5\n"
            "Rs s a 1k\nD1 a 0 dm\n.model dm D(IS=1e-14 N=1.5 XTI=0 EG=0)\n"
            f".temp {temp}\n")


@pytest.mark.parametrize("celsius", [0.0, 50.0])
def test_temperature_moves_the_diode_voltage_as_shockley_says(celsius):
    """5 V through 1 kOhm into a diode, IS held (XTI=0 EG=0): (5 - V)/1k = IS (exp(V / (N k T
    / q)) - 1) + GMIN V, solved by scipy's brentq, at 0 C and 50 C."""
    from scipy.optimize import brentq

    net = parse(diode_circuit(celsius))
    y = ours(net, np.zeros(4))
    vt = BOLTZMANN * (celsius + 273.15) / CHARGE
    v = brentq(lambda v: (5 - v) / 1e3 - 1e-14 * np.expm1(v / (1.5 * vt)) - 1e-12 * v, 0, 5,
               xtol=1e-15)
    assert y[-1] == pytest.approx(v, rel=1e-9)
    assert 0.6 < v < 1.2


def test_temperature_shifts_the_forward_voltage_by_the_ratio_of_temperatures():
    cold, hot = (ours(parse(diode_circuit(c)), np.zeros(2))[-1] for c in (0, 50))
    assert hot / cold == pytest.approx(323.15 / 273.15, rel=2e-2)   # V ~ N Vt ln(I/IS)
    assert hot - cold > 0.1


@needs_ngspice
def test_temperature_against_ngspice_on_a_clipper():
    for celsius in (0, 50):
        text = ("* clip\n*@ input v1\n*@ output out\nV1 in 0 DC 0\nR1 in out 1k\n"
                "D1 out 0 dm\nD2 0 out dm\nC1 out 0 10n\n"
                f".model dm D(IS=1e-14 N=1.5 XTI=0 EG=0)\n.temp {celsius}\n")
        net = parse(text)
        u = sine(2.0, 0.005)
        assert esr(ngspice(net, u), ours(net, u)) <= 1e-4


# -- initial conditions ------------------------------------------------------------------------

RC_IC = ("* rc\n*@ input v1\n*@ output out\nV1 in 0 DC 0\nR1 in out 1k\n"
         "C1 out 0 1u IC=1\nR2 out mid 2k\nC2 mid 0 470n\n")


@needs_ngspice
def test_ic_on_capacitors_with_uic_against_ngspice():
    net = parse(RC_IC + ".tran 1u 10m uic\n")
    assert net.initial.uic and net.initial.elements == {"c1": 1.0}
    u = sine(0.5)
    y, ref = ours(net, u), ngspice(net, u)
    assert y[0] == pytest.approx(1.0, abs=1e-3)
    # ngspice's t = 0 point holds the raw initial values; from the first step on they agree
    assert esr(ref[1:], y[1:]) <= 1e-6


@needs_ngspice
def test_dot_ic_with_uic_sets_the_capacitors_across_named_nodes():
    net = parse(RC_IC.replace(" IC=1", "") + ".ic V(out)=2 V(mid)=-1\n.tran 1u 10m uic\n")
    u = sine(0.5)
    assert esr(ngspice(net, u)[1:], ours(net, u)[1:]) <= 1e-6


@needs_ngspice
def test_dot_ic_without_uic_holds_the_node_during_the_operating_point():
    net = parse(RC_IC.replace(" IC=1", "").replace("V1 in 0 DC 0", "V1 in 0 DC 1")
                + ".ic V(mid)=3\n")
    u = np.ones(int(RATE * 0.005))
    y, ref = ours(net, u), ngspice(net, u)
    assert esr(ref[1:], y[1:]) <= 1e-6
    # held: out between in (1 V) and mid (3 V) at 1.67 V; released: back towards 1 V
    assert y[0] == pytest.approx(5 / 3, abs=0.01) and y[-1] < 1.1


@needs_ngspice
def test_inductor_ic_with_uic_against_ngspice():
    text = ("* rl\n*@ input v1\n*@ output out\nV1 in 0 DC 0\nR1 in out 100\n"
            "L1 out 0 10m IC=5m\nC1 out 0 100n\n.tran 1u 1m uic\n")
    net = parse(text)
    u = sine(0.2)
    assert esr(ngspice(net, u)[1:], ours(net, u)[1:]) <= 1e-6


def test_ic_without_uic_is_noted_and_the_operating_point_is_used():
    net = parse(RC_IC, "ic.cir")
    assert net.notes[0].startswith("ic.cir:6: IC= on C1 ignored")
    y = ours(net, np.zeros(16))
    assert np.abs(y).max() < 1e-12


def test_initial_conditions_the_circuit_cannot_take_are_named():
    text = ("* p\n*@ input v1\n*@ output out\nV1 in 0 DC 0\nR1 in out 1k\n"
            "C1 out 0 1u IC=1\nC2 out 0 1u IC=2\n.tran 1u 1m uic\n")
    with pytest.raises(InitialConditionError, match="v\\(c1\\), v\\(c2\\)"):
        ours(parse(text), np.zeros(4))
    with pytest.raises(NetlistError, match="no element"):
        parse(RC_IC + ".ic V(nowhere)=1\n")
    with pytest.raises(InitialConditionError, match="V1 sets"):
        ours(parse(RC_IC + ".ic V(in)=1\n"), np.zeros(4))


def test_ncycles_on_the_input_source_is_noted_elsewhere_refused():
    net = parse("* t\n*@ input vi\n*@ output out\nVi in 0 SINE(0 1 60 0 0 0 10)\n"
                "R1 in out 1k\nC1 out 0 1u\n", "n.cir")
    assert net.element("vi").waveform.args == (0, 1, 60, 0, 0, 0)
    assert net.notes == ["n.cir:4: Ncycles of VI ignored: the source is driven by the input "
                         "or control signal"]


@needs_ngspice
def test_the_ngspice_deck_leaves_out_the_ltspice_only_cards():
    """ngspice stops at `.wav` and `.backanno` ("unimplemented control card"); the reference
    deck leaves them out, so an LTspice file is compared as it is."""
    text = (HEAD.replace("C1 out 0 1u", "C1 out 0 1u IC=0") + ".tran 0 80m 0 20u\n"
            ".wav \"vout.wav\" 32 48k V(out)\n.options plotwinsize=0\n.backanno\n.end\n")
    net = parse(text)
    deck = spice.deck(net, {"v1": np.zeros(4)}, RATE, 4, "out.raw")
    assert ".wav" not in deck and ".backanno" not in deck
    u = sine()
    assert esr(spice.simulate(net, {"v1": u}, RATE, substeps=2).voltage("out"),
               ours(net, u)) <= 1e-6


def test_switch_thresholds_and_pot_position_are_not_silent_knobs():
    net = parse(switch_circuit(0.7))
    assert "sm.vt" not in net.defaults and "sm.ron" in net.defaults
    with pytest.raises(NetlistError, match="holds the control of switch S1"):
        check_values(net, {"vc": 0.1})
    net = parse(pot_circuit())
    assert "pm.position" not in net.defaults and net.defaults["rv1_position"] == 0.3


def test_ltspice_part_attributes_micro_sign_and_zero_parasitics():
    text = HEAD.replace("C1 out 0 1u", "C1 out 0 10\u00b5 V=16 Irms=0 Rser=0 Lser=0 "
                        "mfg=\"KEMET\" pn=\"C0805\" type=\"X5R\"")
    text = text.replace("R1 in out 1k", "R1 in out 1k tol=1 pwr=0.1")
    net = parse(text, "p.cir")
    assert net.defaults["c1"] == pytest.approx(10e-6) and len(net.elements) == 3
    assert sum(n.startswith("p.cir:6:") for n in net.notes) == 5      # V Irms mfg pn type
    assert sum(n.startswith("p.cir:5:") for n in net.notes) == 2      # tol pwr
    with pytest.raises(NetlistError, match="LSER"):
        parse(HEAD.replace("C1 out 0 1u", "C1 out 0 1u Lser=1n"))


def test_an_ic_node_tied_to_a_source_through_another_source_is_named():
    text = RC_IC.replace(" IC=1", "") + "V2 top in DC 1\nR9 top 0 1k\n.ic V(top)=2\n"
    with pytest.raises(InitialConditionError, match="cannot be held"):
        ours(parse(text), np.zeros(4))

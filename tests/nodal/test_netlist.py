"""The netlist reader: SPICE's syntax in, plain data out; bad input named with file and line."""

import math

import pytest
import sympy as sp

import nodal
from nodal.errors import NetlistError
from nodal.netlist import evaluate, parse, parse_number

CLIPPER = """* clipper
*@ input Vin
*@ output out
.model D1N4148 D(IS=2.52n N=1.752)
Vin in 0 SIN(0 1 1k)
R1 in out 2.2k
C1 out 0 10n
D1 out 0 D1N4148
D2 0 out D1N4148
.end
"""


@pytest.mark.parametrize("token,value", [
    ("2.2k", 2200.0), ("10n", 1e-8), ("1meg", 1e6), ("1MEG", 1e6), ("4.7uF", 4.7e-6),
    ("51p", 51e-12), ("3m", 3e-3), ("1e3", 1000.0), ("2.5", 2.5), ("1g", 1e9), ("7f", 7e-15),
    ("10kOhm", 1e4),
])
def test_spice_suffixes(token, value):
    assert math.isclose(parse_number(token), value, rel_tol=1e-12)


def test_reads_the_clipper():
    net = parse(CLIPPER, "clipper.cir")
    assert net.input == "vin" and net.output == ("out", "0")
    assert [e.kind for e in net.elements] == ["V", "R", "C", "D", "D"]
    assert net.defaults["r1"] == 2200.0 and net.defaults["c1"] == 1e-8
    assert net.defaults["d1n4148.is"] == 2.52e-9 and net.defaults["d1n4148.n"] == 1.752
    assert net.element("vin").waveform.kind == "sin"


def test_params_expressions_and_continuation_lines():
    text = """* pot
*@ input Vin
*@ output out
.param drive=0.5 rtot={2*250k}
Vin in 0 DC 0
R1 in out
+ {rtot*drive + 51k}
R2 out 0 10k ; an inline comment
.end
"""
    net = parse(text)
    r1 = net.element("r1").value
    assert sp.Symbol("drive") in r1.free_symbols
    assert net.defaults["drive"] == 0.5 and net.defaults["rtot"] == 500e3
    assert math.isclose(evaluate(r1, {**net.defaults, "drive": 1.0}), 551e3)


def test_subcircuit_is_flattened():
    text = """* sub
*@ input Vin
*@ output out
.subckt divider a b
R1 a b 1k
R2 b 0 1k
.ends
Vin in 0 DC 1
X1 in out divider
.end
"""
    net = parse(text)
    assert {e.name for e in net.elements} == {"vin", "x1.r1", "x1.r2"}
    assert net.element("x1.r1").nodes == ("in", "out")


def _error(text):
    with pytest.raises(NetlistError) as info:
        eq = nodal.derive(parse(text, "bad.cir"))
        nodal.check_solvable(eq)
    return info.value


def test_unknown_element_names_file_and_line():
    err = _error(CLIPPER.replace("C1 out 0 10n", "Z1 out 0 10n"))
    assert err.file == "bad.cir" and err.line == 7 and "Z1" in str(err)


def test_missing_model_names_the_line():
    err = _error(CLIPPER.replace(".model D1N4148 D(IS=2.52n N=1.752)", "* no model"))
    assert err.line == 8 and "d1n4148" in str(err)


def test_bad_value_names_the_line():
    err = _error(CLIPPER.replace("R1 in out 2.2k", "R1 in out two"))
    assert err.line == 6 and "two" in str(err)


def test_node_without_dc_path_to_ground():
    # only capacitors reach it: tied to ground through GMIN, with a note (as ngspice settles
    # it); a current source driving it (I / GMIN volts) is an error at the source's line
    text = CLIPPER.replace("C1 out 0 10n", "C1 out 0 10n\nC2 out float 1n\nC3 float 0 1n")
    net = parse(text, "clip.cir")
    nodal.check_solvable(nodal.derive(net))
    assert any("float" in n and "GMIN" in n for n in net.notes)
    err = _error(text.replace("C3 float 0 1n", "C3 float 0 1n\nI1 0 float 1u"))
    assert "float" in str(err) and "DC path" in str(err) and err.line == 10


def test_missing_input_directive():
    err = _error(CLIPPER.replace("*@ input Vin\n", ""))
    assert "*@ input" in str(err)


def test_a_directive_added_as_the_first_line_is_read():
    """SPICE takes the first line as the title: a `*@` line put above a netlist is its title
    and still read as the directive (before, it was dropped and the netlist had no input)."""
    text = "*@ input Vin\n" + CLIPPER.replace("*@ input Vin\n", "")
    net = parse(text)
    assert net.input == "vin" and net.output == ("out", "0")
    assert net.title == "@ input Vin"


def test_negative_resistance_rejected():
    err = _error(CLIPPER.replace("R1 in out 2.2k", "R1 in out -2.2k"))
    assert err.line == 6 and "positive" in str(err)


def test_voltage_source_loop_is_singular():
    err = _error(CLIPPER.replace("R1 in out 2.2k", "R1 in out 2.2k\nV2 in 0 DC 1"))
    assert "singular" in str(err)


def test_a_param_and_an_element_of_one_name_stay_apart():
    """SPICE keeps `.param ck` and the capacitor `Ck` apart: the capacitor's knob is
    `ck.value`, said in a note, and each value reaches its own place."""
    text = ("* t\n*@ input v1\n*@ output a\n.param ck=3.4\nV1 in 0 1\nR1 in a {ck*1k}\n"
            "Ck a 0 25u\n")
    net = parse(text, "ck.cir")
    assert net.defaults["ck"] == 3.4 and net.defaults["ck.value"] == pytest.approx(25e-6)
    assert net.element("ck").value == sp.Symbol("ck.value")
    assert net.element("r1").value.free_symbols == {sp.Symbol("ck")}
    assert any("ck.cir:7" in n and "ck.value" in n for n in net.notes)

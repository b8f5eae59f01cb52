"""Values checked where they are read: each bad value is a named error at its file and line.

Zero resistance makes the MNA matrix singular, SPICE forbids zero C and L, a negative IS, N or
BF has no physical meaning, and a SIN with negative damping grows without bound: none of them
may reach the solver as NaN or inf.
"""

import numpy as np
import pytest
import soundfile
from typer.testing import CliRunner

import nodal
from nodal.errors import NetlistError, UnknownParameterError
from nodal.netlist import check_values, parse, read

BASE = """* values
*@ input Vin
*@ output out
Vin in 0 DC 0
R1 in out 1k
C1 out 0 100n
"""


def net_with(*cards: str, base: str = BASE) -> str:
    return base + "\n".join(cards) + "\n.end\n"


def error_of(text: str) -> NetlistError:
    with pytest.raises(NetlistError) as info:
        parse(text, "v.cir")
    return info.value


@pytest.mark.parametrize("card, what", [
    ("R2 out 0 0", "R2's resistance is 0"),
    ("R2 out 0 -1k", "R2's resistance is -1000"),
    ("C2 out 0 0", "C2's capacitance is 0"),
    ("C2 out 0 -100n", "C2's capacitance is -1e-07"),
    ("L1 out 0 0", "L1's inductance is 0"),
    ("L1 out 0 -1m", "L1's inductance is -0.001"),
])
def test_r_c_l_must_be_positive(card, what):
    err = error_of(net_with(card))
    assert err.line == 7 and what in err.reason and "positive" in err.reason


def test_a_value_from_a_param_is_checked_at_its_default():
    err = error_of(net_with(".param a=-2", "R2 out 0 {a*1k}"))
    assert err.line == 8 and "R2's resistance is -2000" in err.reason


@pytest.mark.parametrize("model, card, param", [
    (".model dx D(IS=0)", "D1 out 0 dx", "IS"),
    (".model dx D(IS=-1n)", "D1 out 0 dx", "IS"),
    (".model dx D(N=0)", "D1 out 0 dx", "N"),
    (".model dx D(RS=-1)", "D1 out 0 dx", "RS"),
    (".model qx NPN(BF=0)", "Q1 out in 0 qx", "BF"),
    (".model qx NPN(IS=-1e-14)", "Q1 out in 0 qx", "IS"),
    (".model qx PNP(NF=0)", "Q1 out in 0 qx", "NF"),
    (".model qx NPN(VAF=-50)", "Q1 out in 0 qx", "VAF"),
    (".model jx NJF(BETA=0)", "J1 out in 0 jx", "BETA"),
    (".model jx NJF(BETA=-1m)", "J1 out in 0 jx", "BETA"),
    (".model jx PJF(IS=0)", "J1 out in 0 jx", "IS"),
    (".model jx NJF(LAMBDA=-0.1)", "J1 out in 0 jx", "LAMBDA"),
])
def test_model_parameters_are_checked_at_the_model_line(model, card, param):
    err = error_of(net_with(model, card))
    assert err.line == 7 and f"'s {param} is" in err.reason


def test_a_model_parameter_too_large_for_a_float_is_named():
    err = error_of(net_with(".model jx NJF(BETA=1e999)", "J1 out in 0 jx"))
    assert err.line == 7 and "1e999" in str(err)


def test_an_infinite_early_voltage_and_zero_as_ngspice_mean_no_early_effect():
    parse(net_with(".model qx NPN(VAF=0 VAR=1e30)", "Q1 out in 0 qx"))


def test_an_overflowing_source_value_is_named():
    err = error_of(net_with("V2 x 0 DC {1e308*1e308}", "R3 x 0 1k"))
    assert err.line == 7 and "overflows" in err.reason


def test_sin_with_negative_damping_is_named():
    err = error_of(net_with("V2 x 0 SIN(0 1 1k 0 -1e9)", "R3 x 0 1k"))
    assert err.line == 7 and "damping" in err.reason


@pytest.mark.parametrize("wave, what", [
    ("SIN(0 1 -1k)", "frequency"), ("PULSE(0 1 0 -1u)", "rise time"),
    ("PWL(0 0 1m 1 0.5m 0)", "times"),
])
def test_other_waveforms_that_ngspice_would_not_run_are_named(wave, what):
    err = error_of(net_with(f"V2 x 0 {wave}", "R3 x 0 1k"))
    assert err.line == 7 and what in err.reason


def test_a_second_model_of_the_same_name_is_named():
    err = error_of(net_with(".model dx D(IS=1n)", ".model DX D(IS=2n)", "D1 out 0 dx"))
    assert err.line == 8 and "defined twice" in err.reason and "line 7" in err.reason


@pytest.mark.parametrize("directive", ["*@ output 0", "*@ output gnd", "*@ output out,out"])
def test_ground_as_output_is_named(directive):
    err = error_of(BASE.replace("*@ output out", directive) + ".end\n")
    assert err.line == 3 and "always 0" in err.reason


def test_a_control_that_names_the_input_is_named():
    text = BASE.replace("*@ output out", "*@ output out\n*@ control Vin") + ".end\n"
    err = error_of(text)
    assert err.line == 4 and "input" in err.reason


def test_a_line_holding_only_a_comment_is_skipped():
    net = parse(net_with("; only a comment", "   ; indented comment", "R3 out 0 1k ; inline"))
    assert [e.name for e in net.elements] == ["vin", "r1", "c1", "r3"]


@pytest.mark.parametrize("name", ["2x", "a.b", "__x", "lambda"])
def test_a_param_name_that_no_expression_could_use_is_named(name):
    err = error_of(net_with(f".param {name}=1"))
    assert err.line == 7 and "parameter name" in err.reason


def test_code_in_a_model_card_is_a_named_error():
    err = error_of(net_with(".model dx D(IS={lambda: 1})", "D1 out 0 dx"))
    assert err.line == 7 and "`lambda`" in err.reason


# -- values given later: --set and values= -----------------------------------------------------

TS = nodal.netlist_path("tube_screamer")


def test_check_values_names_an_unknown_parameter():
    net = read(TS)
    with pytest.raises(UnknownParameterError, match="nope"):
        check_values(net, {"nope": 1.0})


def test_a_param_value_that_makes_a_resistor_negative_is_named_at_the_resistor():
    net = read(TS)
    assert check_values(net, {"drive": 0.7})["drive"] == 0.7
    with pytest.raises(NetlistError) as info:
        check_values(net, {"DRIVE": -1})
    err = info.value
    assert "RDRIVE's resistance is -499999" in err.reason and "drive=-1" in err.reason
    assert err.text.startswith("Rdrive")


@pytest.mark.parametrize("values", [{"r1": 0.0}, {"r1": -1e3}, {"c1": -100e-9},
                                    {"r1": float("nan")}, {"c1": float("inf")}])
def test_the_solver_refuses_values_that_break_a_rule(values):
    eq = nodal.equations("rc_lowpass")
    with pytest.raises(NetlistError):
        nodal.NodalSolver(eq, values=values)


def test_the_cli_set_zero_resistance_is_a_named_error_with_nonzero_exit(tmp_path):
    from cli import app

    src = tmp_path / "in.wav"
    soundfile.write(str(src), np.zeros(480, dtype=np.float32), 48000, subtype="FLOAT")
    out = tmp_path / "out.wav"
    result = CliRunner().invoke(app, ["simulate", "rc_lowpass", "--input", str(src),
                                      "--output", str(out), "--set", "R1=0"])
    assert result.exit_code != 0 and "R1's resistance is 0" in result.output
    assert not out.exists()


# -- files as bytes -----------------------------------------------------------------------------

RC = "* rc, 1 k\u03a9 and 100 n\u00b5\n*@ input Vin\n*@ output out\nVin in 0 DC 0\nR1 in out 1k\n" \
     "C1 out 0 100n\n.end\n"


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16"])
def test_unicode_netlists_are_read(tmp_path, encoding):
    path = tmp_path / "rc.cir"
    path.write_bytes(RC.encode(encoding))
    assert read(path).title.startswith("rc, 1 k\u03a9")


def test_a_windows_netlist_in_cp1252_with_an_eof_byte_is_read(tmp_path):
    path = tmp_path / "rc.cir"
    text = RC.replace("\u03a9", "Ohm").replace("\n", "\r\n")
    path.write_bytes(text.encode("cp1252") + b"\x1a")     # the mu sign is byte 0xb5
    net = read(path)
    assert net.title == "rc, 1 kOhm and 100 n\u00b5" and len(net.elements) == 3


def test_a_latin1_byte_that_cp1252_lacks_is_read_as_latin1(tmp_path):
    path = tmp_path / "rc.cir"
    path.write_bytes(b"* rc \x81\n" + RC.split("\n", 1)[1].encode())
    assert read(path).title == "rc \x81"


def test_a_binary_file_is_a_named_error(tmp_path):
    path = tmp_path / "rc.cir"
    path.write_bytes(b"* rc\n\x00\x01\x02binary\n")
    with pytest.raises(NetlistError, match="not a netlist") as info:
        read(path)
    assert info.value.line == 2

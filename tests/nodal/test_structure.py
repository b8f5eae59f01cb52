"""Netlist structure as ngspice reads it: `.include`, `.lib FILE SECTION`, subcircuit
parameters, local `.model`/`.param`, zero-port subcircuits, `.func`, and the one error that
names every unsupported construct of a file.

Circuits that run are compared with ngspice on the same files (the deck reads the same include
files); errors are checked for the file, line and include chain they name.
"""

import string
from pathlib import Path

import numpy as np
import pytest

import nodal
from nodal import devices, resample, signals, spice
from nodal.errors import NetlistError, NodalError, UnsupportedNetlistError
from nodal.metrics import esr
from nodal.netlist import dialects, parse, read, read_source
from nodal.netlist.reader import HANDLED_DOT_CARDS
from nodal.render import render

FS = 48000.0
PLUCK = signals.plucked_string(0.03, FS, peak=1.0, cutoff=5000, seed=5)


def write(folder: Path, files: dict[str, str]) -> Path:
    """Write `files` (relative name -> text) under `folder`; the first one's path."""
    first = None
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        first = first or path
    return first


def against_ngspice(path: Path, x: np.ndarray, oversample: int = 1) -> tuple[float, np.ndarray]:
    """ESR of the solver against ngspice on the same file (and its includes), and our output."""
    eq = nodal.equations(path)
    net = eq.netlist
    rate = FS * oversample
    drive = resample.upsample(x, oversample)
    ref = spice.simulate(net, {net.input: drive}, rate, substeps=16 // oversample or 1)
    reference = resample.downsample(ref.voltage(*net.output), oversample)[: len(x)]
    y, _ = render(eq, x, FS, oversample=oversample)
    return esr(reference, y), y


def error_of(fn, *args, kind=NetlistError) -> NetlistError:
    with pytest.raises(kind) as info:
        fn(*args)
    return info.value


# -- .include ---------------------------------------------------------------------------------

CLIPPER = """* clipper with its models in an included file
*@ input vin
*@ output out
.include "models/diodes.inc"
Vin in 0 DC 0
R1 in out 2.2k
C1 out 0 10n
D1 out 0 dsi
D2 0 out dge
.end
"""
DIODES = """* diode models; the germanium one comes from a nested include
.model dsi D(IS=2.52n N=1.752 RS=0.568)
.inc germanium.inc
"""
GERMANIUM = ".model dge D(IS=5u N=1.4)\n"


def test_include_of_a_model_file_and_a_nested_include_agree_with_ngspice(tmp_path):
    top = write(tmp_path, {"clip.cir": CLIPPER, "models/diodes.inc": DIODES,
                           "models/germanium.inc": GERMANIUM})
    net = read(top)
    assert set(net.models) == {"dsi", "dge"}
    assert net.models["dge"].line == 1 and net.models["dge"].line.file.endswith("germanium.inc")
    error, _ = against_ngspice(top, PLUCK)
    assert error <= 2e-4
    error, _ = against_ngspice(top, PLUCK, oversample=8)
    assert error <= 1e-6


def test_every_cache_sees_an_edit_to_an_included_file(tmp_path):
    top = write(tmp_path, {"clip.cir": CLIPPER, "models/diodes.inc": DIODES,
                           "models/germanium.inc": GERMANIUM})
    before = read_source(top)
    first = nodal.equations(top)
    (tmp_path / "models/germanium.inc").write_text(".model dge D(IS=1u N=1.4)\n")
    after = read_source(top)
    assert before != after and "IS=1u" in after
    second = nodal.equations(top)
    assert second is not first
    assert second.netlist.defaults["dge.is"] == pytest.approx(1e-6)
    # the deck that `verify` runs names the included file by its absolute path
    deck = spice.deck(second.netlist, {"vin": np.zeros(4)}, FS, 4, "out.raw")
    assert f'.include "{(tmp_path / "models/diodes.inc").resolve()}"' in deck


def test_a_quoted_include_path_with_a_space_and_an_absolute_path(tmp_path):
    lib = write(tmp_path, {"my models/d.inc": ".model dx D(IS=1n)\n"})
    text = (f"* t\n*@ input v1\n*@ output a\n.include \"my models/d.inc\"\n"
            f".inc '{lib}'\nV1 a 0 1\nD1 a 0 dx\n")
    with pytest.raises(NetlistError, match="defined twice"):
        parse(text, str(tmp_path / "t.cir"))
    text = f"* t\n*@ input v1\n*@ output a\n.include '{lib}'\nV1 a 0 1\nR1 a b 1k\nD1 b 0 dx\n"
    assert parse(text, "elsewhere/t.cir").models["dx"].type == "d"


# -- .lib FILE SECTION ----------------------------------------------------------------------------

JUNCTIONS = """* two sections with different saturation currents
.lib small
.model dj D(IS=1e-15 N=1)
.endl small
.lib big
.model dj D(IS=1e-6 N=1)
.endl big
"""


def lib_clipper(section: str) -> str:
    return CLIPPER.replace('.include "models/diodes.inc"', f".lib lib/junctions.lib {section}") \
        .replace("D1 out 0 dsi\nD2 0 out dge", "D1 out 0 dj\nD2 0 out dj")


def test_lib_section_picks_its_models_and_the_output_differs_as_ngspice_says(tmp_path):
    write(tmp_path, {"lib/junctions.lib": JUNCTIONS})
    small = write(tmp_path, {"small.cir": lib_clipper("small")})
    big = write(tmp_path, {"big.cir": lib_clipper("BIG")})
    assert read(small).defaults["dj.is"] == pytest.approx(1e-15)
    assert read(big).defaults["dj.is"] == pytest.approx(1e-6)
    error_small, y_small = against_ngspice(small, PLUCK)
    error_big, y_big = against_ngspice(big, PLUCK)
    assert error_small <= 5e-4 and error_big <= 5e-4      # the native-rate discretisation
    assert esr(y_small, y_big) > 1e-2            # the sections make different circuits


def test_a_missing_section_names_the_file_line_and_the_sections_there(tmp_path):
    write(tmp_path, {"lib/junctions.lib": JUNCTIONS})
    top = write(tmp_path, {"t.cir": lib_clipper("medium")})
    err = error_of(read, top)
    assert err.line == 4 and err.file == str(top)
    assert "no section 'medium'" in str(err) and "small, big" in str(err)


# -- include errors -----------------------------------------------------------------------------

def test_a_missing_file_in_a_nested_include_names_the_whole_chain(tmp_path):
    top = write(tmp_path, {"top.cir": "* t\n*@ input v1\n*@ output a\n.include a.inc\nV1 a 0 1\n",
                           "a.inc": "* a\n.include sub/b.inc\n",
                           "sub/b.inc": ".param x=1\n\n.include missing.lib\n"})
    err = error_of(read, top)
    message = str(err)
    assert err.file == str(tmp_path / "sub/b.inc") and err.line == 3
    assert "missing.lib" in message and "no such file" in message
    assert f"b.inc:3 (included from {tmp_path / 'a.inc'}:2) (included from {top}:4)" in message


def test_an_error_in_an_included_file_names_that_file_and_line(tmp_path):
    top = write(tmp_path, {"top.cir": "* t\n*@ input v1\n*@ output a\n.include m.inc\nV1 a 0 1\n"
                                      "R1 a b 1k\nD1 b 0 dx\n",
                           "m.inc": "* models\n\n.model dx D(IS=-1n)\n"})
    err = error_of(read, top)
    assert err.file == str(tmp_path / "m.inc") and err.line == 3
    assert f"(included from {top}:4)" in str(err) and "IS" in str(err)
    # and a --set value that breaks an element of an included subcircuit, at its own line
    top = write(tmp_path, {"top2.cir": "* t\n*@ input v1\n*@ output b\n.include s.inc\n"
                                       ".param rr=1k\nV1 a 0 1\nX1 a b half\n",
                           "s.inc": ".subckt half p q\nR1 p q {rr}\nR2 q 0 1k\n.ends\n"})
    net = read(top)
    err = error_of(nodal.netlist.check_values, net, {"rr": -5})
    assert err.file == str(tmp_path / "s.inc") and err.line == 2


def test_an_include_cycle_is_named_with_its_files(tmp_path):
    top = write(tmp_path, {"top.cir": "* t\n.include a.inc\n",
                           "a.inc": ".include b.inc\n", "b.inc": "* b\n.include a.inc\n"})
    err = error_of(read, top)
    assert "include cycle" in str(err) and "a.inc -> b.inc -> a.inc" in str(err)
    assert err.file == str(tmp_path / "b.inc") and err.line == 2
    top = write(tmp_path, {"self.cir": "* t\n.include self.cir\n"})
    assert "include cycle" in str(error_of(read, top))


# -- subcircuits -------------------------------------------------------------------------------

STAGES = """* two RC stages from one subcircuit, its defaults overridden per instance
*@ input vin
*@ output out
.param rbase=1k
.subckt stage a b {params} r=2k c={{10n*2}}
R1 a b {{r}}
C1 b 0 {{c}}
.ends stage
Vin in 0 DC 0
X1 in mid stage r={{rbase*2.2}}
X2 mid out stage {inst} c=4.7n
.end
"""


@pytest.mark.parametrize("params, inst", [("PARAMS:", "params:"), ("", "")])
def test_subcircuit_parameters_override_defaults_as_ngspice(tmp_path, params, inst):
    top = write(tmp_path, {"stages.cir": STAGES.format(params=params, inst=inst)})
    net = read(top)
    values = {e.name: nodal.netlist.evaluate(e.value, net.defaults) for e in net.elements}
    assert values["x1.r1"] == pytest.approx(2200) and values["x1.c1"] == pytest.approx(20e-9)
    assert values["x2.r1"] == pytest.approx(2000) and values["x2.c1"] == pytest.approx(4.7e-9)
    assert ("x1.mid" not in net.nodes) and "mid" in net.nodes
    error, _ = against_ngspice(top, PLUCK, oversample=8)
    assert error <= 1e-6


def test_an_instance_parameter_the_subcircuit_does_not_declare_is_named(tmp_path):
    text = STAGES.format(params="", inst="").replace("c=4.7n", "cap=4.7n")
    err = error_of(parse, text, "s.cir")
    assert err.line == 11 and "no parameter cap" in str(err) and "r, c" in str(err)


SCOPED = """* two subcircuits, each with its own .model named dx
*@ input vin
*@ output out
.subckt soft a
.model dx D(IS=1e-9 N=2)
D1 a 0 dx
.ends
.subckt hard a
.model dx D(IS=1e-14 N=1)
.param rs=100
R1 a k {rs}
D1 k 0 dx
.ends
Vin in 0 DC 0
R1 in out 4.7k
C1 out 0 10n
X1 out soft
X2 out hard
X3 out hard
.end
"""


def test_a_model_in_a_subcircuit_is_local_as_in_ngspice(tmp_path):
    top = write(tmp_path, {"scoped.cir": SCOPED})
    net = read(top)
    assert {"x1.dx", "x2.dx", "x3.dx"} <= set(net.models) and "dx" not in net.models
    assert net.defaults["x1.dx.is"] == pytest.approx(1e-9)
    assert net.defaults["x2.dx.is"] == pytest.approx(1e-14)
    assert "rs" not in net.params           # a subcircuit's .param stays inside it
    error, _ = against_ngspice(top, PLUCK)
    assert error <= 2e-4


ZERO_PORT = """* the circuit inside a subcircuit without ports
*@ input vin
*@ output x1.out
.subckt board
R1 in out 1k
C1 out 0 47n
D1 out 0 dx
.model dx D(IS=2.52n N=1.752)
.ends
.subckt unused a b
R1 a b 1
.ends
X1 board
Vin x1.in 0 DC 0
.end
"""


def test_a_zero_port_subcircuit_and_one_without_instance_agree_with_ngspice(tmp_path):
    top = write(tmp_path, {"zero.cir": ZERO_PORT})
    net = read(top)
    assert sorted(net.nodes) == ["x1.in", "x1.out"]
    error, _ = against_ngspice(top, PLUCK)
    assert error <= 2e-4


def test_a_subcircuit_that_calls_itself_is_named():
    text = "* t\n.subckt loop a\nR1 a 0 1k\nX1 a loop\n.ends\nX1 n loop\n"
    err = error_of(parse, text, "loop.cir")
    assert err.line == 4 and "calls itself (loop -> loop)" in str(err)
    text = ("* t\n.subckt ping a\nX1 a pong\n.ends\n.subckt pong a\nX1 a ping\n.ends\n"
            "X1 n ping\n")
    err = error_of(parse, text, "loop.cir")
    assert "ping -> pong -> ping" in str(err)


def test_nested_subcircuit_definitions_are_local_to_their_parent():
    text = ("* t\n*@ input v1\n*@ output b\n.subckt outer a b\n.subckt inner p q\nR1 p q 2k\n"
            ".ends inner\nX1 a b inner\n.ends outer\nV1 a 0 1\nX1 a b outer\nR9 b 0 1k\n")
    net = parse(text, "n.cir")
    assert net.element("x1.x1.r1").nodes == ("a", "b")
    err = error_of(parse, text + "X2 a b inner\n", "n.cir")
    assert "no `.subckt inner`" in str(err)


# -- .func and the function table ----------------------------------------------------------------

FUNCS = """* a divider whose values come from .func and .param functions
*@ input vin
*@ output out
.func par(a, b) {a*b/(a+b)}
.param twice(x) = {2*x}
.param rtop={twice(1k)}
Vin in 0 DC 0
R1 in out {rtop}
R2 out 0 {par(2k, 2k)}
C1 out 0 {table(1.5, 1, 10n, 2, 30n)}
.end
"""


def test_user_functions_agree_with_ngspice(tmp_path):
    top = write(tmp_path, {"funcs.cir": FUNCS})
    net = read(top)
    values = {e.name: nodal.netlist.evaluate(e.value, net.defaults) for e in net.elements}
    assert values["r1"] == pytest.approx(2000) and values["r2"] == pytest.approx(1000)
    assert values["c1"] == pytest.approx(20e-9)
    # ngspice has no table(): give it the same capacitor as a number
    (tmp_path / "funcs.cir").write_text(FUNCS.replace("{table(1.5, 1, 10n, 2, 30n)}", "20n"))
    error, _ = against_ngspice(tmp_path / "funcs.cir", PLUCK, oversample=8)
    assert error <= 1e-6


def test_a_function_that_calls_itself_is_named():
    err = error_of(parse, "* t\n.func f(x) {f(x)+1}\n.param p={f(1)}\n", "f.cir")
    assert err.line == 2 and "calls itself" in str(err)


# -- everything unsupported at once --------------------------------------------------------------

UNSUPPORTED = """* many things nodalnet does not model
*@ input vin
*@ output out
.include parts.inc
Vin in 0 DC 0
R1 in out 1k
T1 out 0 far 0 Z0=50 TD=1n
.step param r 1k 2k 1k
D1 out 0 dz
.model dz D(IS=1n FOOBAR=2)
Q1 out in 0 qsw
"""
PARTS = "* parts\n.model qsw bsim3(vt=1)\nU1 out 0 far 1u\n"


def test_every_unsupported_construct_is_named_in_one_error(tmp_path):
    top = write(tmp_path, {"u.cir": UNSUPPORTED, "parts.inc": PARTS})
    err = error_of(read, top, kind=UnsupportedNetlistError)
    where = [(Path(f).name, int(line)) for f, line, _, _ in err.problems]
    assert where == [("parts.inc", 3), ("u.cir", 7), ("u.cir", 8), ("u.cir", 10),
                     ("u.cir", 11)]
    message = str(err)
    assert "5 constructs" in message
    for needle in ("T (a transmission line)", "U (a uniform RC line)", ".step", "FOOBAR",
                   ".step", "model qsw, of type BSIM3", f"(included from {top}:4)"):
        assert needle in message, needle
    for file, line, text, reason in err.problems:
        assert text and reason
        assert f"{Path(file).name}:{int(line)}" in message


def test_an_unused_model_of_an_unknown_type_or_with_unmodelled_parameters_is_a_note():
    text = ("* t\n*@ input v1\n*@ output a\n.model tube triode(mu=100)\n"
            ".model spare D(IS=1n FOOBAR=3 BAZ=0)\nV1 a 0 1\nR1 a 0 1k\n")
    net = parse(text, "n.cir")
    assert any("n.cir:4" in note and "TRIODE" in note for note in net.notes)
    assert any("n.cir:5" in note and "FOOBAR" in note for note in net.notes)
    # used, the same model is an error naming every parameter it sets that is not modelled
    err = error_of(parse, text + "D1 a 0 spare\n", "n.cir", kind=UnsupportedNetlistError)
    assert len(err.problems) == 1 and "sets FOOBAR," in str(err)


def _example_card(letter: str) -> tuple[str, str]:
    """A card for `letter` as its device record reads it, and the `.model` it needs."""
    device = devices.record(letter)
    nodes = " ".join(f"n{k}" for k in range(device.nodes))
    if device.card == "value":
        return f"{letter}1 {nodes} 1k", ""
    if device.card == "model":
        return f"{letter}1 {nodes} mx", f".model mx {device.models[0].name}"
    if device.card == "source":
        return f"{letter}1 {nodes} DC 1", ""
    return f"{letter}1 {nodes} 1", ""


@pytest.mark.parametrize("letter", string.ascii_uppercase)
def test_every_element_letter_is_modelled_or_named(letter):
    if letter == "X":
        return                                           # subcircuits, tested above
    if devices.record(letter) is not None:
        card, model = _example_card(letter)
    else:
        card, model = f"{letter}1 n0 0 n1 0 whatever", ""
    text = f"* t\n*@ input vs\n*@ output n0\nVs n0 0 1\nRs n1 0 1k\n{model}\n{card}\n"
    try:
        net = parse(text, "letters.cir")
    except UnsupportedNetlistError as err:
        assert devices.record(letter) is None
        assert f"letters.cir:7: element {letter}1" in str(err)
    except NodalError as err:                          # a card form read elsewhere
        assert f"{letter}1" in str(err)
    else:
        assert net.element(f"{letter}1").kind == letter


NGSPICE_DOT_CARDS = [".ac", ".dc", ".disto", ".end", ".four", ".global", ".ic", ".lib",
                     ".meas", ".measure", ".model", ".noise", ".nodeset", ".op", ".option",
                     ".options", ".param", ".plot", ".print", ".probe", ".pz", ".save", ".sens",
                     ".sp", ".subckt", ".temp", ".tf", ".title", ".tran", ".width", ".func",
                     ".csparam", ".include", ".inc", ".ends", ".endl", ".control", ".endc"]


@pytest.mark.parametrize("word", sorted(set(NGSPICE_DOT_CARDS) | HANDLED_DOT_CARDS
                                        | set(dialects.READ) | set(dialects.NOTED)
                                        | set(dialects.REFUSED)))
def test_every_dot_card_is_read_noted_or_named(word):
    """Each dot card is read, noted (one line in `Netlist.notes`) or named in the error."""
    text = f"* t\n*@ input vs\n*@ output a\nVs a 0 1\nRs a 0 1k\n{word} x\n"
    try:
        net = parse(text, "dots.cir")
    except UnsupportedNetlistError as err:
        assert word not in HANDLED_DOT_CARDS | set(dialects.READ) | set(dialects.NOTED)
        assert f"dots.cir:6: {word}" in str(err) or \
            f"dots.cir:6: the {word} card is not modelled" in str(err), str(err)
    except NodalError as err:                  # a card nodalnet reads, with a bad argument
        assert "dots.cir:6" in str(err), str(err)
    else:
        assert word in HANDLED_DOT_CARDS | set(dialects.READ) or any(
            word in n for n in net.notes), (word, net.notes)


def test_ltspice_lib_of_a_whole_file_is_an_include(tmp_path):
    top = write(tmp_path, {"t.cir": "* t\n*@ input v1\n*@ output a\n.lib parts.lib\nV1 a 0 1\n"
                                    "R1 a b 1k\nD1 b 0 dx\n",
                           "parts.lib": "* no sections\n.model dx D(IS=1n)\n"})
    net = read(top)
    assert net.models["dx"].line.file == str(tmp_path / "parts.lib")
    assert f'.include "{(tmp_path / "parts.lib").resolve()}"' in net.text

"""A netlist without `*@` lines, as a schematic export writes it: the directives given as
options on simulate, verify and equations, and the error that says what to give."""

import numpy as np
import pytest
from typer.testing import CliRunner

from cli import app
from nodal import directives, netlist, signals, spice

runner = CliRunner()

# an input stage: supply, signal source, clipper, output coupling capacitor into a load
EXPORT = """* a clipper stage as a schematic export writes it: no directives
VCC vcc 0 DC 9
V1 input 0 SIN(0 0.5 1k)
R1 input n1 2.2k
C1 n1 0 10n
D1 n1 0 DX
D2 0 n1 DX
R2 vcc n1 1Meg
C2 n1 net3 1u
RL net3 0 100k
.model DX D(IS=2.52n N=1.752)
.tran 10u 5m
.end
"""


@pytest.fixture
def export(tmp_path):
    path = tmp_path / "export.cir"
    path.write_text(EXPORT)
    return path


@pytest.fixture
def x(tmp_path):
    path = tmp_path / "in.npy"
    np.save(path, signals.sine(1000, 0.01, 48000, amplitude=0.8))
    return path


def with_lines(tmp_path, *lines, text=EXPORT, name="marked.cir"):
    first, rest = text.split("\n", 1)
    path = tmp_path / name
    path.write_text(first + "\n" + "".join(f"{line}\n" for line in lines) + rest)
    return path


def simulate(*args):
    return runner.invoke(app, ["simulate", *map(str, args), "--rate", "48000"])


def test_without_directives_the_error_lists_sources_outputs_and_the_command(export, x,
                                                                            tmp_path):
    out = tmp_path / "y.npy"
    result = simulate(export, "-i", x, "-o", out)
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "no input source and no output node" in text
    assert "V1, VCC (V1 with a waveform)" in text          # the varying one first
    assert "likely output nodes: net3" in text              # behind the coupling capacitor
    assert f"nodalnet simulate {export} --input-source V1 --output-node net3" in text
    assert "Traceback" not in result.output and not out.exists()


def test_the_options_do_what_the_directives_do(export, x, tmp_path):
    given, marked = tmp_path / "given.npy", tmp_path / "marked.npy"
    a = simulate(export, "-i", x, "-o", given, "--input-source", "v1", "--output-node", "NET3")
    b = simulate(with_lines(tmp_path, "*@ input V1", "*@ output net3"), "-i", x, "-o", marked)
    assert a.exit_code == 0, a.output
    assert b.exit_code == 0, b.output
    np.testing.assert_array_equal(np.load(given), np.load(marked))
    assert np.max(np.abs(np.load(given))) > 0.3


def test_an_option_replaces_the_netlists_own_directive(x, tmp_path):
    own = with_lines(tmp_path, "*@ input V1", "*@ output n1")
    moved, marked = tmp_path / "moved.npy", tmp_path / "marked.npy"
    a = simulate(own, "-i", x, "-o", moved, "--output-node", "net3")
    b = simulate(with_lines(tmp_path, "*@ input V1", "*@ output net3", name="b.cir"),
                 "-i", x, "-o", marked)
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    np.testing.assert_array_equal(np.load(moved), np.load(marked))


def test_a_control_source_given_as_option_is_driven_by_control(tmp_path, x):
    bias = tmp_path / "bias.npy"
    np.save(bias, np.full(480, 4.5))
    outs = []
    for name, extra, options in (("a.cir", [], ["--control-source", "VCC"]),
                                 ("b.cir", ["*@ control VCC"], [])):
        path = with_lines(tmp_path, "*@ input V1", "*@ output net3", *extra, name=name)
        out = tmp_path / (name + ".npy")
        result = simulate(path, "-i", x, "-o", out, "--control", f"VCC={bias}", *options)
        assert result.exit_code == 0, result.output
        outs.append(np.load(out))
    np.testing.assert_array_equal(*outs)


@pytest.mark.parametrize("options, words", [
    (["--input-source", "V9", "--output-node", "net3"], "V9: not an independent source of "
                                                        "this netlist; its sources: V1, VCC"),
    (["--input-source", "V1", "--output-node", "nowhere"], "no element connects node 'nowhere'"),
    (["--input-source", "V1", "--output-node", "gnd"], "names ground"),
    (["--input-source", "V1", "--output-node", "a,b,c"], "give a node, or `a,b`"),
    (["--input-source", "V1", "--output-node", "net3", "--control-source", "v1"],
     "also the input source"),
    (["--input-source", "V1"], "no output node: give it"),
])
def test_a_bad_option_is_one_named_line(export, x, tmp_path, options, words):
    out = tmp_path / "y.npy"
    result = simulate(export, "-i", x, "-o", out, *options)
    assert result.exit_code == 2
    assert words in " ".join(result.output.split())
    assert "Traceback" not in result.output and not out.exists()


def test_model_takes_no_directive_options(tmp_path, x):
    result = simulate("-i", x, "-o", tmp_path / "y.npy", "--model", tmp_path,
                      "--input-source", "V1")
    assert result.exit_code == 2
    assert "--model: a trained network has its own input and output" in result.output


def test_equations_takes_the_options_and_names_its_own_command(export):
    result = runner.invoke(app, ["equations", str(export)])
    assert result.exit_code == 2
    assert f"nodalnet equations {export} --input-source V1" in " ".join(result.output.split())
    result = runner.invoke(app, ["equations", str(export), "--input-source", "V1",
                                 "--output-node", "net3"])
    assert result.exit_code == 0, result.output
    assert "v(net3)" in result.output


@pytest.mark.skipif(not spice.available(), reason="needs ngspice")
def test_verify_with_options_agrees_with_ngspice(export):
    result = runner.invoke(app, ["verify", str(export), "--input-source", "V1",
                                 "--output-node", "net3", "--duration", "0.01",
                                 "--oversample", "1", "--json"])
    assert result.exit_code == 0, result.output
    import json
    rows = json.loads(result.output)
    assert [r["note"] for r in rows] == ["", ""]           # the tight reference ran through
    assert all(r["output_esr"] < 1e-3 for r in rows)


def test_likely_outputs_by_name_and_by_coupling_capacitor():
    net = netlist.parse("""* outputs
*@ input Vin
*@ output a
Vin in 0 SIN(0 1 1k)
Vb b 0 DC 9
R1 in a 1k
C1 a VOUT 1u
C2 a c 1u
Rl c 0 10k
C3 a d 1u
Rd d b 10k
.end
""", "outputs.cir")
    s = directives.suggest(net.elements)
    assert s.outputs == ["vout", "c"]           # d feeds a resistor to a supply: not an output
    assert s.sources == ["vin", "vb"] and s.varying == ["vin"]


# -- bench/real_netlists.py: the trial of a folder of netlists --------------------------------
@pytest.mark.skipif(not spice.available(), reason="needs ngspice")
def test_real_netlist_trial_guesses_reads_its_side_file_and_names_errors(tmp_path):
    from bench.real_netlists import netlists, read_side_file, run_one, table

    (tmp_path / "export.net").write_text(EXPORT)                  # no *@: guessed
    (tmp_path / "lowpass.sp").write_text("* rc\nV9 a 0 DC 0\nVs s 0 SIN(0 1 1k)\nR1 s x 1k\n"
                                         "C1 x 0 100n\nR2 a x 1meg\n.end\n")
    (tmp_path / "broken.cir").write_text("* broken\nV1 a 0 SIN(0 1 1k)\nR1 a b\n.end\n")
    (tmp_path / "part.cir").write_text("* an include\n")
    (tmp_path / "notes.txt").write_text("not a netlist")
    (tmp_path / "directives.txt").write_text("# side file\nlowpass.sp input=Vs output=x\n"
                                             "part.cir skip included by another\n")
    assert [p.name for p in netlists(tmp_path)] == ["broken.cir", "export.net", "lowpass.sp",
                                                    "part.cir"]
    side = read_side_file(tmp_path)
    assert side["part.cir"] == {"skip": "included by another"}
    rows = {p.name: run_one(p, side.get(p.name, {}), 0.01, 1.0)
            for p in netlists(tmp_path) if p.name != "part.cir"}
    guessed = rows["export.net"]
    assert guessed["status"] == "runs" and guessed["how"] == "guess"
    assert guessed["directives"] == "input=V1 output=net3" and guessed["esr"] < 1e-3
    assert rows["lowpass.sp"]["how"] == "side file" and rows["lowpass.sp"]["esr"] < 1e-3
    assert rows["broken.cir"]["status"] == "error"
    assert rows["broken.cir"]["message"].startswith("broken.cir:3:")
    text = table(list(rows.values()))
    assert "3 netlists: 1 error, 2 runs" in text and "(guess)" in text


def test_of_two_named_outputs_the_end_of_the_chain_comes_first():
    net = netlist.parse("""* two stages
*@ input Vin
*@ output vo2
Vin in 0 SIN(0 1 1k)
R1 in vo1 1k
C1 vo1 0 1u
R2 vo1 vo2 1k
C2 vo2 0 1u
.end
""", "stages.cir")
    assert directives.suggest(net.elements).outputs == ["vo2", "vo1"]

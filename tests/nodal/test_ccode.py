"""The circuit as C (`nodalnet export CIRCUIT --format c`, `nodal/ccode.py`), built with the
system C compiler (-std=c99 -O2 -Wall -Wextra -pedantic -Werror) into a small program and run
on a plucked string: it must give the numba path's samples (`render`, the path `simulate`
takes) to 1e-9 V with double samples and 1e-6 V with float ones, fallbacks included; and
what it cannot write is a named error with nothing written."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import nodal
from cli import app
from nodal import ccode, signals
from nodal.newton import NewtonOptions
from nodal.render import input_matrix, render
from nodal.solver import NodalSolver

FIXTURES = Path(__file__).parent / "fixtures"
LENGTH = 4000
RATE = 48000.0
DOUBLE_TOLERANCE = 1e-9    # volts
FLOAT_TOLERANCE = 1e-6     # volts: the float samples' own rounding is ~6e-8 per volt

runner = CliRunner()
needs_cc = pytest.mark.skipif(ccode.compiler() is None, reason="no C compiler (cc/gcc)")


def _signal(length: int = LENGTH, peak: float = 1.0) -> np.ndarray:
    """A plucked string, rounded to float32 so that both builds and numba see one input."""
    x = signals.plucked_string(length / RATE, RATE, peak=peak)
    return x.astype(np.float32).astype(np.float64)


def _run_c(text: str, folder: Path, x: np.ndarray, double: bool) -> np.ndarray:
    exe = ccode.build(text, folder, double=double)
    y, _ = ccode.run_program(exe, x, double=double)
    assert y.shape == x.shape and np.all(np.isfinite(y))
    return y


CIRCUITS = ["diode_clipper", "tube_screamer", "phase90", "rc_lowpass",
            str(FIXTURES / "charge_clipper.cir")]


@needs_cc
@pytest.mark.parametrize("circuit", CIRCUITS, ids=lambda c: Path(c).stem)
def test_the_c_build_gives_the_numba_paths_samples(circuit, tmp_path):
    eq = nodal.equations(circuit)
    x = _signal()
    reference, _ = render(eq, x, RATE)              # the numba kernel, as simulate runs it
    assert np.max(np.abs(reference)) > 0.1          # a signal through the circuit
    text = ccode.source(eq, sample_rate=RATE)
    for double, tolerance in ((True, DOUBLE_TOLERANCE), (False, FLOAT_TOLERANCE)):
        y = _run_c(text, tmp_path, x, double)
        assert np.max(np.abs(y - reference)) <= tolerance, (double, np.abs(y - reference).max())


TWO_BOARDS = """* two transistor clippers, the second fed from the first through an ideal buffer
.model qx npn(is=5.911f bf=300 br=1.271 rb=10)
.model dx d(is=2.52n n=1.752 rs=0.568)
vin in 0 dc 0
vcc vcc 0 dc 9
c1a in ba 1u
rba vcc ba 470k
rga ba 0 100k
q1a ca ba ea qx
rca vcc ca 10k
rea ea 0 470
d1a ca ma dx
d2a ma ca dx
rma ma 0 4.7k
c1b oa bb 1u
rbb vcc bb 330k
rgb bb 0 100k
q1b cb bb eb qx
rcb vcc cb 15k
reb eb 0 680
d1b cb mb dx
d2b mb cb dx
rmb mb 0 2.2k
ea oa 0 ma 0 2
eb out 0 mb 0 1
"""


@needs_cc
def test_the_kernels_blocks_are_solved_one_by_one_with_the_numba_paths_samples(tmp_path):
    """Two boards in one file, the second reading the first: the C file runs Newton on the
    numba kernel's blocks (`fast.layout`) in turn, the second block's linear part taking the
    first one's currents: the numba path's samples, at a plucked string that drives both
    boards into their diodes."""
    path = tmp_path / "two.cir"
    path.write_text(TWO_BOARDS.replace("* two", "* two", 1).replace(
        ".model qx", "*@ input vin\n*@ output out\n.model qx", 1))
    eq = nodal.equations(path)
    text = ccode.source(eq, sample_rate=RATE)
    assert "#define BLOCKS_SPLIT 1" in text and "#define NBLK 2" in text
    x = _signal(peak=2.0)
    reference, _ = render(eq, x, RATE)
    assert np.max(np.abs(reference)) > 0.1
    for double, tolerance in ((True, DOUBLE_TOLERANCE), (False, FLOAT_TOLERANCE)):
        y = _run_c(text, tmp_path, x, double)
        assert np.max(np.abs(y - reference)) <= tolerance, (double, np.abs(y - reference).max())


@needs_cc
def test_the_cli_writes_the_circuit_at_the_set_values(tmp_path):
    out = tmp_path / "pedal.c"
    result = runner.invoke(app, ["export", "tube_screamer", "--format", "c", "--out", str(out),
                                 "--set", "drive=0.2"])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    # the header says what the file is: circuit, values, rate, how to call it
    head = text[: text.index("*/")]
    for words in ("tube_screamer.cir", "drive=0.2", "48000 Hz", "nodalnet_init(&st, 48000)",
                  "nodalnet_process(&st, in, out, n)"):
        assert words in head
    includes = {line for line in text.splitlines() if line.startswith("#include")}
    assert includes == {"#include <math.h>", "#include <string.h>"}     # libm, nothing else
    eq = nodal.equations("tube_screamer")
    x = _signal(2000)
    y = _run_c(text, tmp_path, x, double=True)
    at_value, _ = render(eq, x, RATE, values={"drive": 0.2})
    at_default, _ = render(eq, x, RATE)
    assert np.max(np.abs(y - at_value)) <= DOUBLE_TOLERANCE
    assert np.max(np.abs(y - at_default)) > 1e-3       # the value did enter the file


@needs_cc
@pytest.mark.parametrize("circuit, split", [("tube_screamer", False), ("phase90", False),
                                            ("phase90", True)])
def test_the_fallback_ladder_gives_the_numba_paths_samples(circuit, split, tmp_path):
    """With 3 Newton iterations a sample, steps of +-5 V send samples down the whole ladder
    (substeps, gmin and source stepping, and failures that keep the last solution), with
    Newton on the whole circuit or block by block (the Phase 90's four stages)."""
    eq = nodal.equations(circuit)
    # "step": the stopping rule this iteration limit was chosen for (the "predicted" one
    # converges within it at more samples)
    options = NewtonOptions(max_iter=3, ladder_iter=3, split=split, stopping="step")
    x = np.zeros(3000)
    x[100:1000], x[1000:1500] = 5.0, -5.0
    solver = NodalSolver(eq, RATE, newton=options, strict=False)
    with pytest.warns(UserWarning, match="did not converge"):
        traj = solver.simulate(torch.from_numpy(input_matrix(eq, x, RATE))[None])
    levels = set(np.unique(traj.diagnostics.level).tolist())
    assert len(levels - {0}) >= 2 and traj.diagnostics.failed.any()
    y = _run_c(ccode.source(eq, sample_rate=RATE, options=options), tmp_path, x, double=True)
    assert np.max(np.abs(y - traj.y[0, :, 0].numpy())) <= DOUBLE_TOLERANCE


INITIAL = {
    ".ic": "R1 in out 1k\nC1 out 0 1u\nD1 out 0 DX\n.model DX D(IS=1e-14)\n.ic V(out)=0.3\n",
    "IC= with uic": "R1 in out 1k\nC1 out 0 1u IC=0.4\nD1 out 0 DX\n.model DX D(IS=1e-14)\n"
                    ".tran 1u 10m uic\n",
}


@needs_cc
@pytest.mark.parametrize("case", list(INITIAL))
def test_initial_conditions_start_the_c_build_where_they_start_numba(case, tmp_path):
    eq = nodal.equations(_netlist(tmp_path, INITIAL[case]))
    x = _signal(1000)
    reference, _ = render(eq, x, RATE)
    at_rest, _ = render(nodal.equations(_netlist(tmp_path, "R1 in out 1k\nC1 out 0 1u\n"
                                                 "D1 out 0 DX\n.model DX D(IS=1e-14)\n")),
                        x, RATE)
    assert abs(reference[0] - at_rest[0]) > 0.1         # the start is not the rest
    text = ccode.source(eq, sample_rate=RATE)
    assert "initial conditions" in text[: text.index("*/")]
    y = _run_c(text, tmp_path, x, double=True)
    assert np.max(np.abs(y - reference)) <= DOUBLE_TOLERANCE


HARNESS = r'''
#include "circuit.c"
#include <stdio.h>

int main(void)
{
    nodalnet_state st;
    float in[4] = {0.0f, 0.1f, 0.2f, 0.3f}, out[4];
    if (nodalnet_init(&st, 44100.0) != NODALNET_ERR_RATE) return 1;
    if (nodalnet_process(&st, in, out, 4) != NODALNET_ERR_NOT_READY) return 2;
    if (nodalnet_init(&st, NODALNET_SAMPLE_RATE) != NODALNET_OK) return 3;
    if (nodalnet_process(&st, in, out, 4) != 0) return 4;
    if (nodalnet_set_control(&st, 0, 1.0) != NODALNET_ERR_CONTROL) return 5;
    printf("%.9g\n", (double)out[3]);
    return 0;
}
'''


@needs_cc
def test_init_refuses_another_sample_rate(tmp_path):
    eq = nodal.equations("diode_clipper")
    (tmp_path / "circuit.c").write_text(ccode.source(eq, sample_rate=RATE))
    (tmp_path / "harness.c").write_text(HARNESS)
    exe = tmp_path / "harness"
    subprocess.run([ccode.compiler(), "-std=c99", "-O2", "-Wall", "-Werror", "-o", str(exe),
                    str(tmp_path / "harness.c"), "-lm"], check=True)
    done = subprocess.run([str(exe)], capture_output=True, text=True)
    assert done.returncode == 0, done.returncode
    assert float(done.stdout) != 0.0


@needs_cc
@pytest.mark.skipif(shutil.which("c++") is None, reason="no C++ compiler")
def test_a_cpp_plugin_links_the_file_compiled_as_c(tmp_path):
    eq = nodal.equations("diode_clipper")
    (tmp_path / "circuit.c").write_text(ccode.source(eq, sample_rate=RATE))
    (tmp_path / "plugin.cpp").write_text(
        '#define NODALNET_DECLARATIONS_ONLY\n#include "circuit.c"\n'
        "int main() { nodalnet_state st; float in[2] = {0.5f, 0.5f}, out[2];\n"
        "  if (nodalnet_init(&st, NODALNET_SAMPLE_RATE) != NODALNET_OK) return 1;\n"
        "  return nodalnet_process(&st, in, out, 2) == 0 && out[1] > 0.0f ? 0 : 2; }\n")
    subprocess.run([ccode.compiler(), "-std=c99", "-O2", "-c", "-o", str(tmp_path / "c.o"),
                    str(tmp_path / "circuit.c")], check=True)
    subprocess.run(["c++", "-O2", "-Wall", "-Werror", "-o", str(tmp_path / "plugin"),
                    str(tmp_path / "plugin.cpp"), str(tmp_path / "c.o"), "-lm"], check=True)
    assert subprocess.run([str(tmp_path / "plugin")]).returncode == 0


@needs_cc
def test_a_step_function_law_gives_the_numba_paths_samples(tmp_path):
    """floor() in a behavioural law (its derivative zero, as ngspice takes it) prints as C's
    floor and runs as numba runs it."""
    path = _netlist(tmp_path, "R1 in x 1k\nC1 x 0 10n\nB1 y 0 V={floor(3*V(x))}\n"
                              "R2 y out 1k\nRo out 0 10k\n")
    eq = nodal.equations(path)
    x = _signal(peak=3.0)
    reference, _ = render(eq, x, RATE)
    y = _run_c(ccode.source(eq, sample_rate=RATE), tmp_path, x, True)
    assert np.ptp(reference) > 0.5
    assert np.max(np.abs(y - reference)) <= DOUBLE_TOLERANCE


# -- what the generator does not write ---------------------------------------------------------
def _netlist(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "circuit.cir"
    path.write_text("* a test circuit\n*@ input Vin\n*@ output out\nVin in 0 DC 0\n" + body
                    + ".end\n")
    return path


def _refused(args, *words) -> None:
    result = runner.invoke(app, ["export", *map(str, args)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "error:" in result.output
    for word in words:
        assert word in result.output, result.output


UNSUPPORTED = {
    "time-dependent source": ("R1 in out 1k\nD1 out 0 DX\n.model DX D(IS=1e-14)\n"
                              "Vb b 0 PULSE(0 1 1m 1u 1u 1m 2m)\nRb b out 10k\n",
                              ["VB", "circuit.cir:8", "PULSE"]),
}


@pytest.mark.parametrize("case", list(UNSUPPORTED))
def test_a_construct_the_generator_does_not_write_is_named(case, tmp_path):
    body, words = UNSUPPORTED[case]
    path = _netlist(tmp_path, body)
    with pytest.raises(ccode.UnsupportedCircuitError):
        ccode.export(path, tmp_path / "pedal.c")
    _refused([path, "--format", "c", "--out", tmp_path / "pedal.c"], *words)
    assert not (tmp_path / "pedal.c").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["circuit.cir"]


def test_an_output_that_cannot_be_written_is_named(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ccode.OutputPathError, match="cannot write"):
        ccode.export("diode_clipper", blocker / "pedal.c")
    _refused(["diode_clipper", "--format", "c", "--out", blocker / "pedal.c"], "cannot write")
    _refused(["diode_clipper", "--format", "c", "--out", tmp_path], "is a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_the_cli_names_what_a_circuit_cannot_take(tmp_path):
    out = tmp_path / "x.c"
    _refused(["diode_clipper", "--format", "rtneural", "--out", out], "--format c",
             "run directory")
    _refused(["no_such_circuit", "--format", "c", "--out", out], "no_such_circuit",
             "run directory", "diode_clipper")
    _refused(["diode_clipper", "--format", "c", "--out", out, "--set", "zz=1"], "zz")
    _refused(["diode_clipper", "--format", "c", "--out", out, "--rate", "0"], "--rate")
    (tmp_path / "run").mkdir()
    _refused([tmp_path / "run", "--format", "c", "--out", out, "--set", "r1=1k"], "--set",
             "run directory")
    assert not out.exists()


# -- the bench row -------------------------------------------------------------------------------
@needs_cc
def test_bench_c_times_the_built_file():
    result = ccode.bench_c("diode_clipper", seconds=0.05, repeats=1)
    assert result.note == "" and result.seconds > 0 and result.rtf > 0
    assert result.rtf == pytest.approx(0.05 / result.seconds)


def test_without_a_compiler_the_bench_row_says_so(monkeypatch):
    from rich.console import Console

    from nodal import bench

    monkeypatch.setattr(ccode, "compiler", lambda: None)
    result = ccode.bench_c("diode_clipper", seconds=0.05)
    assert result.rtf is None and "no C compiler" in result.note
    required = {f.name: ("x" if f.type == "str" else 1.0) for f in dataclasses.fields(
        bench.BenchResult) if f.default is dataclasses.MISSING and f.default_factory is
        dataclasses.MISSING}
    row = bench.BenchResult(**{**required, "notes": [result.note], "c_rtf": result.rtf})
    console = Console(width=200, record=True)
    console.print(bench.table([row]))
    text = console.export_text()
    assert "C build RTF" in text and "not measured" in text and "no C compiler" in text


HOLD = r'''
#include "circuit.c"
#include <stdio.h>

int main(int argc, char **argv)
{
    static float in[1000], out[1000];
    nodalnet_state st;
    FILE *f = fopen(argv[1], "rb");
    int n = (int)fread(in, sizeof(float), 1000, f);
    (void)argc;
    if (nodalnet_init(&st, NODALNET_SAMPLE_RATE) != NODALNET_OK) return 1;
    if (nodalnet_process(&st, in, out, 1) != 0) return 2;       /* the LFO's own, t = 0 */
    if (nodalnet_set_control(&st, 0, -1.0) != NODALNET_OK) return 3;
    if (nodalnet_process(&st, in + 1, out + 1, n - 1) != 0) return 4;
    fwrite(out, sizeof(float), (size_t)n, stdout);
    return 0;
}
'''


@needs_cc
def test_a_held_control_is_the_control_signal_numba_is_given(tmp_path):
    eq = nodal.equations("phase90")
    x = _signal(1000)
    (tmp_path / "circuit.c").write_text(ccode.source(eq, sample_rate=RATE))
    (tmp_path / "hold.c").write_text(HOLD)
    exe = tmp_path / "hold"
    subprocess.run([ccode.compiler(), "-std=c99", "-O2", "-o", str(exe),
                    str(tmp_path / "hold.c"), "-lm"], check=True)
    x.astype(np.float32).tofile(tmp_path / "in.raw")
    done = subprocess.run([str(exe), str(tmp_path / "in.raw")], capture_output=True)
    assert done.returncode == 0
    y = np.frombuffer(done.stdout, dtype=np.float32).astype(np.float64)
    # the first sample (and the operating point) at the LFO's value at t = 0, then held
    held = np.full(len(x), -1.0)
    held[0] = eq.sources[1].waveform.value_at_zero()
    reference, _ = render(eq, x, RATE, controls={"vlfo": held})
    following, _ = render(eq, x, RATE)
    assert np.max(np.abs(y - reference)) <= FLOAT_TOLERANCE
    assert np.max(np.abs(y - following)) > 1e-3

"""Large netlists and hard matrices: parsing and the structural checks stay linear, and the
singularity check tells an ill-conditioned but solvable circuit from a singular one.

No timing assertions here: `python bench/scale.py` prints the seconds.
"""

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

import nodal
from nodal import mna
from nodal.errors import NetlistError
from nodal.netlist import evaluate, parse

_spec = importlib.util.spec_from_file_location(
    "bench_scale", Path(__file__).resolve().parents[2] / "bench" / "scale.py")
bench_scale = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_scale)


def test_a_2000_element_rc_ladder_parses_derives_and_is_solvable():
    sections = 1000
    net = parse(bench_scale.ladder(sections), "ladder.cir")
    assert len(net.elements) == 2 * sections + 1
    eq = nodal.derive(net)
    assert eq.n_states == sections and len(eq.unknowns) == sections + 2   # nodes + i(vin)
    nodal.check_solvable(eq)
    # Every inner node k: 1/R to each neighbour and the capacitor's companion 2C/T to ground.
    rows, cols, vals = mna.numeric_entries(eq)
    index = {k: i for i, k in enumerate(eq.unknowns)}
    diagonal = {r: v for r, c, v in zip(rows, cols, vals, strict=True) if r == c}
    k = index[("node", "n500")]
    assert diagonal[k] == pytest.approx(2 / 1e3 + 2 * 10e-9 * 48000, rel=1e-14)
    # At DC the capacitors are open: the last node is tied to the source by R only.
    rows, cols, vals = mna.numeric_entries(eq, dc=True)
    last = eq.unknowns_dc.index(("node", f"n{sections}"))
    assert {float(v) for r, c, v in zip(rows, cols, vals, strict=True)
            if r == c == last} == {1e-3}


OPAMP_CLIPPER = """* inverting op-amp clipper: a 1e6-gain VCVS, 10 MOhm, antiparallel diode feedback
*@ input Vin
*@ output out
.model dd D(IS=1e-14)
Vin in 0 DC 0
R1 in n 10meg
D1 n out dd
D2 out n dd
E1 out 0 0 n 1e6
"""

OPAMP_AMP = """* inverting op-amp amplifier: a 1e6-gain VCVS and 10 MOhm resistors
*@ input Vin
*@ output out
Vin in 0 DC 0
R1 in n 10meg
R2 n out 10meg
E1 out 0 0 n 1e6
C1 out 0 1n
"""


@pytest.mark.parametrize("text", [OPAMP_CLIPPER, OPAMP_AMP])
def test_an_ill_conditioned_op_amp_circuit_is_not_called_singular(text):
    eq = nodal.derive(parse(text + ".end\n", "opamp.cir"))
    nodal.check_solvable(eq)
    nodal.NodalSolver(eq).matrices()            # and the solver can build its matrices


def test_the_clipper_is_one_that_a_dense_rank_test_calls_singular():
    """What makes the case hard: GMIN (1e-12 S) beside a 1e6 gain defeats numpy's rank
    tolerance, while the matrix is regular (its determinant, exactly, is not zero)."""
    eq = nodal.derive(parse(OPAMP_CLIPPER + ".end\n", "opamp.cir"))
    n = len(eq.unknowns)
    rows, cols, vals = mna.numeric_entries(eq)
    dense = np.zeros((n, n))
    dense[rows, cols] = vals
    assert np.linalg.matrix_rank(dense) < n
    exact = sp.Matrix(n, n, lambda i, j: sp.Rational(dense[i, j]))
    assert exact.det() != 0


def test_a_loop_of_two_voltage_sources_is_singular_and_named():
    text = OPAMP_AMP.replace("Vin in 0 DC 0", "Vin in 0 DC 0\nV2 in 0 DC 1") + ".end\n"
    with pytest.raises(NetlistError, match=r"singular.*i\(v2\)") as info:
        nodal.check_solvable(nodal.derive(parse(text, "loop.cir")))
    assert info.value.line == 5


def test_an_inductor_across_a_source_is_singular_at_dc():
    text = OPAMP_AMP.replace("C1 out 0 1n", "C1 out 0 1n\nL1 in 0 1m") + ".end\n"
    with pytest.raises(NetlistError, match=r"DC equations are singular.*i\(l1\)"):
        nodal.check_solvable(nodal.derive(parse(text, "l.cir")))


def test_a_floating_node_is_still_singular(monkeypatch):
    # (a node only capacitors reach is tied to ground through GMIN; one a current source
    # drives is not)
    text = OPAMP_AMP + "C2 out fl 1n\nC3 fl 0 1n\nI1 0 fl 1u\n.end\n"
    with pytest.raises(NetlistError, match="DC path"):          # the reader's DC-path check
        nodal.derive(parse(text, "fl.cir"))
    monkeypatch.setattr(mna, "_dc_path_check", lambda net: None)
    with pytest.raises(NetlistError, match=r"DC equations are singular.*v\(fl\)"):
        mna.check_solvable(mna.derive(parse(text, "fl.cir")))    # and the matrix check


def test_a_floating_resistive_sub_circuit_is_numerically_singular(monkeypatch):
    # Structurally regular (R5's 2x2 block is full), numerically singular at DC.
    text = OPAMP_AMP + "R5 a b 1k\nC4 a out 1n\nC5 b 0 1n\n.end\n"
    monkeypatch.setattr(mna, "_dc_path_check", lambda net: None)
    eq = mna.derive(parse(text, "sub.cir"))
    with pytest.raises(NetlistError, match="DC equations are singular.*floating"):
        mna.check_solvable(eq)


def test_the_cached_evaluator_agrees_with_sympy():
    x, y = sp.Symbol("x"), sp.Symbol("y")
    env = {"x": 2.5, "y": -0.75, "T": 1 / 48000}
    value = mna._Evaluator(env)
    for expr in [x + 2 * y, x * y / (1 + x), x ** 3 - y ** 2, sp.sqrt(x) * sp.exp(y),
                 sp.Piecewise((x, y > 0), (2 * x, True)), sp.Abs(y) ** 1.5, 1 / x + 1 / x,
                 sp.Max(x, y), 2 * x / mna.SAMPLE_PERIOD]:
        assert value(expr) == pytest.approx(evaluate(expr.subs(mna.SAMPLE_PERIOD, env["T"]),
                                                     env), rel=1e-14)
    assert math.isnan(value(y ** 0.5)) and math.isnan(value(1 / (x - 2.5)))

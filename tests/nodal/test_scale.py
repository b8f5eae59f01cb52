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
import torch

import nodal
from nodal import fast, mna
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


# -- blocks: independent Newton solves where the structure allows (issue 12, item 3) ---------

CLIPPER = """R{k} in out{k} {r}
C{k} out{k} 0 10n
D{k}a out{k} 0 D1N4148
D{k}b 0 out{k} D1N4148
"""


def _clippers(output: str, values: list[str]) -> str:
    body = "".join(CLIPPER.format(k=k, r=r) for k, r in enumerate(values, start=1))
    return (f"* clippers\n*@ input Vin\n*@ output {output}\n"
            ".model D1N4148 D(IS=2.52n N=1.752)\nVin in 0 DC 0\n" + body + ".end\n")


def _blocks(solver) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    arrays = solver._kernel_arrays(solver.theta())
    return list(fast.layout(solver.eq, arrays.K).blocks)


def _pluck(length: int = 2000) -> torch.Tensor:
    from nodal import signals
    return torch.tensor(signals.plucked_string(length / 48000, 48000, peak=1.0))[None, :, None]


def test_two_clippers_in_one_netlist_are_two_blocks_each_as_it_is_alone():
    u = _pluck()
    alone = [nodal.NodalSolver(nodal.derive(parse(_clippers("out1", [r]), "one.cir")))
             .simulate(u) for r in ("2.2k", "4.7k")]
    for k, output in enumerate(("out1", "out2")):
        pair = nodal.NodalSolver(nodal.derive(parse(_clippers(output, ["2.2k", "4.7k"]),
                                                    "pair.cir")))
        blocks = _blocks(pair)
        assert len(blocks) == 2
        # each block: one clipper's coordinate and its two diodes' ports, both across out{k}
        for coords, ports in blocks:
            assert len(coords) == 1
            assert len({pair.eq.ports[c].p for c in ports} - {"0"}
                       | {pair.eq.ports[c].m for c in ports} - {"0"}) == 1
        both = pair.simulate(u)
        assert float((both.y - alone[k].y).abs().max()) <= 1e-9
        # each block has its own Newton: a sample takes as many iterations as its slower clipper
        most = np.maximum(alone[0].diagnostics.iterations, alone[1].diagnostics.iterations)
        assert np.mean(both.diagnostics.iterations == most) > 0.99
        # the torch reference solves them together, to the same samples
        ref = pair.simulate(u[:, :300], backend="torch")
        assert float((ref.y - both.y[:, :300]).abs().max()) <= 1e-9


def test_a_circuit_that_does_not_split_is_one_block():
    for name in ("diode_clipper", "tube_screamer"):
        solver = nodal.load(name)
        assert len(_blocks(solver)) == 1


def test_the_phaser_is_solved_stage_by_stage():
    """The Phase 90's all-pass stages are buffered by ideal op-amps: each stage's JFET sees
    the ones before it and not those after (K block lower triangular), so one block per JFET,
    in the order of the signal chain."""
    solver = nodal.load("phase90")
    blocks = _blocks(solver)
    jfets = [e for e in solver.eq.netlist.elements if e.name.upper().startswith("J")]
    assert len(blocks) == len(jfets) == 4
    K = solver._kernel_arrays(solver.theta()).K[0]
    scale = np.abs(K).max()
    for b, (coords, ports) in enumerate(blocks):
        # a block's ports are one JFET's: they share its gate node
        nodes = [{solver.eq.ports[c].p, solver.eq.ports[c].m} for c in ports]
        assert len(set.intersection(*nodes) - {"0"}) == 1
        for coords2, ports2 in blocks[b + 1:]:
            assert np.abs(K[np.ix_(coords, ports2)]).max() < 1e-12 * scale    # no path back
            assert np.abs(K[np.ix_(coords2, ports)]).max() > 1e-9 * scale     # a path forward


def test_blocks_follow_the_couplings_not_round_off():
    """Two one-port diode clippers where the second reads the first through K: coupling one
    way gives two blocks in order; round-off back is ignored; a real coupling back joins them."""
    eq = nodal.derive(parse(_clippers("out1", ["2.2k", "4.7k"]), "pair.cir"))
    K = np.array([[1.0, 1.0, 1e-20, 1e-20], [0.5, 0.5, 2.0, 2.0]])
    assert [c for c, _ in fast.layout(eq, K).blocks] == [(0,), (1,)]
    K[0, 2] = 0.3
    assert [c for c, _ in fast.layout(eq, K).blocks] == [(0, 1)]
    # the first clipper reading the second: the second is solved first
    K = np.array([[1.0, 1.0, 0.5, 0.5], [0.0, 0.0, 2.0, 2.0]])
    assert [c for c, _ in fast.layout(eq, K).blocks] == [(1,), (0,)]

"""Small Newton blocks written out in scalars (`nodal.scalar_block`): the generated elimination
against numpy, and a kernel with a two-coordinate block against the torch path and against
the generic (array) Newton on the same circuit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import nodal
from nodal import fast, scalar_block, signals
from nodal.scalar_block import _Code, _resolve, _solve

# Two clipping nodes, each with an antiparallel diode pair, coupled through R2 and C2: one
# Newton block of two coordinates (the node voltages) and four junction ports, where each
# coordinate carries two ports (Q is not the identity).
TWO_NODE_CLIPPER = """* two coupled clipping nodes
*@ input vin
*@ output n2
.model dsi D(IS=2.52n N=1.752)
.model dge D(IS=200n N=1.3)
vin in 0 DC 0
r1 in n1 4.7k
d1 n1 0 dsi
d2 0 n1 dsi
c1 n1 0 22n
r2 n1 n2 2.2k
c2 n1 n2 1n
d3 n2 0 dge
d4 0 n2 dsi
c3 n2 0 10n
.end
"""


def _run_solve(nb: int, J: np.ndarray, b: np.ndarray, second: np.ndarray):
    """Run the generated `_solve` then `_resolve` as plain Python on J, b and a second
    right-hand side; returns both solutions."""
    code = _Code()
    _solve(code, nb, "J", "b", "x")
    _resolve(code, nb, "J", "e")
    env = {f"J{a}_{c}": float(J[a, c]) for a in range(nb) for c in range(nb)}
    env.update({f"b{a}": float(b[a]) for a in range(nb)})
    env.update({f"e{a}": float(second[a]) for a in range(nb)})
    exec(code.text(), {"math": math}, env)
    return (np.array([env[f"x{a}"] for a in range(nb)]),
            np.array([env[f"e{a}"] for a in range(nb)]))


@pytest.mark.parametrize("nb", range(1, scalar_block.MAX_COORDINATES + 1))
def test_written_out_elimination_solves_like_numpy(nb):
    rng = np.random.default_rng(nb)
    for trial in range(200):
        J = rng.normal(size=(nb, nb))
        if trial % 2:
            J[0, 0] *= 1e-3          # the pivot must come from the other row
        b, second = rng.normal(size=nb), rng.normal(size=nb)
        x, e = _run_solve(nb, J, b, second)
        for sol, rhs in ((x, b), (e, second)):
            scale = np.abs(J).sum() * (1 + np.abs(sol).max())
            np.testing.assert_allclose(J @ sol, rhs, rtol=0, atol=1e-12 * scale)


def _solver(tmp_path):
    path = tmp_path / "two_node_clipper.cir"
    path.write_text(TWO_NODE_CLIPPER)
    return nodal.load(path)


def _input(n: int) -> torch.Tensor:
    audio = signals.plucked_string(n / 48000, 48000, peak=2.0, seed=3)
    return torch.tensor(audio)[None, :, None]


def test_two_coordinate_block_is_written_out_and_gives_the_torch_paths_samples(tmp_path):
    solver = _solver(tmp_path)
    arrays = solver._kernel_arrays(solver.theta())
    plan = fast.layout(solver.eq, arrays.K)
    assert [(len(c), len(p)) for c, p in plan.blocks] == [(2, 4)]
    assert "_laws_s_0(" in fast.kernel_source(solver.eq, plan)
    u = _input(600)
    out = solver.simulate(u, backend="fast")
    ref = solver.simulate(u, backend="torch")
    assert out.y.abs().max() > 0.3          # the diodes conduct: the Newton is exercised
    assert (out.y - ref.y).abs().max() <= 1e-9
    assert out.diagnostics.mean_iterations == pytest.approx(ref.diagnostics.mean_iterations,
                                                            rel=1e-2)


def test_scalar_and_array_newtons_give_the_same_samples(tmp_path, monkeypatch):
    solver = _solver(tmp_path)
    u = _input(4800)
    scalar = solver.simulate(u, backend="fast")
    monkeypatch.setattr(scalar_block, "MAX_COORDINATES", 0)   # every block the array Newton
    monkeypatch.setattr(fast, "_text", fast.kernel_text)      # not the source kept on disk
    arrays = solver._kernel_arrays(solver.theta())
    assert "_laws_s_0(" not in fast.kernel_source(solver.eq, fast.layout(solver.eq, arrays.K))
    generic = solver.simulate(u, backend="fast")
    assert (scalar.y - generic.y).abs().max() <= 1e-12
    same = np.mean(scalar.diagnostics.iterations == generic.diagnostics.iterations)
    assert same >= 0.999

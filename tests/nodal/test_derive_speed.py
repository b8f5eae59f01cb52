"""The derivation's shortcuts change nothing: laws by kind, the Jacobian renamed per instance,
the torch laws per kind, and the on-disk cache of derived equations (`nodal.derived`).

No timings here (they are in bench/README.md); these tests check structure and equality."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import nodal
from nodal import derived, mna
from nodal.dk import torch_function
from nodal.mna import port_derivative

ROOT = Path(__file__).resolve().parents[2]
BIG = ROOT / "bench" / "netlists" / "big_muff_pair.cir"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
CIRCUITS = ["diode_clipper", "tube_screamer", "phase90", str(FIXTURES / "charge_ce_stage.cir"),
            str(FIXTURES / "asymmetric_clipper.cir"), str(FIXTURES / "charge_jfet.cir")]


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Every test derives into a cache folder of its own, and without this process's copies."""
    monkeypatch.setenv("NODALNET_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(nodal, "_CACHE", {})


def _direct(eq):
    """The old path as the reference: every law and its Jacobian entries differentiated
    directly, lambdified per port (no kinds)."""
    n = len(eq.ports)
    entries = [(i, j) for i in range(n) for j in range(n)
               if eq.port_voltages[j] in eq.currents[i].free_symbols]
    exprs = list(eq.currents) + [port_derivative(eq.currents[i], eq.port_voltages[j])
                                 for i, j in entries]
    return entries, torch_function(exprs, list(eq.port_voltages) + eq.symbols)


@pytest.mark.parametrize("name", CIRCUITS)
def test_laws_by_kind_equal_the_direct_derivation(name):
    """`NumericEquations.laws` (one torch function per kind, the Jacobian renamed from the
    kind's) gives each port's own law and the derivative of that law, at random voltages."""
    solver = nodal.load(name)
    eq = solver.eq
    entries, direct = _direct(eq)
    n = len(eq.ports)
    assert {(i, j) for i in range(n) for j in range(n) if eq.jacobian[i, j] != 0} <= set(entries)
    v = torch.tensor(np.random.default_rng(0).uniform(-0.8, 0.8, (5, n)))
    theta = solver.theta()
    i, jac = solver.numeric.laws(v, theta)
    want = [torch.as_tensor(w, dtype=torch.float64).expand(5)
            for w in direct(*v.unbind(1), *theta)]
    torch.testing.assert_close(i, torch.stack(want[:n], 1), rtol=1e-12, atol=1e-18)
    for (a, b), w in zip(entries, want[n:], strict=True):
        torch.testing.assert_close(jac[:, a, b], w, rtol=1e-12, atol=1e-15)


def test_big_circuit_has_two_kinds_and_each_law_is_differentiated_once(monkeypatch):
    """The two-Big-Muff board: 24 ports in 16 instances of 2 kinds (8 BJTs, 8 diodes); Sympy
    differentiates one BJT's two laws by its two voltages and one diode law, not 24 laws."""
    calls = []

    def counting(law, voltage):
        calls.append(voltage)
        return port_derivative(law, voltage)

    monkeypatch.setattr(mna, "port_derivative", counting)
    monkeypatch.setenv("NODALNET_CACHE", "")
    eq = nodal.equations(BIG)
    assert len(eq.ports) == 24
    assert sorted(k.instances for k in eq.kinds) == [8, 8]
    assert sorted(len(k.voltages) for k in eq.kinds) == [1, 2]
    assert len(calls) == 2 * 2 + 1
    # every instance's ports are a partition of all ports
    ports = sorted(p for k in eq.kinds for inst in k.ports for p in inst)
    assert ports == list(range(24))


def _same(a: mna.Equations, b: mna.Equations) -> None:
    assert a.currents == b.currents
    assert a.jacobian == b.jacobian
    assert a.matrix == b.matrix and a.matrix_dc == b.matrix_dc
    assert [r.g for r in a.reactive] == [r.g for r in b.reactive]
    assert a.unknowns == b.unknowns and a.parameters == b.parameters
    assert np.array_equal(a.source_rhs, b.source_rhs)
    assert np.array_equal(a.port_incidence, b.port_incidence)
    assert [p.junction for p in a.ports] == [p.junction for p in b.ports]
    assert a.netlist.notes == b.netlist.notes


@pytest.mark.parametrize("name", ["diode_clipper", "phase90", str(BIG)])
def test_second_process_reads_the_derivation_from_disk(name, monkeypatch):
    """The first `equations` derives and stores; with this process's copy gone, the next one
    reads the entry (derive is not called) and gets the same equations."""
    first = nodal.equations(name)
    entries = list(derived.folder().glob("*.pickle"))
    assert len(entries) == 1
    monkeypatch.setattr(nodal, "_CACHE", {})

    def no_derive(net):
        raise AssertionError("derived again")

    monkeypatch.setattr(nodal, "derive", no_derive)
    second = nodal.equations(name)
    assert second is not first
    _same(first, second)
    if name == "diode_clipper":      # and the solver built on it runs the same samples
        u = torch.sin(torch.linspace(0, 20, 200, dtype=torch.float64))[None, :, None]
        y1 = nodal.NodalSolver(first).simulate(u, backend="torch").y
        y2 = nodal.NodalSolver(second).simulate(u, backend="torch").y
        assert torch.equal(y1, y2)


def test_a_corrupt_or_foreign_entry_is_derived_again_and_rewritten(monkeypatch):
    nodal.equations("diode_clipper")
    (entry,) = derived.folder().glob("*.pickle")
    good = entry.read_bytes()
    derives = []
    real = nodal.derive

    def counting(net):
        derives.append(net)
        return real(net)

    monkeypatch.setattr(nodal, "derive", counting)
    for damage in (good[: len(good) // 2], b"not a pickle", pickle.dumps((derived.FORMAT,
                                                                          "another key", 1))):
        entry.write_bytes(damage)
        monkeypatch.setattr(nodal, "_CACHE", {})
        eq = nodal.equations("diode_clipper")
        assert len(eq.ports) == 2
        assert derived.load(entry.stem) is not None        # rewritten, readable again
    assert len(derives) == 3


def test_the_key_follows_the_netlist_text_directives_and_code(tmp_path):
    text = (ROOT / "circuits" / "diode_clipper.cir").read_text()
    path = tmp_path / "clip.cir"
    path.write_text(text)
    nodal.equations(path)
    path.write_text(text.replace("10n", "4.7n"))
    nodal.equations(path)
    assert len(list(derived.folder().glob("*.pickle"))) == 2
    base = derived.key("x", "a.cir", None, "simulate")
    assert derived.key("x", "a.cir", None, "train") != base
    assert derived.key("y", "a.cir", None, "simulate") != base


def test_no_disk_cache_when_switched_off_or_unwritable(tmp_path, monkeypatch):
    monkeypatch.setenv("NODALNET_CACHE", "")
    assert derived.folder() is None
    assert len(nodal.equations("diode_clipper").ports) == 2
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache folder would be")
    monkeypatch.setenv("NODALNET_CACHE", str(blocked))
    monkeypatch.setattr(nodal, "_CACHE", {})
    assert len(nodal.equations("diode_clipper").ports) == 2        # no error

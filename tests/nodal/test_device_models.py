"""ngspice's static device models: each law against a closed form, and whole small circuits
against ngspice's own operating points (`.op`, terminal currents through voltage sources to
1e-8 relative) and transients (ESR at 8x oversampling).

Every netlist is written here; units are SI (volts, amperes, ohms, kelvin).
"""

import math
import re
import subprocess

import numpy as np
import pytest
import sympy as sp
import torch

import nodal
from nodal import devices, resample, signals, spice
from nodal.devices import GMIN, temperature
from nodal.errors import NetlistError
from nodal.metrics import esr
from nodal.netlist import parse
from nodal.render import render

VT = temperature.thermal_voltage_at(300.15)
ngspice = pytest.mark.skipif(not spice.available(), reason="ngspice is not installed")


# -- harness -----------------------------------------------------------------------------------

def equations(body: str, name: str = "t.cir") -> nodal.Equations:
    """A netlist whose first source is the input, output at node `out` if present."""
    first = next(line.split()[0] for line in body.splitlines()
                 if line[:1].lower() == "v")
    nodes = re.findall(r"^[a-z]\w* (\w+)", body, re.M | re.I)
    out = "out" if re.search(r"\bout\b", body) else next(n for n in nodes if n != "0")
    net = parse(f"* test\n*@ input {first}\n*@ output {out}\n{body}\n", name)
    eq = nodal.derive(net)
    nodal.check_solvable(eq)
    return eq


def operating_point(eq: nodal.Equations) -> dict[str, float]:
    """Every voltage source's current (A, ngspice's sign: into its + node) at DC."""
    from nodal.mna import numeric_entries

    solver = nodal.NodalSolver(eq)
    net = eq.netlist
    u0 = torch.tensor([[net.defaults[s.name] if s.name in net.defaults
                        else float(s.value) for s in eq.sources[: eq.n_inputs]]],
                      dtype=torch.float64)
    _, q = solver._operating_point(1, u0)
    numeric = solver.numeric
    v = q @ numeric.expand.T
    i, _ = numeric.laws(v, solver.theta())
    rows, cols, vals = numeric_entries(eq, dc=True)
    n = len(eq.unknowns_dc)
    s = np.zeros((n, n))
    np.add.at(s, (rows, cols), vals)
    w0 = solver.source_values(u0[:, None, :])[0, 0].numpy()
    rhs = numeric.Ru_dc.numpy() @ w0 + numeric.Rn_dc.numpy() @ i[0].numpy()
    z = np.linalg.solve(s, rhs)
    return {key[1]: float(z[k]) for k, key in enumerate(eq.unknowns_dc) if key[0] == "branch"}


def ngspice_operating_point(body: str, options: str = ".options reltol=1e-12 abstol=1e-18 "
                            "vntol=1e-15 itl1=1000") -> dict[str, float]:
    deck = (f"op\n{body}\n{options}\n.control\nset numdgt=15\nop\nprint all\n.endc\n.end\n")
    out = subprocess.run(["ngspice", "-b", "/dev/stdin"], input=deck, capture_output=True,
                         text=True, timeout=60).stdout
    return {m.group(1).lower(): float(m.group(2))
            for m in re.finditer(r"^(\w+)#branch = (\S+)", out, re.M)}


def agrees_at_dc(body: str, rel: float = 1e-8, abs_: float = 1e-15) -> dict[str, float]:
    ours = operating_point(equations(body))
    theirs = ngspice_operating_point(body)
    assert set(theirs) == set(ours), (theirs, ours)
    for name, value in theirs.items():
        assert -ours[name] == pytest.approx(value, rel=rel, abs=abs_), (name, ours, theirs)
    return theirs


def transient_esr(body: str, x: np.ndarray, oversample: int = 8, fs: float = 48000.0) -> float:
    eq = equations(body)
    net = eq.netlist
    rate = fs * oversample
    drive = resample.upsample(x, oversample)
    ref = spice.simulate(net, {net.input: drive}, rate, substeps=2)
    reference = resample.downsample(ref.voltage(*net.output), oversample)[: len(x)]
    y, _ = render(eq, x, fs, oversample=oversample)
    return esr(reference, y)


def law(card: str, model: str, volts: dict[str, float]) -> list[float]:
    """The port currents of the one device on `card`, at port voltages `volts` (by suffix)."""
    net = parse(f"* t\n*@ input vx\n*@ output x\n{model}\nvx x 0 0\n{card}\n", "t.cir")
    el = net.elements[1]
    stamp = devices.BUILDERS[el.kind](el, net)
    values = {sp.Symbol(k): v for k, v in net.defaults.items()}
    at = {sym: volts[str(sym).split("_")[-1]] for sym in stamp.voltages}
    return [float(c.subs(values).subs(at)) for c in stamp.currents]

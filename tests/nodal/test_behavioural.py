"""Controlled (E G F H, POLY) and behavioural (B, VALUE=) sources against ngspice and Sympy.

Each circuit is written here, run by ngspice (`nodal.spice`) and by the solver at 8x
oversampling on the same input, and compared by ESR at the sample times.
"""

import numpy as np
import pytest

import nodal
from nodal import resample, signals, spice
from nodal.errors import NetlistError
from nodal.metrics import esr
from nodal.render import render

FS = 48000.0
PLUCK = signals.plucked_string(0.02, FS, peak=1.0, cutoff=5000, seed=5)
needs_ngspice = pytest.mark.skipif(not spice.available(), reason="ngspice is not installed")


def equations(text: str, name: str = "test.cir") -> nodal.Equations:
    eq = nodal.derive(nodal.parse(text, name))
    nodal.check_solvable(eq)
    return eq


def against_ngspice(text: str, x: np.ndarray, oversample: int = 8, backend: str = "fast",
                    options: dict = spice.REFERENCE_OPTIONS) -> tuple[float, np.ndarray]:
    """ESR of the solver's output against ngspice's, both at `oversample` times 48 kHz."""
    eq = equations(text)
    net = eq.netlist
    drive = resample.upsample(x, oversample)
    ref = spice.simulate(net, {net.input: drive}, FS * oversample,
                         substeps=max(1, 16 // oversample), options=options)
    reference = resample.downsample(ref.voltage(*net.output), oversample)[: len(x)]
    y, _ = render(eq, x, FS, oversample=oversample, backend=backend)
    return esr(reference, y), reference


def parse_error(text: str) -> NetlistError:
    with pytest.raises(NetlistError) as info:
        equations(text, "bad.cir")
    return info.value

"""Check a circuit against ngspice: the same netlist, the same input, ESR at the sample times.

    rows = verify(nodal.equations("diode_clipper"))

Each row: the test signal, the solver's rate, the ESR of the output (and of every state)
against ngspice's fine-step transient, and both wall times. Where ngspice cannot finish the
transient at the reference tolerances, the row's `note` says it was rerun looser
(`spice.reference`); where it cannot finish at all, `spice.IncompleteTransient` is raised: a
row never holds numbers ngspice did not compute.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from . import resample, signals, spice
from .metrics import esr
from .mna import Equations
from .render import input_matrix, render


@dataclass
class Agreement:
    signal: str
    oversample: int
    output_esr: float
    state_esr: float
    solver_seconds: float
    ngspice_seconds: float
    note: str = ""          # how the reference was obtained when not at the tight tolerances

    def as_dict(self) -> dict:
        return asdict(self)


def agreement(eq: Equations, x: np.ndarray, name: str, sample_rate: float = 48000.0,
              oversample: int = 1, substeps: int = 16, backend: str = "fast") -> Agreement:
    """Run ngspice and the solver on `x`; with oversampling both see the same upsampled input."""
    net = eq.netlist
    rate = sample_rate * oversample
    u = resample.upsample(input_matrix(eq, x, sample_rate), oversample, axis=0)
    drive = {src.name: u[:, k] for k, src in enumerate(eq.sources[: eq.n_inputs])}
    ref = spice.reference(net, drive, rate, substeps=max(1, substeps // oversample))
    y_ref = resample.downsample(ref.voltage(*net.output), oversample)[: len(x)]
    start = time.perf_counter()
    # controls follow their own SPICE waveforms, in render as in the deck above
    y, states = render(eq, x, sample_rate, oversample=oversample, backend=backend)
    seconds = time.perf_counter() - start
    state_errors = []
    for k, r in enumerate(eq.reactive):
        if r.kind != "C":
            continue
        v_ref = resample.downsample(ref.voltage(r.a, r.b), oversample)[: len(x)]
        state_errors.append(esr(v_ref, states[:, k]))
    return Agreement(name, oversample, esr(y_ref, y),
                     float(np.mean(state_errors)) if state_errors else float("nan"),
                     seconds, ref.seconds, ref.note)


def verify(eq: Equations, sample_rate: float = 48000.0, duration: float = 0.1,
           oversample: int = 8, backend: str = "fast") -> list[Agreement]:
    """A 1 kHz 1 V sine and a 1 V plucked string (band-limited to 5 kHz), native and oversampled."""
    sine = signals.sine(1000, duration, sample_rate)
    pluck = signals.plucked_string(duration, sample_rate, peak=1.0, cutoff=5000, seed=1)
    rows = [agreement(eq, sine, "sine 1 kHz, 1 V", sample_rate, 1, backend=backend),
            agreement(eq, pluck, "plucked string, 1 V", sample_rate, 1, backend=backend)]
    if oversample > 1:
        rows.append(agreement(eq, pluck, "plucked string, 1 V", sample_rate, oversample,
                              backend=backend))
    return rows

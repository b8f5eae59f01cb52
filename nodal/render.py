"""Run a circuit on a signal the way `nodalnet simulate` does: inputs, controls, oversampling.

    y, x = render(equations, signal, 48000, oversample=8)

`signal` [time] drives the `*@ input` source (volts). A `*@ control` source follows the signal
given for it in `controls`, else its own SPICE waveform (an LFO's SIN), as ngspice would run it.
Returns the output y [time] and the circuit states x [time, n_states], at the input's rate.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from . import resample
from .diagnostics import Diagnostics
from .errors import SignalError
from .mna import Equations
from .solver import NodalSolver


def input_matrix(eq: Equations, signal: np.ndarray, sample_rate: float,
                 controls: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """The model inputs [time, n_inputs]: the signal, then each control source's signal."""
    controls = {k.lower(): v for k, v in (controls or {}).items()}
    names = eq.netlist.controls
    unknown = set(controls) - set(names)
    if unknown:
        raise SignalError(f"{', '.join(sorted(unknown))}: not a `*@ control` source of this "
                          f"circuit (controls: {', '.join(names) or 'none'})")
    length = len(signal)
    t = np.arange(length) / sample_rate
    cols = [np.asarray(signal, dtype=np.float64)]
    for src in eq.sources[1:eq.n_inputs]:
        if src.name in controls:
            c = np.asarray(controls[src.name], dtype=np.float64)
            if c.shape != (length,):
                raise SignalError(f"control {src.name} has {c.shape[0]} samples, the input "
                                  f"{length}: give both at the same rate and length")
            cols.append(c)
        elif src.waveform is not None:
            cols.append(src.waveform.at(t, 1 / sample_rate))
        else:
            cols.append(np.full(length, eq.netlist.defaults[src.name]))
    return np.stack(cols, -1)


def render(eq: Equations, signal: np.ndarray, sample_rate: float,
           values: dict[str, float] | None = None,
           controls: dict[str, np.ndarray] | None = None, oversample: int = 1,
           backend: str = "fast",
           progress: Callable[[int], None] | None = None,
           report: Callable[[Diagnostics], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Simulate; see the module docstring. `progress(n)` gets samples done (at the solver rate);
    `report(diagnostics)` gets the run's `Diagnostics` (Newton iterations, fallbacks)."""
    if oversample < 1:
        raise SignalError("--oversample must be 1 or more")
    u = input_matrix(eq, signal, sample_rate, controls)
    if oversample > 1:
        u = resample.upsample(u, oversample, axis=0)
    solver = NodalSolver(eq, sample_rate=sample_rate * oversample, values=values)
    ut = torch.from_numpy(np.ascontiguousarray(u))[None]
    traj = solver.simulate(ut, backend=backend, progress=progress)
    if report is not None:
        report(traj.diagnostics)
    y = traj.y[0, :, 0].numpy()
    x = traj.x[0].numpy()
    if oversample > 1:
        y = resample.downsample(y, oversample)
        x = resample.downsample(x, oversample, axis=0) if x.shape[1] else x[::oversample]
    return y[: len(signal)], x[: len(signal)]

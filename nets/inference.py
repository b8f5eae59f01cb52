"""Running a trained model on a signal as a plug-in would: `nodalnet simulate --model RUN_DIR`.

    y, x = nets.inference.process(model, signal, 44100)   # signal [time] in volts

The model runs at the rate it was trained at. A signal at another rate is resampled to it and
the result back (polyphase), or, with `resample=False`, refused with SampleRateMismatchError:
never run silently at the wrong rate. Control inputs (a phaser's LFO) follow the given
signals, else the netlist's own waveform, as `nodal.render` does for the solver.
"""

from __future__ import annotations

import numpy as np
import torch

import nodal
from nodal.render import input_matrix

from . import fast
from .data import resample_to


def start_state(model, u0: np.ndarray) -> torch.Tensor:
    """The state [1, ...] a model starts from before a signal whose first input row is u0
    [n_inputs]: a resettable model of a known circuit starts from the circuit at rest with
    its input held at u0, any other from its own initial state."""
    info = getattr(model, "run_info", None) or {}
    circuit = info.get("data", {}).get("circuit")
    u0 = np.asarray(u0, dtype=np.float64).reshape(1, -1)
    first = torch.from_numpy(u0).to(model.dtype)
    with torch.no_grad():
        if circuit is not None and getattr(model, "resettable", False):
            solver = nodal.load(circuit, sample_rate=float(model.sample_rate),
                                **info["data"].get("values", {}))
            rest = solver.simulate(torch.from_numpy(np.repeat(u0, 64, 0))[None]).x[:, -1]
            return model.reset(rest.to(model.dtype), first)
        return model.initial_state(1, first)


def process(model, signal: np.ndarray, sample_rate: float,
            controls: dict[str, np.ndarray] | None = None,
            resample: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Run `model` free on `signal` [time] (volts) -> output y [time], states x [time, n]."""
    rate = float(model.sample_rate)
    signal = np.asarray(signal, dtype=np.float64)
    length = len(signal)
    info = getattr(model, "run_info", None) or {}
    circuit = info.get("data", {}).get("circuit")
    signal_at_rate = resample_to(signal, sample_rate, rate, resample, "the input")
    controls = {k: resample_to(np.asarray(v, dtype=np.float64), sample_rate, rate, resample,
                               f"control {k}")[:len(signal_at_rate)]
                for k, v in (controls or {}).items()}
    if circuit is not None:
        u = input_matrix(nodal.equations(circuit), signal_at_rate, rate, controls)
    else:
        u = signal_at_rate[:, None]
    ut = torch.from_numpy(np.ascontiguousarray(u))[None].to(model.dtype)
    with torch.no_grad():
        s0 = start_state(model, u[0])
        traj = fast.compile(model)(ut, s0) if fast.supports(model) else model(ut, s0=s0)
    y = traj.y[0, :, 0].double().numpy()
    x = traj.x[0].double().numpy()
    if rate != sample_rate:
        y = resample_to(y, rate, sample_rate)
        x = resample_to(x, rate, sample_rate)
    return y[:length], x[:length]

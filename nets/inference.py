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
from .errors import KnobError
from .knobs import Knob, controls_at, from_lists


def run_knobs(model) -> tuple[Knob, ...]:
    """The knobs a run was trained on (its last input channels)."""
    info = getattr(model, "run_info", None) or {}
    return from_lists(info.get("data", {}).get("material", {}).get("knobs", ()))


def knob_values(model, given: dict[str, float] | None) -> dict[str, float]:
    """Every knob of the run at the given value, else at its netlist default (the `.param`'s
    value, clipped into the trained range). KnobError for a name that is not a knob of the
    run or a value outside the range it was trained on."""
    knobs = run_knobs(model)
    given = {str(k).lower(): float(v) for k, v in (given or {}).items()}
    names = [k.name for k in knobs]
    unknown = sorted(set(given) - set(names))
    if unknown:
        run = (model.run_info or {}).get("data", {}).get("circuit", "this run")
        raise KnobError(f"--set {', '.join(unknown)}: not a knob of the run (a {run} model "
                        f"trained with knobs: {', '.join(names) or 'none'}); a trained model's "
                        "component values are fixed, only its knobs can be set")
    out = {}
    info = model.run_info or {}
    defaults = info.get("data", {}).get("values", {})
    for k in knobs:
        if k.name in given:
            v = given[k.name]
            if not k.low <= v <= k.high:
                raise KnobError(f"--set {k.name}={v:g}: outside the range the run was trained "
                                f"on ({k.low:g} to {k.high:g}); a model is not valid there")
        else:
            v = min(max(float(defaults.get(k.name, k.low)), k.low), k.high)
        out[k.name] = v
    return out


def start_state(model, u0: np.ndarray, values: dict[str, float] | None = None) -> torch.Tensor:
    """The state [1, ...] a model starts from before a signal whose first input row is u0
    [n_inputs]: a resettable model of a known circuit starts from the circuit at rest with
    its input held at u0 (its knob parameters at `values`), any other from its own initial
    state."""
    info = getattr(model, "run_info", None) or {}
    circuit = info.get("data", {}).get("circuit")
    u0 = np.asarray(u0, dtype=np.float64).reshape(1, -1)
    first = torch.from_numpy(u0).to(model.dtype)
    with torch.no_grad():
        if circuit is not None and getattr(model, "resettable", False):
            solver = nodal.load(circuit, sample_rate=float(model.sample_rate),
                                **info["data"].get("values", {}))
            for name, value in (values or {}).items():
                if name in solver.names:
                    solver.set_value(name, value)
            held = np.repeat(u0[:, :solver.n_inputs], 64, 0)
            rest = solver.simulate(torch.from_numpy(held)[None]).x[:, -1]
            return model.reset(rest.to(model.dtype), first)
        return model.initial_state(1, first)


def process(model, signal: np.ndarray, sample_rate: float,
            controls: dict[str, np.ndarray] | None = None,
            resample: bool = True,
            knobs: dict[str, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Run `model` free on `signal` [time] (volts) -> output y [time], states x [time, n].

    knobs: the values of the run's knobs (`knob_values`: the others at their defaults); a
    knob that shapes a control waveform (an LFO's rate) moves that waveform too."""
    values = knob_values(model, knobs)
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
        eq = nodal.equations(circuit)
        u = input_matrix(eq, signal_at_rate, rate, controls)
        if values:  # the waveforms of control sources at the knob values, unless given
            moved = controls_at(circuit, values, len(u), 0, rate)
            for j, src in enumerate(eq.sources[1:eq.n_inputs]):
                if src.name not in {k.lower() for k in controls}:
                    u[:, 1 + j] = moved[:, j]
    else:
        u = signal_at_rate[:, None]
    if values:
        u = np.concatenate([u, np.tile(list(values.values()), (len(u), 1))], -1)
    ut = torch.from_numpy(np.ascontiguousarray(u))[None].to(model.dtype)
    with torch.no_grad():
        s0 = start_state(model, u[0], values)
        traj = fast.compile(model)(ut, s0) if fast.supports(model) else model(ut, s0=s0)
    y = traj.y[0, :, 0].double().numpy()
    x = traj.x[0].double().numpy()
    if rate != sample_rate:
        y = resample_to(y, rate, sample_rate)
        x = resample_to(x, rate, sample_rate)
    return y[:length], x[:length]

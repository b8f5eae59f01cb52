"""Knobs: a circuit's `.param` controls (drive, tone, an LFO's rate) as model inputs.

    knobs = parse_specs(["drive=0:1"])          # (Knob("drive", 0.0, 1.0),)
    check(circuit, knobs)                        # each is a .param that changes something

A knob is a `.param` of the netlist. It reaches the circuit in one of two ways, both handled
here: through the component values and device parameters (the solver's parameter of that name,
`NodalSolver.set_value`), or through the waveform of a `*@ control` source (an LFO written
`SIN(-1.9 0.5 {rate})`: the control column is that waveform at the knob's value, re-read from
the netlist with the `.param` line changed). Models see the knob values as extra input
channels after the audio and the controls, in the order the knobs were given.

The test split of a knob dataset holds the test audio once per point of a grid between the
training draws (`grid`): the centres of G equal cells of each range (G = 5 for one knob, 3 for
more), values that uniform random draws practically never hit.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import KnobError

#: samples per piecewise-constant step of a moving knob (`--knob-motion`)
MOTION_STEP = 256


@dataclass(frozen=True)
class Knob:
    """A `.param` swept over [low, high] (SI units, as the netlist writes it)."""

    name: str
    low: float
    high: float

    def to_list(self) -> list:
        return [self.name, self.low, self.high]

    def grid(self, points: int) -> list[float]:
        width = (self.high - self.low) / points
        return [self.low + (i + 0.5) * width for i in range(points)]


def parse_spec(text: str) -> Knob:
    """`NAME=LOW:HIGH` -> Knob; KnobError for anything else, or an empty/reversed range."""
    from nodal.netlist import parse_number

    name, eq, rest = str(text).partition("=")
    low_text, colon, high_text = rest.partition(":")
    name = name.strip()
    if not eq or not colon or not re.fullmatch(r"[A-Za-z_][\w.]*", name):
        raise KnobError(f"--knob {text}: write NAME=LOW:HIGH (a .param and its range, e.g. "
                        "drive=0:1)")
    low, high = parse_number(low_text.strip()), parse_number(high_text.strip())
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        raise KnobError(f"--knob {text}: LOW and HIGH must be numbers (SPICE suffixes are fine: "
                        "1k)")
    if not low < high:
        raise KnobError(f"--knob {text}: the range is {'empty' if low == high else 'reversed'}"
                        f"; give LOW < HIGH")
    return Knob(name.lower(), float(low), float(high))


def parse_specs(items) -> tuple[Knob, ...]:
    knobs = tuple(parse_spec(t) for t in items or ())
    names = [k.name for k in knobs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise KnobError(f"--knob {', '.join(twice)}: given more than once; give each knob once")
    return knobs


def from_lists(items) -> tuple[Knob, ...]:
    """Knobs from their JSON form ([[name, low, high], ...]), as a spec stores them."""
    return tuple(Knob(str(n), float(lo), float(hi)) for n, lo, hi in items or ())


def grid(knobs: tuple[Knob, ...]) -> list[tuple[float, ...]]:
    """The held-out test points: the product of each knob's cell centres."""
    if not knobs:
        return [()]
    points = 5 if len(knobs) == 1 else 3
    return list(itertools.product(*(k.grid(points) for k in knobs)))


# -- where a knob acts ------------------------------------------------------------------------
def _with_param(text: str, name: str, value: float) -> str:
    """The netlist text with `.param name=...` set to value (every `.param` line naming it)."""
    pattern = re.compile(rf"(?i)(?<![\w.])({re.escape(name)}\s*=\s*)(\{{[^}}]*\}}|[^\s,]+)")

    def fix(line: str) -> str:
        if not line.lstrip().lower().startswith(".param"):
            return line
        return pattern.sub(lambda m: f"{m.group(1)}{value!r}", line)

    return "\n".join(fix(line) for line in text.split("\n"))


@lru_cache(maxsize=4096)
def _waveforms(path: str, text: str, values: tuple[tuple[str, float], ...]) -> tuple:
    """Each source's waveform (by name) with these `.param` values, from the netlist text."""
    from nodal.netlist import parse

    for name, value in values:
        text = _with_param(text, name, value)
    net = parse(text, path, Path(path).parent)
    return tuple((e.name, getattr(e, "waveform", None)) for e in net.elements
                 if e.name[:1] in "vi")


def control_waveforms(circuit: str, values: dict[str, float]) -> dict:
    """{control source: Waveform or None} of `circuit` with these knob values."""
    import nodal
    from nodal.netlist import read_text

    path = nodal.netlist_path(circuit)
    eq = nodal.equations(circuit)
    found = dict(_waveforms(str(path), read_text(path), tuple(sorted(values.items()))))
    return {src.name: found.get(src.name) for src in eq.sources[1:eq.n_inputs]}


def controls_at(circuit: str, values: dict[str, float], length: int, start: int,
                sample_rate: float, solver=None) -> np.ndarray:
    """The control inputs [time, n_controls] with the knobs at `values`: each control source's
    own waveform (re-read with the knob values), else its DC value."""
    import nodal

    eq = nodal.equations(circuit)
    waves = control_waveforms(circuit, values) if values else {
        s.name: s.waveform for s in eq.sources[1:eq.n_inputs]}
    t = (np.arange(length) + start) / sample_rate
    columns = []
    for src in eq.sources[1:eq.n_inputs]:
        wave = waves.get(src.name)
        if wave is not None:
            columns.append(np.asarray(wave.at(t, 1 / sample_rate), dtype=float))
        else:
            value = solver.value(src.name) if solver is not None else \
                eq.netlist.defaults[src.name]
            columns.append(np.full(length, float(value)))
    return np.stack(columns, -1) if columns else np.zeros((length, 0))


def check(circuit: str, knobs: tuple[Knob, ...], motion: bool = False) -> dict[str, str]:
    """Each knob's way in: {"name": "solver" | "waveform" | "both"}; KnobError for a knob
    that is no `.param` of the circuit, that changes nothing, or that moves a waveform while
    `motion` asks it to move within a segment (a moving LFO rate would jump its phase)."""
    import nodal

    eq = nodal.equations(circuit)
    params = list(eq.netlist.params)
    ways: dict[str, str] = {}
    for knob in knobs:
        if knob.name not in params:
            raise KnobError(f"--knob {knob.name}: {circuit} has no .param {knob.name!r}; its "
                            f".params: {', '.join(params) or 'none'}")
        low = control_waveforms(circuit, {knob.name: knob.low})
        high = control_waveforms(circuit, {knob.name: knob.high})
        in_wave = any(low[s] != high[s] for s in low)
        in_params = in_solver(eq, knob.name)
        if not (in_wave or in_params):
            raise KnobError(f"--knob {knob.name}: the .param {knob.name!r} of {circuit} changes "
                            "no component value, device parameter or control waveform")
        if in_wave and motion:
            raise KnobError(f"--knob {knob.name} with --knob-motion: {knob.name} sets a control "
                            "waveform (moving it would jump the waveform's phase); train it "
                            "without --knob-motion")
        ways[knob.name] = "both" if in_wave and in_params else ("waveform" if in_wave
                                                               else "solver")
    return ways


def in_solver(eq, name: str) -> bool:
    """Whether the .param reaches an element value or model parameter of the equations."""
    import sympy as sp

    symbol = sp.Symbol(name)
    net = eq.netlist
    for el in net.elements:
        if el.value is not None and symbol in el.value.free_symbols:
            return True
    for el in net.elements:
        if any(symbol in getattr(p, "free_symbols", ()) for p in el.params.values()):
            return True
    for model in net.models.values():
        if any(symbol in getattr(p, "free_symbols", ()) for p in model.params.values()):
            return True
    if name not in eq.parameters:
        return False
    # elsewhere in the equations (a controlled source's gain, a behavioural law): whether
    # the DK matrices move with it
    import torch

    from nodal.solver import NodalSolver

    solver = NodalSolver(eq)
    before = solver.matrices()
    solver.set_value(name, 2.0 * float(solver.value(name)) + 1.0)
    after = solver.matrices()
    return any(not torch.equal(a, b) for a, b in zip(vars(before).values(),
                                                     vars(after).values(), strict=True)
               if isinstance(a, torch.Tensor))

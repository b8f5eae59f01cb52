"""A parsed netlist as plain data: `Netlist`, `Element`, `Model`, `Waveform` (SI units)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import sympy as sp

from ..errors import NetlistError

GROUND = "0"
GROUND_ALIASES = {"0", "gnd"}


@dataclass
class Waveform:
    """An independent source's time function, as ngspice evaluates it (volts or amperes)."""

    kind: str                      # "dc", "sin", "pulse", "pwl"
    args: tuple[float, ...]

    def at(self, t, period: float | None = None):
        """Value at times `t` (seconds, numpy array); `period` is the time step for defaults."""
        import numpy as np

        t = np.asarray(t, dtype=float)
        a = self.args
        if self.kind == "dc":
            return np.full_like(t, a[0])
        if self.kind == "sin":
            vo, va, freq = a[0], a[1], a[2]
            td = a[3] if len(a) > 3 else 0.0
            theta = a[4] if len(a) > 4 else 0.0
            phase = math.radians(a[5]) if len(a) > 5 else 0.0
            tt = np.maximum(t - td, 0.0)
            return vo + va * np.sin(2 * math.pi * freq * tt + phase) * np.exp(-tt * theta)
        if self.kind == "pulse":
            v1, v2 = a[0], a[1]
            step = period or 1e-6
            td = a[2] if len(a) > 2 else 0.0
            tr = a[3] if len(a) > 3 and a[3] > 0 else step
            tf = a[4] if len(a) > 4 and a[4] > 0 else step
            pw = a[5] if len(a) > 5 else math.inf
            per = a[6] if len(a) > 6 and a[6] > 0 else math.inf
            tt = t - td
            if math.isfinite(per):
                tt = np.where(tt > 0, np.mod(tt, per), tt)
            out = np.full_like(t, v1)
            rise = (tt > 0) & (tt < tr)
            out = np.where(rise, v1 + (v2 - v1) * tt / tr, out)
            out = np.where((tt >= tr) & (tt <= tr + pw), v2, out)
            fall = (tt > tr + pw) & (tt < tr + pw + tf)
            out = np.where(fall, v2 + (v1 - v2) * (tt - tr - pw) / tf, out)
            return out
        if self.kind == "pwl":
            times, values = np.asarray(a[0::2]), np.asarray(a[1::2])
            return np.interp(t, times, values)
        raise ValueError(self.kind)

    def problem(self) -> str | None:
        """Why these arguments make no waveform ngspice would run, or None."""
        a = self.args
        if self.kind == "sin":
            if a[2] < 0:
                return f"the frequency {a[2]:g} Hz is negative"
            if len(a) > 3 and a[3] < 0:
                return f"the delay {a[3]:g} s is negative"
            if len(a) > 4 and a[4] < 0:
                return (f"the damping factor {a[4]:g} 1/s is negative: the sine would grow "
                        "without bound")
        if self.kind == "pulse":
            names = ("delay", "rise time", "fall time", "pulse width", "period")
            for name, v in zip(names, a[2:7], strict=False):
                if v < 0:
                    return f"the {name} {v:g} s is negative"
        if self.kind == "pwl":
            times = a[0::2]
            if any(t1 < t0 for t0, t1 in zip(times, times[1:], strict=False)):
                return "the times must not decrease"
        return None

    def value_at_zero(self) -> float:
        return float(self.at([0.0])[0])


@dataclass
class Element:
    """One circuit element: its SPICE letter, nodes, value (a Sympy expression) and model."""

    name: str
    kind: str                       # the SPICE letter, upper case: R C L V I D Q J E G
    nodes: tuple[str, ...]
    value: sp.Expr | None = None    # R, C, L; gain of E/G; DC value of V/I
    model: str | None = None
    waveform: Waveform | None = None
    line: int = 0
    text: str = ""
    #: instance parameters after the model name (`area`, `L`, `W`...), lower-case name -> value
    params: dict[str, sp.Expr] = field(default_factory=dict)


@dataclass
class Model:
    name: str
    type: str                       # d, npn, pnp, njf, pjf
    params: dict[str, sp.Expr]      # every parameter (defaults filled in) as a Sympy expression
    line: int = 0


@dataclass
class InitialConditions:
    """What the transient starts from, as SPICE gives it: `.ic V(node)=value` (volts), `IC=` on
    a capacitor (volts) or inductor (amperes), and `uic` on `.tran` (no operating point)."""

    nodes: dict[str, float] = field(default_factory=dict)
    elements: dict[str, float] = field(default_factory=dict)
    uic: bool = False
    lines: dict[str, int] = field(default_factory=dict)     # "v(n)" or element name -> line

    def __bool__(self) -> bool:
        return bool(self.nodes or self.uic)


@dataclass
class Netlist:
    """A parsed netlist. `defaults` holds the value of every free symbol (SI units)."""

    title: str
    file: str
    elements: list[Element]
    models: dict[str, Model]
    params: dict[str, sp.Expr]
    defaults: dict[str, float]
    input: str | None
    controls: list[str]
    output: tuple[str, str]
    directive_lines: dict[str, int] = field(default_factory=dict)
    text: str = ""
    #: the circuit's temperature (`.temp`, `.options temp=`) and the nominal temperature model
    #: parameters are measured at (`.options tnom=`, a card's TNOM), in kelvin; ngspice's 27 C
    temperature: float = 300.15
    nominal_temperature: float = 300.15
    #: what the reader accepted without effect on the result (an analysis card, an unused model
    #: of an unknown type...), one line each with its file:line, shown to the user
    notes: list[str] = field(default_factory=list)
    #: `.ic`, `IC=` and `uic` (`nodal.solver` starts from them instead of the operating point)
    initial: InitialConditions = field(default_factory=InitialConditions)
    #: every include card read, in any file: (file, line) -> (resolved path, section or ""),
    #: for a deck that copies an included file elsewhere (`spice`)
    include_lines: dict[tuple[str, int], tuple[str, str]] = field(default_factory=dict)

    def element(self, name: str) -> Element:
        """The element named `name` (any case); a dict built once, rebuilt if elements change."""
        index = self.__dict__.get("_index")
        if index is None or len(index) != len(self.elements):
            index = self.__dict__["_index"] = {e.name: e for e in self.elements}
        try:
            return index[name.lower()]
        except KeyError:
            raise KeyError(name) from None

    @property
    def nodes(self) -> list[str]:
        seen: dict[str, None] = {}
        for e in self.elements:
            for n in e.nodes:
                if n != GROUND:
                    seen.setdefault(n, None)
        return list(seen)

    def error(self, message: str, element: Element | None = None,
              line: int | None = None) -> NetlistError:
        if element is not None:
            return NetlistError(message, self.file, element.line, element.text)
        return NetlistError(message, self.file, line)

"""Independent sources' cards: `DC value`, `AC ...`, and the waveforms `SIN(...)`,
`PULSE(...)` and `PWL(...)`, read into an `Element`'s value and `Waveform`.

`SourceCards` is a part of the reader (`reader.Reader` inherits it): it uses the reader's
`value`, `expression`, `params`, `defaults` and `fail`.
"""

from __future__ import annotations

import math

import sympy as sp

from .data import Element, Waveform
from .expressions import parse_number
from .values import evaluate

_WAVEFORM_ARGS = {"sin": 3, "pulse": 2, "pwl": 2}     # the fewest values each one takes


class SourceCards:
    """The source half of the reader (mixed into `reader.Reader`)."""

    def source(self, el: Element, rest: list[str]) -> None:
        line, text = el.line, el.text
        dc: sp.Expr | None = None
        wave: Waveform | None = None
        i = 0
        while i < len(rest):
            tok = rest[i].lower()
            if tok == "dc":
                if i + 1 >= len(rest):
                    raise self.fail("DC needs a value", line, text)
                dc = self.value(el.name, rest[i + 1], line, text)
                i += 2
            elif tok == "ac":
                i += 2
                while i < len(rest) and parse_number(rest[i]) is not None:
                    i += 1
            elif tok in _WAVEFORM_ARGS:
                wave, i = self.waveform(tok, rest, i, line, text)
            elif dc is None and (parse_number(rest[i]) is not None or rest[i].startswith("{")
                                 or tok in self.params):
                dc = self.value(el.name, rest[i], line, text)
                i += 1
            else:
                raise self.fail(f"cannot read {rest[i]!r} in a source: use DC value, SIN(...), "
                                "PULSE(...) or PWL(...)", line, text)
        if dc is None:
            self.defaults[el.name] = wave.value_at_zero() if wave is not None else 0.0
            dc = sp.Symbol(el.name)
        el.value = dc
        el.waveform = wave

    def waveform(self, kind: str, rest: list[str], i: int, line: int,
                 text: str) -> tuple[Waveform, int]:
        """`SIN(...)`, `PULSE(...)` or `PWL(...)` starting at rest[i]; and the index after it."""
        if i + 1 >= len(rest) or rest[i + 1] != "(":
            raise self.fail(f"write {kind.upper()}(...) with parentheses", line, text)
        j = i + 2
        args: list[float] = []
        while j < len(rest) and rest[j] != ")":
            val = evaluate(self.expression(rest[j], line, text), self.defaults)
            if not math.isfinite(val):
                raise self.fail(f"cannot evaluate {rest[j]!r} to a finite number", line, text)
            args.append(val)
            j += 1
        if j >= len(rest):
            raise self.fail(f"{kind.upper()}( is not closed", line, text)
        need = _WAVEFORM_ARGS[kind]
        if len(args) < need or (kind == "pwl" and len(args) % 2):
            raise self.fail(f"{kind.upper()} needs at least {need} values"
                            + (" in time/value pairs" if kind == "pwl" else ""), line, text)
        wave = Waveform(kind, tuple(args))
        problem = wave.problem()
        if problem:
            raise self.fail(f"{kind.upper()}(...): {problem}", line, text)
        return wave, j + 1

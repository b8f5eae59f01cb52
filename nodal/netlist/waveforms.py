"""Independent sources' cards: `DC value`, `AC ...`, and the waveforms `SIN(...)`,
`PULSE(...)` and `PWL(...)`, read into an `Element`'s value and `Waveform`.

`SourceCards` is a part of the reader (`reader.Reader` inherits it): it uses the reader's
`value`, `expression`, `params`, `defaults` and `fail`.
"""

from __future__ import annotations

import math

import sympy as sp

from .data import Element, Waveform
from .dialects import note
from .expressions import parse_number
from .values import evaluate

_WAVEFORM_ARGS = {"sin": 3, "pulse": 2, "pwl": 2}     # the fewest values each one takes
_WAVEFORM_MOST = {"sin": 6, "pulse": 7}                # more: LTspice's Ncycles, not modelled
_SPELLINGS = {"sine": "sin"}                           # LTspice's SINE( is ngspice's SIN(
_SOURCE_OPTIONS = ("rser", "cpar")                     # LTspice's V source parasitics
_REPEATS = ("r", "td", "repeat", "forever", "endrepeat", "file", "trigger")


class SourceCards:
    """The source half of the reader (mixed into `reader.Reader`)."""

    def source(self, el: Element, rest: list[str]) -> dict[str, str]:
        """The rest of a V or I card; returns its `name=value` options (LTspice's `Rser=`)
        for the reader's `element_options` to take or refuse."""
        line, text = el.line, el.text
        dc: sp.Expr | None = None
        wave: Waveform | None = None
        options: dict[str, str] = {}
        i = 0
        while i < len(rest):
            tok = rest[i].lower()
            if tok == "dc":
                if i + 1 >= len(rest):
                    raise self.fail("DC needs a value", line, text)
                dc = self.value(el.name, rest[i + 1], line, text)
                i += 2
            elif tok == "ac":
                i = self.ac_part(el, rest, i)
            elif _SPELLINGS.get(tok, tok) in _WAVEFORM_ARGS:
                wave, i = self.waveform(_SPELLINGS.get(tok, tok), rest, i, line, text)
            elif dc is None and (parse_number(rest[i]) is not None or rest[i].startswith("{")
                                 or tok in self.params):
                dc = self.value(el.name, rest[i], line, text)
                i += 1
            elif i + 2 < len(rest) and rest[i + 1] == "=" and tok in _SOURCE_OPTIONS:
                options[tok] = rest[i + 2]
                i += 3
            elif tok in _REPEATS or (i + 1 < len(rest) and rest[i + 1] == "="):
                raise self.fail(f"{tok.upper()} in a source is not modelled (a repeated or "
                                "delayed PWL, a PWL file, ...): write the waveform out in one "
                                "PWL(...) or SIN/PULSE", line, text)
            else:
                raise self.fail(f"cannot read {rest[i]!r} in a source: use DC value, SIN(...) "
                                "(or LTspice's SINE), PULSE(...) or PWL(...)", line, text)
        if dc is None:
            self.defaults[el.name] = wave.value_at_zero() if wave is not None else 0.0
            dc = sp.Symbol(el.name)
        el.value = dc
        el.waveform = wave
        return options

    def ac_part(self, el: Element, rest: list[str], i: int) -> int:
        """`AC mag [phase]`: the small-signal stimulus; no effect on a transient (noted)."""
        i += 2
        while i < len(rest) and parse_number(rest[i]) is not None:
            i += 1
        self.notes.append(note(self.file, el.line, f"AC on {el.name.upper()}",
                               "the small-signal stimulus has no effect on a transient"))
        return i

    def waveform(self, kind: str, rest: list[str], i: int, line: int,
                 text: str) -> tuple[Waveform, int]:
        """`SIN(...)`, `PULSE(...)` or `PWL(...)` starting at rest[i]; and the index after it."""
        if i + 1 < len(rest) and rest[i + 1].lower() in _REPEATS:
            raise self.fail(f"{kind.upper()} {rest[i + 1].upper()} is not modelled: write the "
                            f"waveform out in one {kind.upper()}(...)", line, text)
        if i + 1 >= len(rest) or rest[i + 1] != "(":
            raise self.fail(f"write {kind.upper()}(...) with parentheses", line, text)
        j = i + 2
        args: list[float] = []
        while j < len(rest) and rest[j] != ")":
            token = rest[j]
            # LTspice's PWL: a time written `+dt` is dt after the previous point
            relative = kind == "pwl" and len(args) % 2 == 0 and token.startswith("+") and args
            val = evaluate(self.expression(token.lstrip("+") if relative else token, line,
                                           text), self.defaults)
            if not math.isfinite(val):
                raise self.fail(f"cannot evaluate {rest[j]!r} to a finite number", line, text)
            args.append(args[-2] + val if relative else val)
            j += 1
        if j >= len(rest):
            raise self.fail(f"{kind.upper()}( is not closed", line, text)
        need = _WAVEFORM_ARGS[kind]
        if len(args) < need or (kind == "pwl" and len(args) % 2):
            raise self.fail(f"{kind.upper()} needs at least {need} values"
                            + (" in time/value pairs" if kind == "pwl" else ""), line, text)
        most = _WAVEFORM_MOST.get(kind)
        if most is not None and len(args) > most:
            name = self.tokens(line, text)[0].lower()
            if len(args) > most + 1:
                raise self.fail(f"{kind.upper()} takes at most {most} values (and LTspice's "
                                f"Ncycles after them)", line, text)
            # Ncycles: fine on a source a signal drives (its waveform is not used), else not
            # modelled; which sources those are is known once the reading ends (`finish`)
            args = args[:most]
            self.ncycles.append((name, line, text, kind, most))
        wave = Waveform(kind, tuple(args))
        problem = wave.problem()
        if problem:
            raise self.fail(f"{kind.upper()}(...): {problem}", line, text)
        return wave, j + 1

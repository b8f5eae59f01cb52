"""Errors a user can cause, each naming what to fix."""

from __future__ import annotations


class NodalError(Exception):
    """Base class of every error nodalnet raises on purpose."""


class NetlistError(NodalError):
    """A netlist that nodalnet cannot read: says the file, the line and what to fix."""

    def __init__(self, message: str, file: str | None = None, line: int | None = None,
                 text: str | None = None):
        # a line read from an included file knows its own file and the include chain
        # (`nodal.netlist.includes.Line`); it names them rather than the top file
        file = getattr(line, "file", None) or file
        self.file = file
        self.line = line
        self.text = text
        self.reason = message
        full = f"{where(file, line)}: {message}"
        if text:
            full += f"\n    {text.strip()}"
        super().__init__(full)


def where(file: str | None, line: int | None) -> str:
    """`file:line`, and `(included from top.cir:3)` for each include that led there."""
    shown = file or "<netlist>"
    if line is not None:
        shown += f":{int(line)}"
    for outer_file, outer_line in getattr(line, "chain", ()):
        shown += f" (included from {outer_file}:{int(outer_line)})"
    return shown


class UnsupportedNetlistError(NetlistError):
    """Every construct of a netlist that nodalnet does not model, found in one reading.

    `problems` lists them as (file, line, text, reason), in the order read; the message shows
    each at its file:line (with its include chain), so one run names everything to change.
    """

    def __init__(self, problems: list[tuple[str, int, str, str]], file: str | None = None):
        self.problems = list(problems)
        first = self.problems[0] if self.problems else (file, None, "", "")
        lines = [f"{len(self.problems)} construct{'s' if len(self.problems) != 1 else ''} "
                 "that nodalnet does not model (remove or replace each):"]
        for p_file, p_line, p_text, reason in self.problems:
            lines.append(f"  {where(p_file, p_line)}: {reason}")
            if p_text:
                lines.append(f"      {p_text.strip()}")
        Exception.__init__(self, "\n".join(lines))
        self.file = first[0] or file
        self.line = first[1]
        self.text = first[2]
        self.reason = lines[0]


class ConvergenceError(NodalError):
    """Newton's method did not converge at some samples (never returned as NaN)."""

    def __init__(self, message: str, samples: list[int] | None = None):
        self.samples = list(samples or [])
        super().__init__(message)


class SignalError(NodalError):
    """An input signal (WAV file, array) that cannot drive a circuit as given."""


class CircuitNotFoundError(NodalError):
    """Neither a built-in circuit name nor an existing netlist file."""


class UnknownBackendError(NodalError, ValueError):
    """A solver backend other than "fast" (compiled) or "torch" (differentiable)."""


class UnknownParameterError(NodalError, KeyError):
    """A component value or parameter name that the circuit does not have."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class MetricError(NodalError, ValueError):
    """A figure asked of arrays that cannot give it: a target and an estimate of different
    shapes, an unsupported layout, or an unknown reduction (`nodal.metrics`)."""


class NonFiniteOutputError(NodalError):
    """The solver produced a non-finite sample; names it (never written out as NaN)."""

    def __init__(self, message: str, samples: list[int] | None = None):
        self.samples = list(samples or [])
        super().__init__(message)

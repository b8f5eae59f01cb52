"""Errors a user can cause, each naming what to fix."""

from __future__ import annotations


class NodalError(Exception):
    """Base class of every error nodalnet raises on purpose."""


class NetlistError(NodalError):
    """A netlist that nodalnet cannot read: says the file, the line and what to fix."""

    def __init__(self, message: str, file: str | None = None, line: int | None = None,
                 text: str | None = None):
        self.file = file
        self.line = line
        self.text = text
        self.reason = message
        where = file or "<netlist>"
        if line is not None:
            where += f":{line}"
        full = f"{where}: {message}"
        if text:
            full += f"\n    {text.strip()}"
        super().__init__(full)


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

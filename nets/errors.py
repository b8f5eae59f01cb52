"""Errors a user of `nets` can cause, each naming what to fix."""

from __future__ import annotations

from nodal.errors import NodalError


class NetsError(NodalError):
    """Base class of every error `nets` raises on purpose."""


class AudioShapeMismatchError(NetsError):
    """Input, states and output of a dataset (or a model and its data) do not fit together."""


class SampleRateMismatchError(NetsError):
    """A model or dataset asked to run at a rate other than the one it was made at."""


class CircuitMismatchError(NetsError):
    """A trained run asked to stand for a circuit other than the one it was trained on."""


class UnknownModelError(NetsError):
    """A model name that is not in the registry (`nets.MODELS`)."""


class RunDirectoryError(NetsError):
    """A run directory that is missing, incomplete, or already holds a different run."""


class UnknownStudyError(NetsError, ValueError):
    """A study or profile name that `nets.study` does not have, or circuits it cannot be
    narrowed to (`nets.study.narrow`)."""


class TrainingDivergedError(NetsError):
    """The loss stayed NaN/infinite after every roll-back and learning-rate cut."""


class RunBusyError(RunDirectoryError):
    """A run directory that another process is training now (it holds the folder's lock)."""


class ConfigError(NetsError, ValueError):
    """A training setting out of its range, found before any work starts.

    `field` is the setting's name (a `TrainConfig` field, or hidden, sample_rate,
    train_seconds, wav, out), `value` what was given, `allowed` the range in words."""

    def __init__(self, field: str, value, allowed: str, label: str | None = None):
        self.field, self.value, self.allowed = field, value, allowed
        self.label = label or field
        shown = value if isinstance(value, str) else repr(value)
        super().__init__(f"{self.label} {shown}: must be {allowed}")

    def renamed(self, label: str) -> "ConfigError":
        """The same error under another name for the setting (e.g. a CLI option)."""
        return ConfigError(self.field, self.value, self.allowed, label)


class KnobError(NetsError, ValueError):
    """A `--knob` or a knob value that does not fit the circuit or the run: no such `.param`,
    an empty or reversed range, a malformed spec, a value for a knob the run was not trained
    on."""

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

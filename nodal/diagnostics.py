"""What a solver run reports beside its samples: Newton's work and where it needed help.

    traj = solver.simulate(u)
    traj.diagnostics.mean_iterations          # Newton iterations per sample
    traj.diagnostics.fallback_samples         # samples solved by the fallback ladder
    traj.diagnostics.summary()                # one line for a log

Arrays are [batch, time], numpy. A run returns them with its result (`SolverTrajectory`),
never as attributes left on the solver.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from torch import Tensor

from .interface import Trajectory


@dataclass
class Diagnostics:
    """iterations: Newton iterations (law evaluations) per sample, fallbacks included (int32
    from the compiled path, int64 from torch); level: the fallback each sample needed (0 none;
    see `newton.fallback_name`), int8; failed: samples where even the fallbacks did not
    converge (bool)."""

    iterations: np.ndarray
    level: np.ndarray
    failed: np.ndarray

    @classmethod
    def empty(cls, batch: int, length: int = 0) -> "Diagnostics":
        return cls(np.zeros((batch, length), dtype=np.int64),
                   np.zeros((batch, length), dtype=np.int8),
                   np.zeros((batch, length), dtype=bool))

    @classmethod
    def concatenate(cls, parts: list["Diagnostics"], batch: int) -> "Diagnostics":
        if not parts:
            return cls.empty(batch)
        return cls(np.concatenate([p.iterations for p in parts], 1),
                   np.concatenate([p.level for p in parts], 1),
                   np.concatenate([p.failed for p in parts], 1))

    @property
    def length(self) -> int:
        return self.iterations.shape[1]

    @property
    def mean_iterations(self) -> float:
        """Newton iterations per sample: the most over the batch at each sample, averaged."""
        if not self.iterations.size:
            return 0.0
        return float(self.iterations.max(0).sum()) / self.length

    @property
    def fallback_samples(self) -> list[int]:
        """Samples (over the batch) that needed the fallback ladder and converged with it."""
        return np.flatnonzero(((self.level > 0) & ~self.failed).any(0)).tolist()

    @property
    def failures(self) -> list[int]:
        """Samples (over the batch) where Newton did not converge even with the fallbacks."""
        return np.flatnonzero(self.failed.any(0)).tolist()

    def fallback_counts(self) -> dict[str, int]:
        """How many samples (batch items counted apart) each fallback solved."""
        from .newton import fallback_name

        counts = Counter(int(v) for v in self.level[(self.level > 0) & ~self.failed])
        return {fallback_name(k): n for k, n in sorted(counts.items())}

    def summary(self) -> str:
        text = f"Newton {self.mean_iterations:.2f} iterations/sample"
        fallbacks = self.fallback_samples
        if fallbacks:
            ways = ", ".join(f"{n} by {name}" for name, n in self.fallback_counts().items())
            text += (f"; {len(fallbacks)} of {self.length} samples needed a fallback "
                     f"({ways}; first at sample {fallbacks[0]})")
        else:
            text += "; no sample needed a fallback"
        if self.failures:
            text += f"; {len(self.failures)} samples failed"
        return text


class SolverTrajectory(Trajectory):
    """A `Trajectory` (y, x, s_final: it unpacks and indexes as one) that also carries the
    run's `Diagnostics` as `.diagnostics`."""

    diagnostics: Diagnostics | None = None

    def __new__(cls, y: Tensor, x: Tensor, s_final: Tensor,
                diagnostics: Diagnostics | None = None):
        self = super().__new__(cls, y, x, s_final)
        self.diagnostics = diagnostics
        return self

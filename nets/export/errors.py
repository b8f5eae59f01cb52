"""What can go wrong exporting a run, each naming what to fix."""

from __future__ import annotations

from ..errors import NetsError


class ExportError(NetsError):
    """Base class of the export errors."""


class UnsupportedExportError(ExportError, ValueError):
    """A model kind (or shape) that the asked format cannot hold; says which formats can."""


class ExportPathError(ExportError):
    """An output path that cannot be written (a folder, a read-only place)."""

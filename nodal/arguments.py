"""Checks of the values a person gives a command, before any work starts.

Each check raises `ArgumentError` with one line that names the argument, the value given and
what is allowed ("--rate 0: a sample rate in Hz, a finite number > 0"), or returns the value.
The command line (`cli.py`) turns it into one red line and exit code 2; nothing is written,
because every check runs before the first output is opened.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterable

from .errors import NodalError


class ArgumentError(NodalError, ValueError):
    """A command-line argument outside its allowed range, or a file that cannot be used."""


def _show(value) -> str:
    return f"{value:g}" if isinstance(value, float) and math.isfinite(value) else str(value)


def positive_int(name: str, value: int, most: int | None = None) -> int:
    """An integer >= 1 (and <= `most`)."""
    if value < 1 or (most is not None and value > most):
        allowed = "an integer >= 1" if most is None else f"an integer from 1 to {most}"
        raise ArgumentError(f"{name} {value}: give {allowed}")
    return value


def finite(name: str, value: float, what: str = "a finite number") -> float:
    if not math.isfinite(value):
        raise ArgumentError(f"{name} {_show(value)}: give {what}")
    return value


def positive(name: str, value: float, what: str = "a number") -> float:
    """A finite number > 0 (`what` says what it is: "a sample rate in Hz", "seconds")."""
    if not (math.isfinite(value) and value > 0):
        raise ArgumentError(f"{name} {_show(value)}: give {what}, a finite number > 0")
    return value


def sample_rate(name: str, value: float) -> float:
    return positive(name, value, "a sample rate in Hz")


def choice(name: str, value: str, allowed: Iterable[str]) -> str:
    allowed = tuple(allowed)
    if value not in allowed:
        raise ArgumentError(f"{name} {value}: give one of {', '.join(allowed)}")
    return value


def input_file(name: str, path: str | Path, suffixes: Iterable[str] | None = None) -> Path:
    """An existing, readable file (with one of `suffixes`, if given)."""
    path = Path(path)
    if suffixes is not None:
        suffixes = tuple(suffixes)
        if path.suffix.lower() not in suffixes:
            raise ArgumentError(f"{name} {path}: give a {' or '.join(suffixes)} file")
    if not path.exists():
        raise ArgumentError(f"{name} {path}: no such file")
    if not path.is_file():
        raise ArgumentError(f"{name} {path}: is a folder, not a file")
    if not os.access(path, os.R_OK):
        raise ArgumentError(f"{name} {path}: is not readable (no permission); give a file you "
                            "can read")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ArgumentError(f"{name} {path}: cannot be read ({exc.strerror or exc})") from None
    return path


def input_folder(name: str, path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise ArgumentError(f"{name} {path}: no such folder")
    if not path.is_dir():
        raise ArgumentError(f"{name} {path}: is a file, not a folder")
    return path


def _writable_folder(name: str, shown: Path, folder: Path) -> None:
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ArgumentError(f"{name} {shown}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ArgumentError(f"{name} {shown}: no permission to write in {probe}; give a folder "
                            "you can write to")


def output_file(name: str, path: str | Path, suffixes: Iterable[str] | None = None) -> Path:
    """A file that can be written: right suffix, not a folder, its folder writable. An existing
    file is replaced (atomically, when the command has finished)."""
    path = Path(path)
    if suffixes is not None:
        suffixes = tuple(suffixes)
        if path.suffix.lower() not in suffixes:
            raise ArgumentError(f"{name} {path}: give a {' or '.join(suffixes)} file name")
    if path.is_dir():
        raise ArgumentError(f"{name} {path}: is a folder; give a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise ArgumentError(f"{name} {path}: the file is read-only")
    _writable_folder(name, path, path.parent)
    return path


def output_folder(name: str, path: str | Path) -> Path:
    """A folder that is there or can be made, and can be written in."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ArgumentError(f"{name} {path}: is a file; give a folder")
    _writable_folder(name, path, path)
    return path


def distinct(paths: dict[str, Path | None]) -> None:
    """Outputs that must not be the same file (one would silently replace the other)."""
    seen: dict[Path, str] = {}
    for name, path in paths.items():
        if path is None:
            continue
        key = Path(os.path.abspath(path))
        if key in seen:
            raise ArgumentError(f"{name} {path}: the same file as {seen[key]}; give another name")
        seen[key] = name


def assignments(name: str, items: Iterable[str]) -> dict[str, str]:
    """NAME=VALUE pairs (each name once)."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise ArgumentError(f"{name} {item}: give NAME=VALUE")
        if key.lower() in (k.lower() for k in out):
            raise ArgumentError(f"{name} {item}: {key} is given twice")
        out[key] = value
    return out


def parameter_values(name: str, items: Iterable[str], known: Iterable[str]) -> dict[str, float]:
    """--set NAME=VALUE pairs -> {name: SI value}: names the circuit has, finite numbers."""
    from .netlist import parse_number

    known = tuple(known)
    lower = {k.lower() for k in known}
    out = {}
    for key, text in assignments(name, items).items():
        if key.lower() not in lower:
            raise ArgumentError(f"{name} {key}={text}: the circuit has no {key!r}; known: "
                                f"{', '.join(known)}")
        number = parse_number(text)
        if number is None or not math.isfinite(number):
            raise ArgumentError(f"{name} {key}={text}: not a number; give a finite value "
                                "(SPICE suffixes are fine: 2.2k, 10n)")
        out[key] = number
    return out


__all__ = ["ArgumentError", "positive_int", "finite", "positive", "sample_rate", "choice",
           "input_file", "input_folder", "output_file", "output_folder", "distinct",
           "assignments", "parameter_values"]

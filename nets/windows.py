"""The training window k of TBPTT: samples between resets to the true circuit states.

    parse_window("16")   -> 16          an integer k >= 1 (1 = teacher forcing)
    parse_window("inf")  -> math.inf    free-running: no reset after the start of a segment
    parse_window("0")    -> math.inf    the older spelling of inf (run folders store 0)
    format_window(16)    -> "16";  format_window(math.inf) -> "inf"

In memory a window is an `int` >= 1 or `math.inf`, nothing else: `None` keeps its own meaning
("no window given: the model's default", or "not trained with a window", e.g. the reference
solver), and `math.inf` orders after every finite window without special cases (sorting,
`k <= segment`, the rightmost point of a plot). `to_config` gives the integer a `TrainConfig`
and a run folder's config.json hold (0 for inf); `parse_window` reads that back.
"""

from __future__ import annotations

import math
import re

from .errors import NetsError

INF = math.inf
ALLOWED = '"inf", "0" (= inf, free-running) or an integer N >= 1'

_INTEGER = re.compile(r"[0-9]+")


class WindowError(NetsError, ValueError):
    """A training window that is neither "inf", "0" (= inf) nor an integer N >= 1."""


def parse_window(text: str | int | float, what: str = "window") -> int | float:
    """A window as written by a person or stored in a file -> an int >= 1, or math.inf.

    Takes text ("inf", "0", "16"; case and surrounding spaces ignored), an int (0 = inf), or a
    float that is inf or a whole number. `what` names the value in the error (e.g. "--window").
    """
    if isinstance(text, bool):
        raise WindowError(f"{what}: {text!r} is not a window; give {ALLOWED}")
    if isinstance(text, float):
        if math.isinf(text) and text > 0:
            return INF
        if math.isfinite(text) and text.is_integer():
            return parse_window(int(text), what)
        raise WindowError(f"{what}: {text!r} is not a window; give {ALLOWED}")
    if isinstance(text, int):
        if text == 0:
            return INF
        if text >= 1:
            return text
        raise WindowError(f"{what}: {text} is negative; give {ALLOWED}")
    if not isinstance(text, str):
        raise WindowError(f"{what}: {text!r} is not a window; give {ALLOWED}")
    word = text.strip().lower()
    if word == "inf":
        return INF
    if _INTEGER.fullmatch(word):
        return parse_window(int(word), what)
    raise WindowError(f"{what}: {text!r} is not a window; give {ALLOWED}")


def is_infinite(window: int | float) -> bool:
    return window == INF


def format_window(window: int | float) -> str:
    """"inf" for math.inf, the digits of a finite window (what `parse_window` reads back)."""
    return "inf" if is_infinite(parse_window(window)) else str(int(window))


def to_config(window: int | float) -> int:
    """The integer a `TrainConfig` (and a run folder's config.json) holds: 0 for inf."""
    k = parse_window(window)
    return 0 if is_infinite(k) else int(k)


def sort_key(text: str) -> int | float:
    """Order formatted windows ("1", "16", "inf") by their value."""
    return parse_window(text)


__all__ = ["parse_window", "format_window", "to_config", "is_infinite", "sort_key",
           "WindowError", "INF", "ALLOWED"]

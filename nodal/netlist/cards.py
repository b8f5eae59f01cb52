"""Cards: lines, `+` continuations, comments, tokens, and the `*@` directives.

A netlist's first line is its title. `*` starts a comment line, `;` (anywhere: LTspice) and `$`
(at the start or after a space or tab: ngspice) an inline comment; `+` continues the previous
card; a `.control ... .endc` block is an ngspice script: its lines are skipped and the block
stands as one `.control` card (noted by the reader, `dialects`); the reading stops at `.end`,
and at a DOS end-of-file byte (0x1a). LTspice's micro sign (`10µ`) is read as `u`. Three
directives hidden in comments (`*@ input`, `*@ control`, `*@ output`) say which sources are the
model's inputs and which node its output; one on the first line is read too (the line is
still the title, as SPICE has it).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import NetlistError
from .data import GROUND, GROUND_ALIASES

Card = tuple[int, str, str]          # (first line number, kind: title/card/directive, text)
Fail = Callable[..., NetlistError]   # fail(message, line, text="") -> the error to raise

_COMMENT = re.compile(r";|(?:^|(?<=[\s,]))\$")    # LTspice `;`; ngspice `$` after a blank


def tokenize(text: str) -> list[str]:
    """Split a card into tokens; `{...}` and `'...'` stay whole; `( ) = ,` separate."""
    tokens: list[str] = []
    cur = ""
    i = 0
    while i < len(text):
        ch = text[i]
        if ch in "{'":
            close = "}" if ch == "{" else "'"
            j = text.find(close, i + 1)
            if j < 0:
                raise ValueError(f"unclosed {ch!r}")
            cur += "{" + text[i + 1:j] + "}"
            i = j + 1
            continue
        if ch.isspace() or ch in "(),=":
            if cur:
                tokens.append(cur)
                cur = ""
            if ch in "()=":
                tokens.append(ch)
        else:
            cur += ch
        i += 1
    if cur:
        tokens.append(cur)
    return tokens


def logical_cards(text: str, fail: Fail) -> list[Card]:
    """Logical cards as (first line number, kind, text): title, card, directive."""
    out: list[Card] = []
    lines = text.split("\x1a", 1)[0].splitlines()       # DOS end of file: nothing after it
    in_control = False
    for number, raw in enumerate(lines, start=1):
        if number == 1:
            out.append((1, "title", raw.lstrip("* ").strip()))
            if raw.strip().startswith("*@"):
                # a `*@` line added above someone's netlist: its title for SPICE (which reads
                # nothing there), and still the directive it says, not dropped
                out.append((1, "directive", raw.strip()[2:].strip()))
            continue
        stripped = raw.strip()
        low = stripped.lower()
        if in_control:
            if low.startswith(".endc"):
                in_control = False
            continue
        if low.split()[:1] == [".control"]:
            in_control = True
            out.append((number, "card", ".control"))
            continue
        if stripped.startswith("*@"):
            out.append((number, "directive", stripped[2:].strip()))
            continue
        if not stripped or stripped.startswith("*"):
            continue
        stripped = _COMMENT.split(stripped, 1)[0].rstrip()
        stripped = stripped.replace("\u00b5", "u").replace("\u03bc", "u")    # LTspice's 10µ
        if not stripped:            # the line held only a comment
            continue
        if stripped.startswith("+"):
            if not out or out[-1][1] != "card":
                raise fail("continuation line `+` with nothing to continue", number, raw)
            prev = out[-1]
            out[-1] = (prev[0], "card", prev[2] + " " + stripped[1:])
            continue
        if low.startswith(".end") and not low.startswith(".ends") and low.split()[0] == ".end":
            break
        out.append((number, "card", stripped))
    return out


@dataclass
class Directives:
    """The `*@ input`, `*@ control` and `*@ output` directives, with the line of each."""

    input: str | None = None
    controls: list[str] = field(default_factory=list)
    output: tuple[str, str] | None = None
    lines: dict[str, int] = field(default_factory=dict)

    def read(self, line: int, text: str, fail: Fail) -> None:
        parts = text.split(None, 1)
        word = parts[0].lower() if parts else ""
        arg = parts[1].split()[0].lower() if len(parts) > 1 else ""
        if word not in ("input", "control", "output"):
            raise fail(f"unknown directive `*@ {word}`: use `*@ input`, `*@ control` "
                       "or `*@ output`", line, text)
        if not arg:
            raise fail(f"`*@ {word}` needs a name", line, text)
        self.lines[f"{word}:{arg}"] = line
        if word == "input":
            if self.input is not None:
                raise fail("a netlist has one `*@ input`; use `*@ control` for the others",
                           line, text)
            self.input = arg
        elif word == "control":
            if arg in self.controls:
                raise fail(f"`*@ control {arg}` is given twice", line, text)
            self.controls.append(arg)
        else:
            if self.output is not None:
                raise fail("a netlist has one `*@ output`", line, text)
            nodes = [n.strip() for n in arg.split(",")]
            if len(nodes) == 1:
                nodes.append(GROUND)
            if len(nodes) != 2 or not all(nodes):
                raise fail("`*@ output` takes a node or `a,b`", line, text)
            output = tuple(GROUND if n in GROUND_ALIASES else n for n in nodes)
            if output[0] == output[1]:
                raise fail("`*@ output` names ground (or the same node twice): its voltage "
                           "is always 0; name the node whose voltage is the output",
                           line, text)
            self.output = output

    def check(self, sources: set[str], nodes: set[str], fail: Fail) -> None:
        """After the elements are read: the directives name a source and a node that exist."""
        if self.input is None:
            raise fail("no `*@ input` directive: add a line `*@ input Vin` naming the "
                       "source that follows the audio input", 1)
        if self.input in self.controls:
            raise fail(f"`*@ control {self.input}` names the `*@ input` source; a source "
                       "is the input or a control, not both",
                       self.lines.get(f"control:{self.input}", 1))
        for name in [self.input, *self.controls]:
            if name not in sources:
                line = self.lines.get(f"input:{name}") or self.lines.get(f"control:{name}", 1)
                raise fail(f"`*@` names {name}, which is not an independent source of this "
                           "netlist", line)
        if self.output is None:
            raise fail("no `*@ output` directive: add `*@ output NODE`", 1)
        for n in self.output:
            if n != GROUND and n not in nodes:
                line = next((v for k, v in self.lines.items() if k.startswith("output:")), 1)
                raise fail(f"`*@ output` names node {n!r}, which no element connects", line)

"""Directives from the command line, and the advice for a netlist that has none.

A netlist says which source follows the audio input and which node is the output with
`*@ input`, `*@ control` and `*@ output` comment lines. A netlist someone else wrote has none;
rather than editing it, give them as options:

    eq = equations("fuzz.cir", Given(input_source="v2", output_node="out"))

A name given here replaces the netlist's own directive of that kind (controls: the whole list).
A netlist left without an input or an output raises `DirectivesMissing`, whose message lists
the independent sources (time-varying ones first) and the likely output nodes (named
out/output/vout/vo, or the far side of an output coupling capacitor with a load or nothing
after it), and shows the command line to use.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

from . import devices
from .errors import NetlistError
from .netlist import GROUND, GROUND_ALIASES, Netlist
from .netlist.reader import Reader

_OUTPUT_NAMES = re.compile(r"^(v?out(put)?[_\-]?\w*|vo\d*|output\d*)$")


class DirectivesMissing(NetlistError):
    """A netlist with no `*@ input` or `*@ output` and no option that gives it; `suggestion`
    holds what it offers (sources, likely outputs)."""

    suggestion: Suggestion | None = None

    def guess(self) -> Given | None:
        """The first source and the first likely output, or None where either is missing."""
        s = self.suggestion
        if s is None or not s.sources or not s.outputs:
            return None
        return Given(s.sources[0], s.outputs[0])


class DirectiveOptionError(NetlistError):
    """`--input-source`, `--output-node` or `--control-source` names nothing in the netlist."""


@dataclass(frozen=True)
class Given:
    """The directives given on the command line (any case; None or () = the netlist's own)."""

    input_source: str | None = None
    output_node: str | None = None          # "out" or "a,b" for v(a) - v(b)
    control_sources: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.input_source or self.output_node or self.control_sources)

    def output_pair(self) -> tuple[str, str] | None:
        if not self.output_node:
            return None
        nodes = [n.strip().lower() for n in self.output_node.split(",")]
        if len(nodes) == 1:
            nodes.append(GROUND)
        if len(nodes) != 2 or not all(nodes):
            raise DirectiveOptionError(f"--output-node {self.output_node}: give a node, or "
                                       "`a,b` for v(a) - v(b)")
        pair = tuple(GROUND if n in GROUND_ALIASES else n for n in nodes)
        if pair[0] == pair[1]:
            raise DirectiveOptionError(f"--output-node {self.output_node}: names ground (or "
                                       "the same node twice), whose voltage is always 0")
        return pair  # type: ignore[return-value]


@dataclass
class Suggestion:
    """What a netlist offers as input and output."""

    sources: list[str]          # independent sources, time-varying first
    varying: list[str]          # those with a SIN/PULSE/PWL waveform
    outputs: list[str]          # likely output nodes, best first

    def command(self, file: str, given: Given = Given(), command: str = "simulate") -> str:
        """The command line that runs `file` with these (or the given) directives."""
        source = (given.input_source or (self.sources[0] if self.sources else "vin")).upper()
        node = given.output_node or (self.outputs[0] if self.outputs else "NODE")
        tail = " --input in.wav --output out.wav" if command == "simulate" else ""
        return (f"nodalnet {command} {file} --input-source {source} --output-node {node}"
                + tail)


def _top_level(node: str) -> bool:
    return "." not in node


def suggest(elements) -> Suggestion:
    """The independent sources and the likely output nodes of these elements."""
    sources = [e for e in elements if devices.record(e.kind).is_source]
    varying = [e.name for e in sources if e.waveform is not None and e.waveform.kind != "dc"]
    names = varying + [e.name for e in sources if e.name not in varying]
    touching: dict[str, list] = defaultdict(list)
    for e in elements:
        for n in set(e.nodes):
            touching[n].append(e)
    source_nodes = {n for e in sources for n in e.nodes}
    named = [n for n in touching if n != GROUND and _top_level(n) and _OUTPUT_NAMES.match(n)]
    coupled = []
    for node, els in touching.items():
        if node == GROUND or not _top_level(node) or node in source_nodes or node in named:
            continue
        caps = [e for e in els if e.kind == "C" and GROUND not in e.nodes]
        loads = [e for e in els if e.kind == "R" and GROUND in e.nodes]
        rest = [e for e in els if e not in caps and e not in loads]
        # the far side of a coupling capacitor, with at most a load resistor after it
        if len(caps) == 1 and not rest and len(loads) <= 1:
            coupled.append(node)
    def onward(node: str) -> int:
        """How many other nodes this one connects to: an output is near the end of a chain."""
        return len({m for e in touching[node] for m in e.nodes} - {node, GROUND})

    return Suggestion(names, varying, sorted(named, key=onward) + sorted(coupled, key=onward))


def _advice(file: str, missing: str, s: Suggestion, given: Given, command: str) -> str:
    if s.sources:
        sources = ", ".join(n.upper() for n in s.sources)
        kinds = (f" ({', '.join(n.upper() for n in s.varying)} with a waveform)"
                 if s.varying and len(s.varying) < len(s.sources) else "")
        have = f"its independent sources: {sources}{kinds}"
    else:
        have = ("it has no independent source at top level: add one where the signal enters "
                "(e.g. `Vin in 0 0`)")
    outs = ", ".join(s.outputs) if s.outputs else "none found; name the node to listen to"
    them = "them" if " and " in missing else "it"
    return (f"no {missing}: give {them} on the command line (or add `*@ input SOURCE` / "
            f"`*@ output NODE` lines to the netlist); {have}; likely output nodes: {outs}. "
            f"Try: {s.command(file, given, command)}")


class _GivenReader(Reader):
    """The netlist reader with the command line's directives put in before they are checked."""

    def __init__(self, text: str, file: str, given: Given, command: str,
                 folder: str | None = None):
        super().__init__(text, file, folder)
        self.given = given
        self.command = command

    def finish(self, *args, **kwargs) -> Netlist:
        """The reader's own `finish`, after the options are put into its `directives`."""
        given, d = self.given, self.directives
        sources = {e.name for e in self.elements if devices.record(e.kind).is_source}
        nodes = {n for e in self.elements for n in e.nodes}
        listed = ", ".join(sorted(s.upper() for s in sources)) or "none"
        for option, name in ([("--input-source", given.input_source)]
                             + [("--control-source", c) for c in given.control_sources]):
            if name and name.lower() not in sources:
                raise DirectiveOptionError(f"{option} {name}: not an independent source of "
                                           f"this netlist; its sources: {listed}", self.file)
        if given.input_source:
            d.input = given.input_source.lower()
        if given.control_sources:
            d.controls = [c.lower() for c in given.control_sources]
        if d.input in d.controls:
            if given.control_sources:
                raise DirectiveOptionError(f"--control-source {d.input.upper()} is also the "
                                           "input source; a source is one or the other",
                                           self.file)
            d.controls = [c for c in d.controls if c != d.input]
        try:
            pair = given.output_pair()
        except DirectiveOptionError as exc:
            raise DirectiveOptionError(exc.reason, self.file) from None
        if pair is not None:
            for n in pair:
                if n != GROUND and n not in nodes:
                    raise DirectiveOptionError(
                        f"--output-node {given.output_node}: no element connects node {n!r}",
                        self.file)
            d.output = pair
        missing = [w for w, v in (("input source", d.input), ("output node", d.output))
                   if v is None]
        if missing:
            offered = suggest(self.elements)
            error = DirectivesMissing(_advice(self.file, " and no ".join(missing), offered,
                                              given, self.command), self.file)
            error.suggestion = offered
            raise error
        return super().finish(*args, **kwargs)


def parse(text: str, file: str = "<netlist>", given: Given = Given(),
          command: str = "simulate", folder=None) -> Netlist:
    """`nodal.netlist.parse` with the given directives; `DirectivesMissing` (with advice, its
    command line that of `nodalnet COMMAND`) where the netlist and the options leave the input
    or the output unnamed. Includes are relative to `folder` (default: the file's)."""
    return _GivenReader(text, file, given, command,
                        None if folder is None else str(folder)).read()


def equations(name_or_path, given: Given = Given(), command: str = "simulate"):
    """`nodal.equations` with directives from the command line; a netlist without them raises
    `DirectivesMissing` showing `nodalnet COMMAND ...`."""
    from . import equations as derived

    return derived(name_or_path, given=given, command=command)

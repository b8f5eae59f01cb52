"""`.subckt` blocks, and the flattening of an `X` instance into prefixed element cards.

An instance `X1 in out divider` of `.subckt divider a b` gives each inner element the name
`x1.<name>`, maps the ports to the instance's nodes, and prefixes the inner nodes (`x1.mid`);
ground stays ground. Nesting is allowed to `MAX_DEPTH` levels (a deeper one is recursive).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .cards import Card, Fail

MAX_DEPTH = 10


@dataclass
class Subcircuit:
    name: str
    ports: list[str]
    body: list[Card]
    line: int


def collect(body: list[Card], fail: Fail) -> tuple[dict[str, Subcircuit], set[int], list[Card]]:
    """The `.subckt ... .ends` blocks of `body`: by name, the lines they cover, and the rest."""
    subckts: dict[str, Subcircuit] = {}
    inside: set[int] = set()
    rest: list[Card] = []
    i = 0
    while i < len(body):
        line, kind, text = body[i]
        if kind == "card" and text.lower().startswith(".subckt"):
            j = i + 1
            while j < len(body) and not body[j][2].lower().startswith(".ends"):
                j += 1
            if j == len(body):
                raise fail("`.subckt` without `.ends`", line, text)
            toks = text.lower().split()
            if len(toks) < 3:
                raise fail("`.subckt` needs a name and its nodes", line, text)
            if toks[1] in subckts:
                raise fail(f"`.subckt {toks[1]}` is defined twice (first on line "
                           f"{subckts[toks[1]].line})", line, text)
            subckts[toks[1]] = Subcircuit(toks[1], toks[2:], list(body[i + 1:j]), line)
            inside.update(ln for ln, _, _ in body[i:j + 1])
            i = j + 1
            continue
        rest.append(body[i])
        i += 1
    return subckts, inside, rest


def expand(subckts: dict[str, Subcircuit], toks: list[str], name: str,
           node: Callable[[str], str], line: int, text: str, depth: int,
           fail: Fail) -> Iterator[tuple[int, str, str, dict[str, str]]]:
    """The element cards of instance `name` (tokens `toks`): (line, text, prefix, port map)."""
    if depth >= MAX_DEPTH:
        raise fail(f"subcircuits nested more than {MAX_DEPTH} deep (recursive?)", line, text)
    if len(toks) < 2:
        raise fail("X needs nodes and a subcircuit name", line, text)
    sub_name = toks[-1].lower()
    if sub_name not in subckts:
        raise fail(f"no `.subckt {sub_name}` is defined", line, text)
    sub = subckts[sub_name]
    nodes = toks[1:-1]
    if len(nodes) != len(sub.ports):
        raise fail(f"subcircuit {sub_name} has {len(sub.ports)} nodes, {name} gives "
                   f"{len(nodes)}", line, text)
    inner = {p: node(n) for p, n in zip(sub.ports, nodes, strict=True)}
    for ln, kind, tx in sub.body:
        if kind == "card" and not tx.startswith("."):
            yield ln, tx, name + ".", inner

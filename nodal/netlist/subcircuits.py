"""`.subckt` blocks and `X` instances: ports, parameters and what is local to a subcircuit.

`.subckt NAME port... [PARAMS:] [a=1 b={2*a}]` ... `.ends` defines a subcircuit; `PARAMS:` is
optional before the `name=value` defaults (as ngspice reads them), and a subcircuit may have no
ports. An instance `X1 node... NAME [PARAMS:] [a=3]` maps the ports to its nodes and may
override defaults. The reader (`reader.Reader.instance`) flattens an instance into element
cards: each inner element is named `x1.<name>`, inner nodes become `x1.<node>` (ground stays
ground), a default may use the parameters before it, an override is read in the caller's
scope. `.param`, `.model` and nested `.subckt` cards inside a block are local to it: a model
defined in a subcircuit is renamed per instance (`x1.<model>`), as ngspice does. A subcircuit
that (directly or through others) instantiates itself is a named error; one with no instance
is simply unused.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .cards import Card, Fail

MAX_DEPTH = 20


@dataclass
class Subcircuit:
    name: str
    ports: list[str]
    params: list[tuple[str, str]]       # (name, default value token), in order
    body: list[Card]
    line: int
    text: str = ""
    instances: list[str] = field(default_factory=list)


def split_params(toks: list[str], fail: Fail, line: int, text: str,
                 what: str) -> tuple[list[str], list[tuple[str, str]]]:
    """Tokens up to `PARAMS:` or the first `name=`, and the `name=value` pairs after them."""
    start = len(toks)
    for k, tok in enumerate(toks):
        if tok.lower() == "params:" or (k + 1 < len(toks) and toks[k + 1] == "="):
            start = k
            break
    head = [t for t in toks[:start] if t not in "()"]
    rest = toks[start:]
    if rest and rest[0].lower() == "params:":
        rest = rest[1:]
    pairs: list[tuple[str, str]] = []
    i = 0
    while i < len(rest):
        if i + 2 >= len(rest) or rest[i + 1] != "=":
            raise fail(f"{what}: parameters are name=value pairs, got {rest[i]!r}", line, text)
        pairs.append((rest[i].lower(), rest[i + 2]))
        i += 3
    names = [n for n, _ in pairs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise fail(f"{what}: parameter {', '.join(twice)} is given twice", line, text)
    return head, pairs


def collect(body: list[Card], fail: Fail, tokens) -> tuple[dict[str, Subcircuit], list[Card]]:
    """The `.subckt ... .ends` blocks of `body` (nested blocks stay inside their parent's
    body), by name, and the cards outside them."""
    subckts: dict[str, Subcircuit] = {}
    rest: list[Card] = []
    i = 0
    while i < len(body):
        line, kind, text = body[i]
        if kind == "card" and _word(text) == ".subckt":
            j, depth = i + 1, 1
            while j < len(body):
                word = _word(body[j][2]) if body[j][1] == "card" else ""
                depth += (word == ".subckt") - (word == ".ends")
                if depth == 0:
                    break
                j += 1
            if j == len(body):
                raise fail("`.subckt` without `.ends`", line, text)
            head, params = split_params(tokens(line, text)[1:], fail, line, text, "`.subckt`")
            if not head:
                raise fail("`.subckt` needs a name (and its ports, if any)", line, text)
            name = head[0].lower()
            if name in subckts:
                raise fail(f"`.subckt {name}` is defined twice (first on line "
                           f"{subckts[name].line})", line, text)
            ports = [p.lower() for p in head[1:]]
            if len(set(ports)) != len(ports):
                raise fail(f"`.subckt {name}` names a port twice", line, text)
            subckts[name] = Subcircuit(name, ports, params, list(body[i + 1:j]), line, text)
            i = j + 1
            continue
        if kind == "card" and _word(text) == ".ends":
            raise fail("`.ends` without a `.subckt` to close", line, text)
        rest.append(body[i])
        i += 1
    return subckts, rest


def _word(text: str) -> str:
    words = text.split()
    return words[0].lower() if words else ""


def instance_parts(toks: list[str], fail: Fail, line: int,
                   text: str) -> tuple[list[str], str, list[tuple[str, str]]]:
    """An `X` card's nodes, subcircuit name and parameter overrides."""
    head, params = split_params(toks[1:], fail, line, text, toks[0])
    if not head:
        raise fail(f"{toks[0]} needs its nodes and a subcircuit name", line, text)
    return head[:-1], head[-1].lower(), params

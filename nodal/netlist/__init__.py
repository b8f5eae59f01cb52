"""Read an ngspice-compatible SPICE netlist into plain data.

The subset: R, C, L, V, I (DC, SIN, PULSE, PWL), D, Q, J, E, G, X (flattened `.subckt`),
`.param` with `{expressions}`, `.model`, value suffixes, `*` comments, `;`/`$` inline comments,
`+` continuation lines, and three directives hidden in comments that ngspice ignores::

    *@ input  Vin        the source that follows the audio input
    *@ control Vlfo      a source that a control signal may drive (repeatable)
    *@ output out        the output node, or `a,b` for v(a) - v(b)

Names are case-insensitive and kept lower-case, as ngspice does. Component values, `.param`
parameters and `.model` parameters become Sympy symbols with numeric defaults, so the same
equations serve for any value and can be differentiated. All values are SI units.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import sympy as sp

from ..errors import NetlistError
from .expressions import Scope, parse_expression, parse_number
from .values import check_element, check_model, check_values, decode, evaluate

GROUND = "0"
_GROUND_ALIASES = {"0", "gnd"}

# Defaults as ngspice has them, for the model parameters nodalnet uses.
MODEL_DEFAULTS: dict[str, dict[str, float]] = {
    "d": {"is": 1e-14, "n": 1.0, "rs": 0.0},
    "npn": {"is": 1e-16, "bf": 100.0, "br": 1.0, "nf": 1.0, "nr": 1.0, "vaf": math.inf,
            "var": math.inf},
    "pnp": {"is": 1e-16, "bf": 100.0, "br": 1.0, "nf": 1.0, "nr": 1.0, "vaf": math.inf,
            "var": math.inf},
    "njf": {"vto": -2.0, "beta": 1e-4, "lambda": 0.0, "is": 1e-14, "n": 1.0},
    "pjf": {"vto": -2.0, "beta": 1e-4, "lambda": 0.0, "is": 1e-14, "n": 1.0},
}
# Element letters and how many nodes each takes.
_NODE_COUNT = {"r": 2, "c": 2, "l": 2, "v": 2, "i": 2, "d": 2, "e": 4, "g": 4, "q": 3, "j": 3}
_IGNORED_DOT_CARDS = {".tran", ".option", ".options", ".end", ".save", ".print", ".plot",
                      ".probe", ".meas", ".measure", ".title", ".temp", ".op", ".ac", ".dc",
                      ".global", ".width", ".four", ".ic", ".nodeset", ".csparam"}


@dataclass
class Waveform:
    """An independent source's time function, as ngspice evaluates it (volts or amperes)."""

    kind: str                      # "dc", "sin", "pulse", "pwl"
    args: tuple[float, ...]

    def at(self, t, period: float | None = None):
        """Value at times `t` (seconds, numpy array); `period` is the time step for defaults."""
        import numpy as np

        t = np.asarray(t, dtype=float)
        a = self.args
        if self.kind == "dc":
            return np.full_like(t, a[0])
        if self.kind == "sin":
            vo, va, freq = a[0], a[1], a[2]
            td = a[3] if len(a) > 3 else 0.0
            theta = a[4] if len(a) > 4 else 0.0
            phase = math.radians(a[5]) if len(a) > 5 else 0.0
            tt = np.maximum(t - td, 0.0)
            return vo + va * np.sin(2 * math.pi * freq * tt + phase) * np.exp(-tt * theta)
        if self.kind == "pulse":
            v1, v2 = a[0], a[1]
            step = period or 1e-6
            td = a[2] if len(a) > 2 else 0.0
            tr = a[3] if len(a) > 3 and a[3] > 0 else step
            tf = a[4] if len(a) > 4 and a[4] > 0 else step
            pw = a[5] if len(a) > 5 else math.inf
            per = a[6] if len(a) > 6 and a[6] > 0 else math.inf
            tt = t - td
            if math.isfinite(per):
                tt = np.where(tt > 0, np.mod(tt, per), tt)
            out = np.full_like(t, v1)
            rise = (tt > 0) & (tt < tr)
            out = np.where(rise, v1 + (v2 - v1) * tt / tr, out)
            out = np.where((tt >= tr) & (tt <= tr + pw), v2, out)
            fall = (tt > tr + pw) & (tt < tr + pw + tf)
            out = np.where(fall, v2 + (v1 - v2) * (tt - tr - pw) / tf, out)
            return out
        if self.kind == "pwl":
            times, values = np.asarray(a[0::2]), np.asarray(a[1::2])
            return np.interp(t, times, values)
        raise ValueError(self.kind)

    def problem(self) -> str | None:
        """Why these arguments make no waveform ngspice would run, or None."""
        a = self.args
        if self.kind == "sin":
            if a[2] < 0:
                return f"the frequency {a[2]:g} Hz is negative"
            if len(a) > 3 and a[3] < 0:
                return f"the delay {a[3]:g} s is negative"
            if len(a) > 4 and a[4] < 0:
                return (f"the damping factor {a[4]:g} 1/s is negative: the sine would grow "
                        "without bound")
        if self.kind == "pulse":
            names = ("delay", "rise time", "fall time", "pulse width", "period")
            for name, v in zip(names, a[2:7]):
                if v < 0:
                    return f"the {name} {v:g} s is negative"
        if self.kind == "pwl":
            times = a[0::2]
            if any(t1 < t0 for t0, t1 in zip(times, times[1:])):
                return "the times must not decrease"
        return None

    def value_at_zero(self) -> float:
        return float(self.at([0.0])[0])


@dataclass
class Element:
    """One circuit element: its SPICE letter, nodes, value (a Sympy expression) and model."""

    name: str
    kind: str                       # the SPICE letter, upper case: R C L V I D Q J E G
    nodes: tuple[str, ...]
    value: sp.Expr | None = None    # R, C, L; gain of E/G; DC value of V/I
    model: str | None = None
    waveform: Waveform | None = None
    line: int = 0
    text: str = ""


@dataclass
class Model:
    name: str
    type: str                       # d, npn, pnp, njf, pjf
    params: dict[str, sp.Expr]      # every parameter (defaults filled in) as a Sympy expression
    line: int = 0


@dataclass
class Netlist:
    """A parsed netlist. `defaults` holds the value of every free symbol (SI units)."""

    title: str
    file: str
    elements: list[Element]
    models: dict[str, Model]
    params: dict[str, sp.Expr]
    defaults: dict[str, float]
    input: str | None
    controls: list[str]
    output: tuple[str, str]
    directive_lines: dict[str, int] = field(default_factory=dict)
    text: str = ""

    def element(self, name: str) -> Element:
        for e in self.elements:
            if e.name == name.lower():
                return e
        raise KeyError(name)

    @property
    def nodes(self) -> list[str]:
        seen: dict[str, None] = {}
        for e in self.elements:
            for n in e.nodes:
                if n != GROUND:
                    seen.setdefault(n, None)
        return list(seen)

    def error(self, message: str, element: Element | None = None,
              line: int | None = None) -> NetlistError:
        if element is not None:
            return NetlistError(message, self.file, element.line, element.text)
        return NetlistError(message, self.file, line)


def _tokenize(text: str) -> list[str]:
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


class _Reader:
    def __init__(self, text: str, file: str):
        self.file = file
        self.text = text
        self.params: dict[str, sp.Expr] = {}
        self.defaults: dict[str, float] = {}
        self.models: dict[str, Model] = {}
        self.elements: list[Element] = []
        self.subckts: dict[str, tuple[list[str], list[tuple[int, str, str]], int]] = {}
        self.input: str | None = None
        self.controls: list[str] = []
        self.output: tuple[str, str] | None = None
        self.directive_lines: dict[str, int] = {}

    def fail(self, message: str, line: int, text: str = "") -> NetlistError:
        return NetlistError(message, self.file, line, text)

    # -- values ---------------------------------------------------------------------------
    def expression(self, token: str, line: int, text: str) -> sp.Expr:
        """A value: a number with suffix, a `.param` name, or a `{expression}` (parsed by
        `expressions.parse_expression`, never evaluated as Python)."""
        number = parse_number(token)
        if number is not None:
            return sp.Float(number)
        body = token[1:-1] if token.startswith("{") and token.endswith("}") else token
        return parse_expression(body, Scope(self.params), self.file, line, text)

    def free_value(self, symbol_name: str, token: str, line: int, text: str) -> sp.Expr:
        """A literal number gets its own symbol (trainable); an expression stays an expression."""
        expr = self.expression(token, line, text)
        if expr.is_number:
            self.defaults[symbol_name] = float(expr)
            return sp.Symbol(symbol_name)
        return expr

    # -- cards ----------------------------------------------------------------------------
    def read(self) -> Netlist:
        cards = self.cards()
        title = cards[0][2] if cards and cards[0][1] == "title" else ""
        body = [c for c in cards if c[1] != "title"]
        # .param and .model first pass: parameters may be used before the line defining them
        # in ngspice; we ask for definition order only among .param lines themselves.
        for line, kind, text in body:
            if kind == "card" and text.lower().startswith(".param"):
                self.param_card(line, text)
        inside: set[int] = set()
        i = 0
        while i < len(body):
            line, kind, text = body[i]
            if kind == "directive":
                self.directive(line, text)
            elif text.lower().startswith(".subckt"):
                j = i + 1
                while j < len(body) and not body[j][2].lower().startswith(".ends"):
                    j += 1
                if j == len(body):
                    raise self.fail("`.subckt` without `.ends`", line, text)
                toks = text.lower().split()
                if len(toks) < 3:
                    raise self.fail("`.subckt` needs a name and its nodes", line, text)
                self.subckts[toks[1]] = (toks[2:], [(ln, t, tx) for ln, t, tx in body[i + 1:j]],
                                         line)
                inside.update(ln for ln, _, _ in body[i:j + 1])
                i = j
            elif text.lower().startswith(".model"):
                self.model_card(line, text)
            i += 1
        for line, kind, text in body:
            if kind != "card" or line in inside:
                continue
            low = text.lower()
            if low.startswith("."):
                continue
            self.element_card(line, text, prefix="", node_map={})
        for line, kind, text in body:
            low = text.lower()
            if kind == "card" and low.startswith(".") and not (
                    low.startswith((".param", ".model", ".subckt", ".ends"))):
                word = low.split()[0]
                if word not in _IGNORED_DOT_CARDS:
                    raise self.fail(f"nodalnet does not support the {word} card; remove it or "
                                    f"use one of .param .model .subckt", line, text)
        return self.finish(title)

    def cards(self) -> list[tuple[int, str, str]]:
        """Logical cards as (first line number, kind, text): title, card, directive."""
        out: list[tuple[int, str, str]] = []
        lines = self.text.splitlines()
        in_control = False
        for number, raw in enumerate(lines, start=1):
            if number == 1:
                out.append((1, "title", raw.lstrip("* ").strip()))
                continue
            stripped = raw.strip()
            low = stripped.lower()
            if in_control:
                if low.startswith(".endc"):
                    in_control = False
                continue
            if low.startswith(".control"):
                in_control = True
                continue
            if stripped.startswith("*@"):
                out.append((number, "directive", stripped[2:].strip()))
                continue
            if not stripped or stripped.startswith("*"):
                continue
            stripped = re.split(r";|\s\$\s|\s\$$", stripped)[0].rstrip()
            if not stripped:            # the line held only a comment
                continue
            if stripped.startswith("+"):
                if not out or out[-1][1] != "card":
                    raise self.fail("continuation line `+` with nothing to continue", number, raw)
                prev = out[-1]
                out[-1] = (prev[0], "card", prev[2] + " " + stripped[1:])
                continue
            if low.startswith(".end") and not low.startswith(".ends") and low.split()[0] == ".end":
                break
            out.append((number, "card", stripped))
        return out

    def directive(self, line: int, text: str) -> None:
        parts = text.split(None, 1)
        word = parts[0].lower() if parts else ""
        arg = parts[1].split()[0].lower() if len(parts) > 1 else ""
        if word not in ("input", "control", "output"):
            raise self.fail(f"unknown directive `*@ {word}`: use `*@ input`, `*@ control` "
                            "or `*@ output`", line, text)
        if not arg:
            raise self.fail(f"`*@ {word}` needs a name", line, text)
        self.directive_lines[f"{word}:{arg}"] = line
        if word == "input":
            if self.input is not None:
                raise self.fail("a netlist has one `*@ input`; use `*@ control` for the others",
                                line, text)
            self.input = arg
        elif word == "control":
            if arg in self.controls:
                raise self.fail(f"`*@ control {arg}` is given twice", line, text)
            self.controls.append(arg)
        else:
            if self.output is not None:
                raise self.fail("a netlist has one `*@ output`", line, text)
            nodes = [n.strip() for n in arg.split(",")]
            if len(nodes) == 1:
                nodes.append(GROUND)
            if len(nodes) != 2 or not all(nodes):
                raise self.fail("`*@ output` takes a node or `a,b`", line, text)
            output = tuple(GROUND if n in _GROUND_ALIASES else n for n in nodes)
            if output[0] == output[1]:
                raise self.fail("`*@ output` names ground (or the same node twice): its voltage "
                                "is always 0; name the node whose voltage is the output",
                                line, text)
            self.output = output

    def param_card(self, line: int, text: str) -> None:
        try:
            toks = _tokenize(text)[1:]
        except ValueError as exc:
            raise self.fail(str(exc), line, text) from None
        i = 0
        while i < len(toks):
            if i + 2 >= len(toks) or toks[i + 1] != "=":
                raise self.fail("`.param` expects name=value pairs", line, text)
            name, token = toks[i].lower(), toks[i + 2]
            expr = self.expression(token, line, text)
            if expr.is_number:
                self.defaults[name] = float(expr)
                self.params[name] = sp.Symbol(name)
            else:
                self.params[name] = expr
            i += 3

    def model_card(self, line: int, text: str) -> None:
        try:
            toks = [t for t in _tokenize(text) if t not in "()"]
        except ValueError as exc:
            raise self.fail(str(exc), line, text) from None
        if len(toks) < 3:
            raise self.fail("`.model` needs a name and a type (D, NPN, PNP, NJF, PJF)", line, text)
        name, mtype = toks[1].lower(), toks[2].lower()
        if name in self.models:
            raise self.fail(f"`.model {name}` is defined twice (first on line "
                            f"{self.models[name].line}); ngspice would use one of them "
                            "silently: remove or rename one", line, text)
        if mtype not in MODEL_DEFAULTS:
            raise self.fail(f"model type {mtype.upper()!r} is not supported; use one of "
                            f"{', '.join(t.upper() for t in MODEL_DEFAULTS)}", line, text)
        params: dict[str, sp.Expr] = {}
        rest = toks[3:]
        i = 0
        while i < len(rest):
            if i + 2 >= len(rest) or rest[i + 1] != "=":
                raise self.fail("model parameters are name=value pairs", line, text)
            pname = rest[i].lower()
            params[pname] = self.free_value(f"{name}.{pname}", rest[i + 2], line, text)
            i += 3
        for pname, default in MODEL_DEFAULTS[mtype].items():
            if pname not in params:
                if math.isinf(default):
                    params[pname] = sp.oo
                else:
                    self.defaults[f"{name}.{pname}"] = default
                    params[pname] = sp.Symbol(f"{name}.{pname}")
        self.models[name] = Model(name, mtype, params, line)
        check_model(self.models[name], self.defaults, {}, self.file, text)

    def element_card(self, line: int, text: str, prefix: str, node_map: dict[str, str],
                     depth: int = 0) -> None:
        try:
            toks = _tokenize(text)
        except ValueError as exc:
            raise self.fail(str(exc), line, text) from None
        name = prefix + toks[0].lower()
        letter = toks[0][0].lower()

        def node(tok: str) -> str:
            tok = tok.lower()
            if tok in _GROUND_ALIASES:
                return GROUND
            return node_map.get(tok, prefix + tok if prefix else tok)

        if letter == "x":
            if depth > 10:
                raise self.fail("subcircuits nested too deep (recursive?)", line, text)
            if len(toks) < 2:
                raise self.fail("X needs nodes and a subcircuit name", line, text)
            sub = toks[-1].lower()
            if sub not in self.subckts:
                raise self.fail(f"no `.subckt {sub}` is defined", line, text)
            ports, body, _ = self.subckts[sub]
            nodes = toks[1:-1]
            if len(nodes) != len(ports):
                raise self.fail(f"subcircuit {sub} has {len(ports)} nodes, {name} gives "
                                f"{len(nodes)}", line, text)
            inner = {p: node(n) for p, n in zip(ports, nodes)}
            for ln, kind, tx in body:
                if kind == "card" and not tx.startswith("."):
                    self.element_card(ln, tx, prefix=name + ".", node_map=inner, depth=depth + 1)
            return
        if letter not in _NODE_COUNT:
            raise self.fail(f"unknown element {toks[0]!r}: nodalnet reads R C L V I D Q J E G X",
                            line, text)
        count = _NODE_COUNT[letter]
        if len(toks) < count + 1:
            raise self.fail(f"{toks[0]} needs {count} nodes", line, text)
        nodes = tuple(node(t) for t in toks[1:count + 1])
        rest = toks[count + 1:]
        kind = letter.upper()
        el = Element(name, kind, nodes, line=line, text=text)
        if letter in "rcl":
            if not rest:
                raise self.fail(f"{toks[0]} needs a value", line, text)
            token = rest[0]
            if letter == "r" and token.lower() == "r" and len(rest) >= 3 and rest[1] == "=":
                token = rest[2]
            el.value = self._value(name, token, line, text)
        elif letter in "eg":
            if not rest:
                raise self.fail(f"{toks[0]} needs a gain", line, text)
            el.value = self._value(name, rest[0], line, text)
        elif letter in "dqj":
            if not rest:
                raise self.fail(f"{toks[0]} needs a model name", line, text)
            mname = rest[0].lower()
            if mname not in self.models:
                raise self.fail(f"no `.model {mname}` is defined for {toks[0]}", line, text)
            want = {"D": ("d",), "Q": ("npn", "pnp"), "J": ("njf", "pjf")}[kind]
            if self.models[mname].type not in want:
                raise self.fail(f"model {mname} is {self.models[mname].type.upper()}, but "
                                f"{toks[0]} needs {'/'.join(w.upper() for w in want)}", line, text)
            el.model = mname
        else:
            self.source(el, rest)
        check_element(el, self.defaults, {}, self.file)
        self.elements.append(el)

    def _value(self, name: str, token: str, line: int, text: str) -> sp.Expr:
        if not (token.startswith("{") or parse_number(token) is not None
                or token.lower() in self.params):
            raise self.fail(f"bad value {token!r}: use a number with an optional suffix "
                            "(2.2k, 10n, 1meg) or a {expression}", line, text)
        if token.lower() in self.params:
            return self.params[token.lower()]
        return self.free_value(name, token, line, text)

    def source(self, el: Element, rest: list[str]) -> None:
        line, text = el.line, el.text
        dc: sp.Expr | None = None
        wave: Waveform | None = None
        i = 0
        while i < len(rest):
            tok = rest[i].lower()
            if tok == "dc":
                if i + 1 >= len(rest):
                    raise self.fail("DC needs a value", line, text)
                dc = self._value(el.name, rest[i + 1], line, text)
                i += 2
            elif tok == "ac":
                i += 2
                while i < len(rest) and parse_number(rest[i]) is not None:
                    i += 1
            elif tok in ("sin", "pulse", "pwl"):
                if i + 1 >= len(rest) or rest[i + 1] != "(":
                    raise self.fail(f"write {tok.upper()}(...) with parentheses", line, text)
                j = i + 2
                args: list[float] = []
                while j < len(rest) and rest[j] != ")":
                    val = evaluate(self.expression(rest[j], line, text), self.defaults)
                    if not math.isfinite(val):
                        raise self.fail(f"cannot evaluate {rest[j]!r} to a finite number",
                                        line, text)
                    args.append(val)
                    j += 1
                if j >= len(rest):
                    raise self.fail(f"{tok.upper()}( is not closed", line, text)
                need = {"sin": 3, "pulse": 2, "pwl": 2}[tok]
                if len(args) < need or (tok == "pwl" and len(args) % 2):
                    raise self.fail(f"{tok.upper()} needs at least {need} values"
                                    + (" in time/value pairs" if tok == "pwl" else ""),
                                    line, text)
                wave = Waveform(tok, tuple(args))
                problem = wave.problem()
                if problem:
                    raise self.fail(f"{tok.upper()}(...): {problem}", line, text)
                i = j + 1
            elif dc is None and (parse_number(rest[i]) is not None or rest[i].startswith("{")
                                 or tok in self.params):
                dc = self._value(el.name, rest[i], line, text)
                i += 1
            else:
                raise self.fail(f"cannot read {rest[i]!r} in a source: use DC value, SIN(...), "
                                "PULSE(...) or PWL(...)", line, text)
        if dc is None:
            if wave is not None:
                self.defaults[el.name] = wave.value_at_zero()
            else:
                self.defaults[el.name] = 0.0
            dc = sp.Symbol(el.name)
        el.value = dc
        el.waveform = wave

    def finish(self, title: str) -> Netlist:
        names: dict[str, Element] = {}
        for e in self.elements:
            if e.name in names:
                raise self.fail(f"element {e.name} is defined twice (first on line "
                                f"{names[e.name].line})", e.line, e.text)
            names[e.name] = e
        sources = {e.name for e in self.elements if e.kind in "VI"}
        if self.input is None:
            raise self.fail("no `*@ input` directive: add a line `*@ input Vin` naming the "
                            "source that follows the audio input", 1)
        if self.input in self.controls:
            raise self.fail(f"`*@ control {self.input}` names the `*@ input` source; a source "
                            "is the input or a control, not both",
                            self.directive_lines.get(f"control:{self.input}", 1))
        for name in [self.input, *self.controls]:
            if name not in sources:
                line = self.directive_lines.get(f"input:{name}") or self.directive_lines.get(
                    f"control:{name}", 1)
                raise self.fail(f"`*@` names {name}, which is not a V or I source of this "
                                "netlist", line)
        if self.output is None:
            raise self.fail("no `*@ output` directive: add `*@ output NODE`", 1)
        nodes = {n for e in self.elements for n in e.nodes}
        for n in self.output:
            if n != GROUND and n not in nodes:
                raise self.fail(f"`*@ output` names node {n!r}, which no element connects",
                                self.directive_lines.get(f"output:{','.join(self.output)}", 1))
        return Netlist(title=title, file=self.file, elements=self.elements, models=self.models,
                       params=self.params, defaults=self.defaults, input=self.input,
                       controls=self.controls, output=self.output,
                       directive_lines=self.directive_lines, text=self.text)


def parse(text: str, file: str = "<netlist>") -> Netlist:
    """Parse netlist text. Raises `NetlistError` naming the file and line of any problem."""
    return _Reader(text, file).read()


def read_text(path: str | Path) -> str:
    """A netlist file's text: read as bytes and decoded by `values.decode` (UTF-8, UTF-16 with
    a mark, cp1252 or latin-1; a DOS end-of-file byte dropped)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise NetlistError(f"cannot read the netlist: {exc.strerror}", str(path)) from None
    return decode(data, str(path))


def read(path: str | Path) -> Netlist:
    """Read and parse a `.cir` file."""
    return parse(read_text(path), str(Path(path)))

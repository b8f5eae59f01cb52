"""The reader: cards in, a `Netlist` out, every element read as its device record says.

`.param` lines are read first (in order: a parameter may use those before it), then the
directives, `.subckt` blocks and `.model` cards, then the elements (flattening `X` instances),
then any dot card nodalnet does not model is named. The element letters, their node counts,
how their cards read, their model types and the rules of their values come from the device
registry (`nodal.devices`); nothing here switches on a letter.
"""

from __future__ import annotations

import keyword
import math
import re

import sympy as sp

from .. import devices
from ..errors import NetlistError
from . import subcircuits
from .cards import IGNORED_DOT_CARDS, Directives, logical_cards, tokenize
from .data import GROUND, GROUND_ALIASES, Element, Model, Netlist, Waveform
from .expressions import Scope, parse_expression, parse_number
from .values import check, check_element, check_model, evaluate

_WAVEFORM_ARGS = {"sin": 3, "pulse": 2, "pwl": 2}     # the fewest values each one takes


class Reader:
    def __init__(self, text: str, file: str):
        self.file = file
        self.text = text
        self.params: dict[str, sp.Expr] = {}
        self.defaults: dict[str, float] = {}
        self.models: dict[str, Model] = {}
        self.elements: list[Element] = []
        self.names: dict[str, Element] = {}
        self.subckts: dict[str, subcircuits.Subcircuit] = {}
        self.directives = Directives()
        self.notes: list[str] = []

    def fail(self, message: str, line: int | None, text: str = "") -> NetlistError:
        return NetlistError(message, self.file, line, text)

    def tokens(self, line: int, text: str) -> list[str]:
        try:
            return tokenize(text)
        except ValueError as exc:
            raise self.fail(str(exc), line, text) from None

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

    def value(self, name: str, token: str, line: int, text: str) -> sp.Expr:
        if token.lower() in self.params:
            return self.params[token.lower()]
        if not (token.startswith("{") or parse_number(token) is not None):
            raise self.fail(f"bad value {token!r}: use a number with an optional suffix "
                            "(2.2k, 10n, 1meg) or a {expression}", line, text)
        return self.free_value(name, token, line, text)

    # -- the whole netlist ----------------------------------------------------------------
    def read(self) -> Netlist:
        cards = logical_cards(self.text, self.fail)
        title = cards[0][2] if cards and cards[0][1] == "title" else ""
        body = [c for c in cards if c[1] != "title"]
        for line, kind, text in body:
            if kind == "card" and text.lower().startswith(".param"):
                self.param_card(line, text)
        self.subckts, _, outside = subcircuits.collect(body, self.fail)
        for line, kind, text in body:       # a .model inside a .subckt is read as global
            if kind == "directive":
                self.directives.read(line, text, self.fail)
            elif text.lower().startswith(".model"):
                self.model_card(line, text)
        for line, kind, text in outside:
            if kind == "card" and not text.startswith("."):
                self.element_card(line, text, prefix="", node_map={})
        for line, kind, text in body:
            low = text.lower()
            if kind == "card" and low.startswith(".") and not (
                    low.startswith((".param", ".model", ".subckt", ".ends"))):
                word = low.split()[0]
                if word not in IGNORED_DOT_CARDS:
                    raise self.fail(f"nodalnet does not support the {word} card; remove it or "
                                    f"use one of .param .model .subckt", line, text)
        return self.finish(title)

    def param_card(self, line: int, text: str) -> None:
        toks = self.tokens(line, text)[1:]
        i = 0
        while i < len(toks):
            if i + 2 >= len(toks) or toks[i + 1] != "=":
                raise self.fail("`.param` expects name=value pairs", line, text)
            name, token = toks[i].lower(), toks[i + 2]
            if not re.fullmatch(r"[a-z_][a-z0-9_]*", name) or name.startswith("__") or (
                    keyword.iskeyword(name)):
                raise self.fail(f"`.param {name}`: a parameter name is a letter or `_` "
                                "followed by letters, digits or `_`", line, text)
            expr = self.expression(token, line, text)
            if expr.is_number:
                self.defaults[name] = float(expr)
                self.params[name] = sp.Symbol(name)
            else:
                self.params[name] = expr
            i += 3

    def model_card(self, line: int, text: str) -> None:
        toks = [t for t in self.tokens(line, text) if t not in "()"]
        known = ", ".join(t.upper() for t in devices.MODEL_TYPES)
        if len(toks) < 3:
            raise self.fail(f"`.model` needs a name and a type ({known})", line, text)
        name, type_name = toks[1].lower(), toks[2].lower()
        if name in self.models:
            raise self.fail(f"`.model {name}` is defined twice (first on line "
                            f"{self.models[name].line}); ngspice would use one of them "
                            "silently: remove or rename one", line, text)
        mtype = devices.model_type(type_name)
        if mtype is None:
            raise self.fail(f"model type {type_name.upper()!r} is not supported; use one of "
                            f"{known}", line, text)
        params: dict[str, sp.Expr] = {}
        rest = toks[3:]
        i = 0
        while i < len(rest):
            if i + 2 >= len(rest) or rest[i + 1] != "=":
                raise self.fail("model parameters are name=value pairs", line, text)
            pname = rest[i].lower()
            params[pname] = self.free_value(f"{name}.{pname}", rest[i + 2], line, text)
            i += 3
        for pname, default in mtype.defaults.items():
            if pname not in params:
                if math.isinf(default):
                    params[pname] = sp.oo
                else:
                    self.defaults[f"{name}.{pname}"] = default
                    params[pname] = sp.Symbol(f"{name}.{pname}")
        self.models[name] = Model(name, mtype.name, params, line)
        check_model(self.models[name], self.defaults, {}, self.file, text)

    # -- elements -------------------------------------------------------------------------
    def element_card(self, line: int, text: str, prefix: str, node_map: dict[str, str],
                     depth: int = 0) -> None:
        toks = self.tokens(line, text)
        name = prefix + toks[0].lower()

        def node(tok: str) -> str:
            tok = tok.lower()
            if tok in GROUND_ALIASES:
                return GROUND
            return node_map.get(tok, prefix + tok if prefix else tok)

        if toks[0][0].lower() == "x":
            for ln, tx, inner_prefix, inner in subcircuits.expand(
                    self.subckts, toks, name, node, line, text, depth, self.fail):
                self.element_card(ln, tx, prefix=inner_prefix, node_map=inner, depth=depth + 1)
            return
        device = devices.record(toks[0][0])
        if device is None:
            raise self.fail(f"unknown element {toks[0]!r}: nodalnet reads "
                            f"{devices.letters()} and X (subcircuits)", line, text)
        if len(toks) < device.nodes + 1:
            raise self.fail(f"{toks[0]} needs {device.nodes} nodes", line, text)
        el = Element(name, device.letter, tuple(node(t) for t in toks[1:device.nodes + 1]),
                     line=line, text=text)
        rest = toks[device.nodes + 1:]
        if device.card == "value":
            self.value_card(el, device, rest, toks[0])
        elif device.card == "model":
            self.model_element(el, device, rest, toks[0])
        else:
            self.source(el, rest)
        check_element(el, self.defaults, {}, self.file)
        if name in self.names:
            raise self.fail(f"element {name} is defined twice (first on line "
                            f"{self.names[name].line})", line, text)
        self.names[name] = el
        self.elements.append(el)

    def value_card(self, el: Element, device: devices.Device, rest: list[str],
                   written: str) -> None:
        """`R1 a b 2.2k`, or with the value named: `R1 a b r=2.2k`."""
        what = device.value[0] if device.value else "value"
        if not rest:
            raise self.fail(f"{written} needs a {what}", el.line, el.text)
        token = rest[0]
        if token.lower() == device.letter.lower() and len(rest) >= 3 and rest[1] == "=":
            token = rest[2]
        el.value = self.value(el.name, token, el.line, el.text)

    def model_element(self, el: Element, device: devices.Device, rest: list[str],
                      written: str) -> None:
        if not rest:
            raise self.fail(f"{written} needs a model name", el.line, el.text)
        mname = rest[0].lower()
        if mname not in self.models:
            raise self.fail(f"no `.model {mname}` is defined for {written}", el.line, el.text)
        want = [m.name for m in device.models]
        if self.models[mname].type not in want:
            raise self.fail(f"model {mname} is {self.models[mname].type.upper()}, but "
                            f"{written} needs {'/'.join(w.upper() for w in want)}",
                            el.line, el.text)
        el.model = mname
        self.instance_params(el, device, rest[1:], written)

    def instance_params(self, el: Element, device: devices.Device, rest: list[str],
                        written: str) -> None:
        """What follows the model name: `2` or `area=2` (D, Q, J), `L=1u W=10u` (M); `OFF`
        (ngspice's initial-guess hint) is noted, anything else is a named error."""
        known = device.instance
        i, position = 0, 0
        while i < len(rest):
            tok = rest[i]
            if tok.lower() == "off":
                self.notes.append(f"{self.file}:{el.line}: {written} OFF only sets ngspice's "
                                  "first operating-point guess; nodalnet ignores it")
                i += 1
                continue
            if i + 1 < len(rest) and rest[i + 1] == "=":
                if i + 2 >= len(rest):
                    raise self.fail(f"{tok}= needs a value", el.line, el.text)
                name, token = tok.lower(), rest[i + 2]
                i += 3
            elif position < len(known):
                name, token = known[position], tok
                position += 1
                i += 1
            else:
                name, token = None, tok
            if name not in known:
                what = f"{tok!r}" if name is None else f"the instance parameter {name.upper()}"
                allowed = " ".join(k.upper() for k in known) or "none"
                raise self.fail(f"{written}: cannot read {what} after the model name "
                                f"(nodalnet reads the instance parameters {allowed})",
                                el.line, el.text)
            el.params[name] = self.value(f"{el.name}.{name}", token, el.line, el.text)
            check(f"{el.name.upper()}'s {name.upper()}", el.params[name], "positive",
                  self.defaults, {}, self.file, el.line, el.text)

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
                dc = self.value(el.name, rest[i + 1], line, text)
                i += 2
            elif tok == "ac":
                i += 2
                while i < len(rest) and parse_number(rest[i]) is not None:
                    i += 1
            elif tok in _WAVEFORM_ARGS:
                wave, i = self.waveform(tok, rest, i, line, text)
            elif dc is None and (parse_number(rest[i]) is not None or rest[i].startswith("{")
                                 or tok in self.params):
                dc = self.value(el.name, rest[i], line, text)
                i += 1
            else:
                raise self.fail(f"cannot read {rest[i]!r} in a source: use DC value, SIN(...), "
                                "PULSE(...) or PWL(...)", line, text)
        if dc is None:
            self.defaults[el.name] = wave.value_at_zero() if wave is not None else 0.0
            dc = sp.Symbol(el.name)
        el.value = dc
        el.waveform = wave

    def waveform(self, kind: str, rest: list[str], i: int, line: int,
                 text: str) -> tuple[Waveform, int]:
        """`SIN(...)`, `PULSE(...)` or `PWL(...)` starting at rest[i]; and the index after it."""
        if i + 1 >= len(rest) or rest[i + 1] != "(":
            raise self.fail(f"write {kind.upper()}(...) with parentheses", line, text)
        j = i + 2
        args: list[float] = []
        while j < len(rest) and rest[j] != ")":
            val = evaluate(self.expression(rest[j], line, text), self.defaults)
            if not math.isfinite(val):
                raise self.fail(f"cannot evaluate {rest[j]!r} to a finite number", line, text)
            args.append(val)
            j += 1
        if j >= len(rest):
            raise self.fail(f"{kind.upper()}( is not closed", line, text)
        need = _WAVEFORM_ARGS[kind]
        if len(args) < need or (kind == "pwl" and len(args) % 2):
            raise self.fail(f"{kind.upper()} needs at least {need} values"
                            + (" in time/value pairs" if kind == "pwl" else ""), line, text)
        wave = Waveform(kind, tuple(args))
        problem = wave.problem()
        if problem:
            raise self.fail(f"{kind.upper()}(...): {problem}", line, text)
        return wave, j + 1

    def finish(self, title: str) -> Netlist:
        sources = {e.name for e in self.elements if devices.record(e.kind).is_source}
        nodes = {n for e in self.elements for n in e.nodes}
        self.directives.check(sources, nodes, self.fail)
        d = self.directives
        return Netlist(title=title, file=self.file, elements=self.elements, models=self.models,
                       params=self.params, defaults=self.defaults, input=d.input,
                       controls=d.controls, output=d.output, directive_lines=d.lines,
                       text=self.text, notes=self.notes)

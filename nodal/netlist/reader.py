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
from .cards import Directives, logical_cards, tokenize
from .data import GROUND, GROUND_ALIASES, Element, InitialConditions, Model, Netlist
from .dialects import FIXED_MODEL_PARAMS, DialectCards, note, xspice_ports
from .expressions import Scope, parse_expression, parse_number
from .values import check_element, check_model
from .waveforms import SourceCards

class Reader(SourceCards, DialectCards):
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
        self.initial = InitialConditions()
        self.temperature = 300.15
        self.nominal_temperature = 300.15
        self.foreign: dict[str, tuple[str, int, str]] = {}   # .model of a type not modelled

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
            word = text.split()[0].lower() if kind == "card" and text.startswith(".") else ""
            if word and word not in (".param", ".model", ".subckt", ".ends"):
                self.dot_card(line, text)       # the table of `dialects`
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
            if name in self.foreign:
                raise self.fail(f"`.model {name}` is defined twice (first on line "
                                f"{self.foreign[name][1]})", line, text)
            self.foreign[name] = (type_name, line, text)    # an error if an element uses it
            return
        params: dict[str, sp.Expr] = {}
        rest = toks[3:]
        i = 0
        while i < len(rest):
            if i + 2 >= len(rest) or rest[i + 1] != "=":
                raise self.fail("model parameters are name=value pairs", line, text)
            pname = rest[i].lower()
            token = rest[i + 2]
            if token.lower() in ("true", "false"):          # XSPICE booleans
                token = "1" if token.lower() == "true" else "0"
            params[pname] = self.free_value(f"{name}.{pname}", token, line, text)
            i += 3
        for pname, default in mtype.defaults.items():
            if pname not in params:
                if math.isinf(default):
                    params[pname] = sp.oo
                else:
                    self.defaults[f"{name}.{pname}"] = default
                    params[pname] = sp.Symbol(f"{name}.{pname}")
        for pname in FIXED_MODEL_PARAMS.get(mtype.name, ()):
            expr = params[pname]
            if expr.is_Symbol and expr.name in self.defaults:
                params[pname] = sp.Float(self.defaults.pop(expr.name))
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
        options: dict[str, str] = {}
        if device.card == "codemodel":
            el = self.code_model_card(name, toks, node, line, text)
        else:
            if len(toks) < device.nodes + 1:
                raise self.fail(f"{toks[0]} needs {device.nodes} nodes", line, text)
            el = Element(name, device.letter, tuple(node(t) for t in toks[1:device.nodes + 1]),
                         line=line, text=text)
            rest = toks[device.nodes + 1:]
            if device.card == "value":
                options = self.value_card(el, device, rest, toks[0])
            elif device.card == "model":
                self.model_element(el, device, rest, toks[0])
            else:
                options = self.source(el, rest)
        for new in [el, *(self.element_options(el, options) if options else [])]:
            check_element(new, self.defaults, {}, self.file)
            if new.name in self.names:
                raise self.fail(f"element {new.name} is defined twice (first on line "
                                f"{self.names[new.name].line})", line, text)
            self.names[new.name] = new
            self.elements.append(new)

    def value_card(self, el: Element, device: devices.Device, rest: list[str],
                   written: str) -> dict[str, str]:
        """`R1 a b 2.2k`, or with the value named: `R1 a b r=2.2k`; then `name=value` options
        (`IC=`, LTspice's `Rser=`...), returned for `element_options` to take or refuse."""
        what = device.value[0] if device.value else "value"
        if not rest:
            raise self.fail(f"{written} needs a {what}", el.line, el.text)
        token = rest[0]
        used = 1
        if token.lower() == device.letter.lower() and len(rest) >= 3 and rest[1] == "=":
            token = rest[2]
            used = 3
        el.value = self.value(el.name, token, el.line, el.text)
        return self.option_pairs(rest[used:], written, el.line, el.text)

    def option_pairs(self, toks: list[str], written: str, line: int,
                     text: str) -> dict[str, str]:
        """`name=value` pairs after an element's value; anything else is a named error."""
        options: dict[str, str] = {}
        i = 0
        while i < len(toks):
            if i + 2 >= len(toks) or toks[i + 1] != "=":
                raise self.fail(f"{written}: cannot read {toks[i]!r} after the value (nodalnet "
                                "reads name=value options such as IC=, Rser=; nothing else "
                                "follows a value)", line, text)
            options[toks[i].lower()] = toks[i + 2]
            i += 3
        return options

    def code_model_card(self, name: str, toks: list[str], node, line: int,
                        text: str) -> Element:
        """`A...` (XSPICE): a potentiometer, or an `aswitch` (read as an S element)."""
        try:
            ports, mname = xspice_ports(toks[1:])
        except ValueError as exc:
            raise self.fail(f"{toks[0]}: {exc}", line, text) from None
        mname = mname.lower()
        if mname in self.foreign:
            raise self.fail(f"{toks[0]} uses the XSPICE code model "
                            f"{self.foreign[mname][0]!r}, which nodalnet does not model (it "
                            "models potentiometer and aswitch)", line, text)
        if mname not in self.models:
            raise self.fail(f"no `.model {mname}` is defined for {toks[0]}", line, text)
        model = self.models[mname]
        if model.type == "potentiometer":
            if len(ports) != 3 or any(len(p) != 1 for p in ports):
                raise self.fail(f"{toks[0]}: a potentiometer has three nodes, r_conn1 wiper "
                                "r_conn2", line, text)
            el = Element(name, "A", tuple(node(p[0]) for p in ports), model=mname, line=line,
                         text=text)
            base = name.rsplit(".", 1)[-1]            # ARV1 -> rv1_position (in x1: x1.rv1_)
            knob = name[:len(name) - len(base)] + (base[1:] if re.match(r"a[a-z_]", base)
                                                   else base)
            position = model.params["position"]
            if position.is_number:              # a knob of its own, at the model's position
                self.defaults[f"{knob}_position"] = float(position)
                position = sp.Symbol(f"{knob}_position")
            el.value = position
            return el
        if model.type == "aswitch":
            if len(ports) != 2 or len(ports[0]) not in (1, 2) or len(ports[1]) != 2:
                raise self.fail(f"{toks[0]}: an aswitch has a control and an output port: "
                                "`A1 ctl %gd(a b) model`", line, text)
            control = [*ports[0], GROUND] if len(ports[0]) == 1 else list(ports[0])
            return Element(name, "S", tuple(node(n) for n in [*ports[1], *control[:2]]),
                           model=mname, line=line, text=text)
        raise self.fail(f"{toks[0]}: model {mname} is {model.type.upper()}, not an XSPICE code "
                        "model nodalnet reads (potentiometer, aswitch)", line, text)

    def model_element(self, el: Element, device: devices.Device, rest: list[str],
                      written: str) -> None:
        if not rest:
            raise self.fail(f"{written} needs a model name", el.line, el.text)
        mname = rest[0].lower()
        if mname in self.foreign:
            raise self.fail(f"model {mname} is of type {self.foreign[mname][0].upper()!r}, "
                            f"which nodalnet does not model; {written} cannot use it",
                            el.line, el.text)
        if mname not in self.models:
            raise self.fail(f"no `.model {mname}` is defined for {written}", el.line, el.text)
        want = [m.name for m in device.models]
        if self.models[mname].type not in want:
            raise self.fail(f"model {mname} is {self.models[mname].type.upper()}, but "
                            f"{written} needs {'/'.join(w.upper() for w in want)}",
                            el.line, el.text)
        el.model = mname
        extra = [t.lower() for t in rest[1:]]
        if el.kind == "S" and extra in (["on"], ["off"]):
            el.value = sp.Integer(1 if extra == ["on"] else 0)     # the initial state
        elif extra:
            raise self.fail(f"{written}: {' '.join(rest[1:])!r} after the model name is not "
                            "modelled (instance parameters such as area=, off, ic= are not "
                            "read); remove it", el.line, el.text)

    def finish(self, title: str) -> Netlist:
        sources = {e.name for e in self.elements if devices.record(e.kind).is_source}
        nodes = {n for e in self.elements for n in e.nodes}
        self.directives.check(sources, nodes, self.fail)
        for mname, (type_name, line, _) in self.foreign.items():
            self.notes.append(note(self.file, line, f".model {mname} ({type_name})",
                                   "no element uses it, and nodalnet does not model its type"))
        self.check_initial(nodes)
        d = self.directives
        return Netlist(title=title, file=self.file, elements=self.elements, models=self.models,
                       params=self.params, defaults=self.defaults, input=d.input,
                       controls=d.controls, output=d.output, directive_lines=d.lines,
                       text=self.text, temperature=self.temperature,
                       nominal_temperature=self.nominal_temperature, notes=self.notes,
                       initial=self.initial)

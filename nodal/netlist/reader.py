"""The reader: cards in, a `Netlist` out, every element read as its device record says.

The cards come from `includes.expand` (the file with every `.include`/`.lib` read in place,
each card knowing its file and line). `.func` and `.param` lines at the top level are read
first (in order: a parameter may use those before it), then the directives, the `.subckt`
blocks and the top-level `.model` cards, then the elements (flattening `X` instances with their
parameters, local `.param`/`.model` and nested subcircuits: `Reader.instance`). The element
letters, their node counts, how their cards read, their model types and the rules of their
values come from the device registry (`nodal.devices`); nothing here switches on a letter.

Problems come in two kinds. A card that cannot be read (a syntax error, a missing value) stops
the reading at once: `Reader.fail`. A construct that reads fine but that nodalnet does not
model (an element letter without a device record, a dot card it does not know, an element
using a `.model` of an unknown type, a model parameter its device does not model) is recorded
with `Reader.unsupported` and the reading goes on, so that one `UnsupportedNetlistError` names
every such construct of the file, with its file:line, before anything is simulated.
"""

from __future__ import annotations

import keyword
import math
import re

import sympy as sp

from .. import devices
from ..errors import NetlistError, UnsupportedNetlistError, where
from . import coupling, includes, subcircuits
from .cards import Directives, tokenize
from .data import GROUND, GROUND_ALIASES, Element, InitialConditions, Model, Netlist
from .dialects import FIXED_MODEL_PARAMS, DialectCards, note, xspice_ports
from .expressions import Scope, UserFunction, parse_expression, parse_number
from .values import check, check_element, check_model, evaluate
from .waveforms import SourceCards

#: the dot cards the reader reads itself (`.include`/`.inc`/`.lib`/`.endl` are read by
#: `includes`); every other dot card goes to `dialects` (read, noted or unsupported there).
HANDLED_DOT_CARDS = {".param", ".func", ".model", ".subckt", ".ends", ".global"}

#: what the SPICE letters without a device record are, to name them in the error
LETTER_NAMES = {
    "A": "an XSPICE code model", "B": "a behavioural source", "F": "a current-controlled "
    "current source", "H": "a current-controlled voltage source", "K": "a mutual inductance",
    "M": "a MOSFET", "N": "an OSDI/Verilog-A device", "O": "a lossy transmission line",
    "P": "a coupled multiconductor line", "S": "a voltage-controlled switch",
    "T": "a transmission line", "U": "a uniform RC line", "W": "a current-controlled switch",
    "Y": "a transmission line", "Z": "a MESFET",
}

_NAME = re.compile(r"[a-z_][a-z0-9_]*")


def _at(line: int) -> str:
    """`line 5`, or `models.lib:5` for a line of an included file."""
    file = getattr(line, "file", None)
    return f"line {int(line)}" if file is None or not getattr(line, "chain", ()) \
        else where(file, line)


class Reader(SourceCards, DialectCards):
    def __init__(self, text: str, file: str, folder: str | None = None):
        self.file = file
        self.text = text
        self.folder = folder
        self.params: dict[str, sp.Expr] = {}
        self.functions: dict[str, UserFunction] = {}
        self.defaults: dict[str, float] = {}
        self.models: dict[str, Model] = {}
        self.model_names: dict[str, str] = {}        # a name as written -> its key in models
        self.foreign_models: dict[str, tuple[int, str, str]] = {}   # unknown type: line, text
        self.foreign_used: set[str] = set()
        self.model_problems: dict[str, tuple[int, str, str]] = {}   # unmodelled parameters
        self.models_used: set[str] = set()
        self.elements: list[Element] = []
        self.names: dict[str, Element] = {}
        self.subckts: dict[str, subcircuits.Subcircuit] = {}
        self.stack: list[str] = []                   # the subcircuits being expanded
        self.globals: set[str] = set()               # `.global` node names
        self.directives = Directives()
        self.problems: list[tuple[str, int, str, str]] = []
        self.ncycles: list[tuple] = []              # sources given LTspice's Ncycles
        self.couplings: list[coupling.Coupling] = []  # K cards, applied once all is read
        self.notes: list[str] = []
        self.expanded: includes.Expanded | None = None
        self.initial = InitialConditions()
        self.temperature = 300.15
        self.nominal_temperature = 300.15

    def fail(self, message: str, line: int | None, text: str = "") -> NetlistError:
        """The error of a card that cannot be read; the caller raises it (reading stops)."""
        return NetlistError(message, self.file, line, text)

    def unsupported(self, line: int, text: str, reason: str) -> None:
        """Record a construct nodalnet does not model; the reading goes on.

        Call it (instead of raising) wherever a card is valid SPICE but names something
        nodalnet does not model: an element letter, a dot card, a model type, a model
        parameter, an option... `line` is the card's line (a `includes.Line` keeps the
        file it came from), `text` the card, `reason` what is not modelled and what to do
        instead ("the .noise card is not modelled: remove it"). At the end of reading, every
        recorded construct is raised together as one `UnsupportedNetlistError`, before any
        simulation; the same (file, line, reason) is recorded once, however many subcircuit
        instances repeat it.
        """
        file = getattr(line, "file", None) or self.file
        problem = (file, line, text, reason)
        if not any(p[0] == file and p[1] == line and p[3] == reason for p in self.problems):
            self.problems.append(problem)

    def tokens(self, line: int, text: str) -> list[str]:
        try:
            return tokenize(text)
        except ValueError as exc:
            raise self.fail(str(exc), line, text) from None

    # -- values ---------------------------------------------------------------------------
    def scope(self) -> Scope:
        return Scope(self.params, functions=self.functions)

    def expression(self, token: str, line: int, text: str) -> sp.Expr:
        """A value: a number with suffix, a `.param` name, or a `{expression}` (parsed by
        `expressions.parse_expression`, never evaluated as Python)."""
        number = parse_number(token)
        if number is not None:
            return sp.Float(number)
        body = token[1:-1] if token.startswith("{") and token.endswith("}") else token
        return parse_expression(body, self.scope(), self.file, line, text)

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
            raise self.fail(_bad_value(token), line, text)
        if name in self.params or name in self.defaults:
            # SPICE keeps element names and .param names apart (`.param ck=3.4` beside a
            # capacitor `Ck`): the element's knob gets its own name, said in a note
            knob = f"{name}.value"
            self.notes.append(f"{where(getattr(line, 'file', None) or self.file, line)}: "
                              f"{name.upper()}'s value is the knob `{knob}` (`{name}` is a "
                              ".param)")
            return self.free_value(knob, token, line, text)
        return self.free_value(name, token, line, text)

    # -- the whole netlist ----------------------------------------------------------------
    def read(self) -> Netlist:
        self.expanded = includes.expand(self.text, self.file, self.folder)
        title, body = self.expanded.title, self.expanded.cards
        self.subckts, outside = subcircuits.collect(body, self.fail, self.tokens)
        for _, kind, text in body:         # `.global` nodes keep their name in subcircuits
            if kind == "card" and text.split()[0].lower() == ".global":
                self.globals.update(n.lower() for n in text.split()[1:])
        self.definitions(outside, prefix="")
        for line, kind, text in body:
            if kind == "directive":
                self.directives.read(line, text, self.fail)
        self.models_of(outside, prefix="")
        for line, kind, text in outside:
            if kind == "card" and not text.startswith("."):
                self.element_card(line, text, prefix="", node_map={})
        for line, kind, text in body:
            word = text.split()[0].lower() if kind == "card" and text.startswith(".") else ""
            if word and word not in HANDLED_DOT_CARDS:
                self.dot_card(line, text)       # the table of `dialects`
        self.check_unused_subcircuits()         # before the directives' check (a subclass's)
        return self.finish(title)

    def definitions(self, cards: list, prefix: str) -> None:
        """The `.func` and `.param` cards of one scope, in order."""
        for line, kind, text in cards:
            word = text.split()[0].lower() if kind == "card" else ""
            if word == ".param":
                self.param_card(line, text, prefix)
            elif word == ".func":
                self.func_card(line, text)

    def models_of(self, cards: list, prefix: str) -> None:
        """The `.model` cards of one scope: `prefix` renames them (a subcircuit's own)."""
        for line, kind, text in cards:
            if kind == "card" and text.split()[0].lower() == ".model":
                self.model_card(line, text, prefix)

    def param_card(self, line: int, text: str, prefix: str = "") -> None:
        toks = self.tokens(line, text)[1:]
        i = 0
        while i < len(toks):
            if i + 1 < len(toks) and toks[i + 1] == "(":         # .param f(x) = {...}
                i = self.function(toks, i, line, text, "`.param`")
                continue
            if i + 2 >= len(toks) or toks[i + 1] != "=":
                raise self.fail("`.param` expects name=value pairs", line, text)
            name, token = toks[i].lower(), toks[i + 2]
            self.check_name(name, "`.param`", line, text)
            value = self.free_value(prefix + name, token, line, text)
            self.params[name] = value
            i += 3

    def check_name(self, name: str, what: str, line: int, text: str,
                   kind: str = "parameter") -> None:
        if not _NAME.fullmatch(name) or name.startswith("__") or keyword.iskeyword(name):
            raise self.fail(f"{what} {name}: a {kind} name is a letter or `_` followed by "
                            "letters, digits or `_`", line, text)

    def func_card(self, line: int, text: str) -> None:
        """`.func name(a, b) {expression}` (an `=` before the body is accepted too)."""
        toks = self.tokens(line, text)[1:]
        if len(toks) < 2 or toks[1] != "(":
            raise self.fail("`.func` is written `.func name(args) {expression}`", line, text)
        if self.function(toks, 0, line, text, "`.func`") != len(toks):
            raise self.fail("`.func` defines one function per card", line, text)

    def function(self, toks: list[str], i: int, line: int, text: str, what: str) -> int:
        """The function `name(args) [=] body` at toks[i]; the index after it."""
        name = toks[i].lower()
        self.check_name(name, what, line, text, "function")
        close = toks.index(")", i) if ")" in toks[i:] else -1
        if close < 0:
            raise self.fail(f"{what} {name}(: the argument list is not closed", line, text)
        args = tuple(a.lower() for a in toks[i + 2:close])
        for a in args:
            self.check_name(a, f"{what} {name}(...):", line, text, "argument")
        j = close + 1
        if j < len(toks) and toks[j] == "=":
            j += 1
        if j >= len(toks):
            raise self.fail(f"{what} {name}(...) needs a body: {{expression}}", line, text)
        body = toks[j]
        body = body[1:-1] if body.startswith("{") and body.endswith("}") else body
        self.functions[name] = UserFunction(args, body.lower())
        # parse once with placeholder arguments, so that a bad body is named at its card
        trial = Scope({**self.params, **{a: sp.Symbol(f"__arg{k}") for k, a in
                                          enumerate(args)}}, functions=self.functions)
        parse_expression(body, trial, self.file, line, text)
        return j + 1

    def model_card(self, line: int, text: str, prefix: str = "") -> None:
        toks = [t for t in self.tokens(line, text) if t not in "()"]
        known = ", ".join(t.upper() for t in devices.MODEL_TYPES)
        if len(toks) < 3:
            raise self.fail(f"`.model` needs a name and a type ({known})", line, text)
        written, type_name = toks[1].lower(), toks[2].lower()
        name = prefix + written
        if name in self.models or name in self.foreign_models:
            first = self.models[name].line if name in self.models \
                else self.foreign_models[name][0]
            raise self.fail(f"`.model {written}` is defined twice (first on {_at(first)}); "
                            "ngspice would use one of them silently: remove or rename one",
                            line, text)
        self.model_names[written] = name
        mtype = devices.model_type(type_name)
        if mtype is None:
            # used by an element: unsupported there; unused: a note (ngspice ignores it too)
            self.foreign_models[name] = (line, text, type_name)
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
        self.unknown_parameters(name, mtype, params, line, text)
        for pname, default in mtype.defaults.items():
            if pname not in params:
                if math.isinf(default):
                    params[pname] = sp.oo
                else:
                    self.defaults[f"{name}.{pname}"] = default
                    params[pname] = sp.Symbol(f"{name}.{pname}")
        for pname, source in mtype.derived.items():
            if pname not in params:
                self.defaults[f"{name}.{pname}"] = evaluate(params[source], self.defaults)
                params[pname] = sp.Symbol(f"{name}.{pname}")
        for pname in FIXED_MODEL_PARAMS.get(mtype.name, ()):
            expr = params[pname]
            if expr.is_Symbol and expr.name in self.defaults:
                params[pname] = sp.Float(self.defaults.pop(expr.name))
        self.models[name] = Model(name, mtype.name, params, line)
        check_model(self.models[name], self.defaults, {}, self.file, text)

    def unknown_parameters(self, name: str, mtype, params: dict[str, sp.Expr], line: int,
                           text: str) -> None:
        """The parameters the model type does not know, set to anything but 0 (0 is ngspice's
        default of most of them: no effect); reported as unsupported when an element uses the
        model (`model_element`), a note if none does. A `ModelType` may list parameters it
        accepts without modelling (noise...) in an `accepted` attribute."""
        known = set(mtype.defaults) | set(mtype.rules) | set(getattr(mtype, "accepted", ()))
        unknown = [p.upper() for p in params
                   if p not in known and evaluate(params[p], self.defaults) != 0]
        if unknown and mtype.unknown == "ignored":
            self.notes.append(f"{where(getattr(line, 'file', None) or self.file, line)}: model "
                              f"{name} sets {' '.join(unknown)}, which ngspice's "
                              f"{mtype.name.upper()} does not read and ignores (with a "
                              "warning); nodalnet ignores them too")
        elif unknown:
            modelled = " ".join(sorted(p.upper() for p in mtype.rules or mtype.defaults))
            self.model_problems[name] = (line, text, (
                f"model {name} ({mtype.name.upper()}) sets {' '.join(unknown)}, which nodalnet "
                f"does not model (its {mtype.name.upper()} reads {modelled})"))

    # -- elements -------------------------------------------------------------------------
    def element_card(self, line: int, text: str, prefix: str, node_map: dict[str, str],
                     depth: int = 0) -> None:
        toks = self.tokens(line, text)
        name = prefix + toks[0].lower()

        def node(tok: str) -> str:
            tok = tok.lower()
            if tok in GROUND_ALIASES:
                return GROUND
            if tok in self.globals:
                return tok
            return node_map.get(tok, prefix + tok if prefix else tok)

        if toks[0][0].lower() == "x":
            self.instance(line, text, toks, name, node, depth)
            return
        device = devices.record(toks[0][0])
        if device is None:
            letter = toks[0][0].upper()
            what = LETTER_NAMES.get(letter, "not a SPICE element letter")
            self.unsupported(line, text, f"element {toks[0]}: {letter} ({what}) is not "
                             f"modelled; nodalnet reads {devices.letters()} and X "
                             "(subcircuits)")
            return
        if device.card == "coupling":         # K L1 L2 k: rewritten in `finish`
            self.coupling_card(line, text, toks, name, prefix)
            return
        options: dict[str, str] = {}
        if device.card == "codemodel":
            el = self.code_model_card(name, toks, node, line, text)
            if el is None:
                return
        else:
            if len(toks) < device.nodes + 1:
                raise self.fail(f"{toks[0]} needs {device.nodes} nodes", line, text)
            el = Element(name, device.letter, tuple(node(t) for t in toks[1:device.nodes + 1]),
                         line=line, text=text)
            rest = toks[device.nodes + 1:]
            if device.card == "value":
                options = self.value_card(el, device, rest, toks[0])
            elif device.card == "model":
                if not self.model_element(el, device, rest, toks[0]):
                    return
            elif device.read is not None:   # controlled and behavioural sources: E G F H B
                el = device.read(self, el, rest, toks[0], node)
            else:
                options = self.source(el, rest)
        self.add_elements([el, *(self.element_options(el, options) if options else [])],
                          line, text)

    def add_elements(self, new_elements: list[Element], line: int, text: str) -> None:
        for new in new_elements:
            check_element(new, self.defaults, {}, self.file)
            if new.name in self.names:
                raise self.fail(f"element {new.name} is defined twice (first on "
                                f"{_at(self.names[new.name].line)})", line, text)
            self.names[new.name] = new
            self.elements.append(new)

    def coupling_card(self, line: int, text: str, toks: list[str], name: str,
                      prefix: str) -> None:
        """`K name L1 L2 k`, kept until every element is read (`coupling.apply`)."""
        if len(toks) != 4:
            raise self.fail(f"{toks[0]}: a K card is `{toks[0]} L1 L2 k` (two inductors and "
                            "the coupling)", line, text)
        tok = toks[3].lower()
        if tok in self.params:
            k = self.params[tok]
        elif tok.startswith("{") or parse_number(tok) is not None:
            k = self.expression(tok, line, text)         # a number, not a knob
        else:
            raise self.fail(_bad_value(toks[3]), line, text)
        self.couplings.append(coupling.read_card(toks, name, prefix, k, line, text))

    def instance(self, line: int, text: str, toks: list[str], name: str, node,
                 depth: int) -> None:
        """Flatten `X name nodes... SUBCKT [params]` into its elements (see `subcircuits`)."""
        nodes, sub_name, overrides = subcircuits.instance_parts(toks, self.fail, line, text)
        sub = self.subckts.get(sub_name)
        if sub is not None:
            sub.instances.append(name)
        if sub is None:
            known = ", ".join(sorted(self.subckts)) or "none"
            raise self.fail(f"no `.subckt {sub_name}` is defined (known: {known})", line, text)
        if sub_name in self.stack:
            chain = " -> ".join([*self.stack[self.stack.index(sub_name):], sub_name])
            raise self.fail(f"subcircuit {sub_name} calls itself ({chain}): a subcircuit "
                            "cannot contain an instance of itself", line, text)
        if len(self.stack) >= subcircuits.MAX_DEPTH:
            raise self.fail(f"subcircuits nested more than {subcircuits.MAX_DEPTH} deep",
                            line, text)
        if len(nodes) != len(sub.ports):
            raise self.fail(f"subcircuit {sub_name} has {len(sub.ports)} ports "
                            f"({' '.join(sub.ports) or 'none'}), {toks[0]} gives {len(nodes)}",
                            line, text)
        declared = [p for p, _ in sub.params]
        extra = [p for p, _ in overrides if p not in declared]
        if extra:
            raise self.fail(f"subcircuit {sub_name} has no parameter {', '.join(extra)} (its "
                            f"parameters: {', '.join(declared) or 'none'})", line, text)
        given = {p: self.free_value(f"{name}.{p}", tok, line, text) for p, tok in overrides}
        port_map = {p: node(n) for p, n in zip(sub.ports, nodes, strict=True)}
        saved = (self.params, self.functions, self.subckts, self.model_names)
        self.params, self.functions = dict(self.params), dict(self.functions)
        self.model_names = dict(self.model_names)
        self.stack.append(sub_name)
        try:
            for p, default in sub.params:
                self.params[p] = given[p] if p in given else \
                    self.free_value(f"{name}.{p}", default, sub.line, sub.text)
            inner, body = subcircuits.collect(sub.body, self.fail, self.tokens)
            self.subckts = {**self.subckts, **inner}
            self.definitions(body, prefix=name + ".")
            self.models_of(body, prefix=name + ".")
            for ln, kind, tx in body:
                if kind == "card" and not tx.startswith("."):
                    self.element_card(ln, tx, prefix=name + ".", node_map=port_map,
                                      depth=depth + 1)
        finally:
            self.params, self.functions, self.subckts, self.model_names = saved
            self.stack.pop()

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
                        text: str) -> Element | None:
        """`A...` (XSPICE): a potentiometer, or an `aswitch` (read as an S element)."""
        try:
            ports, mname = xspice_ports(toks[1:])
        except ValueError as exc:
            raise self.fail(f"{toks[0]}: {exc}", line, text) from None
        mname = self.model_names.get(mname.lower(), mname.lower())
        if mname in self.foreign_models:
            self.foreign_used.add(mname)
            self.unsupported(line, text, f"{toks[0]} uses the XSPICE code model "
                             f"{self.foreign_models[mname][2]!r}, which nodalnet does not model "
                             "(it models potentiometer and aswitch)")
            return None
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
                      written: str) -> bool:
        """The element's `.model` (a subcircuit's own first); False if it is of a type
        nodalnet does not model (recorded as unsupported)."""
        if not rest:
            raise self.fail(f"{written} needs a model name", el.line, el.text)
        written_model = rest[0].lower()
        mname = self.model_names.get(written_model, written_model)
        if mname in self.foreign_models:
            mline, _, mtype = self.foreign_models[mname]
            self.foreign_used.add(mname)
            self.unsupported(el.line, el.text, f"{written} uses model {written_model}, of "
                             f"type {mtype.upper()} (on {_at(mline)}), which nodalnet does not "
                             f"model; its {device.name} models are "
                             f"{'/'.join(m.name.upper() for m in device.models)}")
            return False
        if mname not in self.models:
            raise self.fail(f"no `.model {written_model}` is defined for {written}",
                            el.line, el.text)
        want = [m.name for m in device.models]
        if self.models[mname].type not in want:
            raise self.fail(f"model {written_model} is {self.models[mname].type.upper()}, but "
                            f"{written} needs {'/'.join(w.upper() for w in want)}",
                            el.line, el.text)
        el.model = mname
        extra = [t.lower() for t in rest[1:]]
        if el.kind == "S" and extra in (["on"], ["off"]):
            el.value = sp.Integer(1 if extra == ["on"] else 0)     # the initial state
        else:
            self.instance_params(el, device, rest[1:], written)
        self.models_used.add(mname)
        if mname in self.model_problems:
            self.unsupported(*self.model_problems[mname])
        return True

    def instance_params(self, el: Element, device: devices.Device, rest: list[str],
                        written: str) -> None:
        """What follows the model name: `2` or `area=2` (D, Q, J), `L=1u W=10u` (M); `OFF`
        (ngspice's initial-guess hint) is noted, anything else is a named error."""
        known = device.instance
        i, position = 0, 0
        while i < len(rest):
            tok = rest[i]
            if tok.lower() == "off":
                self.notes.append(f"{where(self.file, el.line)}: {written} OFF only sets ngspice's "
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

    def in_file_order(self, problems: list) -> list:
        """Problems in the order their cards stand in the file (an included file's where its
        include stands)."""
        cards = self.expanded.cards if self.expanded is not None else []
        order = {(getattr(ln, "file", None) or self.file, int(ln)): k
                 for k, (ln, _, _) in enumerate(cards)}
        return sorted(problems, key=lambda p: order.get((p[0], int(p[1])), len(order)))

    def check_ncycles(self) -> None:
        """LTspice's Ncycles on a SIN/PULSE: noted where the input or a control signal drives
        the source (its waveform is not used), unsupported elsewhere."""
        driven = (self.directives.input, *self.directives.controls)
        for name, line, text, kind, most in self.ncycles:
            if name in driven:
                self.notes.append(note(self.file, line, f"Ncycles of {name.upper()}",
                                       "the source is driven by the input or control signal"))
            else:
                self.unsupported(line, text, f"{kind.upper()} with LTspice's Ncycles (value "
                                             f"{most + 1}) is not modelled: remove it")

    def check_unused_subcircuits(self) -> None:
        """A `.subckt` of the netlist's own file that no `X` line instantiates: ngspice ignores
        it. With nothing else at top level (a KiCad export of a zero-port sheet) that is an
        empty circuit: a named error that says which instance line to add; else a note."""
        own = [sub for sub in self.subckts.values() if not sub.instances
               and (getattr(sub.line, "file", None) or self.file) == self.file]
        if not own:
            return
        if not self.elements:
            sub = own[0]
            ports = " ".join(sub.ports)
            example = f"X1 {ports} {sub.name}" if ports else f"X1 {sub.name}"
            others = "".join(f", {s.name} (line {int(s.line)})" for s in own[1:])
            raise self.fail(
                f"no element at top level: subcircuit {sub.name}{others} is defined but never "
                "instantiated, and ngspice ignores such a subcircuit (it simulates an empty "
                f"circuit); add an instance line at top level, e.g. `{example}`"
                + ("" if ports else " (it has no ports)") + ", and name its source and node "
                "with the instance's prefix (`*@ input x1.v1`, `*@ output x1.out`)",
                sub.line, sub.text)
        for sub in own:
            self.notes.append(f"{where(self.file, sub.line)}: subcircuit {sub.name} is defined "
                              "but never instantiated: ignored, as ngspice does")

    def finish(self, title: str) -> Netlist:
        self.check_ncycles()
        for text in coupling.apply(self.couplings, self.elements, self.names, self.initial,
                                   self.defaults, self.fail):
            self.notes.append(text)
        for mname, (line, _, mtype) in self.foreign_models.items():
            if mname not in self.foreign_used:
                file = getattr(line, "file", None) or self.file
                self.notes.append(f"{where(file, line)}: model {mname} of type "
                                  f"{mtype.upper()} is not modelled; no element uses it")
        for mname, (line, _, reason) in self.model_problems.items():
            if mname not in self.models_used:
                file = getattr(line, "file", None) or self.file
                self.notes.append(f"{where(file, line)}: {reason} (no element uses it)")
        if self.problems:
            raise UnsupportedNetlistError(self.in_file_order(self.problems), self.file)
        sources = {e.name for e in self.elements if devices.record(e.kind).is_source}
        nodes = {n for e in self.elements for n in e.nodes}
        self.directives.check(sources, nodes, self.fail)
        self.check_initial(nodes)
        d = self.directives
        text = self.text
        if self.expanded is not None and self.expanded.top_includes:
            text = includes.deck_text(self.text, self.expanded)
        return Netlist(title=title, file=self.file, elements=self.elements, models=self.models,
                       params=self.params, defaults=self.defaults, input=d.input,
                       controls=d.controls, output=d.output, directive_lines=d.lines,
                       text=text, temperature=self.temperature,
                       nominal_temperature=self.nominal_temperature, notes=self.notes,
                       initial=self.initial,
                       include_lines=self.expanded.include_lines if self.expanded else {})


def _bad_value(token: str) -> str:
    """What to say about a value that is not a number: a part-selection range such as `1-3k`
    gets its own message, since ngspice reads it without complaint but not as meant."""
    m = re.fullmatch(r"([0-9.]+[a-z]*)([+-])([0-9.][0-9.a-z]*)", token.lower())
    if m and parse_number(m.group(1)) is not None and parse_number(m.group(3)) is not None:
        last = parse_number(m.group(2) + m.group(3))
        return (f"bad value {token!r}: ngspice splits it at the {m.group(2)!r} into two values, "
                f"{m.group(1)} and {m.group(2)}{m.group(3)}, and keeps the last ({last:g}"
                f"{', a negative value' if last < 0 else ''}); a range such as `1-3k` is a "
                "part-selection note, not a value: write the one value the circuit is to have "
                "(e.g. 2k)")
    return (f"bad value {token!r}: use a number with an optional suffix (2.2k, 10n, 1meg) or a "
            "{expression}")

"""What nodalnet does with each dot card of ngspice, LTspice and KiCad netlists, in one table.

Every dot card is one of:

* read: it describes the circuit (`.param`, `.model`, `.subckt`/`.ends`, `.end`), or sets what
  the transient starts from (`.temp`, `.ic`, `.tran` with `uic`, `.options temp= tnom=`);
* noted: it asks for an analysis, an output or a simulator setting that has no effect on the
  circuit nodalnet solves (`.tran 0 10m`, `.save`, `.meas`, `.backanno`, a `.control` block...):
  accepted, and one line naming it and its file:line goes to `Netlist.notes`;
* refused: it would change the result in a way nodalnet does not model (`.step`, `.if`):
  reported with every other unsupported construct of the file in one
  `UnsupportedNetlistError`, naming the card and what to do instead.

The element-card options that LTspice writes after a value (`Rser=`, `Rpar=`, `Cpar=`, `IC=`)
are listed here too (`ELEMENT_OPTIONS`), so the reader takes or refuses them in one place.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .expressions import parse_number

#: dot cards that make the circuit or its starting point (the reader reads them)
READ = {
    ".param": "parameters", ".model": "device models", ".subckt": "subcircuits",
    ".ends": "the end of a subcircuit", ".end": "the end of the netlist",
    ".temp": "the circuit's temperature", ".ic": "initial node voltages",
    ".func": "user functions", ".global": "global nodes",
    ".include": "include files", ".inc": "include files", ".lib": "library sections",
    ".endl": "the end of a library section",
}

#: dot cards accepted without effect on the result, each with why (shown in the note)
NOTED = {
    ".tran": "nodalnet runs its own transient at the sample rate; the stop time and step of "
             "`.tran` are not used (its `uic` is)",
    ".op": "an operating-point analysis; the transient starts from it anyway",
    ".ac": "a small-signal analysis; nodalnet solves the transient only",
    ".dc": "a DC sweep; nodalnet solves the transient only",
    ".noise": "a noise analysis; nodalnet solves the transient only",
    ".tf": "a transfer-function analysis; nodalnet solves the transient only",
    ".sens": "a sensitivity analysis; nodalnet solves the transient only",
    ".disto": "a distortion analysis; nodalnet solves the transient only",
    ".pz": "a pole-zero analysis; nodalnet solves the transient only",
    ".four": "a Fourier analysis of ngspice's output; nodalnet's output is the `*@ output` node",
    ".save": "which vectors ngspice keeps; nodalnet's output is the `*@ output` node",
    ".print": "what ngspice prints; nodalnet's output is the `*@ output` node",
    ".plot": "what ngspice plots; nodalnet's output is the `*@ output` node",
    ".probe": "which currents ngspice keeps; nodalnet's output is the `*@ output` node",
    ".meas": "a measurement of ngspice's output",
    ".measure": "a measurement of ngspice's output",
    ".wav": "LTspice writes a WAV file of a node; nodalnet writes the `*@ output` node",
    ".backanno": "LTspice's back-annotation of currents to the schematic",
    ".options": "simulator settings (tolerances, methods); nodalnet's Newton has its own",
    ".option": "simulator settings (tolerances, methods); nodalnet's Newton has its own",
    ".opt": "simulator settings (tolerances, methods); nodalnet's Newton has its own",
    ".nodeset": "a starting guess for the operating point; nodalnet finds the operating point "
                "without it",
    ".title": "the title",
    ".width": "the output width of ngspice's listing",
    ".csparam": "a parameter for ngspice's control script",
    ".control": "an ngspice control script (up to `.endc`); nodalnet runs no scripts",
}

#: dot cards refused, each with what to do instead
REFUSED = {
    ".step": "LTspice's `.step` runs the circuit several times; remove it and use --set NAME="
             "VALUE for each value instead",
    ".if": "conditional netlists are not read; keep the branch you mean",
    ".endc": "`.endc` without `.control`",
    ".machine": "LTspice state machines are not modelled",
    ".net": "LTspice's network analysis is not modelled",
    ".ferret": "LTspice downloads are not read",
    ".loadbias": "LTspice's saved operating points are not read; nodalnet computes its own",
    ".savebias": "LTspice's saved operating points are not written; nodalnet computes its own",
}

#: LTspice's cards that ngspice stops at ("unimplemented control card"): `nodal.spice` leaves
#: them out of the deck it hands ngspice (nodalnet itself notes them)
LTSPICE_ONLY = frozenset({".wav", ".backanno"})

#: model parameters read once where the element is built (a switch's thresholds, a taper
#: flag) or moved to the element (a potentiometer's position becomes `<name>_position`): fixed
#: numbers, not knobs, so that a `--set` of one is an unknown name rather than a silent no-op
FIXED_MODEL_PARAMS = {"potentiometer": ("log", "position"), "sw": ("vt", "vh"),
                      "aswitch": ("cntl_on", "cntl_off", "log")}

#: `.options` names nodalnet reads (others are noted)
TEMPERATURE_OPTIONS = ("temp", "tnom")

#: the `name=value` options each element letter takes after its value (LTspice and ngspice):
#: ic (initial condition), rser / rpar / cpar (parasitics, expanded into elements)
ELEMENT_OPTIONS = {
    "C": ("ic", "rser", "rpar", "cpar"),
    "L": ("ic", "rser", "rpar", "cpar"),
    "V": ("rser", "cpar"),
}

#: LTspice's part attributes on R, C, L (tolerance, ratings, manufacturer...): no effect on
#: the simulation (noted), and the parasitics it writes as 0 when there are none (accepted at
#: 0, refused otherwise: not modelled)
NOTED_ELEMENT_OPTIONS = ("tol", "pwr", "v", "irms", "mfg", "pn", "type", "ipk")
ZERO_ELEMENT_OPTIONS = ("lser", "rlshunt")

KELVIN = 273.15


def celsius_to_kelvin(value: float) -> float:
    return value + KELVIN


@dataclass(frozen=True)
class Verdict:
    action: str          # "read", "noted", "refused", "unknown"
    why: str


def verdict(word: str) -> Verdict:
    """What nodalnet does with the dot card `word` (lower case, with its dot)."""
    if word in READ:
        return Verdict("read", READ[word])
    if word in NOTED:
        return Verdict("noted", NOTED[word])
    if word in REFUSED:
        return Verdict("refused", REFUSED[word])
    return Verdict("unknown", "")


def note(file: str, line: int, what: str, why: str) -> str:
    """One line of `Netlist.notes`: `file:line: <what> ignored: <why>` (a line of an included
    file names that file and its include chain)."""
    from ..errors import where

    return f"{where(getattr(line, 'file', None) or file, line)}: {what} ignored: {why}"


_XSPICE_PORT = re.compile(r"%(v|vd|i|id|g|gd|h|hd|d|vnam)$", re.IGNORECASE)


def xspice_ports(tokens: list[str]) -> tuple[list[tuple[str, ...]], str]:
    """An XSPICE `A` card's tokens after its name -> (ports, model name).

    A port is a plain node (`n1`), or a typed one: `%v(n)`, `%vd(a b)`, `%gd(a b)`, ... Each
    port is returned as its tuple of nodes. Vector ports (`[ ... ]`) are a ValueError."""
    ports: list[tuple[str, ...]] = []
    i = 0
    body = tokens[:-1]
    while i < len(body):
        tok = body[i]
        if "[" in tok or "]" in tok:
            raise ValueError("vector ports `[...]` are not read")
        if _XSPICE_PORT.match(tok):
            if i + 1 >= len(body) or body[i + 1] != "(":
                if i + 1 < len(body):       # `%v n`: a typed single node
                    ports.append((body[i + 1],))
                    i += 2
                    continue
                raise ValueError(f"{tok} needs its nodes")
            j = body.index(")", i) if ")" in body[i:] else -1
            if j < 0:
                raise ValueError(f"{tok}( is not closed")
            ports.append(tuple(body[i + 2:j]))
            i = j + 1
            continue
        if tok in "()":
            raise ValueError(f"unexpected {tok!r}")
        ports.append((tok,))
        i += 1
    return ports, tokens[-1] if tokens else ""


class DialectCards:
    """The dot cards and element options of the dialects, for `reader.Reader` (a mixin: it uses
    the reader's `fail`, `tokens`, `expression`, `free_value`, `defaults`, `file`, and its
    `notes`, `initial`, `temperature`, `nominal_temperature`)."""

    def dot_card(self, line: int, text: str) -> None:
        """Any dot card but `.param`, `.model`, `.subckt` and `.ends` (read elsewhere)."""
        word = text.split()[0].lower()
        found = verdict(word)
        if word == ".temp":
            self.temperature_card(line, text)
        elif word == ".ic":
            self.ic_card(line, text)
        elif word in (".options", ".option", ".opt"):
            self.options_card(line, text)
        elif found.action == "noted":
            if word == ".tran":
                self.tran_card(line, text)
            self.notes.append(note(self.file, line, word, found.why))
        elif found.action == "refused":
            self.unsupported(line, text, f"{word}: {found.why}")
        elif found.action == "unknown":
            self.unsupported(line, text, f"the {word} card is not modelled; remove it (the "
                             f"cards nodalnet reads: {' '.join(sorted(READ))}; it notes "
                             "analysis and output cards)")

    def _number(self, token: str, line: int, text: str) -> float:
        from .values import evaluate

        value = evaluate(self.expression(token, line, text), self.defaults)
        if not math.isfinite(value):
            raise self.fail(f"cannot evaluate {token!r} to a finite number", line, text)
        return value

    def temperature_card(self, line: int, text: str) -> None:
        toks = self.tokens(line, text)[1:]
        if len(toks) != 1:
            raise self.fail("`.temp` takes one temperature in degrees C (a list of them would "
                            "be a sweep, which nodalnet does not run)", line, text)
        self.set_temperature("temp", self._number(toks[0], line, text), line, text)

    def set_temperature(self, which: str, celsius: float, line: int, text: str) -> None:
        kelvin = celsius_to_kelvin(celsius)
        if kelvin <= 0:
            raise self.fail(f"{which} {celsius:g} C is at or below absolute zero", line, text)
        if which == "temp":
            self.temperature = kelvin
        else:
            self.nominal_temperature = kelvin

    def options_card(self, line: int, text: str) -> None:
        toks = self.tokens(line, text)[1:]
        others = []
        i = 0
        while i < len(toks):
            name = toks[i].lower()
            if i + 1 < len(toks) and toks[i + 1] == "=":
                if i + 2 >= len(toks):
                    raise self.fail(f"`.options {name}=` needs a value", line, text)
                if name in TEMPERATURE_OPTIONS:
                    self.set_temperature(name, self._number(toks[i + 2], line, text), line,
                                         text)
                else:
                    others.append(f"{name}={toks[i + 2]}")
                i += 3
            else:
                others.append(name)
                i += 1
        if others:
            self.notes.append(note(self.file, line, ".options " + " ".join(others),
                                   NOTED[".options"]))

    def tran_card(self, line: int, text: str) -> None:
        words = [t.lower() for t in self.tokens(line, text)[1:]]
        if "uic" in words:
            self.initial.uic = True
            self.initial.lines["uic"] = line

    def ic_card(self, line: int, text: str) -> None:
        """`.ic V(n)=value ...`: node voltages at t = 0."""
        from .data import GROUND_ALIASES

        toks = self.tokens(line, text)[1:]
        i = 0
        while i < len(toks):
            if not (i + 5 < len(toks) and toks[i].lower() == "v" and toks[i + 1] == "("
                    and toks[i + 3] == ")" and toks[i + 4] == "="):
                raise self.fail("`.ic` takes V(node)=value pairs (one node each)", line, text)
            node = toks[i + 2].lower()
            if node in GROUND_ALIASES:
                raise self.fail("`.ic` names ground, whose voltage is always 0", line, text)
            self.initial.nodes[node] = self._number(toks[i + 5], line, text)
            self.initial.lines[f"v({node})"] = line
            i += 6

    def element_options(self, el, options: dict[str, str]) -> list:
        """`IC=`, `Rser=`, `Rpar=`, `Cpar=` after an element's value: the initial condition is
        stored, the parasitics become elements (returned: a resistor in series through an
        internal node `<name>#rser`, a resistor or capacitor in parallel) named `<name>.rser`,
        `<name>.rpar`, `<name>.cpar`, whose values are knobs like any other. As LTspice draws
        them: Rser in series; Cpar across the terminals; Rpar across the terminals of an
        inductor or a source, and across the capacitance alone of a capacitor (its leakage).
        A zero Rser (LTspice's "none") adds nothing."""
        from .data import Element

        allowed = ELEMENT_OPTIONS.get(el.kind, ())
        for name in list(options):
            if name in NOTED_ELEMENT_OPTIONS and el.kind in "RCL":
                self.notes.append(note(self.file, el.line, f"{name.upper()}= on {el.name.upper()}",
                                       "a part attribute with no effect on the simulation"))
                del options[name]
            elif (name in ZERO_ELEMENT_OPTIONS and el.kind in "CL"
                  and parse_number(options[name]) == 0):
                del options[name]
        for name in options:
            if name not in allowed:
                takes = (" (it takes " + ", ".join(a.upper() + "=" for a in allowed) + ")"
                         if allowed else "")
                raise self.fail(f"{el.name.upper()}: the option {name.upper()}= is not "
                                f"modelled{takes}; remove it", el.line, el.text)
        extra = []
        if "ic" in options:
            self.initial.elements[el.name] = self._number(options["ic"], el.line, el.text)
            self.initial.lines[el.name] = el.line
        a, b = el.nodes
        kinds = {"rser": "R", "rpar": "R", "cpar": "C"}
        for opt in ("rser", "rpar", "cpar"):
            if opt not in options:
                continue
            name = f"{el.name}.{opt}"
            value = self.free_value(name, options[opt], el.line, el.text)
            if value.is_Symbol and self.defaults.get(value.name) == 0:
                continue                    # LTspice writes Rser=0 for none
            if opt == "rser":
                inner = f"{el.name}#rser"
                el.nodes = (a, inner)
                nodes = (inner, b)
            elif opt == "rpar" and el.kind == "C":
                nodes = el.nodes            # a capacitor's leakage: across C alone
            else:
                nodes = (a, b)
            extra.append(Element(name, kinds[opt], nodes, value=value, line=el.line,
                                 text=el.text))
        return extra

    def check_initial(self, nodes: set[str]) -> None:
        """After the elements: `.ic` names nodes that exist; `IC=` without `uic` is noted."""
        for node in self.initial.nodes:
            if node not in nodes:
                raise self.fail(f"`.ic` names node {node!r}, which no element connects",
                                self.initial.lines[f"v({node})"])
        if self.initial.elements and not self.initial.uic:
            for name in self.initial.elements:
                self.notes.append(note(
                    self.file, self.initial.lines[name], f"IC= on {name.upper()}",
                    "as in ngspice, an element's IC= is used only with `uic` on `.tran`; the "
                    "transient starts from the operating point"))

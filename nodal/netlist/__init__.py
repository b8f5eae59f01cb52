"""Read an ngspice-compatible SPICE netlist into plain data.

The subset: R, C, L, V, I (DC, SIN, PULSE, PWL), D, Q, J, E, G (the letters of the device
registry, `nodal.devices`), X (flattened `.subckt`, with parameters and local `.param`/`.model`),
`.param` with `{expressions}`, `.func`, `.model`, `.include`/`.inc` and `.lib FILE SECTION`,
value suffixes, `*` comments, `;`/`$` inline comments, `+` continuation lines, and three
directives hidden in comments that ngspice ignores::

    *@ input  Vin        the source that follows the audio input
    *@ control Vlfo      a source that a control signal may drive (repeatable)
    *@ output out        the output node, or `a,b` for v(a) - v(b)

Names are case-insensitive and kept lower-case, as ngspice does. Component values, `.param`
parameters and `.model` parameters become Sympy symbols with numeric defaults, so the same
equations serve for any value and can be differentiated. All values are SI units.

The package, by concern: `cards` (lines, continuations, comments, tokens, directives),
`includes` (`.include`, `.lib`: every card with its file, line and include chain),
`expressions` (the `{...}` parser), `subcircuits` (`.subckt` and `X`), `values` (the rules
values follow, `check_values`, decoding files), `data` (`Netlist`, `Element`, `Model`,
`Waveform`) and `reader` (putting them together).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import NetlistError, UnsupportedNetlistError
from .data import GROUND, GROUND_ALIASES, Element, Model, Netlist, Waveform
from .expressions import Scope, UserFunction, parse_expression, parse_number
from .includes import Line, expand
from .values import check_element, check_model, check_values, decode, evaluate

__all__ = ["GROUND", "GROUND_ALIASES", "Element", "Line", "Model", "Netlist", "NetlistError",
           "Scope", "UnsupportedNetlistError", "UserFunction", "Waveform", "check_element",
           "check_model", "check_values", "decode", "evaluate", "expand", "parse",
           "parse_expression", "parse_number", "read", "read_source", "read_text"]


def parse(text: str, file: str = "<netlist>", folder: str | Path | None = None) -> Netlist:
    """Parse netlist text. Raises `NetlistError` naming the file and line of any problem, and
    `UnsupportedNetlistError` naming every construct nodalnet does not model at once.

    `.include` and `.lib` paths are relative to `folder` (default: the folder of `file`)."""
    from .reader import Reader

    return Reader(text, file, folder).read()


def read_text(path: str | Path) -> str:
    """A netlist file's text: read as bytes and decoded by `values.decode` (UTF-8, UTF-16 with
    a mark, cp1252 or latin-1; a DOS end-of-file byte dropped)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise NetlistError(f"cannot read the netlist: {exc.strerror}", str(path)) from None
    return decode(data, str(path))


def read_source(path: str | Path, text: str | None = None) -> str:
    """The text of a netlist and of every file it includes, in reading order: what a cache
    of anything derived from the netlist must hash (an edit to an included model file is a
    new circuit). `text`: the file's text when already read."""
    path = Path(path)
    text = read_text(path) if text is None else text
    return expand(text, str(path)).fingerprint()


def read(path: str | Path) -> Netlist:
    """Read and parse a `.cir` file (and the files it includes)."""
    return parse(read_text(path), str(Path(path)))

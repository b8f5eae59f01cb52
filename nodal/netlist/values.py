"""Component values, model parameters and netlist bytes, checked where they are read.

Every element value and model parameter is a Sympy expression of the netlist's parameters
(`Netlist.defaults`). `check_element` and `check_model` evaluate them at a set of values and
apply each one's rule (a resistor positive and finite, a diode's IS positive, RS not negative,
...), so the reader at the defaults and `check_values` at a user's `--set` values give the same
named errors at the element's file and line, never NaN or inf further on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import sympy as sp

from ..errors import NetlistError, UnknownParameterError

COMPONENT_RANGE = (1e-20, 1e20)

# Rule name -> (test, what the value must be).
RULES = {
    "positive": (lambda v: v > 0 and math.isfinite(v), "positive and finite"),
    "nonnegative": (lambda v: v >= 0 and math.isfinite(v), "zero or positive, and finite"),
    "finite": (math.isfinite, "a finite number"),
    # R, C, L: beyond this range a companion conductance leaves what float64 equations can
    # solve (1e-308 Ohm is a conductance of 1e308 S), so Newton could only fail, slowly
    "component": (lambda v: COMPONENT_RANGE[0] <= v <= COMPONENT_RANGE[1],
                  "positive, between 1e-20 and 1e20 (SI units)"),
    "fraction": (lambda v: 0 <= v <= 1, "between 0 and 1"),
    "flag": (lambda v: v in (0, 1), "true or false (1 or 0)"),
    "below_one": (lambda v: 0 <= v < 1, "at least 0 and below 1"),
    "early": (lambda v: v >= 0 and not math.isnan(v),
              "positive (an Early voltage; 0 or infinite means none, as ngspice)"),
    "grading": (lambda v: 0 <= v < 1, "at least 0 and below 1 (a junction grading exponent)"),
}


def evaluate(expr: sp.Expr, values: Mapping[str, float]) -> float:
    """The numeric value of `expr` with every symbol at `values` (NaN if one is missing or the
    result is not a real number). Only the expression's own symbols are looked up."""
    try:
        return float(expr.xreplace({s: sp.Float(values[s.name]) for s in expr.free_symbols}))
    except (KeyError, TypeError, ValueError, OverflowError):
        return math.nan


def _fail(what: str, value: float, rule: str, expr: sp.Expr, overrides: Mapping[str, float],
          file: str, line: int | None, text: str | None) -> NetlistError:
    given = sorted(s.name for s in expr.free_symbols if s.name in overrides)
    shown = "not a real number" if math.isnan(value) else f"{value:g}"
    message = f"{what} is {shown}; it must be {RULES[rule][1]}"
    if given:
        message += " (with " + ", ".join(f"{n}={overrides[n]:g}" for n in given) + ")"
    return NetlistError(message, file, line, text)


def check(what: str, expr: sp.Expr, rule: str, values: Mapping[str, float],
          overrides: Mapping[str, float], file: str, line: int | None,
          text: str | None) -> float:
    """`expr` at `values`, or a NetlistError saying what it must be."""
    value = evaluate(expr, values)
    if not RULES[rule][0](value):
        raise _fail(what, value, rule, expr, overrides, file, line, text)
    return value


def check_element(el, values: Mapping[str, float], overrides: Mapping[str, float],
                  file: str) -> None:
    """An element's value (R, C, L, gain, source value) against its rule."""
    from .. import devices

    device = devices.record(el.kind)
    if el.value is None or device is None or device.value is None:
        return
    what, rule = device.value
    check(f"{el.name.upper()}'s {what}", el.value, rule, values, overrides, file, el.line,
          el.text)


def check_model(model, values: Mapping[str, float], overrides: Mapping[str, float],
                file: str, text: str | None = None) -> None:
    """Every parameter of a `.model` against its rule (the device registry's model type)."""
    from .. import devices

    mtype = devices.model_type(model.type)
    rules = mtype.rules if mtype is not None else {}
    for pname, expr in model.params.items():
        check(f"model {model.name}'s {pname.upper()}", expr, rules.get(pname, "finite"),
              values, overrides, file, model.line, text)


def check_values(net, values: Mapping[str, float] | None = None) -> dict[str, float]:
    """Check a set of parameter values against `net`; return every parameter's value.

    Unknown names are an UnknownParameterError; a value that is not a finite number, or that
    makes an element value or model parameter break its rule (`--set drive=-1` turning a
    resistor negative), a NetlistError at that element's line. Only what the given values
    reach is re-evaluated.
    """
    overrides: dict[str, float] = {}
    for name, value in (values or {}).items():
        key = str(name).lower()
        if key not in net.defaults:
            raise UnknownParameterError(
                f"{name!r} is not a parameter of {net.file}; known: {', '.join(net.defaults)}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise NetlistError(f"{name}={value!r}: not a number", net.file) from None
        if not math.isfinite(number):
            raise NetlistError(f"{name}={number}: a value must be a finite number", net.file)
        overrides[key] = number
    merged = {**net.defaults, **overrides}
    if not overrides:
        return merged
    changed = {sp.Symbol(k) for k in overrides}
    for model in net.models.values():
        if any(changed & p.free_symbols for p in model.params.values()):
            check_model(model, merged, overrides, net.file)
    for el in net.elements:
        if el.value is not None and changed & el.value.free_symbols:
            check_element(el, merged, overrides, net.file)
    _check_switch_controls(net, changed)
    return merged


def _check_switch_controls(net, changed: set) -> None:
    """A switch's state is chosen once, at the netlist's value of the DC source holding its
    control (`nodal.devices.switch`): setting that source is a NetlistError, not a switch that
    silently stays where it was."""
    switches = [el for el in net.elements if el.kind == "S"]
    for el in switches:
        for src in net.elements:
            if (src.kind == "V" and set(src.nodes) & set(el.nodes[2:]) and src.value is not None
                    and changed & src.value.free_symbols):
                raise NetlistError(
                    f"{src.name.upper()} holds the control of switch {el.name.upper()}, whose "
                    "state nodalnet chooses once from the netlist's value: change the value in "
                    "the netlist instead", net.file, src.line, src.text)


# -- netlist files as bytes ---------------------------------------------------------------------

_CONTROL = {chr(c) for c in range(32)} - {"\t", "\n", "\r", "\f"}


def decode(data: bytes, file: str) -> str:
    """Netlist bytes as text: UTF-8 (with or without a BOM), UTF-16 with a BOM, else the
    Windows code page cp1252, else latin-1; a trailing DOS end-of-file byte (0x1a) is dropped.
    A file with other control bytes (a binary file) is a NetlistError."""
    data = data.rstrip(b"\x1a") if data.endswith(b"\x1a") else data
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError:
            raise NetlistError("the netlist starts with a UTF-16 mark but is not UTF-16 text",
                               file) from None
    else:
        for encoding in ("utf-8-sig", "cp1252", "latin-1"):
            try:
                text = data.decode(encoding)
                break
            except UnicodeDecodeError:
                continue
    text = text.rstrip("\x1a")
    for number, line in enumerate(text.splitlines(), start=1):
        bad = next((ch for ch in line if ch in _CONTROL), None)
        if bad is not None:
            raise NetlistError(f"byte {ord(bad):#04x} is not text: this is not a netlist "
                               "(expected UTF-8, cp1252 or latin-1 text)", file, number)
    return text

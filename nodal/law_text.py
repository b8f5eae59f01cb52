"""Sympy expressions of device laws printed as numba source: the printer, and which
exponentials are computed only under the branch that uses them (`lazy`)."""

from __future__ import annotations

import sympy as sp
from sympy.printing.pycode import PythonCodePrinter


class KernelPrinter(PythonCodePrinter):
    """Sympy's Python printer, plus what device laws of real voltages may contain."""

    def __init__(self):
        super().__init__({"fully_qualified_modules": True, "standard": "python3"})

    def _print_re(self, expr):          # every symbol here is a real number
        return f"({self._print(expr.args[0])})"

    def _print_im(self, expr):
        return "0.0"

    def _print_exp(self, expr):         # the kernel's `_exp`: no C-library underflow path
        return f"_exp({self._print(expr.args[0])})"


def _guards(expr: sp.Expr, sym: sp.Symbol, guard, out: set) -> None:
    """Collect into `out` a condition under which each use of `sym` in expr is evaluated (a
    superset of where it is: the first piece of the innermost Piecewise, else the enclosing
    one's; None where it is always evaluated)."""
    if expr == sym:
        out.add(guard)
        return
    if not expr.has(sym):
        return
    if isinstance(expr, sp.Piecewise):
        for k, (value, cond) in enumerate(expr.args):
            _guards(cond, sym, guard, out)
            first = k == 0 and isinstance(cond, sp.Symbol)
            _guards(value, sym, cond if first else guard, out)
        return
    for arg in expr.args:
        _guards(arg, sym, guard, out)


def assignments(common: list, reduced: list, targets: list[str]) -> list[str]:
    """The lines computing common subexpressions (`sp.cse`'s) and then each target: an
    exponential used only where a law's branch is taken (a diode's forward side) is computed
    only then (`lazy`), after the other terms (its condition among them): a reverse-biased
    junction costs no exp()."""
    printer = KernelPrinter()
    guards = lazy(common, reduced)
    lines = [f"{lhs} = {printer.doprint(rhs)}" for lhs, rhs in common if lhs not in guards]
    lines += [f"{lhs} = {printer.doprint(rhs)} if {printer.doprint(guards[lhs])} else 0.0"
              for lhs, rhs in common if lhs in guards]
    lines += [f"{target} = {printer.doprint(e)}"
              for target, e in zip(targets, reduced, strict=True)]
    return lines


def lazy(common: list, reduced: list) -> dict:
    """The common subexpressions holding an exp() or log() that only the outputs use, each
    under one branch condition (a CSE symbol): {symbol: condition}."""
    later = [rhs for _, rhs in common]
    out = {}
    for lhs, rhs in common:
        if not rhs.has(sp.exp, sp.log) or any(e.has(lhs) for e in later):
            continue
        found: set = set()
        for e in reduced:
            _guards(e, lhs, None, found)
        if len(found) == 1 and None not in found:
            out[lhs] = found.pop()
    return out

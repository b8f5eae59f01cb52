"""nodal: SPICE netlist -> Sympy nodal equations -> DK state space -> Newton solvers.

    import nodal
    solver = nodal.load("diode_clipper")          # a NodalSolver at 48 kHz
    traj = solver(u)                              # u [batch, time, inputs] in volts
    traj.y, traj.x                                # output [B, T, 1], capacitor voltages [B, T, n]

Units are SI throughout (volts, amperes, ohms, farads, henries, seconds, hertz).
"""

from __future__ import annotations

from pathlib import Path

from .errors import (CircuitNotFoundError, ConvergenceError, NetlistError, NodalError,
                     SignalError)
from .interface import StateSpaceModel, Trajectory
from .mna import Equations, check_solvable, derive
from .netlist import Netlist, parse, read, read_source, read_text
from .newton import NewtonOptions
from .solver import NodalSolver

__all__ = ["load", "equations", "netlist_path", "NodalSolver", "StateSpaceModel", "Trajectory",
           "Equations", "Netlist", "NetlistError", "ConvergenceError", "SignalError",
           "NodalError", "CircuitNotFoundError", "NewtonOptions", "parse", "read", "derive"]


def netlist_path(name_or_path: str | Path) -> Path:
    """A built-in circuit's netlist, or the given `.cir` file."""
    import circuits

    builtin = circuits.path_of(str(name_or_path))
    if builtin is not None:
        return builtin
    path = Path(name_or_path)
    if path.is_file():
        return path
    known = ", ".join(circuits.registry())
    raise CircuitNotFoundError(f"{name_or_path!r} is neither a built-in circuit ({known}) nor a "
                               "netlist file")


_CACHE: dict[tuple[str, str], Equations] = {}


def equations(name_or_path: str | Path, given=None, command: str = "simulate") -> Equations:
    """The symbolic equations of a circuit (cached per file content, included files too, in
    this process and on disk: `nodal.derived`).

    given: `nodal.directives.Given`, the command line's stand-ins for the `*@` lines; a netlist
    that leaves its input or output unnamed raises `DirectivesMissing`, whose advice lists the
    sources and likely outputs and shows `nodalnet COMMAND ...` with the options to add."""
    import circuits

    from . import derived
    from .directives import Given
    from .directives import parse as parse_given

    given = given or Given()
    path = netlist_path(name_or_path)
    text = read_text(path)
    key = (str(path), read_source(path, text), given, command)   # the included files' text too
    builtin = circuits.path_of(str(name_or_path)) is not None
    shown = f"circuits/{path.name}" if builtin else str(path)
    if key not in _CACHE:
        entry = derived.key(key[1], shown, given, command)
        eq = derived.load(entry)          # a second process reads what the first derived
        if eq is None:
            eq = derive(parse_given(text, shown, given, command, folder=path.parent))
            check_solvable(eq)
            eq.derived_key = entry
            derived.store(entry, eq)
        eq.derived_key = entry
        _CACHE[key] = eq
    return _CACHE[key]


def load(name_or_path: str | Path, sample_rate: float = 48000.0, **values: float) -> NodalSolver:
    """A `NodalSolver` for a built-in circuit or a netlist file; `values` override parameters."""
    return NodalSolver(equations(name_or_path), sample_rate=sample_rate, values=values)

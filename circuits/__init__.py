"""The built-in circuit library: one ngspice-compatible `.cir` netlist per circuit.

The registry is the folder itself: a circuit's name is its file name, its description the
netlist's title line. `nodal.load(name)` turns a name into a solver.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

FOLDER = Path(__file__).resolve().parent


@dataclass(frozen=True)
class CircuitFile:
    name: str
    path: Path
    description: str


def _describe(path: Path) -> str:
    first = path.read_text().splitlines()[0] if path.stat().st_size else ""
    return first.lstrip("* ").strip()


def registry() -> dict[str, CircuitFile]:
    """Every built-in circuit, by name."""
    return {p.stem: CircuitFile(p.stem, p, _describe(p)) for p in sorted(FOLDER.glob("*.cir"))}


def path_of(name: str) -> Path | None:
    """The netlist of built-in circuit `name`, or None."""
    entry = registry().get(name)
    return entry.path if entry else None

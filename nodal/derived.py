"""Derived equations kept on disk, so that a second process does not derive a netlist again.

`nodal.equations` looks here before it parses and derives: an entry is a pickled `Equations`
(checked by `check_solvable` before it was stored), in `nodal.files.cache_dir("derived")`,
named by a hash of everything the derivation depends on:

- the netlist text, with every file it includes (`netlist.read_source`), and the name it is
  shown under in messages;
- the command line's stand-ins for its `*@` directives and the command;
- nodalnet's version and a digest of the `nodal` package's own source files, so that an edited
  checkout never reads an entry an older derivation wrote; the Python and Sympy versions.

An entry that cannot be read, does not unpickle, or holds anything but the `Equations` of its
own key is ignored and written again; a cache folder that cannot be written costs the next
process a derivation, never an error. NODALNET_CACHE="" switches the cache off.
"""

from __future__ import annotations

import hashlib
import pickle
import platform
from functools import lru_cache
from pathlib import Path

from .files import atomic_write, cache_dir

#: bumped when the entry's layout changes
FORMAT = 1
_PACKAGE = Path(__file__).resolve().parent


@lru_cache(maxsize=1)
def code_version() -> str:
    """nodalnet's version, then a digest of every `nodal/**/*.py` and of the library versions
    the pickled expressions depend on."""
    import sympy

    from importlib.metadata import PackageNotFoundError, version

    try:
        release = version("nodalnet")
    except PackageNotFoundError:        # not installed (a checkout on PYTHONPATH)
        release = "unreleased"
    digest = hashlib.sha256()
    for path in sorted(_PACKAGE.rglob("*.py")):
        digest.update(str(path.relative_to(_PACKAGE)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    digest.update(f"{platform.python_version()} {sympy.__version__} {FORMAT}".encode())
    return f"{release}+{digest.hexdigest()[:16]}"


def key(source: str, shown: str, given, command: str) -> str:
    """The entry name of one derivation (see the module docstring)."""
    text = "\0".join([code_version(), shown, repr(given), command, source])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def folder() -> Path | None:
    return cache_dir("derived")


def _path(entry: str) -> Path | None:
    root = folder()
    return None if root is None else root / f"{entry}.pickle"


def load(entry: str):
    """The `Equations` stored under `entry`, or None (absent, unreadable, corrupt, stale)."""
    import sympy

    from .mna import Equations

    path = _path(entry)
    if path is None:
        return None
    try:
        blob = path.read_bytes()
    except OSError:
        return None
    try:
        # Sympy rebuilds each unpickled node through its constructor; the stored nodes are
        # already in canonical form (Sympy's invariant expr.func(*expr.args) == expr), so
        # evaluating them again would only cost time (seconds on a 24-junction circuit)
        with sympy.evaluate(False):
            stored = pickle.loads(blob)
    except Exception:                   # a truncated or foreign file: derive and rewrite it
        return None
    if (not isinstance(stored, tuple) or len(stored) != 3 or stored[:2] != (FORMAT, entry)
            or not isinstance(stored[2], Equations)):
        return None
    return stored[2]


def store(entry: str, eq) -> bool:
    """Write `eq` under `entry`; False where the folder cannot be written (no error)."""
    path = _path(entry)
    if path is None:
        return False
    try:
        blob = pickle.dumps((FORMAT, entry, eq), protocol=pickle.HIGHEST_PROTOCOL)
        atomic_write(path, blob)
    except (OSError, pickle.PicklingError, TypeError, AttributeError, RecursionError):
        return False
    return True

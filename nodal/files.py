"""Writing files so that an interruption never leaves half of one, and a failure leaves none.

    atomic_write(path, b"...")                     one file: temp file, fsync, rename
    atomic_write(path, lambda f: np.save(f, a))    ... or a writer of a binary file object
    with OutputSet() as out:                       several files that appear together or not
        out.write("out.wav", write_wav)            at all: each goes to a temp file in its own
        out.write("states.npy", write_npy)         folder; all are renamed at the end, and if
                                                   anything raises, every temp file is removed

Temporary files are named `.NAME.<random>.tmp` beside their target, so `orphans(folder)` can
find (and `remove_orphans` delete) what a killed process left behind. Files get the user's
normal permissions (the umask), not mkstemp's private 0600. `nodal` and `nets` both write
through here; this module imports nothing of either.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Callable, Union

Payload = Union[bytes, str, Callable]

TEMP_SUFFIX = ".tmp"


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _temp_for(path: Path) -> tuple[int, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)


def _fill(fd: int, tmp: str, payload: Payload) -> None:
    with os.fdopen(fd, "wb") as f:
        if callable(payload):
            payload(f)
        else:
            f.write(payload.encode() if isinstance(payload, str) else payload)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, _umask_mode())


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, payload: Payload) -> None:
    """Write `payload` (bytes, text, or a function of a binary file) to `path` atomically."""
    path = Path(path)
    fd, tmp = _temp_for(path)
    try:
        _fill(fd, tmp, payload)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def json_default(value):
    """JSON for numpy/torch scalars and arrays, and paths (the one encoder nodalnet uses)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _strict(value):
    """Plain JSON values: a non-finite float becomes "inf"/"-inf" (a free-running window, say) or
    None (NaN: a figure not measured); objects with `as_dict` become their dict."""
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if hasattr(value, "as_dict"):
        return _strict(value.as_dict())
    return value


def to_json(obj, indent: int | None = 2) -> str:
    """Strict JSON text of `obj` (any reader takes it: no NaN or Infinity tokens)."""
    return json.dumps(_strict(obj), indent=indent, default=json_default, allow_nan=False)


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write(path, to_json(obj))


class OutputSet:
    """Several outputs written together: all of them, or (on any error) none of them."""

    def __init__(self) -> None:
        self._pending: list[tuple[str, Path]] = []

    def write(self, path: str | Path, payload: Payload) -> None:
        path = Path(path)
        fd, tmp = _temp_for(path)
        self._pending.append((tmp, path))
        _fill(fd, tmp, payload)

    def discard(self) -> None:
        for tmp, _ in self._pending:
            if os.path.exists(tmp):
                os.unlink(tmp)
        self._pending.clear()

    def commit(self) -> None:
        for tmp, path in self._pending:
            os.replace(tmp, path)
        for folder in {path.parent for _, path in self._pending}:
            _fsync_dir(folder)
        self._pending.clear()

    def __enter__(self) -> "OutputSet":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


def orphans(folder: str | Path) -> list[Path]:
    """Temporary files that a killed writer left in `folder`."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.name.startswith(".") and p.name.endswith(TEMP_SUFFIX) and p.is_file())


def remove_orphans(folder: str | Path) -> int:
    found = orphans(folder)
    for p in found:
        p.unlink(missing_ok=True)
    return len(found)


CACHE_ENV = "NODALNET_CACHE"


def cache_dir(kind: str) -> Path | None:
    """The folder of one kind of on-disk cache, or None when caching to disk is switched off.

    kind: "kernels" (generated solver kernels and numba's machine code, `nodal.fast`) or
    "datasets" (simulated training data, `nets.data`); other kinds get their own folder alike.
    The root is $NODALNET_CACHE when it is set, else $XDG_CACHE_HOME/nodalnet (XDG_CACHE_HOME
    defaults to ~/.cache); each kind is a subfolder of it. NODALNET_CACHE set to an empty
    string switches every disk cache off: kernels compile in memory, datasets are simulated
    again each time. The folder is not created here.
    """
    root = os.environ.get(CACHE_ENV)
    if root is None:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nodalnet"
    elif not root:
        return None
    return Path(root) / kind


def check_writable(folder: str | Path) -> None:
    """Raise PermissionError (with the folder named) if files cannot be created in `folder`."""
    folder = Path(folder)
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write into {folder}")


def check_output_file(out: Path, error: type[Exception], example: str) -> None:
    """`out` can be written as one file: else `error` naming what to change (--out)."""
    if out.is_dir():
        raise error(f"{out} is a folder: give the file to write, e.g. {out}/{example}")
    try:
        check_writable(out.parent)
    except PermissionError as exc:
        raise error(f"cannot write {out}: {exc}; choose another --out") from None


def write_output_file(out: Path, text: str, error: type[Exception]) -> Path:
    """`text` to `out` atomically (nothing there on failure); `error` names a failed write."""
    try:
        atomic_write(out, text)
    except OSError as exc:
        raise error(f"cannot write {out}: {exc.strerror or exc}; choose another "
                    "--out") from None
    return out

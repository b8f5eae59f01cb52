"""Trained runs out to the engines people play: `nodalnet export RUN --format F --out FILE`.

    path = nets.export.export("runs/gru", "rtneural", "model.json")

    format     model kinds          file                         loaded by
    rtneural   gru, gru-sm, lstm    RTNeural JSON (`rtneural`)   AIDA-X, Proteus, ChowDSP plug-ins
    nam        lstm                 .nam (`nam`)                 Neural Amp Modeler plug-in
    c          stn                  C99 source (`c`)             any C compiler: init(), process()

A circuit (not a run) goes to C through `nodal.ccode` (`nodalnet export CIRCUIT --format c`).

Each file holds the trained network with our input scaling, readout and skip folded in, at
the run's sample rate, so it alone reproduces `nodalnet simulate --model RUN` (volts in,
volts out). Nothing is written unless the whole file could be made: a kind a format cannot
hold (UnsupportedExportError), a folder that is not a run (RunDirectoryError) or an output
that cannot be written (ExportPathError) stop before any file appears.
"""

from __future__ import annotations

import pickle
from pathlib import Path

from nodal.files import check_output_file, to_json, write_output_file

from ..errors import RunDirectoryError
from . import c, nam, rtneural
from .errors import ExportError, ExportPathError, UnsupportedExportError

#: format -> (module, the model kinds it holds)
FORMATS = {"rtneural": (rtneural, rtneural.KINDS), "nam": (nam, nam.KINDS), "c": (c, c.KINDS)}

__all__ = ["FORMATS", "ExportError", "ExportPathError", "UnsupportedExportError", "export",
           "formats_for", "render"]


def formats_for(kind: str) -> list[str]:
    return [name for name, (_, kinds) in FORMATS.items() if kind in kinds]


def _check_format(fmt: str, kind: str) -> None:
    if fmt not in FORMATS:
        raise UnsupportedExportError(f"unknown format {fmt!r}; choose one of "
                                     f"{', '.join(FORMATS)}")
    if kind not in FORMATS[fmt][1]:
        others = formats_for(kind)
        raise UnsupportedExportError(
            f"{fmt} cannot hold a {kind!r} model ({fmt} holds "
            f"{', '.join(FORMATS[fmt][1])}); "
            + (f"a {kind!r} model exports to: {', '.join(others)}" if others
               else f"no format holds a {kind!r} model yet"))


def _load(run_dir: Path):
    from ..checkpoint import load_run

    try:
        return load_run(run_dir)
    except (ValueError, KeyError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        # run.json or the weights file unreadable, or weights of another model
        first = (str(exc).strip().splitlines() or [""])[0][:120]
        raise RunDirectoryError(f"{run_dir} is not a readable run ({type(exc).__name__}: "
                                f"{first}); export a folder written by `nodalnet train --out`") \
            from exc


def _check_output(out: Path) -> None:
    check_output_file(out, ExportPathError, "model.json")


def render(model, fmt: str, run_dir: str | Path = "run") -> str:
    """The text of `model` in `fmt` (checks that the format holds the model's kind)."""
    _check_format(fmt, model.spec["name"])
    module = FORMATS[fmt][0]
    if module is c:
        return c.source(model, run_dir)
    return to_json(module.model_dict(model, run_dir), indent=None) + "\n"


def export(run_dir: str | Path, fmt: str, out: str | Path) -> Path:
    """Write the run's best model to `out` in `fmt`; returns `out`."""
    run_dir, out = Path(run_dir), Path(out)
    if fmt not in FORMATS:
        _check_format(fmt, "")
    _check_output(out)
    model = _load(run_dir)
    return write_output_file(out, render(model, fmt, run_dir), ExportPathError)

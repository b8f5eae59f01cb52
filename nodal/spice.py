"""ngspice as the reference: run the same `.cir` file on the same input, read the samples back.

The input (and any control) source is replaced by an XSPICE file source through the given
samples (linear interpolation, as a PWL source, but without PWL's cost quadratic in its
length); the transient runs with a maximum step of a fraction of a sample and, unless told
otherwise, tight tolerances (`REFERENCE_OPTIONS`), and the solution is read at the sample
times from a binary raw file (float64), interpolated where ngspice placed no point there.

A transient that stops short ("Timestep too small", an aborted run: ngspice still writes the
points it reached) raises `IncompleteTransient`, never samples held past where ngspice stopped.
`reference` retries such a run once at ngspice's default accuracy with the gear method
(`RETRY_OPTIONS`) and says so in the result's `note`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import NodalError
from .netlist import GROUND, GROUND_ALIASES, Netlist
from .netlist.dialects import LTSPICE_ONLY


#: The reference's tolerances: far tighter than ngspice's defaults (reltol 1e-3, abstol 1e-12,
#: vntol 1e-6, chgtol 1e-14, trtol 7), so that at a 16th of a sample it is converged.
REFERENCE_OPTIONS = {"reltol": 1e-7, "abstol": 1e-15, "vntol": 1e-10, "chgtol": 1e-18,
                     "trtol": 1}
#: ngspice's own defaults: no `.options` line at all.
DEFAULT_OPTIONS: dict = {}
#: The one retry when the tight reference stops short: ngspice's default tolerances, the gear
#: method (stable on stiff switching) and more iterations per time point.
RETRY_OPTIONS = {"reltol": 1e-3, "method": "gear", "itl4": 100}

#: ngspice's words for a transient that did not finish (stdout or stderr, any case)
_STOPPED = re.compile(r"timestep too small|simulation\(s\) aborted|transient solution failed",
                      re.IGNORECASE)


class NgspiceError(NodalError):
    """ngspice is missing, or failed on a deck."""


class IncompleteTransient(NgspiceError):
    """ngspice's transient stopped before its end: `reached` of `stop` seconds, `reason` its
    message; the points it wrote are not a result."""

    def __init__(self, file: str, reached: float, stop: float, reason: str, options: dict):
        self.file, self.reached, self.stop, self.reason = file, reached, stop, reason
        self.options = dict(options or {})
        told = _options_text(self.options) or "ngspice's default options"
        super().__init__(f"ngspice stopped the transient of {file} at t = {reached:.6g} s of "
                         f"{stop:.6g} s ({reason}) with {told}; its output is not a result")


@dataclass
class SpiceResult:
    """Node voltages at the sample times [time] by node name; wall time of the run (s)."""

    voltages: dict[str, np.ndarray]
    branch_currents: dict[str, np.ndarray]
    seconds: float
    #: the `.options` ngspice ran with, and what `reference` had to do to get a full run
    options: dict | None = None
    note: str = ""

    def voltage(self, a: str, b: str = GROUND) -> np.ndarray:
        va = self.voltages[a] if a != GROUND else 0.0
        vb = self.voltages[b] if b != GROUND else 0.0
        return va - vb


def available() -> bool:
    return shutil.which("ngspice") is not None


def _pwl(values: np.ndarray, sample_rate: float) -> str:
    t = np.arange(len(values)) / sample_rate
    pairs = [f"{ti:.17g} {vi:.17g}" for ti, vi in zip(t, values, strict=True)]
    lines = ["+ " + " ".join(pairs[k:k + 6]) for k in range(0, len(pairs), 6)]
    return "PWL(\n" + "\n".join(lines) + "\n+ )"


def _filesource(name: str, nodes: tuple[str, str], path: str) -> str:
    """An XSPICE file source: linear interpolation like PWL, but linear time in its length
    (an inline PWL with N points costs ngspice O(N^2)). A ground alias is written 0: in the
    brackets of a vector connection ngspice does not take `gnd` for ground."""
    nodes = tuple("0" if n.lower() in GROUND_ALIASES else n for n in nodes)
    return (f"a_{name} %vd([{nodes[0]} {nodes[1]}]) src_{name}\n"
            f".model src_{name} filesource (file=\"{path}\" amploffset=[0] amplscale=[1] "
            "timeoffset=0 timescale=1 timerelative=false amplstep=false)")


def deck(net: Netlist, signals: dict[str, np.ndarray], sample_rate: float, length: int,
         raw_path: str, substeps: float = 16, values: dict[str, float] | None = None,
         folder: str | None = None, options: dict | None = REFERENCE_OPTIONS) -> str:
    """The netlist with the given sources driven by the samples, a `.tran` and a binary `write`.

    Voltage sources become XSPICE file sources reading `folder/<name>.txt` (written here);
    current sources (or no folder) an inline PWL. The `.tran` step and max step are a
    `substeps`-th of a sample (0.25: four samples). options: ngspice `.options` (name ->
    value); `REFERENCE_OPTIONS` (the default) or None / {} for ngspice's own defaults.
    """
    lines = net.text.splitlines()
    by_name = {e.name: e for e in net.elements}
    inside = [name for name in signals
              if "." in name or getattr(by_name[name].line, "chain", ())]
    edits = _top_edits(net, signals, inside, sample_rate, folder, lines)
    kept: list[str] = []
    in_control = False
    for k, line in enumerate(lines):
        low = line.strip().lower()
        if in_control:
            in_control = not low.startswith(".endc")
            continue
        if low.startswith(".control"):
            in_control = True
            continue
        if k in edits:
            kept += edits[k]
            continue
        if re.match(r"^\.(tran|end)\b", low) and not low.startswith(".ends"):
            continue
        if low.split()[:1] and low.split()[0] in LTSPICE_ONLY:     # ngspice stops at them
            continue
        kept.append(line)
    period = 1.0 / sample_rate
    for name, values_ in signals.items():
        if name in inside:
            continue
        el = by_name[name]
        samples = np.asarray(values_, dtype=np.float64)
        if folder is not None and el.kind == "V":
            path = str(Path(folder) / f"{name}.txt")
            t = np.arange(len(samples)) / sample_rate
            np.savetxt(path, np.stack([t, samples], 1), fmt="%.17g")
            kept.append(_filesource(name, el.nodes, path))
        else:
            kept.append(f"{name} {el.nodes[0]} {el.nodes[1]} {_pwl(samples, sample_rate)}")
    step = period / substeps
    stop = (length - 1) * period
    if options:
        kept.append(_options_text(options))
    kept.append(f".tran {step:.17g} {stop:.17g} 0 {step:.17g}")
    control = [".control", "set filetype=binary"]
    for name, value in (values or {}).items():
        control.append(f"alterparam {name} = {value:.17g}")
    if values:
        control.append("reset")
    control += ["run", f"write {raw_path}", ".endc", ".end"]
    return "\n".join(kept + control) + "\n"


def _card_span(lines: list[str], k: int) -> list[int]:
    """Line k and the continuation lines (`+`) after it."""
    span = [k]
    while span[-1] + 1 < len(lines) and lines[span[-1] + 1].lstrip().startswith("+"):
        span.append(span[-1] + 1)
    return span


def _top_edits(net: Netlist, signals: dict[str, np.ndarray], inside: list[str],
               sample_rate: float, folder: str | None, lines: list[str]) -> dict[int, list[str]]:
    """The top file's lines replaced {index: replacement}: the sources inside subcircuits and
    includes driven where they are written (their cards, or the includes that lead to copies:
    `_drive_inside`), the top-level ones dropped (`deck` appends their drive)."""
    if inside and folder is None:
        raise NgspiceError(f"{inside[0]} is inside a subcircuit or an included file: the deck "
                           "drives it from copies of its files, and needs a folder")
    edits = _drive_inside(net, {n: signals[n] for n in inside}, sample_rate, folder or "",
                          lines) if inside else {}
    by_name = {e.name: e for e in net.elements}
    for name in signals:
        if name not in inside:
            edits.update({k: [] for k in _card_span(lines, by_name[name].line - 1)})
    return edits


def _drive_inside(net: Netlist, signals: dict[str, np.ndarray], sample_rate: float,
                  folder: str, top: list[str]) -> dict[int, list[str]]:
    """Sources inside a subcircuit or an included file, driven where they are written: each
    card is replaced in place (its own local name and nodes) by a file source (a PWL for a
    current source), in a copy of its file written to `folder`, and the includes that lead
    to it name the copies. Returns the top file's edits {line index: its replacement lines}
    (`top`: its lines). A subcircuit of more than one instance would drive every instance:
    refused."""
    from .netlist import decode
    from .netlist.includes import include_card

    edits: dict[str, dict[int, list[str]]] = {}       # file -> {line index: replacement}
    copies: dict[str, str] = {}

    def lines_of(file: str) -> list[str]:
        return top if file == net.file else decode(Path(file).read_bytes(), file).splitlines()

    for name, samples in signals.items():
        el = next(e for e in net.elements if e.name == name)
        chain = getattr(el.line, "chain", ())
        file = el.line.file if chain else net.file
        where = (file, int(el.line), chain)
        twins = [e.name for e in net.elements if e is not el and (
            e.line.file if getattr(e.line, "chain", ()) else net.file, int(e.line),
            getattr(e.line, "chain", ())) == where]
        if twins:
            raise NgspiceError(
                f"{name} is written in a subcircuit that has {len(twins) + 1} instances "
                f"(also {', '.join(twins[:3])}): the deck drives a source where it is written, "
                "which would drive every instance; give the source its own instance")
        text = lines_of(file)
        words = text[where[1] - 1].split()
        samples = np.asarray(samples, dtype=np.float64)
        if el.kind == "V":
            data = str(Path(folder) / f"{name}.txt")
            np.savetxt(data, np.stack([np.arange(len(samples)) / sample_rate, samples], 1),
                       fmt="%.17g")
            card = _filesource(words[0], (words[1], words[2]), data).splitlines()
        else:
            card = [f"{words[0]} {words[1]} {words[2]} {_pwl(samples, sample_rate)}"]
        span = _card_span(text, where[1] - 1)
        edits.setdefault(file, {}).update({k: card if k == span[0] else [] for k in span})
        for includer, at in chain:           # innermost first: each include reads a copy
            copies.setdefault(file, str(Path(folder) / f"include{len(copies)}_{Path(file).name}"))
            section = net.include_lines.get((includer, at), ("", ""))[1]
            edits.setdefault(includer, {})[at - 1] = [include_card(copies[file], section)]
            file = includer
    for file, mine in edits.items():
        if file == net.file:
            continue
        # the copy's other includes read their files where they are (the reader's resolved
        # paths), not from ngspice's folder
        for (owner, at), (path, section) in net.include_lines.items():
            if owner == file and at - 1 not in mine:
                mine[at - 1] = [include_card(path, section)]
        text = lines_of(file)
        out = [new for k, line in enumerate(text) for new in mine.get(k, [line])]
        Path(copies[file]).write_text("\n".join(out) + "\n")
    return edits.get(net.file, {})


def _options_text(options: dict | None) -> str:
    """`.options a=1 b=gear` for a dict of them ("" for none)."""
    if not options:
        return ""
    return ".options " + " ".join(f"{k}={v:g}" if isinstance(v, (int, float)) else f"{k}={v}"
                                  for k, v in options.items())


def read_raw(path: str | Path) -> tuple[list[str], np.ndarray]:
    """A binary ngspice raw file (real data) -> (variable names, data [points, variables])."""
    blob = Path(path).read_bytes()
    marker = blob.find(b"Binary:\n")
    if marker < 0:
        raise NgspiceError(f"{path} is not a binary raw file")
    header = blob[:marker].decode(errors="replace").splitlines()
    n_vars = n_points = 0
    names: list[str] = []
    in_vars = False
    for line in header:
        if line.startswith("No. Variables:"):
            n_vars = int(line.split(":")[1])
        elif line.startswith("No. Points:"):
            n_points = int(line.split(":")[1])
        elif line.startswith("Variables:"):
            in_vars = True
        elif in_vars and line.strip():
            parts = line.split()
            names.append(parts[1])
    body = blob[marker + len("Binary:\n"):]
    data = np.frombuffer(body[: len(body) // 8 * 8], dtype=np.float64)
    if data.size < n_points * n_vars:
        raise NgspiceError(f"{path}: the raw file holds {data.size // max(n_vars, 1)} of its "
                           f"{n_points} points (cut short)")
    return names, data[: n_points * n_vars].reshape(n_points, n_vars)


def simulate(net: Netlist, signals: dict[str, np.ndarray], sample_rate: float,
             substeps: float = 16, values: dict[str, float] | None = None,
             timeout: float = 600.0, options: dict | None = REFERENCE_OPTIONS) -> SpiceResult:
    """Run ngspice on `net` with `signals` (source name -> samples [time], volts).

    substeps: the step and max step are a `substeps`-th of a sample. options: ngspice
    `.options` (default: the tight `REFERENCE_OPTIONS`; None or {}: ngspice's defaults).

    Returns node voltages at the sample times. Raises `NgspiceError` if ngspice is missing or
    fails, quoting its message.
    """
    if not available():
        raise NgspiceError("ngspice is not installed (Debian: apt-get install ngspice)")
    length = len(next(iter(signals.values())))
    with tempfile.TemporaryDirectory(prefix="nodalnet-spice-") as tmp:
        raw = str(Path(tmp) / "out.raw")
        text = deck(net, signals, sample_rate, length, raw, substeps, values, folder=tmp,
                    options=options)
        cir = Path(tmp) / "deck.cir"
        cir.write_text(text)
        start = time.perf_counter()
        proc = subprocess.run(["ngspice", "-b", str(cir)], capture_output=True, text=True,
                              errors="replace",
                              timeout=timeout, cwd=tmp)
        seconds = time.perf_counter() - start
        if not Path(raw).exists() or Path(raw).stat().st_size == 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise NgspiceError(f"ngspice failed on {net.file}:\n{tail}")
        names, data = read_raw(raw)
    stop = (length - 1) / sample_rate
    _check_complete(net.file, data, stop, proc.stdout + proc.stderr, options)
    t = data[:, 0]
    want = np.arange(length) / sample_rate
    idx = np.clip(np.searchsorted(t, want - 1e-6 / sample_rate), 0, len(t) - 1)
    exact = np.abs(t[idx] - want) <= 1e-6 / sample_rate
    voltages: dict[str, np.ndarray] = {}
    currents: dict[str, np.ndarray] = {}
    for k, name in enumerate(names[1:], start=1):
        col = data[:, k]
        # keep the exact timepoint where ngspice placed one (every PWL corner), else interpolate
        values_at = np.where(exact, col[idx], np.interp(want, t, col))
        m = re.match(r"^v\((.+)\)$", name)
        if m:
            voltages[m.group(1).lower()] = values_at
        elif name.endswith("#branch"):
            currents[name[: -len("#branch")].lower()] = values_at
        else:
            voltages[name.lower()] = values_at
    return SpiceResult(voltages, currents, seconds, options=dict(options or {}))


def _check_complete(file: str, data: np.ndarray, stop: float, output: str,
                    options: dict | None) -> None:
    """Raise `IncompleteTransient` unless the raw data run to `stop`, finite, and ngspice did
    not say it stopped."""
    reached = float(data[-1, 0]) if len(data) else 0.0
    said = [line.strip() for line in output.splitlines() if _STOPPED.search(line)]
    short = reached < stop - max(1e-9 * stop, 1e-15)
    if short or said:
        reason = f"{len(data)} points, the last at t = {reached:.6g} s"
        if said:
            reason = _STOPPED.search(said[0]).group(0)
            where = re.search(r"trouble with (.+)$", said[0])
            reason += f", trouble with {where.group(1).strip()}" if where else ""
        raise IncompleteTransient(file, reached, stop, reason, options or {})
    bad = ~np.isfinite(data)
    if bad.any():
        row = int(np.argmax(bad.any(axis=1)))
        raise IncompleteTransient(file, float(data[max(row - 1, 0), 0]), stop,
                                  f"non-finite values from t = {data[row, 0]:.6g} s",
                                  options or {})


def reference(net: Netlist, signals: dict[str, np.ndarray], sample_rate: float,
              substeps: float = 16, values: dict[str, float] | None = None,
              timeout: float = 600.0) -> SpiceResult:
    """`simulate` at the tight `REFERENCE_OPTIONS`; if ngspice stops short there, once more
    with `RETRY_OPTIONS`, the result's `note` saying so. Raises `IncompleteTransient` (both
    reasons) when the retry stops short too."""
    try:
        return simulate(net, signals, sample_rate, substeps, values, timeout,
                        options=REFERENCE_OPTIONS)
    except IncompleteTransient as first:
        try:
            result = simulate(net, signals, sample_rate, substeps, values, timeout,
                              options=RETRY_OPTIONS)
        except IncompleteTransient as second:
            raise IncompleteTransient(
                net.file, second.reached, second.stop,
                f"{second.reason}; at the reference tolerances: {first.reason}",
                RETRY_OPTIONS) from None
        result.note = (f"ngspice stopped at t = {first.reached:.6g} s of {first.stop:.6g} s "
                       f"at the reference tolerances ({first.reason}); the reference is its "
                       f"rerun with `{_options_text(RETRY_OPTIONS)}`, less accurate")
        return result

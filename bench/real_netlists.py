"""Real netlists as a new user meets them: does nodalnet run them, and does it agree with ngspice?

    python bench/real_netlists.py FOLDER [--duration 0.05] [--peak 1] [--timeout 300]
                                         [--json results.json]

Every `.cir`, `.net` and `.sp` file in FOLDER (not its subfolders) runs in its own process (a
crash or a hang costs one row, not the bench): read, derive, a plucked string (band-limited to
5 kHz, `--peak` volts) through the solver and through ngspice, both at 8x oversampling
(`nodal.verify.agreement`), ESR of the output at 48 kHz. One row per file: `runs` with the ESR
(and a note where ngspice's reference needed its looser rerun), `error` with the first line of
the named error (nodalnet's own: a card it does not model, a missing include...), `crash`
(any other exception: a bug) or `timeout`.

Which source is the input and which node the output: the netlist's own `*@` lines; else a line
for the file in FOLDER/directives.txt (or the file given as `--directives`)::

    # file            what to use (`skip REASON` for an include file that is no circuit)
    fuzz.cir          input=V2 output=out control=VLFO
    fuzz_sub.cir      skip included by fuzz.cir

else nodalnet's guess (`nodal.directives`: the first time-varying source, the first likely
output node), marked `guess` in the row.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
import traceback
from pathlib import Path

SUFFIXES = (".cir", ".net", ".sp")
SIDE_FILE = "directives.txt"


def read_side_file(folder: Path, path: Path | None = None) -> dict[str, dict]:
    """FOLDER/directives.txt (or `path`) -> {file name: {"input", "output", "controls"} or
    {"skip"}}."""
    path = folder / SIDE_FILE if path is None else path
    entries: dict[str, dict] = {}
    if not path.is_file():
        return entries
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, *words = line.split()
        if words and words[0] == "skip":
            entries[name] = {"skip": " ".join(words[1:]) or "skipped"}
            continue
        entry: dict = {"controls": []}
        for word in words:
            key, _, value = word.partition("=")
            if key == "control" and value:
                entry["controls"].append(value)
            elif key in ("input", "output") and value:
                entry[key] = value
            else:
                sys.exit(f"{path}:{number}: `{word}`: write input=SOURCE output=NODE "
                         "control=SOURCE, or skip REASON")
        entries[name] = entry
    return entries


def netlists(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)


# -- one file, in its own process ------------------------------------------------------------
def _equations(path: Path, entry: dict) -> tuple[object, str, object]:
    """(equations, how the directives were chosen, the Given used)."""
    from nodal.directives import DirectivesMissing, Given, equations

    given = Given(entry.get("input"), entry.get("output"), tuple(entry.get("controls", ())))
    how = "side file" if given else "own *@"
    try:
        return equations(path, given, "verify"), how, given
    except DirectivesMissing as missing:
        guess = missing.guess()
        if guess is None:
            raise
        merged = Given(given.input_source or guess.input_source,
                       given.output_node or guess.output_node, given.control_sources)
        return equations(path, merged, "verify"), "guess", merged


def run_one(path: Path, entry: dict, duration: float, peak: float) -> dict:
    """Read, derive and compare one netlist; a dict for the row (never raises)."""
    from nodal import signals
    from nodal.errors import NodalError
    from nodal.verify import agreement

    row: dict = {"file": path.name, "status": "error", "stage": "read", "directives": "",
                 "how": "", "message": "", "esr": None, "note": "", "seconds": 0.0}
    start = time.perf_counter()
    try:
        eq, how, given = _equations(path, entry)
        net = eq.netlist
        out = ",".join(net.output) if net.output[1] != "0" else net.output[0]
        row.update(how=how, stage="solve", directives=f"input={net.input.upper()} output={out}"
                   + "".join(f" control={c.upper()}" for c in net.controls))
        x = signals.plucked_string(duration, 48000.0, peak=peak, cutoff=5000, seed=1)
        a = agreement(eq, x, "plucked string", 48000.0, oversample=8)
        row.update(status="runs", stage="done", esr=a.output_esr, note=a.note)
        if not math.isfinite(a.output_esr):
            row.update(status="crash", message=f"ESR is {a.output_esr}")
    except NodalError as exc:
        row.update(status="error", error=type(exc).__name__,
                   message=str(exc).splitlines()[0].replace(str(path), path.name))
    except Exception as exc:  # noqa: BLE001 - a bug in nodalnet: the row says so
        where = traceback.extract_tb(exc.__traceback__)[-1]
        row.update(status="crash", message=f"{type(exc).__name__}: {exc}".splitlines()[0],
                   error=f"{Path(where.filename).name}:{where.lineno}")
    row["seconds"] = time.perf_counter() - start
    return row


def _worker(argv: list[str]) -> None:
    path, entry, duration, peak = Path(argv[0]), json.loads(argv[1]), float(argv[2]), \
        float(argv[3])
    print("\n" + json.dumps(run_one(path, entry, duration, peak), default=str))


def run_isolated(path: Path, entry: dict, duration: float, peak: float,
                 timeout: float) -> dict:
    """`run_one` in a fresh Python process, so that a crash or a hang is one row."""
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", str(path),
               json.dumps(entry), repr(duration), repr(peak)]
    start = time.perf_counter()
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"file": path.name, "status": "timeout", "message": f"over {timeout:g} s",
                "seconds": time.perf_counter() - start}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        last = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        return {"file": path.name, "status": "crash", "message": f"the process died: {last}",
                "seconds": time.perf_counter() - start}
    return json.loads(lines[-1])


# -- the bench -------------------------------------------------------------------------------
def table(rows: list[dict]) -> str:
    out = [f"{'file':<28} {'status':<8} {'ESR 8x':>9}  {'directives':<34} detail"]
    for r in rows:
        esr = f"{r['esr']:.2e}" if r.get("esr") is not None else "-"
        how = f" ({r['how']})" if r.get("how") in ("guess", "side file") else ""
        detail = r.get("message") or ""
        if r.get("note"):
            detail = "ngspice needed its looser rerun (reltol=1e-3, gear)"
        if r.get("error") and r["status"] == "crash":
            detail += f" [{r['error']}]"
        out.append(f"{r['file']:<28} {r['status']:<8} {esr:>9}  "
                   f"{(r.get('directives') or '') + how:<34} {detail}")
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    out.append(f"{len(rows)} netlists: " + ", ".join(f"{n} {k}" for k, n in counts.items()))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        _worker(argv[1:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--duration", type=float, default=0.05,
                        help="seconds of plucked string at 48 kHz (default 0.05)")
    parser.add_argument("--peak", type=float, default=1.0, help="its peak, volts (default 1)")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds per netlist before it counts as a timeout (default 300)")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    parser.add_argument("--directives", type=Path,
                        help=f"the side file, where FOLDER cannot hold one [FOLDER/{SIDE_FILE}]")
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        parser.error(f"{args.folder}: not a folder")
    if args.directives is not None and not args.directives.is_file():
        parser.error(f"--directives {args.directives}: no such file")
    side = read_side_file(args.folder, args.directives)
    rows = []
    for path in netlists(args.folder):
        entry = side.get(path.name, {})
        if "skip" in entry:
            rows.append({"file": path.name, "status": "skipped", "message": entry["skip"]})
        else:
            rows.append(run_isolated(path, entry, args.duration, args.peak, args.timeout))
        print(table(rows[-1:]).splitlines()[1], file=sys.stderr, flush=True)
    print(table(rows))
    if args.json:
        from nodal.files import atomic_write_json
        atomic_write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())

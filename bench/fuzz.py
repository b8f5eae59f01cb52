"""Fuzzing nodalnet with bad input: every outcome must be a result or a named error.

    python bench/fuzz.py --cases 10000 --jobs 2          # the long run (counts per outcome)
    python bench/fuzz.py --cases 300 --seed 7 --show crash

Cases are generated from the built-in netlists by random mutations (values replaced by bad or
hostile ones, tokens and lines deleted, duplicated or swapped, nodes renamed, odd cards and
bytes inserted, the file truncated), from WAV files with damaged bytes, and from `--set`
values. Each case runs as a user's command would: read, derive, check, simulate a short input
with the differentiable torch path (no compile per case). The outcome is one of

    result        finite output
    named         a `NodalError` (what the user sees as one red line)
    nonfinite     a result holding NaN or inf                      -- a bug
    crash         any other exception (a traceback for the user)   -- a bug
    timeout       no answer within the case's time bound           -- a bug

`tests/test_fuzz.py` runs a few hundred cases of the same generator in `make test`.
"""

from __future__ import annotations

import argparse
import collections
import io
import random
import signal
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BAD_VALUES = [
    "0", "-1k", "-100n", "1e308", "1e400", "-0", "nan", "inf", "abc", "''", "{", "}", "{}",
    "{1e308*1e308}", "{1/0}", "{1,2}", "{lambda: 1}", "{().__class__}", "{a+}", "{(1}",
    "{10**(10**10)}", "{2^(2^(2^(2^10)))}", "{sqrt(-1)}", "{log(0)}", "{exp(1000)}",
    "{__import__('os')}", "{[x for x in (1,)]}", "{'a'*9}", "{x.y}", "{a[0]}", "{open}",
    "{1e-300*1e-300}", "{-1e308*10}", "1meg", "1e-300", "{if(1,2,3)}", "{max(1)}",
    "{foo(1)}", "{1 ? 2 : }", "{drive*0}", "{-drive}", "{0*x}", "1..2", "1e", "--1",
    "1k2", "{ }", "{1 2}", "{pwr(-2,0.5)}", "{1e999}",
]
ODD_LINES = [
    ";", "; only a comment", "+ 1", "+", ".param a={a}", ".param b={c}", ".param",
    ".param x=", ".model D1N4148 D(IS=1n)", ".model dx D(IS=0)", ".model dy D(N=-2)",
    ".model dz D(RS=-5)", ".model q1 NPN(BF=0)", ".model j1 NJF(BETA=1e30)",
    ".model m1 FOO(a=1)", ".subckt x a b", ".ends", "X1 a b nope", "*@ output 0",
    "*@ control vin", "*@ input", "*@ input vin", "*@ output", "*@ bogus x", "Q1 a b c",
    "W1 a b 1", ".include nothere.lib", ".lib nothere.lib tt", ".temp 50", ".ic v(out)=1",
    "E9 a 0 b 0 {1e30}", "R99 out 0 {1e308*1e308}", "C99 out 0 0", "L99 out 0 -1",
    "V9 x 0 DC {1e308*1e308}", "I9 0 out SIN(0 1 1k 0 -1e9)", "V8 y 0 PULSE(", "V7 z 0 PWL(1)",
    "R5 out", "D9 out 0", "D9 out 0 nomodel", ".end", ".control", ".endc", ".subckt",
    "G1 a 0 b 0 1 2 3", "B1 a 0 V={lambda: 1}", "R1 in out {R}", "Vin in 0 SIN(0 1 1k)",
    "Rloop a a 1k", "Vl1 n1 0 1", "Vl2 n1 0 2",
]
ODD_BYTES = [b"\xff", b"\xfe\xff", b"\x00", b"\x1a", b"\xe9", b"\r", b"\t", b"\x7f", b"\x80"]
CIRCUITS = ("rc_lowpass", "diode_clipper", "tube_screamer")


@dataclass
class Case:
    kind: str          # "netlist", "wav" or "set"
    seed: int
    data: bytes        # the netlist text or WAV bytes
    values: dict | None = None
    description: str = ""


def _builtin_texts() -> dict[str, str]:
    import circuits

    return {name: circuits.path_of(name).read_text() for name in CIRCUITS}


def _mutate_lines(lines: list[str], rng: random.Random) -> tuple[list[str], str]:
    lines = list(lines)
    op = rng.choice(["value", "value", "value", "delete-token", "duplicate", "delete-line",
                     "swap", "node", "insert", "insert", "model-param"])
    body = [i for i, ln in enumerate(lines) if i > 0 and ln.strip()]
    if not body:
        return lines, "empty"
    i = rng.choice(body)
    toks = lines[i].split()
    if op == "value" and len(toks) > 1:
        k = rng.randrange(1, len(toks))
        toks[k] = rng.choice(BAD_VALUES)
        lines[i] = " ".join(toks)
    elif op == "delete-token" and toks:
        del toks[rng.randrange(len(toks))]
        lines[i] = " ".join(toks)
    elif op == "duplicate":
        lines.insert(i, lines[i])
    elif op == "delete-line":
        del lines[i]
    elif op == "swap" and len(toks) > 2:
        a, b = rng.sample(range(len(toks)), 2)
        toks[a], toks[b] = toks[b], toks[a]
        lines[i] = " ".join(toks)
    elif op == "node" and len(toks) > 2 and not toks[0].startswith(("*", ".")):
        toks[rng.randrange(1, 3)] = rng.choice(["0", "gnd", "nowhere", "out", "in", "0x"])
        lines[i] = " ".join(toks)
    elif op == "model-param":
        models = [j for j, ln in enumerate(lines) if ln.lower().startswith(".model")]
        if models:
            j = rng.choice(models)
            p = rng.choice(["IS", "N", "RS", "BF", "BETA", "VTO", "CJO"])
            lines[j] = lines[j].rstrip(")") + f" {p}={rng.choice(BAD_VALUES)})"
    else:
        lines.insert(rng.randrange(1, len(lines) + 1), rng.choice(ODD_LINES))
    return lines, op


def _netlist_case(seed: int, texts: dict[str, str]) -> Case:
    rng = random.Random(seed)
    name = rng.choice(sorted(texts))
    lines = texts[name].splitlines()
    ops = []
    for _ in range(rng.choice([1, 1, 2, 3])):
        lines, op = _mutate_lines(lines, rng)
        ops.append(op)
    data = ("\n".join(lines) + "\n").encode("utf-8")
    roll = rng.random()
    if roll < 0.08:
        cut = rng.randrange(len(data))
        data = data[:cut]
        ops.append("truncate")
    elif roll < 0.16:
        at = rng.randrange(len(data))
        data = data[:at] + rng.choice(ODD_BYTES) + data[at:]
        ops.append("byte")
    return Case("netlist", seed, data, description=f"{name}: {', '.join(ops)}")


def _wav_bytes(rng: random.Random) -> bytes:
    import soundfile

    n = rng.choice([0, 1, 64, 480])
    channels = rng.choice([1, 1, 1, 2])
    x = np.sin(np.arange(n * channels).reshape(n, channels) * 0.1) * rng.choice([0.5, 1, 40])
    buf = io.BytesIO()
    soundfile.write(buf, x, rng.choice([8000, 48000, 1]) if n else 48000,
                    format="WAV", subtype=rng.choice(["FLOAT", "PCM_16", "DOUBLE"]))
    return buf.getvalue()


def _wav_case(seed: int) -> Case:
    rng = random.Random(seed)
    data = bytearray(_wav_bytes(rng))
    op = rng.choice(["truncate", "flip", "flip", "zero-header", "nan", "none", "garbage"])
    if op == "truncate" and len(data) > 1:
        data = data[: rng.randrange(1, len(data))]
    elif op == "flip":
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif op == "zero-header":
        data[rng.randrange(4, 44):44] = b"\x00" * 4
    elif op == "nan" and len(data) > 52:
        at = rng.randrange(44, len(data) - 8)
        data[at:at + 8] = np.array([np.nan]).tobytes()
    elif op == "garbage":
        data = bytearray(rng.randbytes(rng.randrange(1, 200)))
    return Case("wav", seed, bytes(data), description=f"wav: {op}")


def _set_case(seed: int) -> Case:
    rng = random.Random(seed)
    name = rng.choice(CIRCUITS)
    import nodal

    eq = nodal.equations(name)
    names = list(eq.component_values) + ["nope", "vin", ""]
    key = rng.choice(names)
    value = rng.choice([0.0, -1.0, -1e3, 1e308, 1e-308, float("nan"), float("inf"), 1e30,
                        1e-30, 1.0, 2.2e3, -0.0])
    return Case("set", seed, name.encode(), values={key: value},
                description=f"{name}: --set {key}={value!r}")


CLI_BAD = {
    "--rate": ["0", "-48000", "nan", "inf", "abc", "1e-9"],
    "--oversample": ["0", "-1", "abc", "1e9"],
    "--gain": ["nan", "inf", "abc", "-1e308"],
    "--set": ["r1", "r1=", "=1", "r1=abc", "nope=1", "r1=0", "r1=-1", "r1=nan", "c1=1e308"],
    "--control": ["vin=missing.wav", "x", "nope=in.wav", "vin=in.wav"],
    "--backend": ["gpu", "", "torch"],
    "--states": ["states.txt", "nodir/states.npy", "states.npy"],
}


def _cli_case(seed: int) -> Case:
    """`nodalnet simulate` with one or two bad arguments among good ones."""
    rng = random.Random(seed)
    args = ["simulate", rng.choice(CIRCUITS + ("nothere.cir", "")), "--input",
            rng.choice(["in.wav", "in.npy", "missing.wav", "in.txt"]), "--output",
            rng.choice(["out.wav", "out.npy", "out.txt", "nodir/out.wav"])]
    for option in rng.sample(sorted(CLI_BAD), rng.randint(1, 2)):
        args += [option, rng.choice(CLI_BAD[option])]
    return Case("cli", seed, "\0".join(args).encode(), description="nodalnet " + " ".join(args))


def make_case(seed: int, texts: dict[str, str] | None = None) -> Case:
    """Case number `seed`: 75 % netlists, 10 % WAV files, 10 % `--set` values, 5 % CLI lines."""
    texts = texts or _builtin_texts()
    kind = random.Random(seed * 7919 + 1).random()
    if kind < 0.75:
        return _netlist_case(seed, texts)
    if kind < 0.85:
        return _wav_case(seed)
    if kind < 0.95:
        return _set_case(seed)
    return _cli_case(seed)


def _run_cli(case: Case, folder: Path) -> tuple[str, str]:
    """Exit 0 with every output finite, or exit 2 with one `error:` line and nothing written."""
    import soundfile
    from typer.testing import CliRunner

    import cli

    work = folder / f"cli{case.seed}"
    work.mkdir(parents=True, exist_ok=True)
    signal_in = 0.5 * np.sin(np.arange(64) * 0.3)
    soundfile.write(str(work / "in.wav"), signal_in, 48000, subtype="FLOAT")
    np.save(work / "in.npy", signal_in)
    before = {p.relative_to(work) for p in work.rglob("*")}
    args = case.data.decode().split("\0")
    args = [str(work / a) if a.endswith((".wav", ".npy", ".txt", ".cir")) and "=" not in a
            else a for a in args]
    args = [a.replace("=in.wav", f"={work / 'in.wav'}") for a in args]
    result = CliRunner().invoke(cli.app, args)
    after = {p.relative_to(work) for p in work.rglob("*")}
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        exc = result.exception
        return "crash", f"{case.description}: {type(exc).__name__}: {exc}"
    if result.exit_code == 0:
        for name in after - before:
            data = (np.load(work / name) if name.suffix == ".npy" else
                    soundfile.read(str(work / name))[0] if name.suffix == ".wav" else None)
            if data is not None and not np.all(np.isfinite(data)):
                return "nonfinite", case.description
        return "result", ""
    if result.exit_code != 2:
        return "crash", f"{case.description}: exit {result.exit_code}"
    if after - before:
        return "crash", f"{case.description}: failed but wrote {sorted(map(str, after - before))}"
    return "named", "cli"


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout()


def _simulate(eq, values=None, samples: int = 48) -> np.ndarray:
    from nodal.render import render

    t = np.arange(samples) / 48000
    signal_in = 0.5 * np.sin(2 * np.pi * 1000 * t)
    y, x = render(eq, signal_in, 48000.0, values=values, backend="torch")
    return np.concatenate([np.ravel(y), np.ravel(x)])


def run_case(case: Case, folder: Path, seconds: float = 30.0) -> tuple[str, str]:
    """(outcome, detail) for one case; see the module docstring for the outcomes."""
    import nodal
    from nodal.audio import read_signal
    from nodal.errors import NodalError

    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        if case.kind == "netlist":
            path = folder / f"case{case.seed}.cir"
            path.write_bytes(case.data)
            eq = nodal.equations(path)
            out = _simulate(eq)
        elif case.kind == "wav":
            path = folder / f"case{case.seed}.wav"
            path.write_bytes(case.data)
            x, _ = read_signal(path)
            out = np.asarray(x)
        elif case.kind == "cli":
            return _run_cli(case, folder)
        else:
            eq = nodal.equations(case.data.decode())
            out = _simulate(eq, values=case.values)
        if not np.all(np.isfinite(out)):
            return "nonfinite", case.description
        return "result", ""
    except _Timeout:
        return "timeout", case.description
    except NodalError as exc:
        message = str(exc)
        if not message.strip():
            return "crash", f"{case.description}: {type(exc).__name__} with an empty message"
        return "named", type(exc).__name__
    except Exception as exc:  # noqa: BLE001 - any other exception is what we look for
        tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return "crash", f"{case.description}: {tb}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _worker(args) -> list[tuple[int, str, str]]:
    seeds, folder, seconds = args
    import warnings

    import torch

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    texts = _builtin_texts()
    return [(s, *run_case(make_case(s, texts), Path(folder), seconds)) for s in seeds]


def run(cases: int, seed: int = 0, jobs: int = 1, seconds: float = 30.0,
        folder: Path | None = None) -> list[tuple[int, str, str]]:
    import multiprocessing
    import tempfile

    seeds = list(range(seed, seed + cases))
    with tempfile.TemporaryDirectory() as tmp:
        where = str(folder or tmp)
        chunks = [(seeds[k::jobs * 8], where, seconds) for k in range(jobs * 8)]
        if jobs == 1:
            parts = [_worker(c) for c in chunks]
        else:
            with multiprocessing.get_context("spawn").Pool(jobs) as pool:
                parts = pool.map(_worker, chunks)
    return sorted(r for part in parts for r in part)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=30.0, help="time bound per case")
    parser.add_argument("--show", default="crash,nonfinite,timeout",
                        help="outcomes whose cases are listed")
    args = parser.parse_args()
    start = time.perf_counter()
    results = run(args.cases, args.seed, args.jobs, args.seconds)
    wall = time.perf_counter() - start
    counts = collections.Counter(outcome for _, outcome, _ in results)
    named = collections.Counter(detail for _, outcome, detail in results if outcome == "named")
    print(f"{len(results)} cases (seeds {args.seed}..{args.seed + args.cases - 1}) in "
          f"{wall:.0f} s with {args.jobs} jobs")
    for outcome in ("result", "named", "nonfinite", "crash", "timeout"):
        print(f"  {outcome:10s} {counts.get(outcome, 0)}")
    print("  named errors by class: " + ", ".join(f"{k} {v}" for k, v in named.most_common()))
    shown = set(args.show.split(","))
    for s, outcome, detail in results:
        if outcome in shown:
            print(f"  seed {s}: {outcome}: {detail}")


if __name__ == "__main__":
    main()

"""How parsing and the structural checks scale: `python bench/scale.py [SECTIONS...]`, and
how fast a netlist starts: `python bench/scale.py --startup NETLIST_OR_NAME...`.

An RC ladder of N sections (a source, then N times a 1 kOhm series resistor and a 10 nF
capacitor to ground: 2N + 1 elements) is parsed, derived (`nodal.derive`: stamps, the DC-path
check) and checked (`nodal.check_solvable`: structural and numeric singularity). Prints the
seconds of each step, one line per size (default: 200 and 1000 sections, i.e. 401 and 2,001
elements). Wall times on a shared machine are upper bounds.

`--boards N...` does the same on N copies of one Big Muff board (12 junction ports each, one
Newton block each; default 1 2 4): how the start-up grows with the blocks.

`--startup` runs `nodal.bench.startup` on each netlist (or built-in / bench circuit name): a
fresh process with an empty `NODALNET_CACHE` folder (cold: derive, build the torch laws,
compile the kernel, run 10 ms), then the same folder again (warm, best of 3), and prints the
seconds of each step and the real-time factor of the kernel in that process (0.25 s of
pluck). See bench/README.md for the figures.

Measured on the 2-core machine with a load average of 4-6 from other jobs:

    before (the reader with `sympify`, `subs` per entry, dense `matrix_rank`):
       200 sections:  parse 16.0 s, derive 0.39 s, check_solvable 259 s
      1000 sections:  parse 586 s, derive 1.5 s (check_solvable not run)
    after:
       200 sections:  parse 0.05 s, derive 0.12 s, check_solvable 0.02 s
      1000 sections:  parse 0.17 s, derive 0.19 s, check_solvable 0.03 s
"""

from __future__ import annotations

import re
import sys
import tempfile
import time
from pathlib import Path

PAIR = Path(__file__).resolve().parent / "netlists" / "big_muff_pair.cir"


def ladder(sections: int) -> str:
    lines = ["* RC ladder", "*@ input Vin", f"*@ output n{sections}", "Vin n0 0 DC 0"]
    for k in range(1, sections + 1):
        lines.append(f"R{k} n{k - 1} n{k} 1k")
        lines.append(f"C{k} n{k} 0 10n")
    lines.append(".end")
    return "\n".join(lines) + "\n"


def boards(n: int) -> str:
    """n copies of the Big Muff pair's muff A (12 junction ports each, so n Newton blocks of
    12), fed from one input and mixed by a chain of ideal VCVS: how the start-up grows with
    the number of blocks of the same structure."""
    lines = PAIR.read_text().splitlines()
    a, b = lines.index("* --- muff A ---"), lines.index("* --- muff B ---")
    out = [f"* {n} Big Muff boards (muff A of big_muff_pair.cir)", "*@ input Vin",
           "*@ output out"]
    out += [ln for ln in lines[:a] if ln.startswith((".model", "+", ".param", "Vin", "Vcc"))]
    tags = "abcdefghijklmnopqrstuvwxyz"
    for k in range(n):
        for ln in lines[a + 1:b]:
            ln = re.sub(r"\b(\w+?)a\b", lambda m, t=tags[k]: m.group(1) + t, ln)
            out.append(re.sub(r"\btone[a-z]\b", "tonea", ln))
    previous = "0"
    for k in range(n):
        out.append(f"E{k} m{k} {previous} o{tags[k]} 0 {1.0 / n!r}")
        previous = f"m{k}"
    out += [f"Rout {previous} out 1", "Rload out 0 1meg", ".end"]
    return "\n".join(out) + "\n"


def measure(sections: int) -> dict[str, float]:
    import nodal

    text = ladder(sections)
    t0 = time.perf_counter()
    net = nodal.parse(text, f"ladder{sections}.cir")
    t1 = time.perf_counter()
    eq = nodal.derive(net)
    t2 = time.perf_counter()
    nodal.check_solvable(eq)
    t3 = time.perf_counter()
    return {"sections": sections, "elements": len(net.elements), "parse_s": t1 - t0,
            "derive_s": t2 - t1, "check_solvable_s": t3 - t2}


def startup(names: list[str]) -> None:
    from nodal import bench

    def row(times: dict) -> str:
        return (f"derive {times['derive']:6.2f} s, solver {times['solver']:6.2f} s, kernel "
                f"{times['kernel']:7.2f} s = {times['total']:7.2f} s "
                f"(import {times['import']:.2f} s); then RTF {times['rtf']:.2f}")

    for name in names:
        cold, warm = bench.startup(bench.resolve(name), log=lambda m: None)
        print(f"{name}\n  cold: {row(cold)}\n  warm: {row(warm)}", flush=True)


def main(argv: list[str]) -> None:
    if argv[:1] == ["--startup"]:
        startup(argv[1:])
        return
    if argv[:1] == ["--boards"]:
        with tempfile.TemporaryDirectory() as folder:
            paths = []
            for n in [int(a) for a in argv[1:]] or [1, 2, 4]:
                paths.append(Path(folder) / f"muff_boards_{n}.cir")
                paths[-1].write_text(boards(n))
            startup([str(p) for p in paths])
        return
    import scipy.sparse.csgraph  # noqa: F401  (imported before timing: not part of a check)
    import scipy.sparse.linalg  # noqa: F401

    sizes = [int(a) for a in argv] or [200, 1000]
    for n in sizes:
        r = measure(n)
        print(f"{r['sections']:6d} sections ({r['elements']:5d} elements): parse "
              f"{r['parse_s']:8.3f} s, derive {r['derive_s']:8.3f} s, check_solvable "
              f"{r['check_solvable_s']:8.3f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])

"""How parsing and the structural checks scale: `python bench/scale.py [SECTIONS...]`, and
how fast a netlist starts: `python bench/scale.py --startup NETLIST_OR_NAME...`.

An RC ladder of N sections (a source, then N times a 1 kOhm series resistor and a 10 nF
capacitor to ground: 2N + 1 elements) is parsed, derived (`nodal.derive`: stamps, the DC-path
check) and checked (`nodal.check_solvable`: structural and numeric singularity). Prints the
seconds of each step, one line per size (default: 200 and 1000 sections, i.e. 401 and 2,001
elements). Wall times on a shared machine are upper bounds.

`--startup` runs `nodal.bench.startup` on each netlist (or built-in / bench circuit name): a
fresh process with an empty `NODALNET_CACHE` folder (cold: derive, build the torch laws,
compile the kernel, run 10 ms), then the same folder again (warm, best of 3), and prints the
seconds of each step. See bench/README.md for the figures.

Measured on the 2-core machine with a load average of 4-6 from other jobs:

    before (the reader with `sympify`, `subs` per entry, dense `matrix_rank`):
       200 sections:  parse 16.0 s, derive 0.39 s, check_solvable 259 s
      1000 sections:  parse 586 s, derive 1.5 s (check_solvable not run)
    after:
       200 sections:  parse 0.05 s, derive 0.12 s, check_solvable 0.02 s
      1000 sections:  parse 0.17 s, derive 0.19 s, check_solvable 0.03 s
"""

from __future__ import annotations

import sys
import time


def ladder(sections: int) -> str:
    lines = ["* RC ladder", "*@ input Vin", f"*@ output n{sections}", "Vin n0 0 DC 0"]
    for k in range(1, sections + 1):
        lines.append(f"R{k} n{k - 1} n{k} 1k")
        lines.append(f"C{k} n{k} 0 10n")
    lines.append(".end")
    return "\n".join(lines) + "\n"


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
                f"(import {times['import']:.2f} s)")

    for name in names:
        cold, warm = bench.startup(bench.resolve(name), log=lambda m: None)
        print(f"{name}\n  cold: {row(cold)}\n  warm: {row(warm)}", flush=True)


def main(argv: list[str]) -> None:
    if argv[:1] == ["--startup"]:
        startup(argv[1:])
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

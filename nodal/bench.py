"""`nodalnet bench`: how fast each solver path runs, beside ngspice in the same run.

For each circuit: a plucked-string test signal (1 V peak, `signals.plucked_string`) at 48 kHz,
one thread (torch and numba), after a warm-up. Reported per circuit:

- real-time factor (RTF = seconds of audio / seconds of wall time, best of `repeats`) of the
  compiled fast path on the whole signal, and of the torch path at batch 1 and batch 64
  (aggregate: 64 x audio / wall) measured on a short excerpt and scaled (the torch path costs
  the same per sample all along, and running it for 10 s would take minutes);
- mean Newton iterations per sample;
- ngspice on the same netlist and input (`spice.simulate`, its default: PWL input, max step a
  sixteenth of a sample, tight tolerances): wall time and RTF. This run is also the
  reference; its own convergence is checked against a run at a 64th of a sample on an excerpt;
- ESR (DESIGN.md) of the fast path, the torch path and ngspice at a max step of one sample
  against that reference, and the ratio fast / ngspice wall time, for ngspice at the default
  step and at the coarse step (the fair comparison when its ESR is no better than ours).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

F64 = torch.float64


@dataclass
class BenchResult:
    circuit: str
    seconds: float                    # audio length of the fast path and ngspice runs (s)
    sample_rate: float
    fast_rtf: float
    fast_wall: float
    iterations: float                 # mean Newton iterations per sample (fast path)
    torch_excerpt: float              # seconds of audio the torch path ran on
    torch_rtf_b1: float
    torch_rtf_b64: float              # aggregate over the batch
    spice_seconds: float              # audio length ngspice ran on
    spice_wall: float                 # ngspice, default step (1/16 sample), also the reference
    spice_rtf: float
    spice_coarse_wall: float          # ngspice, max step one sample
    spice_coarse_rtf: float
    esr_fast: float
    esr_torch: float
    esr_spice_coarse: float
    esr_reference_check: float        # reference (1/16) vs 1/64 of a sample, on an excerpt
    speedup_vs_spice: float           # fast RTF / ngspice RTF (default step)
    speedup_vs_spice_coarse: float
    notes: list[str] = field(default_factory=list)


def esr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """sum((y - y_hat)^2) / sum(y^2) over the whole signal (DESIGN.md, plain)."""
    reference = np.asarray(reference, dtype=np.float64)
    return float(np.sum((reference - estimate) ** 2) / max(np.sum(reference ** 2), 1e-300))


def _inputs(solver, seconds: float, sample_rate: float) -> np.ndarray:
    """[time, inputs]: the plucked string on the audio input; each control source follows its
    own netlist waveform (the phaser's LFO), or 0 V if it has none."""
    from . import signals

    audio = signals.plucked_string(seconds, sample_rate, peak=1.0)
    t = np.arange(len(audio)) / sample_rate
    cols = [audio]
    for src in solver.eq.sources[1:solver.n_inputs]:
        wave = getattr(src, "waveform", None)
        cols.append(np.asarray(wave.at(t, 1 / sample_rate), dtype=np.float64)
                    if wave is not None else np.zeros_like(audio))
    return np.stack(cols, -1)


def _best_wall(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def bench_circuit(name: str, seconds: float = 10.0, sample_rate: float = 48000.0,
                  torch_seconds: float = 0.05, spice_seconds: float | None = None,
                  repeats: int = 3, log=print) -> BenchResult:
    """Measure one circuit (see the module docstring)."""
    import nodal
    from . import spice

    torch.set_num_threads(1)
    try:
        import numba
        numba.set_num_threads(1)
    except (ImportError, ValueError):
        pass
    solver = nodal.load(name, sample_rate=sample_rate)
    net = solver.eq.netlist
    u_np = _inputs(solver, seconds, sample_rate)
    u = torch.tensor(u_np)[None]
    length = u.shape[1]
    notes = []

    log(f"[{name}] fast path: warm-up (compile), then best of {repeats}")
    solver.simulate(u[:, : min(length, 4800)], backend="fast")
    fast_wall = _best_wall(lambda: solver.simulate(u, backend="fast"), repeats)
    fast = solver.simulate(u, backend="fast").y[0, :, 0].numpy()
    iterations = solver.last_iterations

    n_torch = max(1, int(round(torch_seconds * sample_rate)))
    log(f"[{name}] torch path: {n_torch} samples at batch 1 and batch 64")
    solver.simulate(u[:, :50], backend="torch")
    torch_b1 = _best_wall(lambda: solver.simulate(u[:, :n_torch], backend="torch"), 1)
    torch_y = solver.simulate(u[:, :n_torch], backend="torch").y[0, :, 0].numpy()
    u64 = u[:, :n_torch].expand(64, n_torch, u.shape[2]).contiguous()
    torch_b64 = _best_wall(lambda: solver.simulate(u64, backend="torch"), 1)
    notes.append(f"torch path measured on the first {n_torch / sample_rate:g} s and scaled")

    n_spice = length if spice_seconds is None else min(length, int(round(spice_seconds * sample_rate)))
    sources = [s.name for s in solver.eq.sources[: solver.n_inputs]]
    drive = {src: u_np[:n_spice, k] for k, src in enumerate(sources)}
    log(f"[{name}] ngspice: {n_spice / sample_rate:g} s at a 16th of a sample (the reference)")
    reference = spice.simulate(net, drive, sample_rate, substeps=16)
    ref_y = reference.voltage(*net.output)
    log(f"[{name}] ngspice: the same at one sample")
    coarse = spice.simulate(net, drive, sample_rate, substeps=1)
    n_check = min(n_spice, int(0.1 * sample_rate))
    log(f"[{name}] ngspice: reference check, {n_check / sample_rate:g} s at a 64th of a sample")
    check = spice.simulate(net, {k: v[:n_check] for k, v in drive.items()}, sample_rate,
                           substeps=64)
    if n_spice < length:
        notes.append(f"ngspice ran on the first {n_spice / sample_rate:g} s; its RTF is per "
                     "that length and the ESRs are over it")

    fast_rtf = seconds / fast_wall
    spice_rtf = (n_spice / sample_rate) / reference.seconds
    spice_coarse_rtf = (n_spice / sample_rate) / coarse.seconds
    return BenchResult(
        circuit=name, seconds=seconds, sample_rate=sample_rate,
        fast_rtf=fast_rtf, fast_wall=fast_wall, iterations=iterations,
        torch_excerpt=n_torch / sample_rate,
        torch_rtf_b1=(n_torch / sample_rate) / torch_b1,
        torch_rtf_b64=64 * (n_torch / sample_rate) / torch_b64,
        spice_seconds=n_spice / sample_rate, spice_wall=reference.seconds, spice_rtf=spice_rtf,
        spice_coarse_wall=coarse.seconds, spice_coarse_rtf=spice_coarse_rtf,
        esr_fast=esr(ref_y, fast[:n_spice]),
        esr_torch=esr(ref_y[:n_torch], torch_y[: min(n_torch, n_spice)]),
        esr_spice_coarse=esr(ref_y, coarse.voltage(*net.output)),
        esr_reference_check=esr(check.voltage(*net.output), ref_y[:n_check]),
        speedup_vs_spice=fast_rtf / spice_rtf,
        speedup_vs_spice_coarse=fast_rtf / spice_coarse_rtf, notes=notes)


def run(names: list[str] | None = None, seconds: float = 10.0, log=print,
        **options) -> list[BenchResult]:
    """Bench every named circuit (default: the whole registry)."""
    import circuits

    names = list(names or circuits.registry())
    return [bench_circuit(n, seconds=seconds, log=log, **options) for n in names]


def table(results: list[BenchResult]):
    """A rich table of the results, with how to read it as its caption."""
    from rich.table import Table

    t = Table(title="nodalnet bench: 48 kHz, one thread, plucked string 1 V peak")
    t.add_column("")
    for r in results:
        t.add_column(r.circuit, justify="right")
    rows = [
        ("fast path RTF", lambda r: f"{r.fast_rtf:.0f}"),
        ("Newton iterations / sample", lambda r: f"{r.iterations:.2f}"),
        ("torch RTF, batch 1", lambda r: f"{r.torch_rtf_b1:.3f}"),
        ("torch RTF, batch 64 (aggregate)", lambda r: f"{r.torch_rtf_b64:.2f}"),
        ("ngspice RTF, step 1/16 (reference)", lambda r: f"{r.spice_rtf:.3f}"),
        ("ngspice RTF, step 1/1", lambda r: f"{r.spice_coarse_rtf:.3f}"),
        ("ESR fast path", lambda r: f"{r.esr_fast:.1e}"),
        ("ESR torch path", lambda r: f"{r.esr_torch:.1e}"),
        ("ESR ngspice step 1/1", lambda r: f"{r.esr_spice_coarse:.1e}"),
        ("reference check (1/16 vs 1/64)", lambda r: f"{r.esr_reference_check:.1e}"),
        ("fast / ngspice 1/16", lambda r: f"{r.speedup_vs_spice:.0f}x"),
        ("fast / ngspice 1/1", lambda r: f"{r.speedup_vs_spice_coarse:.0f}x"),
    ]
    for label, cell in rows:
        t.add_row(label, *(cell(r) for r in results))
    notes = sorted({n for r in results for n in r.notes})
    t.caption = (
        "RTF = seconds of audio / wall seconds (best of 3 for the fast path). ngspice 1/16: its "
        "default here (max step 1/16 sample, reltol 1e-7), which is also the ESR reference; "
        "ngspice 1/1: max step one sample, the coarsest we run it at. ESR is against the 1/16 "
        "reference; 'ref check' is that reference against 1/64 of a sample. The fair ngspice "
        "figure is the coarse one when its ESR is at least as good as ours (fast/ngspice 1/1). "
        + " ".join(notes))
    return t


def to_json(results: list[BenchResult]) -> str:
    return json.dumps([asdict(r) for r in results], indent=2)


def main(argv: list[str] | None = None) -> None:
    """`python bench/run.py [CIRCUIT...] [--json] [--seconds 10]`."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("circuits", nargs="*")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--spice-seconds", type=float, default=None,
                        help="run ngspice on an excerpt this long (default: all of it)")
    args = parser.parse_args(argv)
    log = (lambda m: print(m, file=sys.stderr))
    results = run(args.circuits or None, seconds=args.seconds, log=log,
                  spice_seconds=args.spice_seconds)
    if args.json:
        print(to_json(results))
    else:
        from rich.console import Console
        Console().print(table(results))

"""`nodalnet bench`: how fast each solver path runs, beside ngspice in the same run.

For each circuit: a plucked-string test signal (1 V peak, `signals.plucked_string`) at 48 kHz,
one thread (torch and numba), after a warm-up. Reported per circuit:

- real-time factor (RTF = seconds of audio / seconds of wall time, best of `repeats`) of the
  compiled fast path on the whole signal, and of the torch path (below);
- mean Newton iterations per sample, with the tangent predictor and started from the last
  sample's solution (as before it), and how many samples needed the fallback ladder;
- ngspice on the same netlist and input (`spice.simulate`): at its reference setting (input
  through a file source, max step a sixteenth of a sample, tight `spice.REFERENCE_OPTIONS`),
  wall time and RTF; this run is also the reference, and its own convergence is checked
  against a run at a 64th of a sample on an excerpt;
- ngspice at a max step of one sample with the tight options, with ngspice's default options,
  and at a matched ESR: the loosest setting of `SPICE_LADDER` whose ESR is no worse than the
  fast path's (the fair comparison: the same output quality);
- ESR (`nodal.metrics.esr`: sum((y - y_hat)^2) / sum(y^2), the reference y first) of each
  path against the reference, and the ratios fast / ngspice.

The torch path is `NodalSolver.forward` with autograd on (the input requires grad), at batch 1
and batch 64 (aggregate: 64 x audio / wall), on a short excerpt and scaled (it costs the same
per sample all along); `forward_reference`, the plain torch loop it is tested against, is timed
beside it on a shorter excerpt.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from . import signals
from .render import input_matrix
from .metrics import best_wall_time, esr, real_time_factor

F64 = torch.float64


@dataclass
class BenchResult:
    circuit: str
    seconds: float                    # audio length of the fast path and ngspice runs (s)
    sample_rate: float
    fast_rtf: float
    fast_wall: float
    iterations: float                 # mean Newton iterations per sample (fast path)
    iterations_previous: float        # the same with Newton started from the last sample's q
    fallback_samples: int             # samples the fast path solved by the fallback ladder
    torch_excerpt: float              # seconds of audio the torch path ran on
    torch_rtf_b1: float               # `forward` with autograd (the differentiable path)
    torch_rtf_b64: float              # aggregate over the batch
    torch_reference_rtf_b1: float     # `forward_reference` (plain torch loop), no grad
    spice_seconds: float              # audio length ngspice ran on
    spice_wall: float                 # ngspice, default step (1/16 sample), also the reference
    spice_rtf: float
    spice_coarse_wall: float          # ngspice, tight tolerances, max step one sample
    spice_coarse_rtf: float
    spice_default_wall: float         # ngspice's default tolerances, max step one sample
    spice_default_rtf: float
    spice_matched: str                # the loosest setting tried whose ESR is <= the fast path's
    spice_matched_wall: float
    spice_matched_rtf: float
    esr_fast: float
    esr_torch: float
    esr_spice_coarse: float
    esr_spice_default: float
    esr_spice_matched: float
    esr_reference_check: float        # reference (1/16) vs 1/64 of a sample, on an excerpt
    speedup_vs_spice: float           # fast RTF / ngspice RTF (reference setting)
    speedup_vs_spice_coarse: float
    speedup_vs_spice_default: float
    speedup_vs_spice_matched: float   # the fair one: ngspice at about our ESR or better
    notes: list[str] = field(default_factory=list)
    c_rtf: float | None = None        # the exported C file, cc -O2 (`ccode.bench_c`); None: not run


def _inputs(solver, seconds: float, sample_rate: float) -> np.ndarray:
    """[time, inputs]: the plucked string on the audio input; each control source follows its
    own netlist waveform (the phaser's LFO), as `nodalnet simulate` and ngspice run it."""
    audio = signals.plucked_string(seconds, sample_rate, peak=1.0)
    return input_matrix(solver.eq, audio, sample_rate)


#: ngspice settings for the matched-ESR comparison, loosest (fastest) first: a label, its
#: `.options` (None: ngspice's defaults, reltol 1e-3) and steps per sample (0.25: max step 4
#: samples). The bench takes the first whose ESR against the reference is <= the fast path's.
SPICE_LADDER = [
    ("reltol 1e-2, max step 4 samples", {"reltol": 1e-2}, 0.25),
    ("reltol 1e-2, max step 1 sample", {"reltol": 1e-2}, 1),
    ("defaults, max step 4 samples", None, 0.25),
    ("defaults, max step 1 sample", None, 1),
    ("reltol 3e-4, max step 1 sample", {"reltol": 3e-4}, 1),
    ("reltol 1e-4, max step 1 sample", {"reltol": 1e-4}, 1),
    ("defaults, max step 1/2 sample", None, 2),
    ("reltol 1e-5, max step 1 sample", {"reltol": 1e-5}, 1),
    ("reltol 1e-5, max step 1/4 sample", {"reltol": 1e-5}, 4),
]


def bench_circuit(name: str, seconds: float = 10.0, sample_rate: float = 48000.0,
                  torch_seconds: float = 0.25, spice_seconds: float | None = None,
                  repeats: int = 3, search_seconds: float = 1.0, log=print) -> BenchResult:
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
    fast_wall = best_wall_time(lambda: solver.simulate(u, backend="fast"), repeats)
    fast_run = solver.simulate(u, backend="fast")
    fast = fast_run.y[0, :, 0].numpy()
    iterations = fast_run.diagnostics.mean_iterations
    fallbacks = len(fast_run.diagnostics.fallback_samples)
    predictor = solver.newton.predictor
    solver.newton.predictor = "previous"      # the start before the tangent predictor
    iterations_previous = solver.simulate(u, backend="fast").diagnostics.mean_iterations
    solver.newton.predictor = predictor

    from .ccode import bench_c
    log(f"[{name}] C build: export, cc -O2, best of {repeats}")
    c_build = bench_c(name, seconds=seconds, sample_rate=sample_rate, repeats=repeats)
    notes += [c_build.note] if c_build.note else []

    n_torch = max(1, int(round(torch_seconds * sample_rate)))
    log(f"[{name}] torch path (forward with autograd): {n_torch} samples at batch 1 and 64")
    u_grad = u[:, :n_torch].clone().requires_grad_()
    solver(u_grad[:, :50])
    torch_b1 = best_wall_time(lambda: solver(u_grad), 1)
    torch_y = solver(u_grad).y[0, :, 0].detach().numpy()
    u64 = u[:, :n_torch].expand(64, n_torch, u.shape[2]).clone().requires_grad_()
    torch_b64 = best_wall_time(lambda: solver(u64), 1)
    n_ref = min(n_torch, 480)
    log(f"[{name}] torch reference loop (no grad): {n_ref} samples at batch 1")
    torch_ref_b1 = best_wall_time(lambda: solver.simulate(u[:, :n_ref], backend="torch"), 1)
    notes.append(f"torch path measured on the first {n_torch / sample_rate:g} s (the reference "
                 f"loop on {n_ref} samples) and scaled")

    n_spice = length if spice_seconds is None else min(
        length, int(round(spice_seconds * sample_rate)))
    sources = [s.name for s in solver.eq.sources[: solver.n_inputs]]
    drive = {src: u_np[:n_spice, k] for k, src in enumerate(sources)}
    log(f"[{name}] ngspice: {n_spice / sample_rate:g} s at a 16th of a sample (the reference)")
    reference = spice.simulate(net, drive, sample_rate, substeps=16)
    ref_y = reference.voltage(*net.output)
    log(f"[{name}] ngspice: the same at one sample")
    coarse = spice.simulate(net, drive, sample_rate, substeps=1)
    log(f"[{name}] ngspice: its default tolerances at one sample")
    default = spice.simulate(net, drive, sample_rate, substeps=1, options=spice.DEFAULT_OPTIONS)
    # the matched-ESR setting: searched on an excerpt, then timed on the whole length
    n_search = min(n_spice, int(search_seconds * sample_rate))
    target = esr(ref_y[:n_search], fast[:n_search])
    log(f"[{name}] ngspice: the loosest setting at our ESR ({target:.1e}), searched on "
        f"{n_search / sample_rate:g} s")
    matched = None
    for label, opts, sub in SPICE_LADDER:
        try:
            trial = spice.simulate(net, {k: v[:n_search] for k, v in drive.items()},
                                   sample_rate, substeps=sub, options=opts)
        except spice.NgspiceError:
            continue
        trial_esr = esr(ref_y[:n_search], trial.voltage(*net.output))
        log(f"[{name}]   {label}: ESR {trial_esr:.1e}, {trial.seconds:.2f} s")
        if trial_esr <= target:
            matched = (label, opts, sub)
            break
    if matched is None:
        matched = SPICE_LADDER[-1]
        notes.append("no ngspice setting tried reached our ESR; the tightest one is reported")
    log(f"[{name}] ngspice: {matched[0]} on {n_spice / sample_rate:g} s")
    matched_run = spice.simulate(net, drive, sample_rate, substeps=matched[2], options=matched[1])
    n_check = min(n_spice, int(0.1 * sample_rate))
    log(f"[{name}] ngspice: reference check, {n_check / sample_rate:g} s at a 64th of a sample")
    check = spice.simulate(net, {k: v[:n_check] for k, v in drive.items()}, sample_rate,
                           substeps=64)
    if n_spice < length:
        notes.append(f"ngspice ran on the first {n_spice / sample_rate:g} s; its RTF is per "
                     "that length and the ESRs are over it")

    fast_rtf = real_time_factor(seconds, fast_wall)
    spice_rtf = real_time_factor(n_spice / sample_rate, reference.seconds)
    spice_coarse_rtf = real_time_factor(n_spice / sample_rate, coarse.seconds)
    spice_default_rtf = real_time_factor(n_spice / sample_rate, default.seconds)
    spice_matched_rtf = real_time_factor(n_spice / sample_rate, matched_run.seconds)
    return BenchResult(
        circuit=name, seconds=seconds, sample_rate=sample_rate,
        fast_rtf=fast_rtf, fast_wall=fast_wall, iterations=iterations,
        iterations_previous=iterations_previous, fallback_samples=fallbacks,
        torch_excerpt=n_torch / sample_rate,
        torch_rtf_b1=real_time_factor(n_torch / sample_rate, torch_b1),
        torch_rtf_b64=real_time_factor(64 * n_torch / sample_rate, torch_b64),
        torch_reference_rtf_b1=real_time_factor(n_ref / sample_rate, torch_ref_b1),
        spice_seconds=n_spice / sample_rate, spice_wall=reference.seconds, spice_rtf=spice_rtf,
        spice_coarse_wall=coarse.seconds, spice_coarse_rtf=spice_coarse_rtf,
        spice_default_wall=default.seconds, spice_default_rtf=spice_default_rtf,
        spice_matched=matched[0], spice_matched_wall=matched_run.seconds,
        spice_matched_rtf=spice_matched_rtf,
        esr_fast=esr(ref_y, fast[:n_spice]),
        esr_torch=esr(ref_y[:n_torch], torch_y[: min(n_torch, n_spice)]),
        esr_spice_coarse=esr(ref_y, coarse.voltage(*net.output)),
        esr_spice_default=esr(ref_y, default.voltage(*net.output)),
        esr_spice_matched=esr(ref_y, matched_run.voltage(*net.output)),
        esr_reference_check=esr(check.voltage(*net.output), ref_y[:n_check]),
        speedup_vs_spice=fast_rtf / spice_rtf,
        speedup_vs_spice_coarse=fast_rtf / spice_coarse_rtf,
        speedup_vs_spice_default=fast_rtf / spice_default_rtf,
        speedup_vs_spice_matched=fast_rtf / spice_matched_rtf, notes=notes, c_rtf=c_build.rtf)


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
        ("C build RTF (export --format c, cc -O2)",
         lambda r: "not measured" if r.c_rtf is None else f"{r.c_rtf:.0f}"),
        ("  ... C / fast path",
         lambda r: "-" if r.c_rtf is None else f"{r.c_rtf / r.fast_rtf:.2f}x"),
        ("Newton iterations / sample", lambda r: f"{r.iterations:.2f}"),
        ("  ... started from the last sample's q", lambda r: f"{r.iterations_previous:.2f}"),
        ("samples solved by the fallback ladder", lambda r: f"{r.fallback_samples}"),
        ("torch RTF with grad, batch 1", lambda r: f"{r.torch_rtf_b1:.3f}"),
        ("torch RTF with grad, batch 64 (aggregate)", lambda r: f"{r.torch_rtf_b64:.2f}"),
        ("torch reference loop RTF, batch 1", lambda r: f"{r.torch_reference_rtf_b1:.4f}"),
        ("ngspice RTF, tight, step 1/16 (reference)", lambda r: f"{r.spice_rtf:.3f}"),
        ("ngspice RTF, tight, step 1/1", lambda r: f"{r.spice_coarse_rtf:.3f}"),
        ("ngspice RTF, defaults, step 1/1", lambda r: f"{r.spice_default_rtf:.3f}"),
        ("ngspice matched-ESR setting", lambda r: r.spice_matched),
        ("ngspice RTF, matched ESR", lambda r: f"{r.spice_matched_rtf:.3f}"),
        ("ESR fast path", lambda r: f"{r.esr_fast:.1e}"),
        ("ESR torch path", lambda r: f"{r.esr_torch:.1e}"),
        ("ESR ngspice tight 1/1", lambda r: f"{r.esr_spice_coarse:.1e}"),
        ("ESR ngspice defaults 1/1", lambda r: f"{r.esr_spice_default:.1e}"),
        ("ESR ngspice matched", lambda r: f"{r.esr_spice_matched:.1e}"),
        ("reference check (1/16 vs 1/64)", lambda r: f"{r.esr_reference_check:.1e}"),
        ("fast / ngspice reference", lambda r: f"{r.speedup_vs_spice:.0f}x"),
        ("fast / ngspice tight 1/1", lambda r: f"{r.speedup_vs_spice_coarse:.0f}x"),
        ("fast / ngspice defaults 1/1", lambda r: f"{r.speedup_vs_spice_default:.0f}x"),
        ("fast / ngspice matched ESR", lambda r: f"{r.speedup_vs_spice_matched:.0f}x"),
    ]
    for label, cell in rows:
        t.add_row(label, *(cell(r) for r in results))
    notes = sorted({n for r in results for n in r.notes})
    t.caption = (
        "RTF = seconds of audio / wall seconds (best of 3 for the fast path). torch: "
        "`forward` with autograd (the differentiable path), and `forward_reference`, the plain "
        "torch loop it is tested against. ngspice tight: reltol 1e-7 etc. (the reference, at "
        "a max step of 1/16 sample); defaults: ngspice's own tolerances (reltol 1e-3); matched: "
        "the loosest setting of a ladder whose ESR is no worse than the fast path's (searched "
        "on an excerpt, timed on the whole). ESR is against the reference; 'reference check' "
        "is the reference against 1/64 of a sample. The fair ratio is fast / ngspice matched. "
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

    def log(message):
        print(message, file=sys.stderr)

    results = run(args.circuits or None, seconds=args.seconds, log=log,
                  spice_seconds=args.spice_seconds)
    if args.json:
        print(to_json(results))
    else:
        from rich.console import Console
        Console().print(table(results))

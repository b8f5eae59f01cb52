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

The reference falls back when ngspice cannot finish it (`REFERENCE_LADDER`: the tight options,
then looser ones, ngspice's defaults, its gear method); the row names the setting that
finished and the ones that stopped, and a reference that did not finish at any setting is
never a result: the row says so and has no ngspice figures or ESRs. The other ngspice runs use
the reference's setting.

Circuits are the built-ins (`circuits/`) or the bench's own, larger ones (`bench/netlists/`,
by name: `nodalnet bench big_muff_pair`), or any netlist file. For the bench's own circuits
(or with `startup=True`) the row also has the start-up: derivation, torch laws and kernel
compile + first samples in a fresh process, cold (an empty `NODALNET_CACHE` folder) and warm
(the same folder again, best of `repeats`).

The torch path is `NodalSolver.forward` with autograd on (the input requires grad), at batch 1
and batch 64 (aggregate: 64 x audio / wall), on a short excerpt and scaled (it costs the same
per sample all along); `forward_reference`, the plain torch loop it is tested against, is timed
beside it on a shorter excerpt.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import signals, spice
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
    # ngspice's figures: None where its run did not finish (`notes` says which and why)
    spice_wall: float | None          # the reference: step 1/16 sample
    spice_rtf: float | None
    spice_coarse_wall: float | None   # the reference's setting, step 1 sample
    spice_coarse_rtf: float | None
    spice_default_wall: float | None  # ngspice's default tolerances, max step one sample
    spice_default_rtf: float | None
    spice_matched: str                # the loosest setting tried whose ESR is <= the fast path's
    spice_matched_wall: float | None
    spice_matched_rtf: float | None
    esr_fast: float | None
    esr_torch: float | None
    esr_spice_coarse: float | None
    esr_spice_default: float | None
    esr_spice_matched: float | None
    esr_reference_check: float | None  # reference (1/16) vs 1/64 of a sample, on an excerpt
    speedup_vs_spice: float | None    # fast RTF / ngspice RTF (reference setting)
    speedup_vs_spice_coarse: float | None
    speedup_vs_spice_default: float | None
    speedup_vs_spice_matched: float | None  # the fair one: ngspice at about our ESR or better
    notes: list[str] = field(default_factory=list)
    c_rtf: float | None = None        # the exported C file, cc -O2 (`ccode.bench_c`); None: not run
    reference_setting: str = ""       # the REFERENCE_LADDER setting ngspice finished at
    reference_failures: list[str] = field(default_factory=list)   # settings that stopped short
    blocks: int | None = None         # Newton blocks of the compiled kernel (`fast.layout`)
    ports: int | None = None          # nonlinear ports (junctions, charges, ...)
    #: start-up in a fresh process (seconds: import, derive, solver, kernel); None: not measured
    startup_cold: dict | None = None
    startup_warm: dict | None = None
    #: the fast path in blocks of STREAM_BLOCK samples, s0 carried from call to call; None:
    #: the signal is shorter than two blocks
    stream_rtf: float | None = None


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


#: ngspice settings for the reference, tightest first: a label and its `.options`. The bench
#: takes the first at which ngspice finishes the transient. The tight one fails on circuits
#: without junction capacitances (the Big Muff pair with DC-only cards: "timestep too small"
#: within microseconds); the looser rungs are the ones that then finish.
REFERENCE_LADDER = [
    ("tight (reltol 1e-7 abstol 1e-15 vntol 1e-10 chgtol 1e-18 trtol 1)",
     spice.REFERENCE_OPTIONS),
    ("reltol 1e-6 abstol 1e-12 vntol 1e-8 chgtol 1e-16 trtol 1",
     {"reltol": 1e-6, "abstol": 1e-12, "vntol": 1e-8, "chgtol": 1e-16, "trtol": 1}),
    ("reltol 1e-5, other options ngspice's defaults", {"reltol": 1e-5}),
    ("ngspice's defaults (reltol 1e-3)", None),
    ("ngspice's defaults with the gear method, itl4 100", spice.RETRY_OPTIONS),
]

#: where the bench's own circuits live: larger than the built-ins, too slow for the test suite
BENCH_CIRCUITS = Path(__file__).resolve().parents[1] / "bench" / "netlists"


def resolve(name: str) -> str:
    """A built-in circuit's name as given; a bench circuit's name (bench/netlists/NAME.cir) as
    that file's path; anything else (a netlist file) as given."""
    import circuits

    if circuits.path_of(str(name)) is None:
        candidate = BENCH_CIRCUITS / f"{name}.cir"
        if candidate.is_file():
            return str(candidate)
    return str(name)


def _label(name: str) -> str:
    return Path(name).stem if name.endswith((".cir", ".net", ".sp")) else name


@dataclass
class Reference:
    """The reference run: the `REFERENCE_LADDER` label and options it finished at (None: none
    did), the run, and why each tighter setting stopped."""

    label: str | None
    options: dict | None
    result: spice.SpiceResult | None
    failures: list[str]


def spice_reference(net, drive: dict, sample_rate: float, substeps: float = 16,
                    ladder=None, log=print) -> Reference:
    """ngspice at the first setting of `ladder` (default `REFERENCE_LADDER`) that finishes."""
    failures = []
    for label, options in ladder or REFERENCE_LADDER:
        try:
            result = spice.simulate(net, drive, sample_rate, substeps=substeps, options=options)
        except spice.IncompleteTransient as exc:
            failures.append(f"{label}: stopped at t = {exc.reached:.3g} s ({exc.reason})")
            log(f"  ngspice reference at {label} stopped at t = {exc.reached:.3g} s")
            continue
        return Reference(label, options, result, failures)
    return Reference(None, None, None, failures)


STARTUP_SCRIPT = r"""
import json, sys, time
t0 = time.perf_counter()
import torch
import nodal
from nodal import signals
from nodal.render import input_matrix
torch.set_num_threads(1)
t1 = time.perf_counter()
eq = nodal.equations(sys.argv[1])
t2 = time.perf_counter()
solver = nodal.NodalSolver(eq, sample_rate=48000.0)
t3 = time.perf_counter()
audio = signals.plucked_string(0.01, 48000.0, peak=1.0)
solver.simulate(torch.tensor(input_matrix(eq, audio, 48000.0))[None], backend="fast")
t4 = time.perf_counter()
# how fast the kernel this process compiled or loaded runs: 0.25 s of pluck, best of 3
from nodal.metrics import best_wall_time, real_time_factor
u = torch.tensor(input_matrix(eq, signals.plucked_string(0.25, 48000.0, peak=1.0), 48000.0))
best = best_wall_time(lambda: solver.simulate(u[None], backend="fast"), 3)
print(json.dumps({"import": t1 - t0, "derive": t2 - t1, "solver": t3 - t2, "kernel": t4 - t3,
                  "rtf": real_time_factor(0.25, best)}))
"""


def _startup_once(name: str, env: dict, timeout: float) -> dict:
    proc = subprocess.run([sys.executable, "-c", STARTUP_SCRIPT, name], capture_output=True,
                          text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"the start-up run of {name} failed: "
                           f"{(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    times = json.loads(proc.stdout.strip().splitlines()[-1])
    times["total"] = times["derive"] + times["solver"] + times["kernel"]
    return times


def startup(name: str, repeats: int = 3, timeout: float = 1800.0,
            log=print) -> tuple[dict, dict]:
    """Seconds to start a circuit in a fresh process: import, derive (`nodal.equations`), solver
    (the torch laws and matrices), kernel (compile or load, and 10 ms of samples); and "rtf",
    the real-time factor of the kernel that process compiled or loaded (0.25 s of pluck, best
    of 3: a kernel loaded from the cache must run as fast as a fresh one). Cold: a
    fresh, empty `NODALNET_CACHE` folder (no derived equations, no kernel); warm: the same
    folder again, the best of `repeats` runs (by total = derive + solver + kernel)."""
    with tempfile.TemporaryDirectory(prefix="nodalnet-startup-") as cache:
        env = {**os.environ, "NODALNET_CACHE": cache, "NUMBA_NUM_THREADS": "1",
               "OMP_NUM_THREADS": "1"}
        log(f"[{_label(name)}] start-up, cold (empty cache folder)")
        cold = _startup_once(name, env, timeout)
        log(f"[{_label(name)}] start-up, warm (the same folder), best of {repeats}")
        warm = min((_startup_once(name, env, timeout) for _ in range(max(1, repeats))),
                   key=lambda t: t["total"])
    return cold, warm


def _blocks(solver) -> int:
    """How many Newton blocks the compiled kernel solves the circuit in (`fast.layout` at the
    solver's values, as `NodalSolver` splits it)."""
    from . import fast

    arrays = solver._kernel_arrays(solver.theta())
    return fast.layout(solver.eq, arrays.K).n_blocks


def _fast_part(solver, u, repeats: int, log) -> dict:
    """The compiled path: wall time, samples, Newton iterations with the default predictor and
    with the one before it ("previous": the last sample's solution), fallbacks."""
    log(f"  fast path: warm-up (compile), then best of {repeats}")
    length = u.shape[1]
    solver.simulate(u[:, : min(length, 4800)], backend="fast")
    wall = best_wall_time(lambda: solver.simulate(u, backend="fast"), repeats)
    run_ = solver.simulate(u, backend="fast")
    predictor = solver.newton.predictor
    solver.newton.predictor = "previous"      # the start before the tangent predictor
    try:
        before = solver.simulate(u, backend="fast").diagnostics.mean_iterations
    finally:
        solver.newton.predictor = predictor
    return {"wall": wall, "y": run_.y[0, :, 0].numpy(),
            "iterations": run_.diagnostics.mean_iterations, "iterations_previous": before,
            "fallbacks": len(run_.diagnostics.fallback_samples),
            "stream_rtf": _stream_rtf(solver, u, log)}


#: the block length of the streamed row: a plug-in's or a sound card's buffer
STREAM_BLOCK = 512


def _stream_rtf(solver, u, log, seconds: float = 1.0) -> float | None:
    """The fast path called once per block of STREAM_BLOCK samples, each call starting from
    the last one's state (s0 = s_final), as a plug-in would run it: the real-time factor over
    at most `seconds` of the signal, after a first block (the operating point) not timed;
    None where the signal is shorter than two blocks (nothing to time)."""
    n = min(u.shape[1], int(round(seconds * solver.sample_rate)))
    if n < 2 * STREAM_BLOCK:
        return None
    log(f"  fast path in blocks of {STREAM_BLOCK} samples")
    s = solver.simulate(u[:, :STREAM_BLOCK], backend="fast").s_final
    t0 = time.perf_counter()
    for a in range(STREAM_BLOCK, n, STREAM_BLOCK):
        s = solver.simulate(u[:, a:a + STREAM_BLOCK], s0=s, backend="fast").s_final
    wall = time.perf_counter() - t0
    return real_time_factor((n - STREAM_BLOCK) / solver.sample_rate, wall)


def _torch_part(solver, u, torch_seconds: float, sample_rate: float, log) -> dict:
    n_torch = min(u.shape[1], max(1, int(round(torch_seconds * sample_rate))))
    log(f"  torch path (forward with autograd): {n_torch} samples at batch 1 and 64")
    u_grad = u[:, :n_torch].clone().requires_grad_()
    solver(u_grad[:, :50])
    b1 = best_wall_time(lambda: solver(u_grad), 1)
    y = solver(u_grad).y[0, :, 0].detach().numpy()
    u64 = u[:, :n_torch].expand(64, n_torch, u.shape[2]).clone().requires_grad_()
    b64 = best_wall_time(lambda: solver(u64), 1)
    n_ref = min(n_torch, 480)
    log(f"  torch reference loop (no grad): {n_ref} samples at batch 1")
    ref = best_wall_time(lambda: solver.simulate(u[:, :n_ref], backend="torch"), 1)
    return {"n": n_torch, "n_ref": n_ref, "y": y,
            "rtf_b1": real_time_factor(n_torch / sample_rate, b1),
            "rtf_b64": real_time_factor(64 * n_torch / sample_rate, b64),
            "rtf_ref": real_time_factor(n_ref / sample_rate, ref)}


def _finished(run, notes: list[str], what: str):
    """A run's result, or None with a note where ngspice stopped short (never its samples)."""
    try:
        return run()
    except spice.IncompleteTransient as exc:
        notes.append(f"ngspice {what} stopped at t = {exc.reached:.3g} s ({exc.reason}): not "
                     "reported")
        return None


def _matched(net, drive, sample_rate, n_search, ref_y, target, log):
    """The loosest `SPICE_LADDER` setting whose ESR on the first `n_search` samples is no worse
    than `target`, or None."""
    for label, opts, sub in SPICE_LADDER:
        try:
            trial = spice.simulate(net, {k: v[:n_search] for k, v in drive.items()},
                                   sample_rate, substeps=sub, options=opts)
        except spice.NgspiceError:
            continue
        trial_esr = esr(ref_y[:n_search], trial.voltage(*net.output))
        log(f"    {label}: ESR {trial_esr:.1e}, {trial.seconds:.2f} s")
        if trial_esr <= target:
            return label, opts, sub
    return None


def _spice_part(net, drive, sample_rate, n_spice, fast, search_seconds, notes, log) -> dict:
    """ngspice's runs (see the module docstring); every figure None where the reference did
    not finish."""
    log(f"  ngspice: {n_spice / sample_rate:g} s at a 16th of a sample (the reference)")
    ref = spice_reference(net, drive, sample_rate, 16, log=log)
    out = {"reference": ref}
    if ref.result is None:
        notes.append("ngspice's reference did not finish at any setting ("
                     + "; ".join(ref.failures) + "): no ngspice figures and no ESR against it")
        return out
    if ref.failures:
        notes.append(f"ngspice's reference ran at {ref.label}; tighter settings stopped ("
                     + "; ".join(ref.failures) + ")")
    ref_y = ref.result.voltage(*net.output)
    out["ref_y"] = ref_y
    log("  ngspice: the reference setting at one sample")
    out["coarse"] = _finished(lambda: spice.simulate(net, drive, sample_rate, substeps=1,
                                                     options=ref.options), notes,
                              "at the reference setting, step 1 sample")
    log("  ngspice: its default tolerances at one sample")
    out["default"] = _finished(lambda: spice.simulate(net, drive, sample_rate, substeps=1,
                                                      options=spice.DEFAULT_OPTIONS), notes,
                               "at its defaults, step 1 sample")
    n_search = min(n_spice, int(search_seconds * sample_rate))
    target = esr(ref_y[:n_search], fast[:n_search])
    log(f"  ngspice: the loosest setting at our ESR ({target:.1e}), searched on "
        f"{n_search / sample_rate:g} s")
    matched = _matched(net, drive, sample_rate, n_search, ref_y, target, log)
    if matched is None:
        matched = SPICE_LADDER[-1]
        notes.append("no ngspice setting tried reached our ESR; the tightest one is reported")
    out["matched_label"] = matched[0]
    out["matched"] = _finished(lambda: spice.simulate(net, drive, sample_rate,
                                                      substeps=matched[2], options=matched[1]),
                               notes, f"at {matched[0]}")
    n_check = min(n_spice, int(0.1 * sample_rate))
    log(f"  ngspice: reference check, {n_check / sample_rate:g} s at a 64th of a sample")
    out["check"] = _finished(lambda: spice.simulate(
        net, {k: v[:n_check] for k, v in drive.items()}, sample_rate, substeps=64,
        options=ref.options), notes, "reference check at a 64th of a sample")
    out["n_check"] = n_check
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a / b


def bench_circuit(name: str, seconds: float = 10.0, sample_rate: float = 48000.0,
                  torch_seconds: float = 0.25, spice_seconds: float | None = None,
                  repeats: int = 3, search_seconds: float = 1.0, startup_times: bool | None = None,
                  log=print) -> BenchResult:
    """Measure one circuit (see the module docstring). name: a built-in or bench circuit, or
    a netlist file. startup_times: measure the cold / warm start (None: for the bench's own
    circuits)."""
    import nodal

    torch.set_num_threads(1)
    try:
        import numba
        numba.set_num_threads(1)
    except (ImportError, ValueError):
        pass
    path = resolve(name)
    label = _label(name)

    def say(message):
        log(f"[{label}] {message.strip()}")

    solver = nodal.load(path, sample_rate=sample_rate)
    net = solver.eq.netlist
    u_np = _inputs(solver, seconds, sample_rate)
    u = torch.tensor(u_np)[None]
    length = u.shape[1]
    notes = []

    fast = _fast_part(solver, u, repeats, say)
    from .ccode import bench_c
    say(f"C build: export, cc -O2, best of {repeats}")
    c_build = bench_c(path, seconds=seconds, sample_rate=sample_rate, repeats=repeats)
    notes += [c_build.note] if c_build.note else []
    tp = _torch_part(solver, u, torch_seconds, sample_rate, say)
    notes.append(f"torch path measured on the first {tp['n'] / sample_rate:g} s (the reference "
                 f"loop on {tp['n_ref']} samples) and scaled")

    n_spice = length if spice_seconds is None else min(
        length, int(round(spice_seconds * sample_rate)))
    sources = [s.name for s in solver.eq.sources[: solver.n_inputs]]
    drive = {src: u_np[:n_spice, k] for k, src in enumerate(sources)}
    sp_ = _spice_part(net, drive, sample_rate, n_spice, fast["y"], search_seconds, notes, say)
    if n_spice < length:
        notes.append(f"ngspice ran on the first {n_spice / sample_rate:g} s; its RTF is per "
                     "that length and the ESRs are over it")
    cold = warm = None
    if startup_times or (startup_times is None and path != name):
        cold, warm = startup(path, repeats=repeats, log=log)

    spice_s = n_spice / sample_rate
    ref = sp_["reference"]
    ref_y = sp_.get("ref_y")

    def wall(key):
        run_ = ref.result if key == "reference" else sp_.get(key)
        return None if run_ is None else run_.seconds

    def rtf(key):
        w = wall(key)
        return None if w is None else real_time_factor(spice_s, w)

    def esr_of(key, n=None):
        run_ = sp_.get(key)
        if ref_y is None or run_ is None:
            return None
        y = run_.voltage(*net.output)
        return esr(y, ref_y[:n]) if key == "check" else esr(ref_y, y)

    fast_rtf = real_time_factor(seconds, fast["wall"])
    n_torch = tp["n"]
    return BenchResult(
        circuit=label, seconds=seconds, sample_rate=sample_rate,
        fast_rtf=fast_rtf, fast_wall=fast["wall"], iterations=fast["iterations"],
        iterations_previous=fast["iterations_previous"], fallback_samples=fast["fallbacks"],
        torch_excerpt=n_torch / sample_rate, torch_rtf_b1=tp["rtf_b1"],
        torch_rtf_b64=tp["rtf_b64"], torch_reference_rtf_b1=tp["rtf_ref"],
        spice_seconds=spice_s, spice_wall=wall("reference"), spice_rtf=rtf("reference"),
        spice_coarse_wall=wall("coarse"), spice_coarse_rtf=rtf("coarse"),
        spice_default_wall=wall("default"), spice_default_rtf=rtf("default"),
        spice_matched=sp_.get("matched_label", "not run"),
        spice_matched_wall=wall("matched"), spice_matched_rtf=rtf("matched"),
        esr_fast=None if ref_y is None else esr(ref_y, fast["y"][:n_spice]),
        esr_torch=None if ref_y is None else esr(ref_y[:n_torch],
                                                 tp["y"][: min(n_torch, n_spice)]),
        esr_spice_coarse=esr_of("coarse"), esr_spice_default=esr_of("default"),
        esr_spice_matched=esr_of("matched"), esr_reference_check=esr_of("check",
                                                                        sp_.get("n_check")),
        speedup_vs_spice=_ratio(fast_rtf, rtf("reference")),
        speedup_vs_spice_coarse=_ratio(fast_rtf, rtf("coarse")),
        speedup_vs_spice_default=_ratio(fast_rtf, rtf("default")),
        speedup_vs_spice_matched=_ratio(fast_rtf, rtf("matched")), notes=notes,
        c_rtf=c_build.rtf, reference_setting=ref.label or "did not finish at any setting",
        reference_failures=ref.failures, blocks=_blocks(solver),
        ports=len(solver.eq.ports), startup_cold=cold, startup_warm=warm,
        stream_rtf=fast["stream_rtf"])


def run(names: list[str] | None = None, seconds: float = 10.0, log=print,
        **options) -> list[BenchResult]:
    """Bench every named circuit (default: the whole registry)."""
    import circuits

    names = list(names or circuits.registry())
    return [bench_circuit(n, seconds=seconds, log=log, **options) for n in names]


def _rtf(value: float) -> str:
    """A real-time factor: whole above 10, else two decimals (0.32 is not "0")."""
    return f"{value:.0f}" if value >= 10 else f"{value:.2f}"


def _cell(value, spec: str, unit: str = "") -> str:
    """A figure, or why there is none (an ngspice run that did not finish is not a result)."""
    return "did not finish" if value is None else f"{value:{spec}}{unit}"


def _startup(times: dict | None) -> str:
    if times is None:
        return "not measured"
    return (f"{times['total']:.1f} ({times['derive']:.1f} + {times['solver']:.1f} + "
            f"{times['kernel']:.1f}; import {times['import']:.1f})")


def table(results: list[BenchResult]):
    """A rich table of the results, with how to read it as its caption."""
    from rich.table import Table

    t = Table(title="nodalnet bench: 48 kHz, one thread, plucked string 1 V peak")
    t.add_column("")
    for r in results:
        t.add_column(r.circuit, justify="right")
    rows = [
        ("nonlinear ports / Newton blocks",
         lambda r: f"{_cell(r.ports, 'd')} / "
                   f"{'not exposed' if r.blocks is None else r.blocks}"),
        ("fast path RTF", lambda r: _rtf(r.fast_rtf)),
        (f"fast path RTF in blocks of {STREAM_BLOCK} samples (s0 carried)",
         lambda r: "not measured" if r.stream_rtf is None else _rtf(r.stream_rtf)),
        ("C build RTF (export --format c, cc -O2)",
         lambda r: "not measured" if r.c_rtf is None else _rtf(r.c_rtf)),
        ("  ... C / fast path",
         lambda r: "-" if r.c_rtf is None else f"{r.c_rtf / r.fast_rtf:.2f}x"),
        ("Newton iterations / sample, before (start: last sample's q)",
         lambda r: f"{r.iterations_previous:.2f}"),
        ("Newton iterations / sample, after (tangent predictor)",
         lambda r: f"{r.iterations:.2f}"),
        ("samples solved by the fallback ladder", lambda r: f"{r.fallback_samples}"),
        ("start-up cold: derive + solver + kernel (s)", lambda r: _startup(r.startup_cold)),
        ("start-up warm, best of 3 (s)", lambda r: _startup(r.startup_warm)),
        ("fast path RTF in the cold / warm start's process (0.25 s)",
         lambda r: "not measured" if r.startup_cold is None else
         f"{_rtf(r.startup_cold['rtf'])} / {_rtf(r.startup_warm['rtf'])}"),
        ("torch RTF with grad, batch 1", lambda r: f"{r.torch_rtf_b1:.3f}"),
        ("torch RTF with grad, batch 64 (aggregate)", lambda r: f"{r.torch_rtf_b64:.2f}"),
        ("torch reference loop RTF, batch 1", lambda r: f"{r.torch_reference_rtf_b1:.4f}"),
        ("ngspice reference setting", lambda r: r.reference_setting or "tight"),
        ("ngspice RTF, reference, step 1/16", lambda r: _cell(r.spice_rtf, ".3f")),
        ("ngspice RTF, reference setting, step 1/1", lambda r: _cell(r.spice_coarse_rtf, ".3f")),
        ("ngspice RTF, defaults, step 1/1", lambda r: _cell(r.spice_default_rtf, ".3f")),
        ("ngspice matched-ESR setting", lambda r: r.spice_matched),
        ("ngspice RTF, matched ESR", lambda r: _cell(r.spice_matched_rtf, ".3f")),
        ("ESR fast path", lambda r: _cell(r.esr_fast, ".1e")),
        ("ESR torch path", lambda r: _cell(r.esr_torch, ".1e")),
        ("ESR ngspice reference setting 1/1", lambda r: _cell(r.esr_spice_coarse, ".1e")),
        ("ESR ngspice defaults 1/1", lambda r: _cell(r.esr_spice_default, ".1e")),
        ("ESR ngspice matched", lambda r: _cell(r.esr_spice_matched, ".1e")),
        ("reference check (1/16 vs 1/64)", lambda r: _cell(r.esr_reference_check, ".1e")),
        ("fast / ngspice reference", lambda r: _cell(r.speedup_vs_spice, ".0f", "x")),
        ("fast / ngspice reference setting 1/1",
         lambda r: _cell(r.speedup_vs_spice_coarse, ".0f", "x")),
        ("fast / ngspice defaults 1/1", lambda r: _cell(r.speedup_vs_spice_default, ".0f", "x")),
        ("fast / ngspice matched ESR", lambda r: _cell(r.speedup_vs_spice_matched, ".0f", "x")),
    ]
    for label, cell in rows:
        t.add_row(label, *(cell(r) for r in results))
    notes = sorted({n for r in results for n in r.notes})
    t.caption = (
        "RTF = seconds of audio / wall seconds (best of 3 for the fast path). torch: "
        "`forward` with autograd (the differentiable path), and `forward_reference`, the plain "
        "torch loop it is tested against. ngspice's reference: max step 1/16 sample at the "
        "tightest setting of REFERENCE_LADDER that finishes (reltol 1e-7 etc. first); "
        "defaults: ngspice's own tolerances (reltol 1e-3); matched: "
        "the loosest setting of a ladder whose ESR is no worse than the fast path's (searched "
        "on an excerpt, timed on the whole). ESR is against the reference; 'reference check' "
        "is the reference against 1/64 of a sample. The fair ratio is fast / ngspice matched. "
        "Start-up: a fresh process, cold = empty NODALNET_CACHE folder, warm = the same again. "
        + " ".join(notes))
    return t


def to_json(results: list[BenchResult]) -> str:
    return json.dumps([asdict(r) for r in results], indent=2)


def main(argv: list[str] | None = None) -> None:
    """`python bench/run.py [CIRCUIT...] [--json] [--seconds 10] [--startup]`."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("circuits", nargs="*")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--spice-seconds", type=float, default=None,
                        help="run ngspice on an excerpt this long (default: all of it)")
    parser.add_argument("--startup", action=argparse.BooleanOptionalAction, default=None,
                        help="measure the cold / warm start in fresh processes (default: for "
                             "the bench's own circuits, bench/netlists)")
    args = parser.parse_args(argv)

    def log(message):
        print(message, file=sys.stderr)

    results = run(args.circuits or None, seconds=args.seconds, log=log,
                  spice_seconds=args.spice_seconds, startup_times=args.startup)
    if args.json:
        print(to_json(results))
    else:
        from rich.console import Console
        Console().print(table(results))

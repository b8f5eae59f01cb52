"""nodalnet's command line: it wires the library to a person; the work happens in the packages.

    nodalnet circuits                      the built-in circuits
    nodalnet equations diode_clipper       the derived equations, readable
    nodalnet simulate diode_clipper --input in.wav --output out.wav
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Virtual-analog circuit models: a SPICE-netlist solver and neural "
                       "state-space models side by side.")
console = Console()
err_console = Console(stderr=True, soft_wrap=True)


def friendly(fn):
    """Turn the errors a user can cause into one red line and exit code 2, not a traceback."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from nodal.errors import NodalError
        try:
            return fn(*args, **kwargs)
        except NodalError as exc:
            from rich.markup import escape
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
            raise typer.Exit(2)
    return wrapper


def _parse_assignments(items: list[str], what: str) -> dict[str, str]:
    from nodal.errors import SignalError
    out = {}
    for item in items:
        if "=" not in item:
            raise SignalError(f"{what} takes NAME=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _parse_values(items: list[str]) -> dict[str, float]:
    from nodal.errors import SignalError
    from nodal.netlist import parse_number
    out = {}
    for k, v in _parse_assignments(items, "--set").items():
        number = parse_number(v)
        if number is None:
            raise SignalError(f"--set {k}={v}: not a number (SPICE suffixes are fine: 2.2k)")
        out[k] = number
    return out


def _read_controls(items: list[str], rate: float) -> dict:
    """--control SOURCE=FILE pairs -> {source: volts [time]}, each at the input's rate."""
    from nodal.audio import read_signal
    from nodal.errors import SignalError

    controls = {}
    for name, file in _parse_assignments(items, "--control").items():
        signal, signal_rate = read_signal(file)
        if signal_rate is not None and signal_rate != rate:
            raise SignalError(f"{file}: {signal_rate:g} Hz, but the input is {rate:g} Hz")
        controls[name] = signal
    return controls


@app.command()
@friendly
def circuits() -> None:
    """List the built-in circuits: description, states, inputs and parameters."""
    import circuits as library
    import nodal

    table = Table(title="built-in circuits")
    for col in ("name", "description", "states", "inputs", ".param knobs"):
        table.add_column(col, overflow="fold")
    for name, entry in library.registry().items():
        eq = nodal.equations(name)
        knobs = [p for p in eq.netlist.params if p in eq.netlist.defaults]
        params = ", ".join(f"{p}={eq.netlist.defaults[p]:g}" for p in knobs)
        others = len(eq.component_values) - len(knobs)
        params = (params + "; " if params else "") + f"{others} component values"
        table.add_row(name, entry.description, ", ".join(eq.state_names),
                      ", ".join(eq.input_names), params)
    console.print(table)


@app.command()
@friendly
def equations(circuit: str = typer.Argument(..., help="built-in name or .cir file")) -> None:
    """Print the derived nodal equations: unknowns, states, ports, device laws, DK matrices."""
    import nodal
    from nodal.explain import describe

    console.print(describe(nodal.equations(circuit)), highlight=False, markup=False)


@app.command()
@friendly
def simulate(
    circuit: Optional[str] = typer.Argument(None, help="built-in circuit name or .cir netlist (with --model: optional, the run's own)"),
    input: Path = typer.Option(..., "--input", "-i", help="input WAV (sample values = volts) or .npy"),
    output: Path = typer.Option(..., "--output", "-o", help="output .npy (float64 volts) or .wav (float32)"),
    states: Optional[Path] = typer.Option(None, help="write the circuit states [time, n_states] as .npy"),
    set_: List[str] = typer.Option([], "--set", help="NAME=VALUE: a component value or .param (repeatable)"),
    control: List[str] = typer.Option([], help="SOURCE=FILE: drive a `*@ control` source (repeatable)"),
    oversample: int = typer.Option(1, help="run the solver at N times the rate (polyphase resampling)"),
    gain: float = typer.Option(1.0, help="volts per unit of input sample value"),
    rate: Optional[float] = typer.Option(None, help="sample rate of a .npy input, Hz (WAV: its own)"),
    normalize: bool = typer.Option(False, help="peak-normalise a .wav output for listening"),
    backend: str = typer.Option("fast", help="fast (compiled) or torch (differentiable path)"),
    model: Optional[Path] = typer.Option(None, "--model", help="a trained run directory (nodalnet train --out): run that network instead of the solver"),
) -> None:
    """Run a circuit (or a trained model of it) on an input signal; write its output (and states)."""
    import numpy as np
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    import nodal
    from nodal.audio import read_signal, write_signal
    from nodal.errors import SignalError
    from nodal.render import render

    if model is not None:
        return _simulate_model(model, circuit, input, output, states, control, gain, rate,
                               normalize)
    if circuit is None:
        raise SignalError("give a circuit (built-in name or .cir file), or --model RUN_DIR")
    if backend not in ("fast", "torch"):
        raise SignalError("--backend is fast or torch")
    for path in [output] + ([states] if states else []):
        if path.suffix.lower() not in ((".npy", ".wav") if path is output else (".npy",)):
            raise SignalError(f"{path}: unsupported output type")
    eq = nodal.equations(circuit)
    signal, fs = read_signal(input, gain)
    if fs is None:
        if rate is None:
            raise SignalError(f"{input}: a .npy input needs --rate (Hz)")
        fs = rate
    controls = _read_controls(control, fs)
    values = _parse_values(set_)  # an unknown name fails in render, before anything is written
    total = len(signal) * oversample
    with Progress(TextColumn("simulating"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TimeRemainingColumn(), console=err_console, transient=True,
                  disable=total < (200_000 if backend == "torch" else 2_000_000)) as bar:
        task = bar.add_task("sim", total=total)
        y, x = render(eq, signal, fs, values=values, controls=controls, oversample=oversample,
                      backend=backend, progress=lambda n: bar.update(task, completed=n))
    write_signal(output, y, fs, normalize=normalize)
    if states:
        write_signal(states, x, fs)
    peak = float(np.max(np.abs(y))) if len(y) else 0.0
    console.print(f"{output}: {len(y)} samples at {fs:g} Hz, peak {peak:.4g} V"
                  + (f"; states {', '.join(eq.state_names)} -> {states}" if states else ""))


@app.command()
@friendly
def verify(
    circuit: str = typer.Argument("diode_clipper", help="built-in name or .cir file"),
    duration: float = typer.Option(0.1, help="seconds of each test signal"),
    oversample: int = typer.Option(8, help="also compare at this oversampling (1: skip)"),
    backend: str = typer.Option("fast", help="fast or torch"),
    json_out: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
) -> None:
    """Compare the solver with ngspice on the same netlist and input (ESR at sample times)."""
    import json

    import nodal
    from nodal.verify import verify as run_verify

    eq = nodal.equations(circuit)
    rows = run_verify(eq, duration=duration, oversample=oversample, backend=backend)
    if json_out:
        console.print_json(json.dumps([r.as_dict() for r in rows]))
        return
    table = Table(title=f"{circuit} against ngspice (48 kHz; reference: max step T/16)")
    for col in ("signal", "oversample", "output ESR", "state ESR", "solver s", "ngspice s"):
        table.add_column(col, justify="right" if col != "signal" else "left")
    for r in rows:
        table.add_row(r.signal, f"{r.oversample}x", f"{r.output_esr:.2e}", f"{r.state_esr:.2e}",
                      f"{r.solver_seconds:.2f}", f"{r.ngspice_seconds:.2f}")
    console.print(table)


@app.command()
@friendly
def demo(out: Path = typer.Option(Path("demo"), help="folder for the demo's files")) -> None:
    """The main job on the built-in diode clipper: the solver checked against ngspice, then the
    exposure-bias study (quick profile: STN and GRU with state matching, trained with several
    TBPTT windows and seeds, compared free-running), with its report."""
    console.rule("1/2  the white-box solver against ngspice")
    verify("diode_clipper", duration=0.05, oversample=8, backend="fast", json_out=False)
    console.rule("2/2  exposure bias and TBPTT on the diode clipper (quick profile)")
    # one run per core: a run's weights do not depend on how many train beside it
    _run_study("exposure-bias", "quick", out / "exposure-bias", jobs=min(4, os.cpu_count() or 1))


def _simulate_model(run_dir: Path, circuit: Optional[str], input: Path, output: Path,
                    states: Optional[Path],
                    control: List[str], gain: float, rate: Optional[float],
                    normalize: bool) -> None:
    """`simulate --model`: a trained network on the input, at its own rate (resampling)."""
    import nets
    from nets.inference import process
    from nodal.audio import read_signal, write_signal
    from nodal.errors import SignalError

    nets.checkpoint.check_circuit(run_dir, circuit)
    net = nets.load_run(run_dir)
    signal, fs = read_signal(input, gain)
    fs = fs or rate
    if fs is None:
        raise SignalError(f"{input}: a .npy input needs --rate (Hz)")
    controls = _read_controls(control, fs)
    y, x = process(net, signal, fs, controls)
    write_signal(output, y, fs, normalize=normalize)
    if states:
        write_signal(states, x, fs)
    console.print(f"{output}: {len(y)} samples at {fs:g} Hz from {net.spec['name']} ({run_dir})")


@app.command()
@friendly
def train(
    circuit: Optional[str] = typer.Argument(None, help="built-in circuit name or .cir netlist (omit with --resume)"),
    model: str = typer.Option("stn", "--model", "-m", help="stn, gru, gru-sm, lstm, ode or nodal"),
    window: Optional[str] = typer.Option(None, help="samples between resets to true states: 1 = teacher forcing, inf = free-running [default: the model's]"),
    state_weight: Optional[float] = typer.Option(None, help="lambda in ESR(y) + lambda ESR(x) [default: the model's]"),
    hidden: Optional[int] = typer.Option(None, help="hidden size (GRU/LSTM units, STN/ODE units per layer)"),
    epochs: Optional[int] = typer.Option(None, help="epochs [default: the model's]"),
    seed: int = typer.Option(0, help="seed of the weights and the batch order"),
    lr: Optional[float] = typer.Option(None, help="Adam learning rate [default: the model's]"),
    segment: Optional[int] = typer.Option(None, help="samples per training segment (slow dynamics need long ones) [default: the model's]"),
    batch: Optional[int] = typer.Option(None, help="segments per step [default: the model's]"),
    emphasis: Optional[float] = typer.Option(None, help="pre-emphasis 1 - c z^-1 on the output loss, e.g. 0.85"),
    train_seconds: Optional[float] = typer.Option(None, help="seconds of generated training material"),
    wav: List[Path] = typer.Option([], help="train on these mono WAV files (volts) instead (repeatable)"),
    sample_rate: float = typer.Option(48000.0, "--rate", help="the dataset's (and model's) rate, Hz"),
    set_: List[str] = typer.Option([], "--set", help="NAME=VALUE: a component value or .param (repeatable)"),
    threads: int = typer.Option(1, help="torch threads (small models train fastest on one)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="run directory to write"),
    resume: Optional[Path] = typer.Option(None, help="continue the run in this directory"),
) -> None:
    """Train a model of a circuit on the solver's states and output (see `nets.train`)."""
    from dataclasses import replace

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    import nets.runs
    from nets.data import MaterialSpec
    from nodal.errors import SignalError

    with Progress(TextColumn("{task.description}"), BarColumn(),
                  TextColumn("loss {task.fields[loss]:.3e}  val ESR {task.fields[val]}"),
                  TimeElapsedColumn(), console=err_console) as bar:
        task = bar.add_task("training", total=None, loss=float("nan"), val="-")

        def on_step(epoch, step, steps, loss):
            bar.update(task, description=f"epoch {epoch + 1}", completed=step, total=steps, loss=loss)

        def on_epoch(record):
            bar.update(task, val=f"{record['val_esr']:.3e}")

        hooks = dict(log=bar.console.print, on_step=on_step, on_epoch=on_epoch)
        if resume is not None:
            info = nets.runs.resume(resume, epochs=epochs, **hooks)
            out = resume
        else:
            if circuit is None:
                raise SignalError("give a circuit to train on (or --resume RUN_DIR)")
            k = None if window is None else (0 if window.lower() in ("inf", "0") else int(window))
            material = MaterialSpec(wav=tuple(str(w) for w in wav))
            if train_seconds:
                material = replace(material, train_seconds=train_seconds)
            info = nets.runs.start(circuit, model, out=out, hidden=hidden, sample_rate=sample_rate,
                                   material=material, values=_parse_values(set_) or None,
                                   window=k, state_weight=state_weight, epochs=epochs, seed=seed,
                                   lr=lr, segment=segment, batch=batch, emphasis=emphasis,
                                   threads=threads, **hooks)
    test = info["test"]
    state = "" if test["state_esr"] is None else f", state ESR {test['state_esr']:.3e}"
    console.print(f"{model if resume is None else info['model']['name']}: free-running test ESR "
                  f"{test['esr']:.3e} (pre-emphasised {test['esr_emphasis']:.3e}){state}; best "
                  f"epoch {info['best']['epoch'] + 1}, {info['history'][-1]['seconds']:.0f} s"
                  + (f" -> {out}" if out else ""))
    if info.get("components"):
        c = info["components"]
        for name, value in c["trained"].items():
            console.print(f"  {name}: {value:.6g} (true {c['true'][name]:.6g}, start "
                          f"{c['start'][name]:.6g}, error {100 * (value / c['true'][name] - 1):+.3f} %)")


@app.command()
@friendly
def plot(
    circuit: str = typer.Argument(..., help="built-in name or .cir file"),
    out: Path = typer.Option(..., "--out", "-o", help="PNG file to write"),
    duration: float = typer.Option(2.0, help="seconds of test signal"),
    peak: float = typer.Option(1.0, help="peak volts of the plucked string"),
    oversample: int = typer.Option(1, help="solver oversampling"),
) -> None:
    """Plot a plucked string and noise through a circuit: waveforms, states, spectrogram."""
    import nodal
    from nodal.plots import circuit_figure

    path = circuit_figure(nodal.equations(circuit), out, duration=duration, peak=peak,
                          oversample=oversample)
    console.print(f"wrote {path}")


@app.command()
@friendly
def bench(
    circuits: Optional[List[str]] = typer.Argument(None, help="built-in circuits (default: all)"),
    json_out: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
    seconds: float = typer.Option(10.0, help="seconds of test signal at 48 kHz"),
    spice_seconds: Optional[float] = typer.Option(None, help="run ngspice on an excerpt this long"),
) -> None:
    """Real-time factors of the fast and torch paths beside ngspice, one thread (nodal/bench.py)."""
    from nodal import bench as nodal_bench

    results = nodal_bench.run(circuits or None, seconds=seconds, spice_seconds=spice_seconds,
                              log=lambda m: err_console.print(m, highlight=False))
    if json_out:
        print(nodal_bench.to_json(results))
    else:
        console.print(nodal_bench.table(results))


def _print_rows(circuit: str, rows: list[dict]) -> None:
    """The comparison table; on a narrow terminal, means only and the main columns (the
    report has everything)."""
    from nets.report import COLUMNS, HEADERS, _fmt

    narrow = console.width < 160
    columns = [c for c in COLUMNS if not narrow or c not in ("esr_emphasis", "state_esr")]

    def cell(row, col):
        if not narrow or row[col] is None:
            return _fmt(row[col], col)
        return _fmt({**row[col], "min": row[col]["mean"], "max": row[col]["mean"]}, col)

    table = Table(title=f"{circuit}: free-running on the test split"
                  + (" (means over seeds)" if narrow else ""))
    table.add_column("configuration")
    table.add_column("seeds", justify="right")
    for col in columns:
        table.add_column(HEADERS[col], justify="right")
    for row in rows:
        table.add_row(row["config"], str(row["seeds"]), *[cell(row, c) for c in columns])
    console.print(table)


@app.command()
@friendly
def compare(
    runs: List[Path] = typer.Argument(..., help="run directories written by `nodalnet train`"),
    circuit: Optional[str] = typer.Option(None, help="keep only the runs of this circuit"),
    report: Path = typer.Option(Path("report"), help="folder for report.md, results.json, plots"),
    solver: bool = typer.Option(True, help="include the white-box solver as the reference row"),
) -> None:
    """Evaluate trained models side by side: ESR free-running and teacher-forced, exposure bias,
    error growth, state ESR, parameters, real-time factor; writes a report with plots."""
    from nets import compare as comparing
    from nets.report import write_comparison

    result = comparing.compare(runs, circuit=circuit, with_solver=solver)
    if not result.groups:
        from nodal.errors import SignalError
        raise SignalError("no run matched" + (f" circuit {circuit}" if circuit else ""))
    from nets.report import aggregate
    for name, evals in result.groups.items():
        _print_rows(name, aggregate(evals))
    path = write_comparison(result, report)
    console.print(f"report: {path}")


@app.command()
@friendly
def study(
    which: str = typer.Argument(..., help="exposure-bias or state-matching"),
    profile: str = typer.Option("quick", help="quick (minutes) or full (the real numbers)"),
    out: Path = typer.Option(..., "--out", help="study folder (resumable: run it again to continue)"),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1,
                             help="runs trained at once, one process and one thread each "
                                  "(up to the number of cores)"),
    circuit: List[str] = typer.Option([], "--circuit", help="exposure-bias: its circuit (built-in or .cir) [default: diode_clipper]; state-matching: a subset of its circuits (repeatable)"),
    model: List[str] = typer.Option([], "--model", "-m", help="exposure-bias: the models swept over windows [default: stn, gru-sm]; state-matching: which references to keep (repeatable)"),
) -> None:
    """Run a whole study of Peussa et al. (DAFx 2021): train the sweep, compare, give verdicts."""
    _run_study(which, profile, out, jobs, tuple(circuit), tuple(model))


def _run_study(which: str, profile: str, out: Path, jobs: int = 1,
               circuits: tuple[str, ...] = (), models: tuple[str, ...] = ()) -> None:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from nets import study as studies
    from nets.report import read_json

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total} runs"), TimeElapsedColumn(),
                  console=err_console) as bar:
        task = bar.add_task(which, total=1)

        def on_job(n, total, name):
            bar.update(task, total=total, completed=n, description=f"{which}: {name}")

        path = studies.run(which, profile, out, on_job=on_job, workers=jobs,
                           circuits=circuits, models=models)
    results = read_json(out / "results.json")
    for name, entry in results.items():
        if isinstance(entry, dict) and "table" in entry:
            _print_rows(name, entry["table"])
    for claim, verdict in studies.summary(results):
        console.print(f"({claim}) {studies.CLAIMS[claim]}: [bold]{verdict}[/]")
    console.print(f"report: {path}  ({results.get('minutes', 0):.1f} min)")


@app.command("export")
@friendly
def export_model(
    run: Path = typer.Argument(..., help="a trained run directory (nodalnet train --out)"),
    format: str = typer.Option(..., "--format", "-f",
                               help="rtneural (gru, gru-sm, lstm: AIDA-X, Proteus, ChowDSP), "
                                    "nam (lstm: Neural Amp Modeler) or c (stn: C99 source)"),
    out: Path = typer.Option(..., "--out", "-o", help="the file to write (.json, .nam, .c)"),
) -> None:
    """Write a trained model as a file a plug-in loads (RTNeural JSON, .nam) or as C source;
    it alone reproduces `simulate --model RUN` (volts in, volts out, at the run's rate)."""
    import nets.export

    path = nets.export.export(run, format, out)
    console.print(f"{path}: {format} model from {run}")


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    app()

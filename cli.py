"""nodalnet's command line: it wires the library to a person; the work happens in the packages.

    nodalnet circuits                      the built-in circuits
    nodalnet equations diode_clipper       the derived equations, readable
    nodalnet simulate diode_clipper --input in.wav --output out.wav

Every command checks its arguments (`nodal.arguments`) before any work starts: a bad one is one
red line naming it and what is allowed, exit code 2, and nothing written. A command's outputs
appear together or not at all (`nodal.files.OutputSet`); an existing output is replaced.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True, soft_wrap=True)


def _error_line(message: str) -> None:
    from rich.markup import escape
    err_console.print(f"[bold red]error:[/] {escape(' '.join(message.split()))}",
                      highlight=False)


def _error_lines(message: str, keep_lines: bool) -> None:
    """One red line; or, for an error listing several problems (every unsupported construct of
    a netlist), its first line red and one line per problem under it."""
    if not keep_lines:
        _error_line(message)
        return
    from rich.markup import escape
    first, *rest = message.splitlines() or [""]
    _error_line(first)
    for line in rest:
        err_console.print(escape(line), highlight=False)


class _OneLineUsageErrors(typer.core.TyperGroup):
    """Typer's own usage errors (a missing option, "abc" for an integer) as the same one line
    as every other argument error, not a framed usage box."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except typer.Abort:
            _error_line("aborted")
            code = 1
        except typer.TyperException as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":   # the help is shown already
                return self._exit(getattr(exc, "exit_code", 2), standalone_mode)
            context = getattr(exc, "ctx", None)
            where = f"{context.command_path}: " if context is not None else ""
            hint = f" (see {context.command_path} --help)" if context is not None else ""
            message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
            _error_line(f"{where}{message}{hint}")
            code = getattr(exc, "exit_code", 2)
        return self._exit(code, standalone_mode)

    @staticmethod
    def _exit(code, standalone_mode: bool):
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(add_completion=False, no_args_is_help=True, cls=_OneLineUsageErrors,
                  help="Virtual-analog circuit models: a SPICE-netlist solver and neural "
                       "state-space models side by side.")


def friendly(fn):
    """Turn the errors a user can cause into one red line and exit code 2, not a traceback."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from nodal.errors import NodalError
        try:
            return fn(*args, **kwargs)
        except NodalError as exc:
            _error_lines(str(exc), keep_lines=hasattr(exc, "problems"))
            raise typer.Exit(2) from None
        except OSError as exc:   # a disk that fills, a file taken away while we work
            where = f"{exc.filename}: " if exc.filename else ""
            _error_line(f"{where}{exc.strerror or exc}")
            raise typer.Exit(2) from None
    return wrapper


def _parse_assignments(items: list[str], what: str) -> dict[str, str]:
    from nodal.arguments import assignments
    return assignments(what, items)


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


def _read_controls(items: list[str], rate: float, known: list[str] | None = None) -> dict:
    """--control SOURCE=FILE pairs -> {source: volts [time]}, each at the input's rate.
    `known`: the circuit's `*@ control` sources (a name not among them is refused)."""
    from nodal import arguments
    from nodal.audio import read_signal

    controls = {}
    for name, file in _parse_assignments(items, "--control").items():
        if known is not None and name.lower() not in [k.lower() for k in known]:
            raise arguments.ArgumentError(
                f"--control {name}={file}: the circuit has no control source {name!r}; "
                f"its `*@ control` sources: {', '.join(known) or 'none'}")
        arguments.input_file("--control", file)
        signal, signal_rate = read_signal(file)
        if signal_rate is not None and signal_rate != rate:
            raise arguments.ArgumentError(f"--control {name}={file}: {signal_rate:g} Hz, but "
                                          f"the input is {rate:g} Hz; give both at one rate")
        controls[name] = signal
    return controls


def _directive_options():
    """The options that stand in for a netlist's `*@` lines (simulate, verify, equations)."""
    return dict(
        input_source=typer.Option(
            None, "--input-source", help="the source that follows the audio input (as "
                                         "`*@ input`; replaces the netlist's own)"),
        output_node=typer.Option(
            None, "--output-node", help="the output node, or a,b for v(a) - v(b) (as "
                                        "`*@ output`)"),
        control_source=typer.Option(
            [], "--control-source", help="a source a control signal may drive (as "
                                         "`*@ control`; repeatable)"))


_DIRECTIVES = _directive_options()


def _equations(circuit: str, input_source: Optional[str], output_node: Optional[str],
               control_source: List[str], command: str):
    """The circuit's equations with the directives given as options (`nodal.directives`)."""
    from nodal.directives import Given, equations

    return equations(circuit, Given(input_source, output_node, tuple(control_source)), command)


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
def equations(
    circuit: str = typer.Argument(..., help="built-in name or .cir file"),
    input_source: Optional[str] = _DIRECTIVES["input_source"],
    output_node: Optional[str] = _DIRECTIVES["output_node"],
    control_source: List[str] = _DIRECTIVES["control_source"],
) -> None:
    """Print the derived nodal equations: unknowns, states, ports, device laws, DK matrices."""
    from nodal.explain import describe

    eq = _equations(circuit, input_source, output_node, control_source, "equations")
    console.print(describe(eq), highlight=False, markup=False)
    _print_notes(eq, console)


def _print_notes(eq, out: Console, name: str = "") -> None:
    """The netlist's cards read without effect on the result (ignored analyses and options,
    unused models of types nodalnet does not model...): named, never dropped quietly. name:
    the circuit, where a command reads several."""
    if eq.netlist.notes:
        out.print(f"\nnotes on the netlist{' ' + name if name else ''} (cards read without "
                  "effect on the result, names given to values):", highlight=False)
        for note in eq.netlist.notes:
            out.print(f"  {note}", highlight=False, markup=False, soft_wrap=True)


@app.command()
@friendly
def simulate(
    circuit: Optional[str] = typer.Argument(
        None, help="built-in circuit name or .cir netlist (with --model: optional, the run's own)"),
    input: Path = typer.Option(..., "--input", "-i",
                               help="input WAV (sample values = volts) or .npy"),
    output: Path = typer.Option(..., "--output", "-o",
                                help="output .npy (float64 volts) or .wav (float32)"),
    states: Optional[Path] = typer.Option(
        None, help="write the circuit states [time, n_states] as .npy"),
    set_: List[str] = typer.Option(
        [], "--set", help="NAME=VALUE: a component value or .param (repeatable); with --model: "
                          "a knob the run was trained with"),
    control: List[str] = typer.Option(
        [], help="SOURCE=FILE: drive a `*@ control` source (repeatable)"),
    oversample: int = typer.Option(
        1, help="run the solver at N times the rate (polyphase resampling), N >= 1"),
    gain: float = typer.Option(1.0, help="volts per unit of input sample value"),
    rate: Optional[float] = typer.Option(
        None, help="sample rate of a .npy input, Hz (WAV: its own)"),
    normalize: bool = typer.Option(False, help="peak-normalise a .wav output for listening"),
    backend: str = typer.Option("fast", help="fast (compiled) or torch (differentiable path)"),
    model: Optional[Path] = typer.Option(
        None, "--model", help="a trained run directory (nodalnet train --out): run that "
                              "network instead of the solver"),
    input_source: Optional[str] = _DIRECTIVES["input_source"],
    output_node: Optional[str] = _DIRECTIVES["output_node"],
    control_source: List[str] = _DIRECTIVES["control_source"],
) -> None:
    """Run a circuit (or a trained model of it) on an input signal; write its output (and
    states)."""
    from nodal import arguments

    _check_simulate_outputs(input, output, states, gain, rate, normalize)
    if model is not None:
        if input_source or output_node or control_source:
            raise arguments.ArgumentError(
                "--model: a trained network has its own input and output; --input-source, "
                "--output-node and --control-source name a netlist's; drop them or --model")
        if oversample != 1 or backend != "fast":
            raise arguments.ArgumentError(
                "--model: a trained network takes no --oversample or --backend (they drive "
                "the solver); drop them or drop --model")
        return _simulate_model(model, circuit, input, output, states, control, gain, rate,
                               normalize, _parse_values(set_))
    if circuit is None:
        raise arguments.ArgumentError("give a circuit (built-in name or .cir file), or --model "
                                      "RUN_DIR")
    arguments.choice("--backend", backend, ("fast", "torch"))
    arguments.positive_int("--oversample", oversample)
    import numpy as np
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from nodal.audio import write_signal
    from nodal.files import OutputSet
    from nodal.render import render

    eq = _equations(circuit, input_source, output_node, control_source, "simulate")
    values = arguments.parameter_values("--set", set_, eq.parameters)
    signal, fs = _read_input(input, gain, rate, output)
    controls = _read_controls(control, fs, list(eq.netlist.controls))
    controls.update(_moved_waveforms(circuit, eq, values, controls, len(signal), fs))
    total = len(signal) * oversample
    solved = []   # the solver's diagnostics, printed once the outputs are written
    with Progress(TextColumn("simulating"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TimeRemainingColumn(), console=err_console, transient=True,
                  disable=total < (200_000 if backend == "torch" else 2_000_000)) as bar:
        task = bar.add_task("sim", total=total)
        y, x = render(eq, signal, fs, values=values, controls=controls, oversample=oversample,
                      backend=backend, progress=lambda n: bar.update(task, completed=n),
                      report=solved.append)
    with OutputSet() as outputs:
        write_signal(output, y, fs, normalize=normalize, outputs=outputs)
        if states:
            write_signal(states, x, fs, outputs=outputs)
    _print_notes(eq, err_console)
    for diagnostics in solved:
        err_console.print(f"solver: {diagnostics.summary()}")
    peak = float(np.max(np.abs(y))) if len(y) else 0.0
    console.print(f"{output}: {len(y)} samples at {fs:g} Hz, peak {peak:.4g} V"
                  + (f"; states {', '.join(eq.state_names)} -> {states}" if states else ""))


def _moved_waveforms(circuit: str, eq, values: dict, given: dict, length: int,
                     rate: float) -> dict:
    """The control sources whose netlist waveform a --set .param changes (the phaser's
    `SIN(... {rate})`), as signals at those values; sources given by --control stay theirs."""
    params = {k.lower(): v for k, v in (values or {}).items() if k.lower() in eq.netlist.params}
    if not params:
        return {}
    from nets.knobs import control_waveforms

    import numpy as np

    before = control_waveforms(circuit, {})
    after = control_waveforms(circuit, params)
    taken = {k.lower() for k in given}
    t = np.arange(length) / rate
    return {name: np.asarray(wave.at(t, 1 / rate), dtype=np.float64)
            for name, wave in after.items()
            if wave is not None and wave != before[name] and name not in taken}


def _check_simulate_outputs(input: Path, output: Path, states: Optional[Path], gain: float,
                            rate: Optional[float], normalize: bool) -> None:
    """simulate's arguments that need no circuit: files, gain, rate, --normalize."""
    from nodal import arguments

    arguments.input_file("--input", input)
    arguments.output_file("--output", output, (".npy", ".wav"))
    if states is not None:
        arguments.output_file("--states", states, (".npy",))
    arguments.distinct({"--input": input, "--output": output, "--states": states})
    arguments.finite("--gain", gain, "a finite number of volts per unit")
    if rate is not None:
        arguments.sample_rate("--rate", rate)
    if normalize and output.suffix.lower() != ".wav":
        raise arguments.ArgumentError(f"--normalize: peak-normalises a .wav output for "
                                      f"listening; {output} is .npy (volts as computed)")


def _read_input(input: Path, gain: float, rate: Optional[float],
                output: Path) -> tuple:
    """The input signal and its rate: a WAV's own, or --rate for a .npy."""
    from nodal import arguments
    from nodal.audio import read_signal

    signal, fs = read_signal(input, gain)
    if fs is None:
        if rate is None:
            raise arguments.ArgumentError(f"--rate: {input} is .npy and has no rate of its "
                                          "own; give --rate HZ")
        fs = rate
    elif rate is not None and rate != fs:
        raise arguments.ArgumentError(f"--rate {rate:g}: {input} is a WAV at {fs:g} Hz; drop "
                                      "--rate (a WAV's rate is its own)")
    if output.suffix.lower() == ".wav" and not float(fs).is_integer():
        raise arguments.ArgumentError(f"--rate {fs:g}: a .wav output needs a whole number of "
                                      "Hz; write .npy or give an integer rate")
    return signal, fs


@app.command()
@friendly
def verify(
    circuit: str = typer.Argument("diode_clipper", help="built-in name or .cir file"),
    duration: float = typer.Option(0.1, help="seconds of each test signal (0 < s <= 60)"),
    oversample: int = typer.Option(8, help="also compare at this oversampling (1: skip)"),
    backend: str = typer.Option("fast", help="fast or torch"),
    json_out: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
    input_source: Optional[str] = _DIRECTIVES["input_source"],
    output_node: Optional[str] = _DIRECTIVES["output_node"],
    control_source: List[str] = _DIRECTIVES["control_source"],
) -> None:
    """Compare the solver with ngspice on the same netlist and input (ESR at sample times)."""
    import json

    from rich.markup import escape

    from nodal import arguments
    from nodal.verify import verify as run_verify

    _seconds("--duration", duration, 60.0)
    arguments.positive_int("--oversample", oversample)
    arguments.choice("--backend", backend, ("fast", "torch"))
    eq = _equations(circuit, input_source, output_node, control_source, "verify")
    rows = run_verify(eq, duration=duration, oversample=oversample, backend=backend)
    if json_out:
        console.print_json(json.dumps([r.as_dict() for r in rows]))
        return
    table = Table(title=f"{circuit} against ngspice (48 kHz; reference: max step T/16)")
    for col in ("signal", "oversample", "output ESR", "state ESR", "solver s", "ngspice s"):
        table.add_column(col, justify="right" if col != "signal" else "left")
    notes = []
    for r in rows:
        mark = ""
        if r.note:
            if r.note not in notes:
                notes.append(r.note)
            mark = f" [{notes.index(r.note) + 1}]"
        table.add_row(r.signal + mark, f"{r.oversample}x", f"{r.output_esr:.2e}",
                      f"{r.state_esr:.2e}", f"{r.solver_seconds:.2f}",
                      f"{r.ngspice_seconds:.2f}")
    console.print(table)
    for k, note in enumerate(notes, start=1):
        console.print(f"[yellow][{k}] {escape(note)}[/]", highlight=False)
    _print_notes(eq, err_console)


def _seconds(name: str, value: float, most: float, least: float = 0.0) -> float:
    """A duration in seconds: finite, > least (> 0) and <= most."""
    from nodal import arguments

    if not (value > least and value <= most):   # NaN fails both
        low = f"> {least:g}" if least else "> 0"
        raise arguments.ArgumentError(f"{name} {value:g}: give seconds {low} and <= {most:g}")
    return value


@app.command()
@friendly
def demo(out: Path = typer.Option(Path("demo"), help="folder for the demo's files")) -> None:
    """The main job on the built-in diode clipper: the solver checked against ngspice, then the
    exposure-bias study (quick profile: STN and GRU with state matching, trained with several
    TBPTT windows and seeds, compared free-running), with its report."""
    from nodal import arguments

    arguments.output_folder("--out", out)
    console.rule("1/2  the white-box solver against ngspice")
    verify("diode_clipper", duration=0.05, oversample=8, backend="fast", json_out=False,
           input_source=None, output_node=None, control_source=[])
    console.rule("2/2  exposure bias and TBPTT on the diode clipper (quick profile)")
    # one run per core: a run's weights do not depend on how many train beside it
    _run_study("exposure-bias", "quick", out / "exposure-bias", jobs=min(4, os.cpu_count() or 1))


def _simulate_model(run_dir: Path, circuit: Optional[str], input: Path, output: Path,
                    states: Optional[Path],
                    control: List[str], gain: float, rate: Optional[float],
                    normalize: bool, knobs: dict[str, float]) -> None:
    """`simulate --model`: a trained network on the input, at its own rate (resampling);
    --set gives the values of the knobs it was trained with."""
    import nets
    from nets.inference import knob_values, process
    from nodal import arguments
    from nodal.audio import write_signal
    from nodal.files import OutputSet

    arguments.input_folder("--model", run_dir)
    nets.checkpoint.check_circuit(run_dir, circuit)
    net = nets.load_run(run_dir)
    values = knob_values(net, knobs)    # before reading anything: a bad --set is one line
    signal, fs = _read_input(input, gain, rate, output)
    trained = getattr(net, "run_info", {}).get("data", {}).get("circuit")
    known = None
    if control and trained is not None:   # the sources of the circuit the run was trained on
        import nodal
        known = list(nodal.equations(trained).netlist.controls)
    controls = _read_controls(control, fs, known)
    y, x = process(net, signal, fs, controls, knobs=values)
    with OutputSet() as outputs:
        write_signal(output, y, fs, normalize=normalize, outputs=outputs)
        if states:
            write_signal(states, x, fs, outputs=outputs)
    at = f" at {', '.join(f'{k}={v:g}' for k, v in values.items())}" if values else ""
    console.print(f"{output}: {len(y)} samples at {fs:g} Hz from {net.spec['name']} ({run_dir})"
                  + at)


#: the `train` option of each checked setting (nets.errors.ConfigError.field)
_TRAIN_OPTIONS = {"window": "--window", "state_weight": "--state-weight", "hidden": "--hidden",
                  "epochs": "--epochs", "seed": "--seed", "lr": "--lr", "segment": "--segment",
                  "batch": "--batch", "emphasis": "--emphasis", "train_seconds": "--train-seconds",
                  "wav": "--wav", "sample_rate": "--rate", "threads": "--threads", "out": "--out",
                  "knob": "--knob", "knob_motion": "--knob-motion"}


@app.command()
@friendly
def train(
    circuit: Optional[str] = typer.Argument(None,
        help="built-in circuit name or .cir netlist (omit with --resume)"),
    model: Optional[str] = typer.Option(None, "--model", "-m",
        help="stn, gru, gru-sm, lstm, ode or nodal [default: stn]"),
    window: Optional[str] = typer.Option(None,
        help="samples between resets to true states: 1 = teacher forcing, inf = free-running; at "
             "most --segment [default: the model's]"),
    state_weight: Optional[float] = typer.Option(None,
        help="lambda in ESR(y) + lambda ESR(x) [default: the model's]"),
    hidden: Optional[int] = typer.Option(None,
        help="hidden size (GRU/LSTM units, STN/ODE units per layer)"),
    epochs: Optional[int] = typer.Option(None,
        help="epochs [default: the model's]; with --resume: extend the run to this many"),
    seed: Optional[int] = typer.Option(None,
        help="seed of the weights and the batch order [default: 0]"),
    lr: Optional[float] = typer.Option(None, help="Adam learning rate [default: the model's]"),
    segment: Optional[int] = typer.Option(None,
        help="samples per training segment (slow dynamics need long ones) [default: the model's]"),
    batch: Optional[int] = typer.Option(None, help="segments per step [default: the model's]"),
    emphasis: Optional[float] = typer.Option(None,
        help="pre-emphasis 1 - c z^-1 on the output loss, e.g. 0.85"),
    train_seconds: Optional[float] = typer.Option(None,
        help="seconds of generated training material [default: 120]"),
    wav: List[Path] = typer.Option([],
        help="train on these mono WAV files (volts) instead (repeatable)"),
    sample_rate: Optional[float] = typer.Option(None, "--rate",
        help="the dataset's (and model's) rate, Hz [default: 48000]"),
    set_: List[str] = typer.Option([], "--set",
        help="NAME=VALUE: a component value or .param (repeatable)"),
    threads: Optional[int] = typer.Option(None,
        help="torch threads (small models train fastest on one) [default: 1]"),
    knob: List[str] = typer.Option([], "--knob",
        help="NAME=LOW:HIGH: sweep this .param over the range; the model takes its value as "
             "an input (repeatable)"),
    knob_motion: bool = typer.Option(False, "--knob-motion",
        help="the knobs move slowly within the material (piecewise-constant steps)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="run directory to write"),
    resume: Optional[Path] = typer.Option(None,
        help="continue the run in this directory (with its own settings)"),
) -> None:
    """Train a model of a circuit on the solver's states and output (see `nets.train`).

    Every argument is checked before any work: a bad one is one line naming it, exit code 2,
    and nothing written."""
    from nets.errors import ConfigError

    settings = dict(window=window, state_weight=state_weight, hidden=hidden, seed=seed, lr=lr,
                    segment=segment, batch=batch, emphasis=emphasis,
                    train_seconds=train_seconds, wav=wav, sample_rate=sample_rate,
                    set_=set_, threads=threads, knob=knob, knob_motion=knob_motion or None,
                    out=out)
    try:
        if resume is not None:
            _train_resume(resume, circuit, model, epochs, settings)
        else:
            _train_start(circuit, model or "stn", epochs, **settings)
    except ConfigError as exc:
        raise exc.renamed(_TRAIN_OPTIONS.get(exc.field, exc.field)) from None


@contextlib.contextmanager
def _training_bar():
    """The progress bar of `train`, and the hooks that drive it."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(),
                  TextColumn("loss {task.fields[loss]:.3e}  val ESR {task.fields[val]}"),
                  TimeElapsedColumn(), console=err_console) as bar:
        task = bar.add_task("training", total=None, loss=float("nan"), val="-")

        def on_step(epoch, step, steps, loss):
            bar.update(task, description=f"epoch {epoch + 1}", completed=step, total=steps,
                       loss=loss)

        def on_epoch(record):
            bar.update(task, val=f"{record['val_esr']:.3e}")

        yield dict(log=bar.console.print, on_step=on_step, on_epoch=on_epoch)


def _train_resume(run_dir: Path, circuit: Optional[str], model: Optional[str],
                  epochs: Optional[int], settings: dict) -> None:
    import nets.runs
    from nets.checkpoint import check_circuit, read_info
    from nodal.errors import SignalError

    given = [_TRAIN_OPTIONS.get(k, "--set") for k, v in settings.items()
             if v is not None and v != []] + (["--model"] if model is not None else [])
    if given:
        raise SignalError(f"{', '.join(given)}: a resumed run keeps its own settings (only "
                          "--epochs may extend it); drop them, or start a new run with --out")
    check_circuit(run_dir, circuit)
    if epochs is not None:
        from nets.train import TrainConfig
        TrainConfig.from_dict({**read_info(run_dir)["config"], "epochs": epochs})
    with _training_bar() as hooks:
        info = nets.runs.resume(run_dir, epochs=epochs, **hooks)
    _print_trained(info, info["model"]["name"], run_dir)


def _train_start(circuit: Optional[str], model: str, epochs: Optional[int], window, state_weight,
                 hidden, seed, lr, segment, batch, emphasis, train_seconds, wav, sample_rate,
                 set_, threads, knob, knob_motion, out) -> None:
    from dataclasses import replace

    import nets.runs
    import nodal
    from nets.data import MaterialSpec
    from nets.train import parse_window
    from nodal.errors import SignalError

    if circuit is None:
        raise SignalError("give a circuit to train on (or --resume RUN_DIR)")
    material = MaterialSpec(wav=tuple(str(w) for w in wav))
    if train_seconds is not None:
        material = replace(material, train_seconds=train_seconds)
    if knob_motion and not knob:
        raise SignalError("--knob-motion: moves the --knob knobs; give at least one --knob")
    if knob:
        from nets.knobs import parse_specs
        material = replace(material, knobs=tuple(tuple(k.to_list()) for k in parse_specs(knob)),
                           knob_motion=bool(knob_motion))
    rate = 48000.0 if sample_rate is None else sample_rate
    arguments = dict(out=out, hidden=hidden, sample_rate=rate, material=material,
                     window=None if window is None else parse_window(window, "--window"),
                     state_weight=state_weight, epochs=epochs, seed=0 if seed is None else seed,
                     lr=lr, segment=segment, batch=batch, emphasis=emphasis,
                     threads=1 if threads is None else threads)
    nets.runs.check_start(circuit, model, **arguments)  # before the bar: one line, nothing made
    _print_notes(nodal.equations(circuit, command="train"), err_console)   # derived once: cached
    values = _parse_values(set_) or None
    both = sorted({k.lower() for k in values or {}} & {k[0] for k in material.knobs})
    if both:
        raise SignalError(f"--set {', '.join(both)}: also a --knob, which sweeps it; drop one")
    with _training_bar() as hooks:
        info = nets.runs.start(circuit, model, values=values, **arguments, **hooks)
    _print_trained(info, model, out)


def _print_trained(info: dict, model: str, out: Optional[Path]) -> None:
    test = info["test"]
    state = "" if test["state_esr"] is None else f", state ESR {test['state_esr']:.3e}"
    console.print(f"{model}: free-running test ESR "
                  f"{test['esr']:.3e} (pre-emphasised {test['esr_emphasis']:.3e}){state}; best "
                  f"epoch {info['best']['epoch'] + 1}, {info['history'][-1]['seconds']:.0f} s"
                  + (f" -> {out}" if out else ""))
    if info.get("components"):
        c = info["components"]
        for name, value in c["trained"].items():
            error = 100 * (value / c["true"][name] - 1)
            console.print(f"  {name}: {value:.6g} (true {c['true'][name]:.6g}, start "
                          f"{c['start'][name]:.6g}, error {error:+.3f} %)")


@app.command()
@friendly
def plot(
    circuit: str = typer.Argument(..., help="built-in name or .cir file"),
    out: Path = typer.Option(..., "--out", "-o", help="PNG file to write"),
    duration: float = typer.Option(2.0, help="seconds of test signal (0.1 to 60)"),
    peak: float = typer.Option(1.0, help="peak volts of the plucked string (> 0)"),
    oversample: int = typer.Option(1, help="solver oversampling (N >= 1)"),
) -> None:
    """Plot a plucked string and noise through a circuit: waveforms, states, spectrogram."""
    import nodal
    from nodal import arguments
    from nodal.plots import circuit_figure

    arguments.output_file("--out", out, (".png",))
    # the spectrogram takes 2048-sample frames: at least 0.1 s of signal at 48 kHz
    _seconds("--duration", duration, 60.0, least=0.1 - 1e-12)
    arguments.positive("--peak", peak, "volts")
    arguments.positive_int("--oversample", oversample)
    path = circuit_figure(nodal.equations(circuit), out, duration=duration, peak=peak,
                          oversample=oversample)
    console.print(f"wrote {path}")


@app.command()
@friendly
def bench(
    circuits: Optional[List[str]] = typer.Argument(
        None, help="built-in circuits, the bench's own (bench/netlists: big_muff_pair) or "
        "netlist files (default: every built-in)"),
    json_out: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
    seconds: float = typer.Option(10.0, help="seconds of test signal at 48 kHz (up to 600)"),
    spice_seconds: Optional[float] = typer.Option(
        None, help="run ngspice on an excerpt this long (up to --seconds)"),
) -> None:
    """Real-time factors of the fast and torch paths beside ngspice, one thread (nodal/bench.py)."""
    import nodal
    from nodal import bench as nodal_bench

    _seconds("--seconds", seconds, 600.0)
    if spice_seconds is not None:
        _seconds("--spice-seconds", spice_seconds, seconds)
    for name in circuits or []:    # an unknown or broken circuit, before an hour of benching
        nodal.equations(nodal_bench.resolve(name))
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
    report: Path = typer.Option(
        Path("report"), help="folder for report.md, results.json and plots (an earlier "
                             "report there is replaced)"),
    solver: bool = typer.Option(True, help="include the white-box solver as the reference row"),
) -> None:
    """Evaluate trained models side by side: ESR free-running and teacher-forced, exposure bias,
    error growth, state ESR, parameters, real-time factor; writes a report with plots."""
    from nets import compare as comparing
    from nets.checkpoint import read_info
    from nets.report import aggregate, check_report_folder, write_comparison
    import nodal
    from nodal import arguments

    for run in runs:
        arguments.input_folder("run", run)
        read_info(run)              # a folder that is not a run: named, before any evaluation
    check_report_folder(report)
    result = comparing.compare(runs, circuit=circuit, with_solver=solver)
    if not result.groups:
        raise arguments.ArgumentError(f"--circuit {circuit}: none of the runs was trained on "
                                      "it" if circuit else "no run to compare")
    for name, evals in result.groups.items():
        _print_rows(name, aggregate(evals))
    for name in dict.fromkeys(data.circuit for data in result.data.values()):
        _print_notes(nodal.equations(name, command="compare"), err_console, name)
    path = write_comparison(result, report)
    console.print(f"report: {path}")


@app.command()
@friendly
def study(
    which: str = typer.Argument(..., help="exposure-bias or state-matching"),
    profile: str = typer.Option("quick", help="quick (minutes) or full (the real numbers)"),
    out: Path = typer.Option(..., "--out",
                             help="study folder (resumable: run it again to continue)"),
    jobs: int = typer.Option(1, "--jobs", "-j",
                             help="runs trained at once, one process and one thread each "
                                  "(1 up to the number of cores)"),
    circuit: List[str] = typer.Option(
        [], "--circuit", help="exposure-bias: its circuit (built-in or .cir) [default: "
                              "diode_clipper]; state-matching: a subset of its circuits "
                              "(repeatable)"),
    model: List[str] = typer.Option(
        [], "--model", "-m", help="exposure-bias: the models swept over windows [default: stn, "
                                  "gru-sm]; state-matching: which references to keep "
                                  "(repeatable)"),
) -> None:
    """Run a whole study of Peussa et al. (DAFx 2021): train the sweep, compare, give verdicts."""
    _run_study(which, profile, out, jobs, tuple(circuit), tuple(model))


def _run_study(which: str, profile: str, out: Path, jobs: int = 1,
               circuits: tuple[str, ...] = (), models: tuple[str, ...] = ()) -> None:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from nets import study as studies
    from nets.report import check_report_folder, read_json
    from nodal import arguments

    # an unknown study, profile, model or circuit, and a folder that cannot take the report:
    # named before the first run starts
    studies._check(which, profile)
    narrowed = studies.narrow(studies.PROFILES[profile], which, circuits, models)
    import nodal
    # a missing or broken netlist, not a half-made study folder; the cards read without effect
    # named with their circuit
    derived = {name: nodal.equations(name, command="study")
               for name in studies.circuits_of(narrowed, which)}
    arguments.positive_int("--jobs", jobs, os.cpu_count() or 1)
    check_report_folder(out, "--out")
    for name, eq in derived.items():
        _print_notes(eq, err_console, name)
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


def _is_run_target(target: str) -> bool:
    """A folder is a run to export, but a built-in circuit's name stays the circuit where a
    folder of that name (not holding a run) happens to be in the working directory."""
    import circuits as library

    folder = Path(target)
    if not folder.is_dir():
        return False
    holds_run = (folder / "run.json").exists() or (folder / "last.pt").exists()
    return holds_run or library.path_of(target) is None


@app.command("export")
@friendly
def export_model(
    target: str = typer.Argument(
        ..., help="a trained run directory (nodalnet train --out), or a circuit: built-in "
                  "name or .cir netlist"),
    format: str = typer.Option(..., "--format", "-f",
                               help="rtneural (gru, gru-sm, lstm: AIDA-X, Proteus, ChowDSP), "
                                    "nam (lstm: Neural Amp Modeler) or c (stn runs, or a "
                                    "circuit: C99 source)"),
    out: Path = typer.Option(..., "--out", "-o", help="the file to write (.json, .nam, .c)"),
    set_: List[str] = typer.Option(
        [], "--set", help="circuit: NAME=VALUE, a component value or .param (repeatable)"),
    rate: Optional[float] = typer.Option(
        None, help="circuit: the sample rate the C file is built for, Hz (default 48000)"),
    input_source: Optional[str] = _DIRECTIVES["input_source"],
    output_node: Optional[str] = _DIRECTIVES["output_node"],
    control_source: List[str] = _DIRECTIVES["control_source"],
) -> None:
    """Write a trained model as a file a plug-in loads (RTNeural JSON, .nam) or as C source;
    it alone reproduces `simulate --model RUN` (volts in, volts out, at the run's rate). Or a
    circuit as one C99 file (--format c): the solver at the --set values, init() and
    process(), libm only (nodal/ccode.py)."""
    from nodal import arguments

    circuit_options = [name for name, given in (
        ("--set", set_), ("--rate", rate is not None), ("--input-source", input_source),
        ("--output-node", output_node), ("--control-source", control_source)) if given]
    if _is_run_target(target):
        if circuit_options:
            raise arguments.ArgumentError(
                f"{', '.join(circuit_options)}: options of a circuit's export; {target} is a "
                "run directory (its values and rate are the run's own)")
        import nets.export

        path = nets.export.export(Path(target), format, out)
        console.print(f"{path}: {format} model from {target}")
        return
    import circuits as library
    from nodal import ccode

    if library.path_of(target) is None and not Path(target).exists():
        raise arguments.ArgumentError(
            f"{target}: neither a run directory, a built-in circuit "
            f"({', '.join(library.registry())}) nor a netlist file")
    if format != "c":
        raise arguments.ArgumentError(
            f"--format {format}: a circuit exports to C only (--format c); rtneural and nam "
            "hold trained runs: give a run directory (nodalnet train --out) to export those")
    fs = arguments.sample_rate("--rate", 48000.0 if rate is None else rate)
    eq = _equations(target, input_source, output_node, control_source, "export")
    values = arguments.parameter_values("--set", set_, eq.parameters)
    path = ccode.export(eq, out, values=values, sample_rate=fs)
    console.print(f"{path}: C99 source of {eq.netlist.file} at {fs:g} Hz"
                  + (f" ({', '.join(f'{k}={v:g}' for k, v in values.items())})"
                     if values else ""))
    _print_notes(eq, err_console)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    app()

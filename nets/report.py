"""Tables and plots of a comparison: markdown, JSON and PNG (matplotlib, Agg, atomic writes).

Seeds of the same configuration are pooled: a figure is reported as its mean and its spread
(min..max over seeds).
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from nodal.files import OutputSet, atomic_write, to_json

from .compare import Evaluation
from .windows import format_window, is_infinite, sort_key

COLUMNS = ("esr", "esr_emphasis", "state_esr", "esr_teacher", "exposure_bias", "parameters",
           "rtf")
HEADERS = {"esr": "ESR (free-running)", "esr_emphasis": "ESR pre-emph.",
           "state_esr": "state ESR", "esr_teacher": "ESR k=1 (teacher-forced)",
           "exposure_bias": "exposure bias", "parameters": "params", "rtf": "real-time x"}


def config_key(ev: Evaluation) -> str:
    if ev.window is None:
        return ev.label
    k = format_window(ev.window)
    hidden = f" h={ev.hidden}" if ev.hidden else ""
    # an unfinished run is its own row, marked, never pooled with finished seeds
    unfinished = "" if ev.status in (None, "done") else \
        f" [{ev.status}: {ev.epochs_done}/{ev.epochs_asked} epochs]"
    return f"{ev.model}{hidden} k={k}{unfinished}"


def aggregate(evals: list[Evaluation]) -> list[dict]:
    """Pool seeds: one row per configuration with mean, min and max of every column."""
    groups: dict[str, list[Evaluation]] = defaultdict(list)
    for ev in evals:
        groups[config_key(ev)].append(ev)
    rows = []
    for key, members in groups.items():
        row = {"config": key, "model": members[0].model, "window": members[0].window,
               "seeds": len(members)}
        for col in COLUMNS:
            values = [getattr(m, col) for m in members]
            values = [v for v in values if v is not None and not (isinstance(v, float)
                                                                   and math.isnan(v))]
            if values:
                row[col] = {"mean": float(np.mean(values)), "min": float(np.min(values)),
                            "max": float(np.max(values))}
            else:
                row[col] = None
        windows = sorted({k for m in members for k in m.esr_by_window}, key=sort_key)
        row["esr_by_window"] = {k: float(np.mean([m.esr_by_window[k] for m in members
                                                   if k in m.esr_by_window]))
                                for k in windows}
        rows.append(row)
    return rows


def _fmt(cell: dict | None, col: str) -> str:
    if cell is None:
        return "—"
    mean, lo, hi = cell["mean"], cell["min"], cell["max"]
    if col == "parameters":
        return f"{mean:.0f}"
    if col in ("rtf", "exposure_bias"):
        text = f"{mean:.3g}"
        return text if lo == hi else f"{text} ({lo:.3g}..{hi:.3g})"
    text = f"{mean:.2e}"
    return text if lo == hi else f"{text} ({lo:.1e}..{hi:.1e})"


def markdown_table(rows: list[dict]) -> str:
    header = "| configuration | seeds | " + " | ".join(HEADERS[c] for c in COLUMNS) + " |"
    rule = "|---|---|" + "---|" * len(COLUMNS)
    lines = [header, rule]
    for row in rows:
        cells = [_fmt(row[c], c) for c in COLUMNS]
        lines.append(f"| {row['config']} | {row['seeds']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def write_json(path: Path, obj, outputs: OutputSet | None = None) -> None:
    """`obj` as strict, indented JSON (`nodal.files.to_json`), written atomically or as part of
    `outputs`."""
    if outputs is None:
        atomic_write(path, to_json(obj))
    else:
        outputs.write(path, to_json(obj))


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: Path, outputs: OutputSet | None = None) -> Path:
    from nodal.plots import save_png
    return save_png(fig, path, outputs=outputs)


_FAMILIES = ("Blues", "Oranges", "Greens", "Purples", "Reds", "Greys")
_LINESTYLES = ("-", "--", "-.", ":")


def _family_styles(configs: list[tuple[str, str]]) -> dict[str, tuple[object, str]]:
    """key -> (colour, line style): one colour map and line style per model, shaded by
    configuration (its window), so that fourteen curves of two models stay two readable
    families. configs: (model, key) pairs."""
    import matplotlib
    models = list(dict.fromkeys(m for m, _ in configs))
    out: dict[str, tuple[object, str]] = {}
    for i, model in enumerate(models):
        keys = [k for m, k in configs if m == model]
        cmap = matplotlib.colormaps[_FAMILIES[i % len(_FAMILIES)]]
        for j, key in enumerate(keys):
            out[key] = (cmap(0.45 + 0.5 * j / max(1, len(keys) - 1)),
                        _LINESTYLES[i % len(_LINESTYLES)])
    return out


def plot_growth(evals: list[Evaluation], path: Path, title: str,
                outputs: OutputSet | None = None) -> Path:
    """ESR versus samples since the last reset to the true state (log-log), seeds pooled."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(7, 4.2), constrained_layout=True)
    groups: dict[str, list[Evaluation]] = defaultdict(list)
    for ev in evals:
        if ev.growth:
            groups[config_key(ev)].append(ev)
    styles = _family_styles([(members[0].model, key) for key, members in groups.items()])
    for key, members in groups.items():
        offsets = [o for o, _ in members[0].growth]
        curve = np.mean([[v for _, v in m.growth] for m in members
                         if len(m.growth) == len(offsets)], axis=0)
        colour, style = styles[key]
        ax.loglog(offsets, np.maximum(curve, 1e-12), label=key, lw=1.2, color=colour, ls=style)
    ax.set_xlabel("samples since reset to the true circuit state")
    ax.set_ylabel("ESR")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    _legend(ax, "no run measured its error growth", fontsize=7, ncol=2)
    return _save(fig, path, outputs)


def _legend(ax, empty: str, **style) -> None:
    """The legend of what ax shows, or where it shows nothing, `empty` written on it (an empty
    legend is a matplotlib warning and says nothing)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**style)
    else:
        ax.text(0.5, 0.5, empty, transform=ax.transAxes, ha="center", va="center", fontsize=9)


def plot_windows(rows: list[dict], path: Path, title: str,
                 outputs: OutputSet | None = None) -> Path:
    """Free-running test ESR and exposure bias versus the training window k (seeds pooled)."""
    plt = _figure()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    by_model: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        if row["window"] is not None:
            by_model[row["model"]].append(row)
    finite = sorted({r["window"] for r in rows
                     if r["window"] is not None and not is_infinite(r["window"])})
    inf_x = (max(finite) * 4) if finite else 1
    for model, members in by_model.items():
        members.sort(key=lambda r: r["window"])
        xs = [inf_x if is_infinite(r["window"]) else r["window"] for r in members]
        for ax, col in zip(axes, ("esr", "exposure_bias"), strict=True):
            pts = [(x, r[col]) for x, r in zip(xs, members, strict=True) if r[col]]
            if not pts:
                continue
            x = [p[0] for p in pts]
            mean = [p[1]["mean"] for p in pts]
            lo = [p[1]["min"] for p in pts]
            hi = [p[1]["max"] for p in pts]
            ax.plot(x, mean, marker="o", label=model)
            ax.fill_between(x, lo, hi, alpha=0.2)
    labels = ("free-running test ESR", "exposure bias (free / teacher-forced)")
    for ax, label in zip(axes, labels, strict=True):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training window k (rightmost: k = inf)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        _legend(ax, "no run with a training window k", fontsize=8)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path, outputs)


def plot_waveforms(traces: dict[str, np.ndarray], truth: np.ndarray, sample_rate: float,
                   path: Path, title: str, state_truth: np.ndarray | None = None,
                   state_traces: dict[str, np.ndarray] | None = None,
                   outputs: OutputSet | None = None) -> Path:
    """Output (and first state) of each model against the solver over an excerpt."""
    plt = _figure()
    rows = 2 if state_truth is not None and state_traces else 1
    fig, axes = plt.subplots(rows, 1, figsize=(9, 3.2 * rows), constrained_layout=True,
                             squeeze=False)
    t = np.arange(len(truth)) / sample_rate * 1e3
    ax = axes[0, 0]
    ax.plot(t, truth, color="black", lw=1.6, label="solver")
    for name, y in traces.items():
        ax.plot(t, y, lw=0.9, label=name)
    ax.set_ylabel("output (V)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncol=3)
    if rows == 2:
        ax = axes[1, 0]
        ax.plot(t, state_truth, color="black", lw=1.6, label="solver")
        for name, x in state_traces.items():
            ax.plot(t, x, lw=0.9, label=name)
        ax.set_ylabel("first state (V)")
        ax.legend(fontsize=7, ncol=3)
    axes[-1, 0].set_xlabel("ms")
    return _save(fig, path, outputs)


def plot_error_spectra(errors: dict[str, np.ndarray], sample_rate: float, path: Path,
                       title: str, reference: np.ndarray | None = None,
                       outputs: OutputSet | None = None) -> Path:
    """Welch power spectra of each model's output error (and of the true output)."""
    from scipy import signal

    plt = _figure()
    fig, ax = plt.subplots(figsize=(8, 4), constrained_layout=True)
    if reference is not None:
        f, p = signal.welch(reference, sample_rate, nperseg=4096)
        ax.semilogy(f, p, color="black", lw=1.4, label="solver output")
    for name, e in errors.items():
        f, p = signal.welch(e, sample_rate, nperseg=4096)
        ax.semilogy(f, np.maximum(p, 1e-30), lw=0.9, label=f"error: {name}")
    ax.set_xlim(0, sample_rate / 2)
    ax.set_xlabel("Hz")
    ax.set_ylabel("V²/Hz")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(True, alpha=0.3)
    return _save(fig, path, outputs)


def _traces(evals: list[Evaluation], data, excerpt: slice):
    """Free-running predictions of one seed per configuration over `excerpt` of the test split."""
    from . import metrics
    from .checkpoint import load_run

    seen, outputs, states, errors = set(), {}, {}, {}
    for ev in evals:
        key = config_key(ev)
        if ev.run_dir is None or key in seen:
            continue
        seen.add(key)
        model = load_run(ev.run_dir)
        with torch.no_grad():
            traj = metrics.predict(model, data.test)
        y = traj.y[0, :, 0].double().numpy()
        outputs[key] = y[excerpt]
        if getattr(model, "exposes_states", True) and traj.x.shape[-1]:
            states[key] = traj.x[0, :, 0].double().numpy()[excerpt]
        errors[key] = y - data.test.y[0, :, 0].double().numpy()
    return outputs, states, errors


def check_report_folder(out_dir: str | Path, what: str = "--report") -> Path:
    """The folder a report goes into: refused (RunDirectoryError, naming `what`) if the path
    is a file or the folder cannot be written. An existing report in it is replaced."""
    from nodal.files import check_writable

    from .errors import RunDirectoryError

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise RunDirectoryError(f"{what} {out}: is a file, not a folder; give a folder for "
                                "report.md, results.json and the plots")
    try:
        check_writable(out)
    except PermissionError:
        raise RunDirectoryError(f"{what} {out}: no permission to write there; give a folder "
                                "you can write to") from None
    return out


def write_comparison(comparison, out_dir: str | Path, title: str = "nodalnet compare") -> Path:
    """OUT_DIR/report.md, results.json and the PNG plots of a `compare.Comparison`, all of
    them or (on any error) none: they are renamed into place together at the end, replacing
    an earlier report's files of the same names."""
    out = check_report_folder(out_dir, "report folder")
    with OutputSet() as outputs:
        lines, results = _comparison_files(comparison, out, title, outputs)
        write_json(out / "results.json", results, outputs)
        report = out / "report.md"
        outputs.write(report, "\n".join(lines) + "\n")
    return report


def _comparison_files(comparison, out: Path, title: str,
                      outputs: OutputSet) -> tuple[list[str], dict]:
    """The report's lines and results; the plots go into `outputs`."""
    lines = [f"# {title}", ""]
    results = {}
    for circuit, evals in comparison.groups.items():
        data = comparison.data[circuit]
        rows = aggregate(evals)
        results[circuit] = {"runs": [e.as_dict() for e in evals], "table": rows}
        lines += [f"## {circuit}", "", f"Test split: {data.test.length / data.sample_rate:.1f} s "
                  f"at {data.sample_rate:g} Hz; every model free-running from the split's start "
                  "unless stated.", "", markdown_table(rows), ""]
        lines += _window_table(rows)
        stem = re.sub(r"[^\w.-]+", "_", circuit).strip("_")
        n0 = int(0.5 * data.sample_rate)
        excerpt = slice(n0, n0 + int(0.02 * data.sample_rate))
        traces, states, errors = _traces(evals, data, excerpt)
        plots = {
            "waveforms": plot_waveforms(
                traces, data.test.y[0, excerpt, 0].double().numpy(), data.sample_rate,
                out / f"{stem}_waveforms.png", f"{circuit}: output and first state, 20 ms",
                data.test.x[0, excerpt, 0].double().numpy() if data.n_states else None, states,
                outputs=outputs),
            "growth": plot_growth(evals, out / f"{stem}_error_growth.png",
                                  f"{circuit}: error growth after a reset to the true state",
                                  outputs),
            "windows": plot_windows(rows, out / f"{stem}_esr_vs_window.png",
                                    f"{circuit}: free-running ESR versus training window",
                                    outputs),
            "spectra": plot_error_spectra(errors, data.sample_rate,
                                          out / f"{stem}_error_spectra.png",
                                          f"{circuit}: spectra of the output error",
                                          data.test.y[0, :, 0].double().numpy(), outputs),
        }
        if any(ev.esr_by_knob for ev in evals):
            lines += _knob_table(evals)
            plots["knobs"] = plot_knobs(evals, out / f"{stem}_esr_vs_knob.png",
                                        f"{circuit}: free-running ESR at each knob setting",
                                        outputs)
        for name, path in plots.items():
            lines += [f"![{circuit} {name}]({path.name})", ""]
        results[circuit]["plots"] = {k: v.name for k, v in plots.items()}
    return lines, results


def _window_table(rows: list[dict]) -> list[str]:
    windows = sorted({k for r in rows for k in r["esr_by_window"]}, key=sort_key)
    if not windows:
        return []
    lines = ["ESR with a reset to the true circuit states every k samples (evaluation):",
             "", "| configuration | " + " | ".join(f"k={k}" for k in windows) + " |",
             "|---|" + "---|" * len(windows)]
    for r in rows:
        cells = [f"{r['esr_by_window'][k]:.2e}" if k in r["esr_by_window"] else "—"
                 for k in windows]
        lines.append(f"| {r['config']} | " + " | ".join(cells) + " |")
    return lines + [""]


def _knob_label(values: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in values.items())


def _knob_table(evals: list[Evaluation]) -> list[str]:
    """Free-running ESR at each knob setting of the test grid (one row per model)."""
    with_knobs = [ev for ev in evals if ev.esr_by_knob]
    settings = [_knob_label(r["values"]) for r in with_knobs[0].esr_by_knob]
    lines = ["Free-running ESR at each knob setting of the test split (values never drawn in "
             "training):", "", "| model | " + " | ".join(settings) + " | worst |",
             "|---|" + "---|" * (len(settings) + 1)]
    for ev in with_knobs:
        esr = {_knob_label(r["values"]): r["esr"] for r in ev.esr_by_knob}
        cells = [f"{esr[k]:.2e}" if k in esr else "—" for k in settings]
        lines.append(f"| {ev.label} | " + " | ".join(cells) + f" | {max(esr.values()):.2e} |")
    return lines + [""]


def plot_knobs(evals: list[Evaluation], path: Path, title: str,
               outputs: OutputSet | None = None) -> Path:
    """ESR against the knob setting (the first knob on the x axis; one curve per model and
    setting of the others)."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for ev in evals:
        if not ev.esr_by_knob:
            continue
        names = list(ev.esr_by_knob[0]["values"])
        curves: dict[str, list[tuple[float, float]]] = {}
        for r in ev.esr_by_knob:
            rest = _knob_label({k: v for k, v in r["values"].items() if k != names[0]})
            curves.setdefault(rest, []).append((r["values"][names[0]], r["esr"]))
        for rest, points in curves.items():
            points.sort()
            ax.semilogy([p for p, _ in points], [max(e, 1e-12) for _, e in points], "o-",
                        label=ev.label + (f" ({rest})" if rest else ""))
        ax.set_xlabel(names[0])
    ax.set_ylabel("free-running ESR")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(True, alpha=0.3, which="both")
    return _save(fig, path, outputs)

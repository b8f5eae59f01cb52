"""The study of Peussa et al. (DAFx 2021) on our circuits: train the sweep, compare, decide.

    nets.study.run("exposure-bias", "quick", "reports/eb")     # resumable: runs already done
                                                               # are kept, cut ones continued
Claims:
  (a) every model trained with true circuit states shows exposure bias when it runs free;
  (b) longer TBPTT windows reduce it;
  (c) state matching improves the GRU on an overdrive pedal and on a phaser, most of all where
      the LFO modulates the circuit.

exposure-bias: diode clipper, `stn` and `gru-sm` trained with windows k (reset to the true
state every k samples); state-matching: tube_screamer and phase90, `gru` against `gru-sm` at
equal hidden size with `stn` (and in the full profile `lstm`, `nodal`) as references.
Every configuration is trained with several seeds; figures are mean and spread.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from . import checkpoint, compare, report, runs
from .data import MaterialSpec
from .errors import UnknownStudyError
from .registry import check_name
from .windows import format_window, is_infinite, parse_window, to_config

STUDIES = ("exposure-bias", "state-matching")


@dataclass(frozen=True)
class Profile:
    material: MaterialSpec
    seeds: tuple[int, ...]
    windows: tuple[int | float, ...]    # training windows k (math.inf: free-running)
    sm_circuits: tuple[str, ...]
    sm_models: tuple[str, ...]          # gru, gru-sm
    sm_references: tuple[str, ...]
    hidden: int = 8                     # GRU hidden size (equal for gru and gru-sm)
    epochs: int | None = None           # None: each model's default
    steps_per_epoch: int | None = None
    eb_circuit: str = "diode_clipper"
    eb_models: tuple[str, ...] = ("stn", "gru-sm")
    settings: dict = field(default_factory=dict)
    sm_settings: dict = field(default_factory=dict)   # overrides for the state-matching runs


PROFILES = {
    # within 20 minutes per study on 2 cores. exposure-bias: a subset of the full sweep (windows
    # 1, 16, inf; seeds 0, 1; the same material and schedules), so its runs are the full
    # profile's runs, weight for weight: ~17 min of training on one core, ~9 with --jobs 2.
    # state-matching: eight GRU runs, each on a short schedule
    "quick": Profile(material=MaterialSpec(), seeds=(0, 1), windows=(1, 16, math.inf),
                     sm_circuits=("tube_screamer", "phase90"), sm_models=("gru", "gru-sm"),
                     sm_references=(),
                     sm_settings={"epochs": 60, "steps_per_epoch": 40}),
    # the defaults of `nodalnet train` (120 s of material, each model's own schedule); the
    # pedals' GRUs at hidden 16 and without pre-emphasis: the plain ESR is the figure compared,
    # and hidden 8 is too small for the Tube Screamer's clipping and the phaser's four stages
    "full": Profile(material=MaterialSpec(), seeds=(0, 1, 2),
                    windows=(1, 4, 16, 64, 256, 1024, math.inf),
                    sm_circuits=("tube_screamer", "phase90"), sm_models=("gru", "gru-sm"),
                    sm_references=("lstm", "stn", "nodal"), hidden=16,
                    sm_settings={"emphasis": 0.0}),
}


@dataclass(frozen=True)
class Job:
    circuit: str
    model: str
    window: int | float | None          # None: each model's default (state-matching runs)
    seed: int
    hidden: int | None

    @property
    def name(self) -> str:
        k = "" if self.window is None else f"-k{format_window(self.window)}"
        h = f"-h{self.hidden}" if self.hidden else ""
        return f"{self.circuit}/{self.model}{k}{h}-s{self.seed}"


def _check(study: str, profile_name: str | None = None) -> None:
    if study not in STUDIES:
        raise UnknownStudyError(f"unknown study {study!r}; choose one of {', '.join(STUDIES)}")
    if profile_name is not None and profile_name not in PROFILES:
        raise UnknownStudyError(f"unknown profile {profile_name!r}; choose one of "
                                f"{', '.join(PROFILES)}")


def jobs(study: str, profile: Profile) -> list[Job]:
    _check(study)
    if study == "exposure-bias":
        return [Job(profile.eb_circuit, m, parse_window(k, "profile window"), s, None)
                for m in profile.eb_models for k in profile.windows for s in profile.seeds]
    if study == "state-matching":
        out = []
        for c in profile.sm_circuits:
            for m in profile.sm_models:
                out += [Job(c, m, None, s, profile.hidden) for s in profile.seeds]
            for m in profile.sm_references:
                out += [Job(c, m, None, s, None) for s in profile.seeds]
        return out


def _settings(job: Job, profile: Profile) -> dict:
    settings: dict = {"seed": job.seed, "epochs": profile.epochs,
                      "steps_per_epoch": profile.steps_per_epoch}
    if job.window is not None:
        settings["window"] = to_config(job.window)
        finite = not is_infinite(job.window)
        # a window must fit in a training segment: k samples, at least twice
        settings["segment"] = max(512, 2 * job.window) if finite else None
        if finite and job.window >= 256:
            settings["batch"] = 16
    settings.update(profile.settings)
    if job.window is None:
        settings.update(profile.sm_settings)
    return settings


def train_job(job: Job, profile: Profile, root: Path, log: Callable | None = None) -> Path:
    """Train one configuration into root/runs/<job>, or continue it, or keep it if done."""
    out = root / "runs" / job.name
    if (out / checkpoint.RUN_JSON).is_file():
        info = checkpoint.read_info(out)
        if info.get("status") == "done":
            return out
        if (out / checkpoint.LAST).is_file():
            runs.resume(out, log=log)
            return out
        import shutil
        shutil.rmtree(out)  # created but no epoch finished: start it again
    runs.start(job.circuit, job.model, out=out, hidden=job.hidden, material=profile.material,
               log=log, **_settings(job, profile))
    return out


# -- verdicts -------------------------------------------------------------------------------
def _by_model(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r["model"], []).append(r)
    return out


def _window(row: dict) -> int | float | None:
    """A row's training window (an int >= 1 or math.inf; None: not trained with one)."""
    return None if row["window"] is None else parse_window(row["window"])


def verdict_exposure_bias(rows: list[dict]) -> dict:
    """(a): models trained teacher-forced (k = 1) score worse free-running than one step at a
    time: exposure bias > 1 for every seed. (b): the free-running ESR at the longest windows is
    lower than at k = 1, beyond the seed spread, for every model."""
    a_models, b_models = {}, {}
    for model, members in _by_model(rows).items():
        tf = next((r for r in members if _window(r) == 1), None)
        if tf and tf["exposure_bias"]:
            a_models[model] = tf["exposure_bias"]
        longer = [r for r in members if _window(r) not in (None, 1) and r["esr"]]
        if tf and longer and tf["esr"]:
            best = min(longer, key=lambda r: r["esr"]["mean"])
            windowed = [r for r in members if _window(r) is not None]
            b_models[model] = {
                "k=1": tf["esr"], "best window": format_window(_window(best)),
                "best": best["esr"],
                "trend": _trend([(_window(r), r["esr"]["mean"]) for r in windowed if r["esr"]]),
                # the ratio itself: it can fall while the model gets worse
                "exposure_bias": {format_window(_window(r)): r["exposure_bias"]["mean"]
                                  for r in windowed if r["exposure_bias"]},
                "exposure_bias_trend": _trend([(_window(r), r["exposure_bias"]["mean"])
                                               for r in windowed if r["exposure_bias"]])}
    a = _decide([v["min"] > 1.0 for v in a_models.values()],
                [v["max"] > 1.0 for v in a_models.values()])
    b = _decide([v["best"]["max"] < v["k=1"]["min"] for v in b_models.values()],
                [v["best"]["mean"] < v["k=1"]["mean"] for v in b_models.values()])
    return {"a": {"verdict": a, "exposure_bias_at_k1": a_models},
            "b": {"verdict": b, "by_model": b_models}}


def _trend(points: list[tuple[float, float]]) -> float:
    """Spearman rank correlation of free-running ESR with the window (negative: longer helps)."""
    if len(points) < 3:
        return math.nan
    from scipy.stats import spearmanr
    x, y = zip(*sorted(points), strict=True)
    return float(spearmanr(x, y).statistic)


def verdict_state_matching(rows_by_circuit: dict[str, list[dict]]) -> dict:
    """(c): gru-sm below gru in free-running ESR on each circuit, beyond the seed spread; and
    the relative gain largest on the phaser (the LFO-modulated circuit)."""
    gains, strict, loose = {}, [], []
    for circuit, rows in rows_by_circuit.items():
        gru = next((r for r in rows if r["model"] == "gru" and r["esr"]), None)
        sm = next((r for r in rows if r["model"] == "gru-sm" and r["esr"]), None)
        if not gru or not sm:
            continue
        gains[circuit] = {"gru": gru["esr"], "gru-sm": sm["esr"],
                          "ratio": gru["esr"]["mean"] / sm["esr"]["mean"]}
        strict.append(sm["esr"]["max"] < gru["esr"]["min"])
        loose.append(sm["esr"]["mean"] < gru["esr"]["mean"])
    verdict = _decide(strict, loose)
    most = None
    if "phase90" in gains and len(gains) > 1:
        most = max(gains, key=lambda c: gains[c]["ratio"]) == "phase90"
    return {"c": {"verdict": verdict, "by_circuit": gains,
                  "largest_gain_on_the_phaser": most}}


def _decide(strict: list[bool], loose: list[bool]) -> str:
    if not strict:
        return "inconclusive (no data)"
    if all(strict):
        return "holds"
    if not any(loose):
        return "does not hold"
    if all(loose):
        return "inconclusive (holds on average, within the seed spread)"
    return "inconclusive (mixed)"


# -- the whole study ------------------------------------------------------------------------
def _train_in_worker(job: Job, profile: Profile, root: str) -> str:
    """One job in a worker process (spawned: a fresh interpreter, torch on one thread)."""
    return str(train_job(job, profile, Path(root)))


def train_all(todo: list[Job], profile: Profile, root: Path, workers: int = 1,
              log: Callable | None = None, on_job: Callable | None = None) -> list[Path]:
    """Train the jobs, `workers` at a time; the run folders in the order of `todo`.

    Each run is seeded and single-threaded, so a run's weights do not depend on `workers`."""
    if workers <= 1:
        dirs = []
        for n, job in enumerate(todo):
            if on_job:
                on_job(n, len(todo), job.name)
            dirs.append(train_job(job, profile, root, log))
        return dirs
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from .data import dataset
    for circuit in dict.fromkeys(job.circuit for job in todo):
        dataset(circuit, 48000.0, profile.material, log=log)  # render once, before the workers
    dirs: list[Path | None] = [None] * len(todo)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        pending = {pool.submit(_train_in_worker, job, profile, str(root)): n
                   for n, job in enumerate(todo)}
        if on_job:
            on_job(0, len(todo), f"{len(todo)} runs, {workers} at a time")
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                n = pending.pop(future)
                dirs[n] = Path(future.result())  # a failed run raises here, others stay kept
                if on_job:
                    on_job(len(todo) - len(pending), len(todo), todo[n].name)
    return dirs  # type: ignore[return-value]


def narrow(profile: Profile, study: str, circuits: tuple[str, ...] = (),
           models: tuple[str, ...] = ()) -> Profile:
    """The profile on other circuits or a subset of its models.

    exposure-bias takes one circuit (any built-in or .cir) and any models; state-matching a
    subset of its circuits and models (gru and gru-sm stay: they are what it compares)."""
    for model in models:
        check_name(model)
    if study == "exposure-bias":
        if len(circuits) > 1:
            raise UnknownStudyError("exposure-bias runs on one circuit: give --circuit once")
        changes = {}
        if circuits:
            changes["eb_circuit"] = circuits[0]
        if models:
            changes["eb_models"] = tuple(models)
        return replace(profile, **changes)
    unknown = [c for c in circuits if c not in profile.sm_circuits]
    if unknown:
        raise UnknownStudyError(f"state-matching compares on {', '.join(profile.sm_circuits)}; "
                                f"not {', '.join(unknown)}")
    refs = tuple(m for m in profile.sm_references if not models or m in models)
    return replace(profile, sm_circuits=tuple(circuits) or profile.sm_circuits,
                   sm_references=refs)


def circuits_of(profile: Profile, study: str) -> tuple[str, ...]:
    """The circuits a study trains on."""
    return (profile.eb_circuit,) if study == "exposure-bias" else profile.sm_circuits


def run(study: str, profile_name: str, out: str | Path, log: Callable | None = None,
        on_job: Callable | None = None, workers: int = 1, circuits: tuple[str, ...] = (),
        models: tuple[str, ...] = ()) -> Path:
    """Train every job (resumable; `workers` runs at a time, each on one thread), compare,
    write OUT/report.md and OUT/results.json. `circuits`/`models` narrow the profile (`narrow`)."""
    _check(study, profile_name)
    profile = narrow(PROFILES[profile_name], study, tuple(circuits), tuple(models))
    root = Path(out)
    began = time.perf_counter()
    todo = jobs(study, profile)
    dirs = train_all(todo, profile, root, workers, log, on_job)
    if on_job:
        on_job(len(todo), len(todo), "comparing")
    comparison = compare.compare(dirs)
    path = report.write_comparison(comparison, root, f"nodalnet study: {study} ({profile_name})")
    rows = {c: report.aggregate(e) for c, e in comparison.groups.items()}
    if study == "exposure-bias":
        verdicts = verdict_exposure_bias(rows[profile.eb_circuit])
    else:
        verdicts = verdict_state_matching(rows)
    minutes = (time.perf_counter() - began) / 60
    training = sum(e.train_seconds or 0.0 for evals in comparison.groups.values()
                   for e in evals) / 60
    _append_verdicts(path, study, verdicts, profile_name, minutes, training, workers)
    results = report.read_json(root / "results.json")
    results["verdicts"] = verdicts
    results["profile"] = profile_name
    results["minutes"] = round(minutes, 2)
    results["training_minutes"] = round(training, 2)
    report.write_json(root / "results.json", results)
    return path


CLAIMS = {
    "a": "every model trained with true circuit states shows exposure bias when it runs free",
    "b": "longer TBPTT windows reduce exposure bias",
    "c": "state matching improves the GRU on the overdrive pedal and the phaser, most of all "
         "where the LFO modulates the circuit",
}


def _append_verdicts(path: Path, study: str, verdicts: dict, profile: str,
                     minutes: float, training: float, workers: int) -> None:
    lines = ["", "## Verdicts", "",
             f"Profile `{profile}`. Training the runs took {training:.1f} min in all (each run's "
             f"own time, summed; one thread each); this call (runs already done kept, "
             f"{workers} at a time) took {minutes:.1f} min.", ""]
    for claim, v in verdicts.items():
        lines.append(f"**({claim}) {CLAIMS[claim]}: {v['verdict']}.**")
        lines.append("")
        if claim == "a":
            for model, eb in v["exposure_bias_at_k1"].items():
                lines.append(f"- {model} trained with k = 1: free-running / teacher-forced ESR "
                             f"= {eb['mean']:.3g} (seeds {eb['min']:.3g}..{eb['max']:.3g})")
        elif claim == "b":
            for model, d in v["by_model"].items():
                lines.append(f"- {model}: free-running ESR {d['k=1']['mean']:.2e} at k = 1, "
                             f"{d['best']['mean']:.2e} at k = {d['best window']} (the best "
                             f"longer window); rank correlation of ESR with k: {d['trend']:.2f}")
                ratios = d.get("exposure_bias", {})
                if ratios:
                    lines.append(f"  - {model}: exposure bias (free-running / teacher-forced) "
                                 + ", ".join(f"{v:.3g} at k = {k}" for k, v in ratios.items())
                                 + f"; rank correlation with k: {d['exposure_bias_trend']:.2f}")
        else:
            for circuit, d in v["by_circuit"].items():
                lines.append(f"- {circuit}: gru {d['gru']['mean']:.2e} "
                             f"({d['gru']['min']:.1e}..{d['gru']['max']:.1e}), gru-sm "
                             f"{d['gru-sm']['mean']:.2e} ({d['gru-sm']['min']:.1e}.."
                             f"{d['gru-sm']['max']:.1e}): gru / gru-sm = {d['ratio']:.3g}")
            most = v.get("largest_gain_on_the_phaser")
            if most is not None:
                lines.append(f"- the largest relative gain is {'' if most else 'not '}on the "
                             "phaser")
        lines.append("")
    lines.append("A claim *holds* when it is true for every seed (the spreads do not overlap), "
                 "*does not hold* when it is false on average everywhere, and is "
                 "*inconclusive* otherwise.")
    with open(path, "a") as f:
        f.write("\n".join(lines) + "\n")


def summary(results: dict) -> list[tuple[str, str]]:
    """(claim, verdict) pairs of a results.json, for the terminal."""
    return [(k, v["verdict"]) for k, v in results.get("verdicts", {}).items()]


__all__ = ["run", "narrow", "jobs", "train_all", "PROFILES", "STUDIES", "verdict_exposure_bias",
           "verdict_state_matching", "summary"]

"""Datasets: a circuit plus input material -> the solver's inputs u, states x and output y.

Material is guitar-like audio made here (`guitar_material`: plucked notes and chords over many
pitches and dynamics, palm-muted and sustained, sweeps and silence, each clip at a peak level
between 0.05 V and 2 V) or the user's WAV files (their samples are volts). Control inputs
(a `*@ control` source, e.g. an LFO) follow the netlist's own waveform for that source, with
time running on across the splits. Train / validation / test are made from disjoint audio:
separate random clips for generated material, separate stretches of the files for WAVs.

Every split is one signal: u [1, T, n_inputs], x [1, T, n_states], y [1, T, 1] (float32,
SI units), plus x_init [1, n_states], the state before its first sample. Datasets are cached on
disk (`nodal.files.cache_dir("datasets")`), keyed by the netlist text, every parameter value,
the rate and the material.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from scipy import signal
from torch import Tensor

import nodal
from nodal.files import atomic_write, cache_dir
from nodal.signals import karplus_strong, sweep

from .errors import AudioShapeMismatchError, SampleRateMismatchError
from .knobs import MOTION_STEP, Knob, controls_at, from_lists, grid
from .knobs import check as check_knobs

SPLITS = ("train", "val", "test")
CACHE_VERSION = 2  # bump whenever the material generator or the split layout changes
LEAD_IN = 32  # samples simulated before a split starts, so x_init is the state before it


# -- material ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class MaterialSpec:
    """What the circuit is driven with. Durations in seconds, levels in volts (peak)."""

    # 120 s, not 30: a Tube Screamer gru-sm overfits 30 s (test ESR 1.6e-2, 4.0e-3 on 120 s)
    train_seconds: float = 120.0
    val_seconds: float = 4.0
    test_seconds: float = 5.0
    seed: int = 0
    min_level: float = 0.05
    max_level: float = 2.0
    wav: tuple[str, ...] = ()
    resample: bool = True  # WAVs at another rate are resampled (else SampleRateMismatchError)
    #: knobs swept over the material (`nets.knobs`): (name, low, high) each
    knobs: tuple[tuple[str, float, float], ...] = ()
    knob_motion: bool = False   # knobs move within a block (piecewise-constant steps)
    knob_block: float = 0.25    # seconds of material per knob draw

    def __post_init__(self) -> None:
        object.__setattr__(self, "knobs", tuple(tuple(k) for k in self.knobs))

    def seconds(self, split: str) -> float:
        return {"train": self.train_seconds, "val": self.val_seconds,
                "test": self.test_seconds}[split]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["wav"] = list(self.wav)
        if not self.knobs:  # the spec (and cache key) of a knob-free dataset stays as it was
            for name in ("knobs", "knob_motion", "knob_block"):
                d.pop(name)
        else:
            d["knobs"] = [list(k) for k in self.knobs]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "MaterialSpec":
        d = dict(d)
        d["wav"] = tuple(d.get("wav", ()))
        d["knobs"] = tuple(tuple(k) for k in d.get("knobs", ()))
        return cls(**d)


CHORD_SHAPES = ([0, 7, 12, 16, 19, 24], [0, 7, 12, 15, 19, 24], [0, 7, 12], [0, 4, 7, 12],
                [0, 5, 10, 15, 19, 24])


def _clip(kind: str, sample_rate: float, rng: np.random.Generator) -> np.ndarray:
    fs = sample_rate
    if kind == "silence":
        return np.zeros(int(rng.uniform(0.05, 0.3) * fs))
    if kind == "sweep":
        duration = rng.uniform(0.5, 2.0)
        f0, f1 = rng.uniform(20, 100), rng.uniform(5e3, min(16e3, 0.4 * fs))
        rising = sweep(f0, f1, duration, fs)
        return rising if rng.random() < 0.5 else rising[::-1]
    if kind == "muted":  # palm-muted: a dark pluck that dies within a few tens of ms
        f = float(np.exp(rng.uniform(np.log(82.4), np.log(330.0))))
        return karplus_strong(f, rng.uniform(0.1, 0.4), fs, rng, damping=rng.uniform(0.90, 0.97),
                              brightness=rng.uniform(0.6, 0.85))
    if kind == "chord":  # a strum: the strings of a chord shape a few ms apart
        root = float(np.exp(rng.uniform(np.log(82.4), np.log(330.0))))
        shape = CHORD_SHAPES[rng.integers(len(CHORD_SHAPES))]
        duration = rng.uniform(0.5, 2.0)
        n = int(duration * fs)
        out = np.zeros(n)
        delay = 0
        for semitones in shape:
            f = root * 2 ** (semitones / 12)
            note = karplus_strong(f, duration, fs, rng, damping=rng.uniform(0.994, 0.999),
                                  brightness=rng.uniform(0.1, 0.6))
            out[delay:] += rng.uniform(0.5, 1.0) * note[: n - delay]
            delay += int(rng.uniform(0.003, 0.015) * fs)
            if delay >= n:
                break
        return out
    # a single note, plucked and left to ring (sustained) or damped sooner
    f = float(np.exp(rng.uniform(np.log(82.4), np.log(1320.0))))
    sustained = rng.random() < 0.5
    damping = rng.uniform(0.997, 0.9995) if sustained else rng.uniform(0.985, 0.996)
    return karplus_strong(f, rng.uniform(0.3, 2.0), fs, rng, damping=damping,
                          brightness=rng.uniform(0.1, 0.7))


def guitar_material(seconds: float, sample_rate: float = 48000.0, seed: int | list = 0,
                    min_level: float = 0.05, max_level: float = 2.0) -> np.ndarray:
    """Guitar-like input [time] in volts: clips of notes, chords, palm mutes, sweeps, silence.

    Each clip is scaled to a peak level drawn log-uniformly in [min_level, max_level] V and
    faded out over 5 ms; the signal starts with 50 ms of silence (the circuit at rest) and is
    band-limited below min(16 kHz, 0.4 fs).
    """
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sample_rate))
    kinds = ["note", "chord", "muted", "sweep", "silence"]
    # sweeps carry the loud high frequencies that plucks lack: a model never shown them fails
    # there (on the diode clipper, most of the test error of models trained with 10 % sweeps)
    weights = [0.25, 0.2, 0.2, 0.2, 0.15]
    clips = [np.zeros(int(0.05 * sample_rate))]
    total = len(clips[0])
    while total < n:
        kind = kinds[rng.choice(len(kinds), p=weights)]
        clip = _clip(kind, sample_rate, rng)
        peak = np.max(np.abs(clip)) if len(clip) else 0.0
        if peak > 0:
            clip = clip * np.exp(rng.uniform(np.log(min_level), np.log(max_level))) / peak
            fade = min(len(clip), int(0.005 * sample_rate))
            clip[len(clip) - fade:] *= np.linspace(1, 0, fade)
        clips.append(clip)
        total += len(clip)
    out = np.concatenate(clips)[:n]
    sos = signal.butter(4, min(16e3, 0.4 * sample_rate), fs=sample_rate, output="sos")
    return signal.sosfilt(sos, out)


def resample_to(audio: np.ndarray, rate: float, target: float, allow: bool = True,
                what: str = "signal") -> np.ndarray:
    """audio [time, ...] at `rate` -> at `target` (polyphase), or SampleRateMismatchError."""
    if rate == target:
        return audio
    if not allow:
        raise SampleRateMismatchError(f"{what} is at {rate:g} Hz but {target:g} Hz is needed; "
                                      "resample it (or allow resampling)")
    ratio = Fraction(float(target) / float(rate)).limit_denominator(1000)
    return signal.resample_poly(audio, ratio.numerator, ratio.denominator, axis=0)


def read_wav(path: str | Path, sample_rate: float, resample: bool = True) -> np.ndarray:
    """A mono WAV file as volts [time] at `sample_rate` (its samples are taken as volts).

    The checks are `nodal.audio.read_wav`'s (mono, not empty, no NaN); here a bad file is a
    dataset that does not fit, `AudioShapeMismatchError`."""
    from nodal.audio import read_wav as read_volts
    from nodal.errors import SignalError

    try:
        audio, rate = read_volts(path)
    except SignalError as exc:
        raise AudioShapeMismatchError(str(exc)) from None
    return resample_to(audio, rate, sample_rate, resample, str(path))


def material(spec: MaterialSpec, sample_rate: float) -> dict[str, np.ndarray]:
    """The audio input of each split, [time] in volts; disjoint by construction."""
    if spec.wav:
        audio = np.concatenate([read_wav(p, sample_rate, spec.resample) for p in spec.wav])
        total = spec.train_seconds + spec.val_seconds + spec.test_seconds
        cuts = np.cumsum([spec.seconds(s) / total for s in SPLITS]) * len(audio)
        edges = [0] + [int(c) for c in cuts]
        return {s: audio[edges[k]:edges[k + 1]] for k, s in enumerate(SPLITS)}
    return {s: guitar_material(spec.seconds(s), sample_rate, [spec.seed, k],
                               spec.min_level, spec.max_level)
            for k, s in enumerate(SPLITS)}


# -- the dataset --------------------------------------------------------------------------------
@dataclass
class Split:
    """One signal: u [1, T, n_inputs], x [1, T, n_states], y [1, T, 1], x_init [1, n_states]."""

    u: Tensor
    x: Tensor
    y: Tensor
    x_init: Tensor

    @property
    def length(self) -> int:
        return self.u.shape[1]


@dataclass
class Batch:
    """Training segments: u [B, L, n_inputs], x [B, L, n_states], y [B, L, 1]; x_prev
    [B, n_states] and u_prev [B, n_inputs], the true state and input just before each."""

    u: Tensor
    x: Tensor
    y: Tensor
    x_prev: Tensor
    u_prev: Tensor


@dataclass
class CircuitDataset:
    circuit: str
    netlist: str
    sample_rate: float
    values: dict[str, float]
    material: MaterialSpec
    splits: dict[str, Split]
    input_names: list[str] = field(default_factory=list)
    state_names: list[str] = field(default_factory=list)

    @property
    def train(self) -> Split:
        return self.splits["train"]

    @property
    def val(self) -> Split:
        return self.splits["val"]

    @property
    def test(self) -> Split:
        return self.splits["test"]

    @property
    def n_inputs(self) -> int:
        return self.train.u.shape[-1]

    @property
    def n_states(self) -> int:
        return self.train.x.shape[-1]

    @property
    def knobs(self) -> tuple[Knob, ...]:
        """The knobs swept over this dataset (their values: the last input channels)."""
        return knobs_of(self.material)

    @property
    def scaling(self) -> dict[str, list[float]]:
        """Per-channel mean and standard deviation of the training split (std floored)."""
        out = {}
        for key in ("u", "x", "y"):
            values = getattr(self.train, key)[0].double()
            std = values.std(0)
            std = torch.where(std > 1e-9, std, torch.ones_like(std))
            out[f"{key}_mean"] = values.mean(0).tolist()
            out[f"{key}_std"] = std.tolist()
        return out

    def spec(self) -> dict:
        """What made this dataset (JSON): enough to make it again."""
        return {"circuit": self.circuit, "sample_rate": self.sample_rate, "values": self.values,
                "material": self.material.to_dict(), "input_names": self.input_names,
                "state_names": self.state_names,
                "samples": {s: self.splits[s].length for s in SPLITS}}

    def segments(self, length: int, batch: int, generator: torch.Generator) -> Iterator[Batch]:
        """One epoch of training batches: the train split cut into segments of `length`
        samples at a random offset, shuffled."""
        split = self.train
        total = split.length
        length = min(length, total)
        offset = int(torch.randint(0, max(1, min(length, total - length + 1)), (1,),
                                   generator=generator))
        starts = torch.arange(offset, total - length + 1, length)
        starts = starts[torch.randperm(len(starts), generator=generator)]
        ramp = torch.arange(length)
        for chunk in starts.split(batch):
            index = chunk[:, None] + ramp
            previous = torch.where((chunk > 0)[:, None], split.x[0, (chunk - 1).clamp(min=0)],
                                   split.x_init[0].expand(len(chunk), -1))
            u_previous = split.u[0, (chunk - 1).clamp(min=0)]  # at 0: the held lead-in input
            yield Batch(split.u[0, index], split.x[0, index], split.y[0, index], previous,
                        u_previous)

    # -- disk ---------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        arrays = {}
        for s in SPLITS:
            for key in ("u", "x", "y", "x_init"):
                arrays[f"{s}_{key}"] = getattr(self.splits[s], key).numpy()
        meta = json.dumps({"circuit": self.circuit, "netlist": self.netlist,
                           "sample_rate": self.sample_rate, "values": self.values,
                           "material": self.material.to_dict(), "input_names": self.input_names,
                           "state_names": self.state_names})
        atomic_write(path, lambda f: np.savez(f, meta=np.array(meta), **arrays))

    @classmethod
    def load(cls, path: Path) -> "CircuitDataset":
        with np.load(path) as f:
            meta = json.loads(str(f["meta"]))
            splits = {s: Split(*(torch.from_numpy(f[f"{s}_{k}"])
                                 for k in ("u", "x", "y", "x_init"))) for s in SPLITS}
        return cls(meta["circuit"], meta["netlist"], meta["sample_rate"], meta["values"],
                   MaterialSpec.from_dict(meta["material"]), splits, meta["input_names"],
                   meta["state_names"])


def _controls(solver: nodal.NodalSolver, length: int, start: int) -> np.ndarray:
    """The control inputs [time, n_controls]: each control source's own netlist waveform."""
    t = (np.arange(length) + start) / solver.sample_rate
    columns = []
    for src in solver.eq.sources[1:solver.n_inputs]:
        if src.waveform is not None:
            columns.append(np.asarray(src.waveform.at(t, 1 / solver.sample_rate), dtype=float))
        else:
            columns.append(np.full(length, float(solver.value(src.name))))
    return np.stack(columns, -1) if columns else np.zeros((length, 0))


def simulate_split(solver: nodal.NodalSolver, audio: np.ndarray, start: int = 0) -> Split:
    """Run the solver's fast path on one split's audio [time] (volts) -> Split (float32)."""
    length = len(audio)
    lead = np.full(LEAD_IN, audio[0] if length else 0.0)
    audio = np.concatenate([lead, audio])
    u = np.concatenate([audio[:, None], _controls(solver, len(audio), start - LEAD_IN)], -1)
    ut = torch.from_numpy(u)[None]
    with torch.no_grad():
        traj = solver.simulate(ut, backend="fast")
    x, y = traj.x.double(), traj.y.double()
    f32 = torch.float32
    return Split(ut[:, LEAD_IN:].to(f32).contiguous(), x[:, LEAD_IN:].to(f32).contiguous(),
                 y[:, LEAD_IN:].to(f32).contiguous(), x[:, LEAD_IN - 1].to(f32).contiguous())


def knob_schedule(spec: MaterialSpec, split: str, length: int, sample_rate: float,
                  index: int) -> list[tuple[int, int, tuple[float, ...]]]:
    """(start, length, knob values) pieces covering a split of `length` samples.

    train / val: a fresh uniform draw every `knob_block` seconds (with `knob_motion`, the
    values move linearly from each draw to the next in steps of `knobs.MOTION_STEP` samples);
    test: `length` is the test audio times the grid size, one grid point per repetition."""
    ks = knobs_of(spec)
    if split == "test":
        points = grid(ks)
        each = length // len(points)
        return [(k * each, each, p) for k, p in enumerate(points)]
    rng = np.random.default_rng([spec.seed, index, 14])
    block = max(1, int(round(spec.knob_block * sample_rate)))
    n_blocks = -(-length // block)
    lows = np.array([k.low for k in ks])
    highs = np.array([k.high for k in ks])
    draws = lows + (highs - lows) * rng.random((n_blocks + 1, len(ks)))
    pieces = []
    for b in range(n_blocks):
        start, stop = b * block, min(length, (b + 1) * block)
        if not spec.knob_motion:
            pieces.append((start, stop - start, tuple(float(v) for v in draws[b])))
            continue
        for at in range(start, stop, MOTION_STEP):
            frac = (at - start) / block
            values = draws[b] + frac * (draws[b + 1] - draws[b])
            pieces.append((at, min(MOTION_STEP, stop - at), tuple(float(v) for v in values)))
    return pieces


def knobs_of(spec: MaterialSpec) -> tuple[Knob, ...]:
    return from_lists(spec.knobs)


def simulate_knob_split(solver: nodal.NodalSolver, circuit: str, audio: np.ndarray,
                        start: int, knobs: tuple[Knob, ...], ways: dict[str, str],
                        pieces: list[tuple[int, int, tuple[float, ...]]]) -> Split:
    """`simulate_split` with knobs: each piece rendered at its knob values (solver parameters
    set, control waveforms re-read), the state carried across pieces; u gets one column per
    knob after the audio and the controls."""
    fs = solver.sample_rate
    base = {k.name: float(solver.value(k.name)) for k in knobs if ways[k.name] != "waveform"}
    us, xs, ys, x_init, s = [], [], [], None, None
    try:
        for at, n, values in pieces:
            named = dict(zip([k.name for k in knobs], values, strict=True))
            for name in base:
                solver.set_value(name, named[name])
            chunk = audio[at:at + n]
            lead = LEAD_IN if s is None else 0
            if lead:
                chunk = np.concatenate([np.full(lead, chunk[0] if len(chunk) else 0.0), chunk])
            waves = {k: v for k, v in named.items() if ways[k] != "solver"}
            controls = (controls_at(circuit, waves, len(chunk), start + at - lead, fs, solver)
                        if waves else _controls(solver, len(chunk), start + at - lead))
            u = torch.from_numpy(np.concatenate([chunk[:, None], controls], -1))[None]
            with torch.no_grad():
                traj = solver.simulate(u, s0=s, backend="fast")
            s = traj.s_final
            x, y = traj.x.double(), traj.y.double()
            if lead:
                x_init = x[:, lead - 1]
            knob_cols = torch.tensor(values, dtype=torch.float64).expand(1, u.shape[1] - lead, -1)
            us.append(torch.cat([u[:, lead:], knob_cols], -1))
            xs.append(x[:, lead:])
            ys.append(y[:, lead:])
    finally:
        for name, value in base.items():
            solver.set_value(name, value)
    f32 = torch.float32
    return Split(torch.cat(us, 1).to(f32).contiguous(), torch.cat(xs, 1).to(f32).contiguous(),
                 torch.cat(ys, 1).to(f32).contiguous(), x_init.to(f32).contiguous())


def cache_key(netlist: str, values: dict[str, float], sample_rate: float,
              spec: MaterialSpec) -> str:
    wavs = [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in spec.wav]
    blob = json.dumps({"version": CACHE_VERSION, "netlist": netlist, "values": values,
                       "sample_rate": float(sample_rate), "material": spec.to_dict(),
                       "wav_content": wavs}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def dataset(circuit: str = "diode_clipper", sample_rate: float = 48000.0,
            material_spec: MaterialSpec | None = None, values: dict[str, float] | None = None,
            cache: bool = True, log=None) -> CircuitDataset:
    """The solver's (u, x, y) for `circuit` (built-in name or netlist path) on `material_spec`,
    from the on-disk cache when this exact circuit, parameter set and material were seen."""
    spec = material_spec or MaterialSpec()
    path = nodal.netlist_path(circuit)
    text = path.read_text()
    solver = nodal.load(circuit, sample_rate=sample_rate, **(values or {}))
    all_values = solver.values()
    folder = cache_dir("datasets") if cache else None
    source = nodal.netlist.read_source(path)        # with the text of every included file
    file = None if folder is None else (
        folder / f"{path.stem}-{cache_key(source, all_values, sample_rate, spec)}.npz")
    if file is not None and file.exists():
        return CircuitDataset.load(file)
    knobs = knobs_of(spec)
    ways = check_knobs(circuit, knobs, spec.knob_motion) if knobs else {}
    audio = material(spec, sample_rate)
    if knobs:  # the test audio once per grid point
        audio["test"] = np.tile(audio["test"], len(grid(knobs)))
    splits, start = {}, 0
    for index, s in enumerate(SPLITS):
        if log:
            log(f"simulating {circuit} on {len(audio[s]) / sample_rate:.1f} s of {s} material")
        if knobs:
            pieces = knob_schedule(spec, s, len(audio[s]), sample_rate, index)
            splits[s] = simulate_knob_split(solver, str(circuit), audio[s], start, knobs, ways,
                                            pieces)
        else:
            splits[s] = simulate_split(solver, audio[s], start)
        start += len(audio[s]) + LEAD_IN
    data = CircuitDataset(str(circuit), text, float(sample_rate), all_values, spec, splits,
                          list(solver.eq.input_names) + [k.name for k in knobs],
                          list(solver.eq.state_names))
    if file is not None:
        data.save(file)
    return data


def check_compatible(model, data: CircuitDataset) -> None:
    """Fail early, with a named error, when a model and a dataset do not fit together."""
    if model.n_inputs != data.n_inputs or model.n_states != data.n_states:
        raise AudioShapeMismatchError(
            f"the model takes {model.n_inputs} inputs and exposes {model.n_states} states; the "
            f"dataset of {data.circuit} has {data.n_inputs} inputs and {data.n_states} states")
    if float(model.sample_rate) != float(data.sample_rate):
        raise SampleRateMismatchError(
            f"the model runs at {model.sample_rate:g} Hz, the dataset is at "
            f"{data.sample_rate:g} Hz; make the dataset at the model's rate")
    for name, split in data.splits.items():
        for key in ("u", "x", "y"):
            t = getattr(split, key)
            if not bool(torch.isfinite(t).all()):
                raise AudioShapeMismatchError(f"the {name} split's {key} has NaN/inf values")
        if not (split.u.shape[:2] == split.x.shape[:2] == split.y.shape[:2]):
            raise AudioShapeMismatchError(
                f"the {name} split's u {list(split.u.shape)}, x {list(split.x.shape)} and y "
                f"{list(split.y.shape)} must share [batch, time]")

"""A training run from names: circuit + model name + settings -> data, model, `train`.

    info = nets.runs.start("diode_clipper", "stn", out="runs/stn", window=1)
    info = nets.runs.resume("runs/stn")       # after an interruption: same curve, continued

This is what `nodalnet train` calls; it only wires `nets.data`, `nets.build` and `nets.train`.
Every setting is checked (`check_start`) before any data is made or anything is written.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable

import torch

from . import checkpoint
from .data import MaterialSpec, dataset
from .errors import ConfigError, RunBusyError
from .registry import build, check_name, from_spec, model_class
from .train import TrainConfig, config_for, train

def _positive(field: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value <= 0:
        raise ConfigError(field, value, "a finite number > 0")


def check_material(material: MaterialSpec, sample_rate: float) -> None:
    """The material's durations and WAV files (exist, readable audio), and the rate."""
    _positive("sample_rate", sample_rate)
    for split in ("train", "val", "test"):
        _positive(f"{split}_seconds", material.seconds(split))
    for wav in material.wav:
        path = Path(wav)
        if not path.is_file() or not os.access(path, os.R_OK):
            raise ConfigError("wav", str(wav), "an existing, readable WAV file"
                              + ("" if path.exists() else " (there is no such file)"))
        import soundfile
        try:
            soundfile.info(str(path))
        except Exception as exc:  # libsndfile's own error for anything not audio
            reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
            raise ConfigError("wav", str(wav), f"a readable WAV file ({reason})") from None


def check_out(out: str | Path | None) -> None:
    """An output folder that can be created and written and holds no run yet."""
    if out is None:
        return
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError("out", str(out), "a folder (this is a file)")
    from nodal.files import check_writable
    try:
        check_writable(out)
    except PermissionError:
        raise ConfigError("out", str(out), "a folder you can write into") from None
    checkpoint.check_new(out)


def check_start(circuit: str, model: str, out: str | Path | None = None,
                hidden: int | None = None, sample_rate: float = 48000.0,
                material: MaterialSpec | None = None, **settings) -> TrainConfig:
    """Every argument of `start`, checked before any work: the TrainConfig it will train with.

    ConfigError (field, value, allowed range) for a setting out of range; UnknownModelError,
    CircuitNotFoundError, RunDirectoryError (the folder already holds a run) otherwise."""
    import nodal

    check_name(model)
    nodal.netlist_path(circuit)
    if hidden is not None and (isinstance(hidden, bool) or not isinstance(hidden, int)
                               or hidden < 1):
        raise ConfigError("hidden", hidden, "a whole number >= 1")
    if hidden is not None and model_class(model).default_hidden is None:
        raise ConfigError("hidden", hidden, f"left out: the {model} model has no hidden size")
    material = material or MaterialSpec()
    check_material(material, sample_rate)
    if material.knobs:
        from .knobs import check as check_knobs
        from .knobs import from_lists
        if not model_class(model).conditioning:
            raise ConfigError("knob", list(material.knobs), f"left out: the {model} model "
                              "takes no knob inputs")
        check_knobs(circuit, from_lists(material.knobs), material.knob_motion)
    config = config_for(model, **settings)
    samples = int(round(material.train_seconds * sample_rate))
    if not material.wav and config.segment > samples:
        raise ConfigError("segment", config.segment, "a whole number from 2 to the training "
                          f"material's length ({samples} samples: {material.train_seconds:g} s "
                          f"at {sample_rate:g} Hz)")
    check_out(out)
    return config


def start(circuit: str, model: str, out: str | Path | None = None, hidden: int | None = None,
          sample_rate: float = 48000.0, material: MaterialSpec | None = None,
          values: dict[str, float] | None = None, log: Callable | None = None,
          on_step: Callable | None = None, on_epoch: Callable | None = None,
          **settings) -> dict:
    """Make (or load from cache) the dataset, build `model` seeded by `seed`, and train it.

    settings: `TrainConfig` fields (window, state_weight, epochs, lr, seed, ...); None = default.
    """
    config = check_start(circuit, model, out, hidden, sample_rate, material, **settings)
    data = dataset(circuit, sample_rate, material, values, log=log)
    torch.manual_seed(config.seed)
    kwargs = model_class(model).build_kwargs(data, hidden, values)
    net = build(model, data.n_inputs, data.n_states, sample_rate, **kwargs)
    return train(net, data, config, out=out, on_step=on_step, on_epoch=on_epoch, log=log)


def resume(out: str | Path, log: Callable | None = None, on_step: Callable | None = None,
           on_epoch: Callable | None = None, epochs: int | None = None) -> dict:
    """Continue the run in `out` from its newest checkpoint (`epochs` may extend it).

    A run stopped before its first epoch starts again from its own settings and seed."""
    if checkpoint.is_training(out):  # early; `train` takes the lock itself
        raise RunBusyError(f"{out} is being trained by another process; wait for it to finish "
                           f"(or stop it), then `nodalnet train --resume {out}`")
    info = checkpoint.read_info(out)
    config = TrainConfig.from_dict(info["config"])
    if epochs is not None:
        config = TrainConfig.from_dict({**info["config"], "epochs": epochs})
    spec = info["data"]
    data = dataset(spec["circuit"], spec["sample_rate"], MaterialSpec.from_dict(spec["material"]),
                   spec["values"], log=log)
    torch.manual_seed(config.seed)  # as `start` did: the same initial weights
    net = from_spec(info["model"])
    return train(net, data, config, out=out, resume=True, on_step=on_step, on_epoch=on_epoch,
                 log=log)

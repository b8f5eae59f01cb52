"""A training run from names: circuit + model name + settings -> data, model, `train`.

    info = nets.runs.start("diode_clipper", "stn", out="runs/stn", window=1)
    info = nets.runs.resume("runs/stn")       # after an interruption: same curve, continued

This is what `nodalnet train` calls; it only wires `nets.data`, `nets.build` and `nets.train`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from . import checkpoint
from .data import MaterialSpec, dataset
from .registry import build, from_spec
from .train import TrainConfig, config_for, train

#: model size defaults (`--hidden`): GRU 8 (the diode-clipper target), STN 16 units per layer
HIDDEN = {"stn": 16, "ode": 16, "gru": 8, "gru-sm": 8, "lstm": 8}


def start(circuit: str, model: str, out: str | Path | None = None, hidden: int | None = None,
          sample_rate: float = 48000.0, material: MaterialSpec | None = None,
          values: dict[str, float] | None = None, log: Callable | None = None,
          on_step: Callable | None = None, on_epoch: Callable | None = None,
          **settings) -> dict:
    """Make (or load from cache) the dataset, build `model` seeded by `seed`, and train it.

    settings: `TrainConfig` fields (window, state_weight, epochs, lr, seed, ...); None = default.
    """
    config = config_for(model, **settings)
    data = dataset(circuit, sample_rate, material, values, log=log)
    torch.manual_seed(config.seed)
    kwargs = {"scaling": data.scaling}
    if model == "nodal":
        kwargs.update(circuit=circuit, values=values)
    else:
        kwargs["hidden"] = hidden or HIDDEN.get(model)
    net = build(model, data.n_inputs, data.n_states, sample_rate, **kwargs)
    return train(net, data, config, out=out, on_step=on_step, on_epoch=on_epoch, log=log)


def resume(out: str | Path, log: Callable | None = None, on_step: Callable | None = None,
           on_epoch: Callable | None = None, epochs: int | None = None) -> dict:
    """Continue the run in `out` from its last checkpoint (`epochs` may extend it)."""
    info = checkpoint.read_info(out)
    spec = info["data"]
    data = dataset(spec["circuit"], spec["sample_rate"], MaterialSpec.from_dict(spec["material"]),
                   spec["values"], log=log)
    net = from_spec(info["model"])
    config = TrainConfig.from_dict(info["config"])
    if epochs is not None:
        config.epochs = epochs
    return train(net, data, config, out=out, resume=True, on_step=on_step, on_epoch=on_epoch,
                 log=log)

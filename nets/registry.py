"""The model registry: plain specs become models through one function, `build`.

    model = nets.build("stn", n_inputs=1, n_states=1, hidden=16)
    model.spec  # {"name": "stn", "kwargs": {...}}: JSON, enough to build it again
"""

from __future__ import annotations

from typing import Any

from .base import NeuralModel
from .errors import UnknownModelError
from .gru import GRU, GRUSM
from .lstm import LSTM
from .nodal_model import NodalModel
from .ode import NeuralODE
from .stn import STN

#: name -> class; each class declares its defaults and capabilities (`NeuralModel`)
MODELS: dict[str, type[NeuralModel]] = {
    "stn": STN,
    "gru": GRU,
    "gru-sm": GRUSM,
    "lstm": LSTM,
    "ode": NeuralODE,
    "nodal": NodalModel,
}


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def check_name(name: str) -> str:
    """`name` if the registry has it, else UnknownModelError listing what it has."""
    if name not in MODELS:
        raise UnknownModelError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return name


def model_class(name: str) -> type[NeuralModel]:
    """The class registered as `name` (UnknownModelError listing the names otherwise)."""
    return MODELS[check_name(name)]


def build(name: str, n_inputs: int, n_states: int, sample_rate: float = 48000.0,
          **kwargs: Any) -> NeuralModel:
    """A fresh model `name` (see `MODELS`); kwargs go to its class (hidden, depth, scaling...)."""
    cls = model_class(name)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    model = cls(n_inputs, n_states, sample_rate, **kwargs)
    spec_kwargs = {**kwargs, **model.spec_kwargs()}
    model.spec = {"name": name, "n_inputs": int(n_inputs), "n_states": int(n_states),
                  "sample_rate": float(sample_rate), "kwargs": _plain(spec_kwargs)}
    return model


def from_spec(spec: dict) -> NeuralModel:
    """Build the model a `model.spec` describes (untrained weights)."""
    return build(spec["name"], spec["n_inputs"], spec["n_states"], spec["sample_rate"],
                 **spec.get("kwargs", {}))

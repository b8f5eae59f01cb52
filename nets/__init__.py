"""nets: neural state-space models of circuits, trained on what `nodal` generates.

    import nets
    data = nets.dataset("diode_clipper")                     # solver's (u, x, y), cached
    model = nets.build("stn", data.n_inputs, data.n_states, scaling=data.scaling)
    nets.train(model, data, window=1, out="runs/stn")        # reset to true states every k
    model = nets.load_run("runs/stn")                        # the best checkpoint back
    nets.metrics.evaluate(model, data.test)                  # free-running ESR, state ESR

Sequences are [batch, time, channels]; units SI (volts, amperes, seconds, hertz).
"""

from .errors import (AudioShapeMismatchError, NetsError, RunDirectoryError,
                     SampleRateMismatchError, TrainingDivergedError, UnknownModelError)
from .losses import ESRLoss, pre_emphasis
from .registry import MODELS, build, from_spec
from .stn import STN
from .gru import GRU
from .lstm import LSTM
from .ode import NeuralODE
from .nodal_model import NodalModel
from .data import CircuitDataset, MaterialSpec, dataset
from .checkpoint import load_run
from .train import TrainConfig, train
from . import metrics, runs

__all__ = ["AudioShapeMismatchError", "NetsError", "RunDirectoryError", "SampleRateMismatchError",
           "TrainingDivergedError", "UnknownModelError", "ESRLoss", "pre_emphasis", "MODELS",
           "build", "from_spec", "STN", "GRU", "LSTM", "NeuralODE", "NodalModel",
           "CircuitDataset", "MaterialSpec", "dataset", "load_run", "TrainConfig", "train",
           "metrics", "runs"]

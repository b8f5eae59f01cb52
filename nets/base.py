"""What every neural state-space model shares: input/state/output scaling and a
window-parallel `forward`.

Models work internally on scaled signals (u - u_mean) / u_std, (x - x_mean) / x_std and
(y - y_mean) / y_std, with the statistics of the training data (`nets.data.Scaling`) kept as
buffers, so a checkpoint carries them. Their `x` outputs and `encode` inputs are in the
circuit's units (volts, amperes).

`forward(u, s0, teacher, every=k)` resets the state to `encode(teacher[:, n - 1])` before every
step n that is a multiple of k: the truncated windows that training and evaluation share (k = 1
is teacher forcing, one step from every true state; k = 0 runs free from s0). Models that also
use the previous input (the STN) get it through `reset(teacher[:, n - 1], u[:, n - 1])`. All
windows after the first start from known states, so they run side by side as one batch: `run`
is called once on [B * windows, k].
"""

from __future__ import annotations

import torch
from torch import Tensor

from nodal.interface import StateSpaceModel, Trajectory


def _stats(scaling: dict | None, key: str, size: int, default: float) -> Tensor:
    if scaling is None or key not in scaling:
        return torch.full((size,), default)
    values = torch.as_tensor(scaling[key], dtype=torch.float32).reshape(-1)
    if values.numel() != size:
        from .errors import AudioShapeMismatchError
        raise AudioShapeMismatchError(f"scaling {key!r} has {values.numel()} entries, the model "
                                      f"needs {size}")
    return values


class NeuralModel(StateSpaceModel):
    """Base of the trainable networks. Subclasses give `initial_state`, `encode`, `step` and,
    for speed, `run(u, s0)` (free-running from s0, u [B, T, n_inputs])."""

    # -- what the model declares about itself (a new model sets these; nothing else in
    # `nets` names models) ---------------------------------------------------------------------
    #: `encode` starts the model from true circuit states (else it starts from a warm-up)
    resettable = True
    #: the `x` output is trained against the circuit states (else it is not meaningful)
    exposes_states = True
    #: per-epoch validation resets to true states every this many samples (0: free-running)
    validate_every = 0
    #: evaluation sweeps resets to true states (`compare`'s ESR by window); False where a reset
    #: measures something else than exposure bias
    reset_sweep = True
    #: takes knob values (`nets.knobs`) as extra input channels after the audio and controls
    conditioning = True
    #: the compiled runner of `nets.fast` ("stn", "gru", "solver"), or None
    fast_path: str | None = None
    #: `--hidden` when not given; None: the model has no hidden size
    default_hidden: int | None = None
    #: its own size and shape are the circuit's (it cannot be built at any n_inputs/n_states)
    circuit_bound = False
    #: the `nets.train.TrainConfig` fields it trains with unless told otherwise
    defaults: dict = {}
    #: keyword arguments of a small instance, and the settings of a short fit that must lower
    #: its loss (the test battery's)
    tiny: dict = {"hidden": 6}
    tiny_fit: dict = {"segment": 256, "window": 16, "lr": 1e-2, "steps": 30}

    @classmethod
    def build_kwargs(cls, data, hidden: int | None = None,
                     values: dict[str, float] | None = None) -> dict:
        """The keyword arguments `nets.runs.start` builds it with for `data` (a
        `CircuitDataset`), `--hidden` and `--set` values."""
        kwargs: dict = {"scaling": data.scaling}
        if cls.default_hidden is not None:
            kwargs["hidden"] = hidden or cls.default_hidden
        return kwargs

    def spec_kwargs(self) -> dict:
        """Keyword arguments beyond the given ones that rebuild it exactly (JSON)."""
        return {}

    def __init__(self, n_inputs: int, n_states: int, sample_rate: float = 48000.0,
                 scaling: dict | None = None):
        super().__init__()
        self.n_inputs = int(n_inputs)
        self.n_states = int(n_states)
        self.sample_rate = float(sample_rate)
        for key, size in (("u", n_inputs), ("x", n_states), ("y", 1)):
            self.register_buffer(f"{key}_mean", _stats(scaling, f"{key}_mean", size, 0.0))
            self.register_buffer(f"{key}_std", _stats(scaling, f"{key}_std", size, 1.0))

    # -- scaling ----------------------------------------------------------------------------
    def scale_u(self, u: Tensor) -> Tensor:
        return (u - self.u_mean) / self.u_std

    def scale_x(self, x: Tensor) -> Tensor:
        return (x - self.x_mean) / self.x_std

    def unscale_x(self, x: Tensor) -> Tensor:
        return x * self.x_std + self.x_mean

    def unscale_y(self, y: Tensor) -> Tensor:
        return y * self.y_std + self.y_mean

    @property
    def dtype(self) -> torch.dtype:
        return self.u_mean.dtype

    def reset(self, x: Tensor, u_previous: Tensor) -> Tensor:
        """The internal state from true circuit states x [B, n_states] before a step whose
        previous input was u_previous [B, n_inputs]; `encode(x)` unless a model uses it."""
        return self.encode(x)

    # -- running ----------------------------------------------------------------------------
    def run(self, u: Tensor, s0: Tensor) -> Trajectory:
        """Free-running from s0 over u [B, T, n_inputs]; the plain per-sample loop."""
        s, ys, xs = s0, [], []
        for n in range(u.shape[1]):
            s, y, x = self.step(s, u[:, n])
            ys.append(y)
            xs.append(x)
        return Trajectory(torch.stack(ys, 1), torch.stack(xs, 1), s)

    def forward(self, u: Tensor, s0: Tensor | None = None, teacher: Tensor | None = None,
                every: int = 0) -> Trajectory:
        self.check_inputs(u, teacher)
        u = u.to(self.dtype)
        batch, length, _ = u.shape
        s = self.initial_state(batch, u[:, 0]) if s0 is None else s0
        k = int(every or 0)
        if teacher is None or k <= 0 or length <= k:
            return self.run(u, s)
        teacher = teacher.to(self.dtype)
        pieces = [self.run(u[:, :k], s)]
        windows = (length - k) // k
        if windows:
            end = k + windows * k
            uw = u[:, k:end].reshape(batch * windows, k, self.n_inputs)
            starts = teacher[:, k - 1:end - 1:k].reshape(batch * windows, self.n_states)
            inputs = u[:, k - 1:end - 1:k].reshape(batch * windows, self.n_inputs)
            tw = self.run(uw, self.reset(starts, inputs))
            last = tw.s_final.reshape(batch, windows, *tw.s_final.shape[1:])[:, -1]
            pieces.append(Trajectory(tw.y.reshape(batch, windows * k, -1),
                                     tw.x.reshape(batch, windows * k, -1), last))
        start = k + windows * k
        if start < length:
            pieces.append(self.run(u[:, start:], self.reset(teacher[:, start - 1],
                                                            u[:, start - 1])))
        return Trajectory(torch.cat([p.y for p in pieces], 1), torch.cat([p.x for p in pieces], 1),
                          pieces[-1].s_final)


def mlp(n_in: int, width: int, depth: int, n_out: int) -> torch.nn.Sequential:
    """`depth` tanh layers of `width`, then a linear layer to `n_out`."""
    layers: list[torch.nn.Module] = []
    for d in range(depth):
        layers += [torch.nn.Linear(n_in if d == 0 else width, width), torch.nn.Tanh()]
    layers.append(torch.nn.Linear(width if depth else n_in, n_out))
    return torch.nn.Sequential(*layers)

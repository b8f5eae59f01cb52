"""Speed: real-time factors of free-running inference and training throughput.

real-time factor = seconds of audio / seconds of wall time, on one thread, at the model's rate,
block = the whole signal (a plug-in's block size only adds call overhead). Always report it
beside a reference measured in the same run (`reference_gru`: plain `nn.GRU`).
"""

from __future__ import annotations

import torch

from nodal.metrics import best_wall_time, measure_real_time_factor

from . import fast


def realtime_factor(model, seconds: float = 5.0, repeats: int = 3, use_fast: bool = True) -> float:
    """Audio seconds per wall second of free-running inference (batch 1, one thread)."""
    n = int(seconds * model.sample_rate)
    u = 0.5 * torch.randn(1, n, model.n_inputs, generator=torch.Generator().manual_seed(0))
    runner = fast.compile(model) if use_fast and fast.supports(model) else None
    with torch.no_grad():
        s0 = model.initial_state(1, u[:, 0])

        def infer():
            return runner(u, s0) if runner else model(u, s0=s0)

        return measure_real_time_factor(infer, seconds, repeats)  # the first call compiles


def reference_gru(hidden: int = 16, seconds: float = 5.0, sample_rate: float = 48000.0) -> float:
    """The real-time factor of a plain `nn.GRU` + linear output, the usual baseline."""
    gru, out = torch.nn.GRU(1, hidden, batch_first=True), torch.nn.Linear(hidden, 1)
    u = torch.randn(1, int(seconds * sample_rate), 1)
    with torch.no_grad():
        return measure_real_time_factor(lambda: out(gru(u)[0]), seconds, 2)


def training_throughput(model, data, window: int = 1, segment: int = 512, batch: int = 32,
                        steps: int = 20, threads: int | None = None) -> float:
    """Training samples per second (forward, backward and Adam step) with resets every `window`."""
    from .losses import StateSpaceLoss
    from .train import TrainConfig, window_loss

    if threads:
        torch.set_num_threads(threads)
    config = TrainConfig(window=window, segment=segment, batch=batch)
    criterion = StateSpaceLoss(1.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    batches = list(data.segments(segment, batch, torch.Generator().manual_seed(0)))[:steps]

    def epoch():
        for b in batches:
            loss = window_loss(model, b, config, criterion)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    epoch()
    elapsed = best_wall_time(epoch, 2)
    return sum(b.u.shape[0] * b.u.shape[1] for b in batches) / elapsed

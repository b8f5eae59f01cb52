"""The one battery every model in the registry passes (a new model gets it for free).

A model is a `StateSpaceModel`: forward gives [B, T, 1] and [B, T, n_states]; forward, the
per-sample `step` and resets every k samples agree with running the windows by hand; its fast
path (if any) agrees with forward; a few Adam steps on a fixed batch lower the loss.
"""

from __future__ import annotations

import pytest
import torch

import nets
from nets import fast
from nets.losses import StateSpaceLoss
from nets.train import TrainConfig, window_loss

B, T = 3, 23


def make(name: str, n_inputs: int = 1, n_states: int = 1):
    torch.manual_seed(0)
    if name == "nodal":
        return nets.build("nodal", 1, 1)
    return nets.build(name, n_inputs, n_states, hidden=6)


def shapes_of(name):
    return [(1, 1)] if name == "nodal" else [(1, 1), (2, 3)]


def signals(n_inputs, n_states, dtype=torch.float32):
    g = torch.Generator().manual_seed(1)
    u = 0.5 * torch.randn(B, T, n_inputs, generator=g, dtype=dtype)
    x = 0.3 * torch.randn(B, T, n_states, generator=g, dtype=dtype)
    return u, x


def by_hand(model, u, x, s0, k):
    """The definition: before step n (n > 0, n % k == 0) reset to the true state."""
    s, ys, xs = s0, [], []
    for n in range(u.shape[1]):
        if k and n > 0 and n % k == 0:
            s = model.reset(x[:, n - 1], u[:, n - 1])
        s, y, xn = model.step(s, u[:, n])
        ys.append(y)
        xs.append(xn)
    return torch.stack(ys, 1), torch.stack(xs, 1), s


class ModelContract:
    """The battery; `TestEveryModel` runs it for each name in `nets.MODELS`."""

    @pytest.fixture(params=sorted(nets.MODELS))
    def name(self, request):
        return request.param

    def test_shapes(self, name):
        for n_inputs, n_states in shapes_of(name):
            model = make(name, n_inputs, n_states)
            u, _ = signals(n_inputs, n_states)
            traj = model(u)
            assert traj.y.shape == (B, T, 1)
            assert traj.x.shape == (B, T, n_states)
            assert traj.s_final.shape[0] == B

    @torch.no_grad()
    def test_forward_equals_steps(self, name):
        for n_inputs, n_states in shapes_of(name):
            model = make(name, n_inputs, n_states)
            u, x = signals(n_inputs, n_states)
            s0 = model.reset(x[:, 0], u[:, 0])
            traj = model(u, s0=s0)
            y, xs, s = by_hand(model, u, x, s0, 0)
            torch.testing.assert_close(traj.y, y, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(traj.x, xs, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(traj.s_final, s, rtol=1e-5, atol=1e-6)

    @torch.no_grad()
    @pytest.mark.parametrize("k", [1, 4, 7, T, T + 5])
    def test_reset_every_k_equals_windows_by_hand(self, name, k):
        model = make(name)
        u, x = signals(1, 1)
        s0 = model.reset(x[:, 0], u[:, 0])
        traj = model(u, s0=s0, teacher=x, every=k)
        y, xs, s = by_hand(model, u, x, s0, k)
        torch.testing.assert_close(traj.y, y, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(traj.x, xs, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(traj.s_final, s, rtol=1e-5, atol=1e-6)

    @torch.no_grad()
    def test_encode_is_reset_without_history(self, name):
        """`encode` is the interface's reset; only the STN also uses the previous input."""
        model = make(name)
        u, x = signals(1, 1)
        if getattr(model, "history", 0):
            # the STN's reset also carries u[n-1]: encode is reset with a zero (mean) input
            zero = model.u_mean.expand_as(u[:, 0])
            torch.testing.assert_close(model.encode(x[:, 0]), model.reset(x[:, 0], zero))
            assert not torch.allclose(model.reset(x[:, 0], u[:, 0]), model.encode(x[:, 0]))
        else:
            torch.testing.assert_close(model.encode(x[:, 0]), model.reset(x[:, 0], u[:, 0]))

    @torch.no_grad()
    def test_fast_path_equals_forward(self, name):
        model = make(name)
        if not fast.supports(model):
            # no compiled path: inference falls back to forward itself, which must say so
            assert name in ("lstm", "ode")
            return
        u, x = signals(1, 1)
        s0 = model.reset(x[:, 0], u[:, 0])
        a = model(u, s0=s0)
        b = fast.compile(model)(u, s0)
        torch.testing.assert_close(b.y.to(a.y.dtype), a.y, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(b.x.to(a.x.dtype), a.x, rtol=1e-4, atol=1e-5)

    def test_short_overfit_lowers_the_loss(self, name, tiny_data):
        model = make(name)
        model.load_state_dict({**model.state_dict(), **_scaling(model, tiny_data)}, strict=True)
        batch = next(tiny_data.segments(64 if name == "nodal" else 256, 4,
                                         torch.Generator().manual_seed(0)))
        config = TrainConfig(window=0, warmup=4, state_weight=1.0) if name == "nodal" else \
            TrainConfig(window=16, state_weight=1.0)
        criterion = StateSpaceLoss(1.0)
        optimizer = torch.optim.Adam(model.parameters(), lr=0.05 if name == "nodal" else 1e-2)
        losses = []
        for _ in range(6 if name == "nodal" else 30):
            loss = window_loss(model, batch, config, criterion)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        assert losses[-1] < 0.7 * losses[0], losses


def _scaling(model, data):
    """The dataset's statistics in the model's buffers (what `build(scaling=...)` does)."""
    if isinstance(model, nets.NodalModel):
        return {}
    return {k: torch.tensor(v, dtype=model.dtype) for k, v in data.scaling.items()}


class TestEveryModel(ModelContract):
    pass


def test_unknown_model_is_a_named_error():
    with pytest.raises(nets.UnknownModelError, match="choose one of"):
        nets.build("transformer", 1, 1)


def test_model_and_data_that_do_not_fit_fail_early(tiny_data):
    from nets.data import check_compatible
    with pytest.raises(nets.AudioShapeMismatchError, match="2 states"):
        check_compatible(nets.build("stn", 1, 2), tiny_data)
    with pytest.raises(nets.SampleRateMismatchError, match="44100"):
        check_compatible(nets.build("stn", 1, 1, sample_rate=44100), tiny_data)

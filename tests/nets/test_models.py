"""The one battery every model in the registry passes (a new model gets it for free).

A model is a `StateSpaceModel`: forward gives [B, T, 1] and [B, T, n_states]; forward, the
per-sample `step` and resets every k samples agree with running the windows by hand; its fast
path (if any) agrees with forward; a few Adam steps on a fixed batch lower the loss.
"""

from __future__ import annotations

import pytest
import torch

import nets
from nets import fast, metrics
from nets.data import Split
from nets.losses import StateSpaceLoss
from nets.train import TrainConfig, window_loss

B, T = 3, 23


def make(name: str, n_inputs: int = 1, n_states: int = 1):
    """A small instance; a model bound to its circuit (its shape is the circuit's) is built
    at its default circuit's (1, 1)."""
    torch.manual_seed(0)
    cls = nets.MODELS[name]
    if cls.circuit_bound:
        return nets.build(name, 1, 1, **cls.tiny)
    return nets.build(name, n_inputs, n_states, **cls.tiny)


def shapes_of(name):
    return [(1, 1)] if nets.MODELS[name].circuit_bound else [(1, 1), (2, 3)]


def make_conditioned(name: str, data):
    """The model `nets.runs.start` builds for a knob dataset (its own build arguments)."""
    torch.manual_seed(0)
    cls = nets.MODELS[name]
    kwargs = cls.build_kwargs(data)
    if "hidden" in kwargs:
        kwargs["hidden"] = 6
    return nets.build(name, data.n_inputs, data.n_states, data.sample_rate, **kwargs)


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
    def test_encode_reads_circuit_states(self, name):
        """`encode` maps true circuit states [B, n_states], in the circuit's units, to a model
        state: the shape of `initial_state`'s, different for different x, and the same for the
        same volts whatever statistics the data were scaled with."""
        model = make(name)
        u, x = signals(1, 1)
        s = model.encode(x[:, 0])
        start = model.initial_state(B, u[:, 0])
        assert s.shape == start.shape and s.dtype == start.dtype
        assert bool(torch.isfinite(s).all())
        assert not torch.allclose(model.encode(x[:, 0] + 0.1), s)
        if nets.MODELS[name].circuit_bound:
            # the solver's encode assumes a circuit at rest: at the DC operating point of a
            # held input it must give back the solver's own DC state
            held = torch.full((1, 40, 1), 0.4, dtype=torch.float64)
            at_rest = model.initial_state(1, held[:, 0])
            settled = model(held, s0=at_rest).x[:, -1]
            torch.testing.assert_close(model.encode(settled), at_rest)
            return
        # the same weights, data scaled by mean 0.2 V and std 3 V: 0.2 + 3 z reads as z did
        scaled = make(name)
        scaled.x_mean.fill_(0.2)
        scaled.x_std.fill_(3.0)
        torch.testing.assert_close(scaled.encode(0.2 + 3.0 * x[:, 0]), s)

    @torch.no_grad()
    def test_reset_carries_the_previous_input_when_the_model_uses_it(self, name):
        """Models with an input history (the STN) reset from (x, u[n-1]); `encode` is that
        reset with the mean input. The others' reset is `encode` itself (the base class)."""
        model = make(name)
        if not getattr(model, "history", 0):
            pytest.skip("no input history: reset is encode (NeuralModel.reset)")
        u, x = signals(1, 1)
        zero = model.u_mean.expand_as(u[:, 0])
        torch.testing.assert_close(model.encode(x[:, 0]), model.reset(x[:, 0], zero))
        assert not torch.allclose(model.reset(x[:, 0], u[:, 0]), model.encode(x[:, 0]))

    @torch.no_grad()
    def test_fast_path_equals_forward(self, name):
        """Inference (`metrics.predict`) gives `forward`'s trajectory: through the compiled
        kernel where the model has one, else through forward itself, and `fast.compile`
        refuses such a model by name."""
        model = make(name)
        u, x = signals(1, 1)
        split = Split(u, x, x[..., :1], x[:, 0])
        s0 = metrics.start_state(model, split)
        a = model(u, s0=s0)
        predicted = metrics.predict(model, split)
        if fast.supports(model):
            b = fast.compile(model)(u, s0)
            for traj in (b, predicted):
                torch.testing.assert_close(traj.y.to(a.y.dtype), a.y, rtol=1e-4, atol=1e-5)
                torch.testing.assert_close(traj.x.to(a.x.dtype), a.x, rtol=1e-4, atol=1e-5)
        else:
            with pytest.raises(TypeError, match=type(model).__name__):
                fast.compile(model)
            torch.testing.assert_close(predicted.y, a.y, rtol=0, atol=0)
            torch.testing.assert_close(predicted.x, a.x, rtol=0, atol=0)

    def test_short_overfit_lowers_the_loss(self, name, tiny_data):
        model = make(name)
        model.load_state_dict({**model.state_dict(), **_scaling(model, tiny_data)}, strict=True)
        fit = dict(model.tiny_fit)
        batch = next(tiny_data.segments(fit.pop("segment"), 4, torch.Generator().manual_seed(0)))
        lr, steps = fit.pop("lr"), fit.pop("steps")
        config = TrainConfig(state_weight=1.0, **fit)
        criterion = StateSpaceLoss(1.0)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        losses = []
        for _ in range(steps):
            loss = window_loss(model, batch, config, criterion)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        assert losses[-1] < 0.7 * losses[0], losses

    # -- conditioning on knobs ------------------------------------------------------------
    @torch.no_grad()
    def test_knob_channels_condition_the_output(self, name, knob_data):
        """The knob values are input channels after the audio and the controls: the same
        audio at two knob settings gives two outputs."""
        model = make_conditioned(name, knob_data)
        assert model.conditioning
        assert model.n_inputs == knob_data.n_inputs == 1 + len(knob_data.knobs)
        split = knob_data.test
        u = split.u[:, :400].clone()
        u[..., 0] = 0.5 * torch.sin(torch.arange(400) * 2 * torch.pi * 1e3 / 48e3)
        outputs = []
        for value in (0.1, 0.9):
            u[..., -1] = value
            s0 = model.reset(split.x_init, u[:, 0]) if model.resettable else \
                model.initial_state(1, u[:, 0])
            outputs.append(model(u, s0=s0).y)
        assert bool(torch.isfinite(outputs[0]).all())
        assert not torch.allclose(outputs[0], outputs[1], rtol=1e-3, atol=1e-6)

    @torch.no_grad()
    def test_knob_that_moves_forward_equals_steps(self, name, knob_data):
        """A knob turned mid-signal: forward (and the fast path) agree with step by step."""
        model = make_conditioned(name, knob_data)
        split = knob_data.test
        u = split.u[:, :T].repeat(2, 1, 1).clone()
        u[..., 0] = 0.5 * torch.sin(torch.arange(T) * 2 * torch.pi * 3e3 / 48e3)
        u[0, :, -1] = 0.2
        u[1, :10, -1], u[1, 10:, -1] = 0.3, 0.8
        x = split.x[:, :T].repeat(2, 1, 1)
        s0 = model.reset(x[:, 0], u[:, 0])
        traj = model(u, s0=s0)
        y, xs, _ = by_hand(model, u, x, s0, 0)
        torch.testing.assert_close(traj.y, y, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(traj.x, xs, rtol=1e-5, atol=1e-6)
        if fast.supports(model):
            b = fast.compile(model)(u, s0)
            torch.testing.assert_close(b.y.to(y.dtype), y, rtol=1e-4, atol=1e-5)


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

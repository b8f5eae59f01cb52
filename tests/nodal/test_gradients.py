"""The torch solver is differentiable in its component values, through Newton (IFT)."""

import numpy as np
import torch
from torch.func import functional_call

import nodal
from nodal import signals


def test_gradcheck_r_c_and_saturation_current():
    solver = nodal.load("diode_clipper")
    solver.newton.abstol = solver.newton.reltol = 1e-14
    for name in ("r1", "c1", "d1n4148.is"):
        solver.make_trainable(name)
    u = torch.tensor(signals.plucked_string(0.0006, 48000, peak=1.5, seed=1))[None, :, None]
    u[0, 0, 0] = 0.3  # start away from the trivial operating point

    def output(r_kohm, c_nf, is_na):
        params = {"trainable.r1": r_kohm * 1e3, "trainable.c1": c_nf * 1e-9,
                  "trainable.d1n4148__is": is_na * 1e-9}
        return functional_call(solver, params, (u,)).y

    inputs = tuple(torch.tensor(v, dtype=torch.float64, requires_grad=True)
                   for v in (2.2, 10.0, 2.52))
    assert torch.autograd.gradcheck(output, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_gradient_descends_towards_the_true_resistor():
    """One gradient step from a wrong R lowers the output error."""
    truth = nodal.load("diode_clipper")
    u = torch.tensor(signals.plucked_string(0.003, 48000, seed=2))[None, :, None]
    with torch.no_grad():
        target = truth(u).y
    model = nodal.load("diode_clipper", r1=4.4e3)
    r = model.make_trainable("r1")
    loss = ((model(u).y - target) ** 2).mean()
    loss.backward()
    assert r.grad is not None and float(r.grad) > 0  # too large a resistor: decrease it


def test_batch_of_eight_equals_eight_single_runs():
    solver = nodal.load("diode_clipper")
    signals_ = np.stack([signals.plucked_string(0.004, 48000, peak=0.2 + 0.25 * k, seed=k)
                         for k in range(8)])
    u = torch.tensor(signals_)[..., None]
    with torch.no_grad():
        batch = solver(u)
        singles = [solver(u[k:k + 1]) for k in range(8)]
    for k in range(8):
        torch.testing.assert_close(batch.y[k], singles[k].y[0], rtol=0, atol=1e-12)
        torch.testing.assert_close(batch.x[k], singles[k].x[0], rtol=0, atol=1e-12)

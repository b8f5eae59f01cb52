"""The compiled GRU recurrence agrees with torch.nn.GRU, values and gradients."""

from __future__ import annotations

import torch

from nets.gru_kernel import gru_recurrence


def test_matches_nn_gru_forward_and_backward():
    torch.manual_seed(0)
    gru = torch.nn.GRU(2, 5, batch_first=True).double()
    u = torch.randn(3, 40, 2, dtype=torch.float64)
    h0 = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    reference, _ = gru(u, h0[None])
    gi = u @ gru.weight_ih_l0.T + gru.bias_ih_l0
    fused = gru_recurrence(gi, h0, gru.weight_hh_l0, gru.bias_hh_l0)
    torch.testing.assert_close(fused, reference, rtol=1e-12, atol=1e-12)
    weights = torch.randn_like(reference)
    inputs = [h0, *gru.parameters()]
    expected = torch.autograd.grad((reference * weights).sum(), inputs)
    got = torch.autograd.grad((fused * weights).sum(), inputs)
    for e, g in zip(expected, got, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)

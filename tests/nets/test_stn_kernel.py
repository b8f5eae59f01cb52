"""The compiled STN recurrence agrees with the STN's torch loop, values and gradients."""

from __future__ import annotations

import pytest
import torch

from nets.stn import STN


@pytest.mark.parametrize("depth, history", [(2, 1), (1, 1), (3, 0)])
def test_kernel_matches_the_torch_loop(depth, history):
    torch.manual_seed(depth)
    fused = STN(2, 3, hidden=6, depth=depth, input_history=history).double()
    loop = STN(2, 3, hidden=6, depth=depth, input_history=history, fused=False).double()
    with torch.no_grad():
        for p in fused.parameters():
            p.normal_(0, 0.5)  # away from the identity start, so every layer matters
    loop.load_state_dict(fused.state_dict())
    u = torch.randn(4, 30, 2, dtype=torch.float64)
    s0 = fused.reset(torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64))
    s0 = s0.clone().requires_grad_(True)
    a, b = fused(u, s0=s0), loop(u, s0=s0)
    torch.testing.assert_close(a.x, b.x, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(a.y, b.y, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(a.s_final, b.s_final, rtol=1e-12, atol=1e-12)
    wy, wx = torch.randn_like(a.y), torch.randn_like(a.x)
    got = torch.autograd.grad((a.y * wy).sum() + (a.x * wx).sum(), [s0, *fused.parameters()])
    want = torch.autograd.grad((b.y * wy).sum() + (b.x * wx).sum(), [s0, *loop.parameters()])
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)

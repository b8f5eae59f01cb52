"""Newton's method for the DK nonlinear equation, batched, with SPICE junction limiting.

Solves f(q) = q - p - K i(Q q) = 0 for the port coordinates q [B, r]. Each step is scaled by
the largest factor that keeps every junction's voltage change within SPICE's `pnjlim` bound, so
a diode never jumps into exp-overflow territory; iterations are bounded and the caller gets a
per-item convergence mask instead of NaNs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class NewtonOptions:
    max_iter: int = 50
    abstol: float = 1e-10      # volts
    reltol: float = 1e-10


def junction_step_scale(v_old: Tensor, dv: Tensor, vte: Tensor, vcrit: Tensor) -> Tensor:
    """The factor in (0, 1] that SPICE's pnjlim would apply to each junction's step [B]."""
    v_new = v_old + dv
    limit = (v_new > vcrit) & (dv.abs() > 2 * vte)
    arg = 1 + dv / vte
    from_positive = torch.where(arg > 0, v_old + vte * torch.log(arg.clamp_min(1e-300)), vcrit)
    from_negative = vte * torch.log((v_new / vte).clamp_min(1e-300))
    v_lim = torch.where(v_old > 0, from_positive, from_negative)
    ratio = torch.where(limit, (v_lim - v_old) / torch.where(limit, dv, torch.ones_like(dv)),
                        torch.ones_like(dv))
    ratio = ratio.clamp(1e-6, 1.0)
    return ratio.min(dim=1).values if ratio.shape[1] else torch.ones_like(v_old[:, 0])


def solve(q: Tensor, p: Tensor, K: Tensor, laws, expand: Tensor, junction_ports: list[int],
          vte: Tensor, vcrit: Tensor, options: NewtonOptions) -> tuple[Tensor, Tensor, Tensor]:
    """Return (q, iterations [B], converged [B]) for f(q) = q - p - K i(Q q) = 0.

    `laws(v)` returns the port currents [B, ports] and their Jacobian [B, ports, ports].
    """
    batch, r = q.shape
    eye = torch.eye(r, dtype=q.dtype)
    iterations = torch.zeros(batch, dtype=torch.long)
    converged = torch.zeros(batch, dtype=torch.bool)
    for _ in range(options.max_iter):
        v = q @ expand.T
        i, jac = laws(v)
        f = q - p - i @ K.T
        J = eye - K @ jac @ expand
        dq = -torch.linalg.solve(J, f.unsqueeze(-1)).squeeze(-1)
        if junction_ports:
            dv = dq @ expand.T
            alpha = junction_step_scale(v[:, junction_ports], dv[:, junction_ports], vte, vcrit)
        else:
            alpha = torch.ones(batch, dtype=q.dtype)
        step = alpha[:, None] * dq
        ok = torch.isfinite(step).all(1)
        active = ~converged & ok
        q = torch.where(active[:, None], q + step, q)
        iterations += active.long()
        small = (step.abs() <= options.abstol + options.reltol * q.abs()).all(1) & (alpha == 1)
        converged = converged | (small & ok)
        if bool(converged.all()) or not bool(ok.any()):
            break
    return q, iterations, converged


def newton_step(q: Tensor, p: Tensor, K: Tensor, laws, expand: Tensor) -> Tensor:
    """One differentiable Newton step from a converged, detached q.

    At a root f(q*) = 0 its derivative is -J^-1 df/dtheta, the implicit function theorem, so
    gradients flow to p, K and the law's parameters without unrolling the iterations.
    """
    v = q @ expand.T
    i, jac = laws(v)
    f = q - p - i @ K.T
    eye = torch.eye(q.shape[1], dtype=q.dtype)
    J = eye - K.detach() @ jac.detach() @ expand
    return q - torch.linalg.solve(J, f.unsqueeze(-1)).squeeze(-1)

"""Newton's method for the DK nonlinear equation, batched, with SPICE junction limiting.

Solves f(q) = q - p - K i(Q q) = 0 for the port coordinates q [B, r]. Each step is scaled by
the largest factor that keeps every junction's voltage change within SPICE's `pnjlim` bound, so
a diode never jumps into exp-overflow territory; iterations are bounded and the caller gets a
per-item convergence mask instead of NaNs.

Convergence (`NewtonOptions.stopping`, both backends): "predicted" (the default) accepts after a
full step dq (pnjlim factor 1) when the NEXT step, predicted to second order without evaluating
the laws again, is below the tolerance: with dv = Q dq the currents' remainder is
r_c = sum_e (di_c/dv_e) dv_e^2 / (2 vte_e), the junction law's curvature d2i/dv2 = (di/dv) / vte
taken for every Jacobian entry (vte = n Vt of port e), and the next step is J^-1 K r (J this
iteration's matrix), accepted when AHEAD_SAFETY |J^-1 K r| <= abstol + reltol |q|; q then takes
that predicted step too and the currents their second-order value (`ahead_step`). Only steps
within AHEAD_REACH vte on every port are trusted (past that, a junction that was off may switch
on unforeseen). The rule needs every port of the solve to be a junction (`curvature`): a solve
(in the kernel, a block) with a port that is not one (a charge, a behavioural source, a control
port) keeps the "step" rule.

The curvature is exact for exponential laws (diodes; Ebers-Moll, whose cross derivatives are
zero). Elsewhere it overestimates, which only delays acceptance: a diode's recombination term
(NR > N) or a BJT's NE > 1; the JFET's square-law channel, i''/i' = 1/(vgs - vto) against 1/vt,
overestimated about 99x on the Phase 90 (its channels ~2.6 V above pinch-off), so there about
60 % of the samples stop without the confirming evaluation (2.40 -> 1.81 evaluations a sample),
and the step q then takes, too large by that factor, leaves it within the tolerance but not at
round-off (its output differs from the "step" rule's by ~7e-9 V after 2 s, the diode circuits'
by ~1e-12 V). It underestimates within vt of a JFET's pinch-off (covered by AHEAD_SAFETY only
down to vgs - vto = vt / 2) and below ngspice's junction tail knee (-3 vte: by at most 4/3).
`tests/nodal/test_stopping.py` holds the remaining Newton step at the accepted samples of every
built-in circuit within the tolerance.

"step" accepts a step below `abstol + reltol |q|` (unscaled by pnjlim), which costs one more
evaluation of the laws only to find that step small. Both rules also accept a residual f at
its round-off floor, |f| <= ROUNDOFF (|q| + |p| + sum |K i|). The second matters where K is huge
(a node reached only through junctions: K ~ 1/GMIN = 1e12 ohm), where f cannot get smaller than
round-off in K i and the steps stall at ~1e-10 V without ever being "small"; and a full
step below STALL that is not half the one before (a row's round-off reaching the others
through an ill-conditioned J).

A fixed-rate solver cannot cut its time step as SPICE does, so where Newton fails at a sample
both backends climb the same ladder (`fast.py` and `solver.py`), in this order, each from the
previous sample's solution:

1. Newton with a line search at the full step (below);
2. the sample in k = 2, 4, ... 2^substep_levels trapezoidal substeps (DK matrices for T/k from
   the same equations; inputs interpolated linearly within the sample, as SPICE's PWL);
3. gmin stepping: a conductance across every port (but a charge's), GMIN_STEPS from 10 mS
   down to none;
4. source stepping: p walked from the value that makes the start an exact root to the
   sample's own p in HOMOTOPY_STEPS steps.

Each Newton solve of the ladder may take `NewtonOptions.ladder_iter` evaluations (500), ten
times a sample's own `max_iter`: a sample that needs the ladder is rare, and the hardest
ones need many steps, not smaller ones. A chain of sixteen direct-coupled common-emitter
stages flips from one saturated/cut-off pattern to the other within a sample at 48 kHz (the
stages have no time constant between them, so no substep slows the flip): Newton turns the
stages over one or two per few iterations and needs ~80 evaluations. ngspice takes that
sample at its full step; with every rung at 50 evaluations this solver gave up there
(`tests/nodal/test_robust.py::test_a_chain_of_direct_coupled_stages_flips_as_in_ngspice`).
Only if all fail is the sample reported as failed. `Diagnostics.level` numbers the rungs
apart from their order (`fallback_name`): 1 .. MAX_LEVELS the substeps, then gmin stepping,
source stepping, and the line search last (MAX_LEVELS + 3), so that a level keeps its meaning.

The line search (rung 1). A law that is piecewise linear (an op-amp written as
`max(min(A v, Vsat), -Vsat)` with A ~ 1e5) has a linear band tens of microvolts wide between
its rails. Newton from one rail steps along that rail's slope to the other rail, and from
there back: the iterates cycle and never enter the band, and no other rung helps (each
substep, gmin and source step starts from a rail too). On the rung every step must reduce
the residual, as circuit simulators damp Newton: after a step of more than STALL volts whose f
does not satisfy Armijo's test |f|^2 <= (1 - 2 ARMIJO t) |f0|^2 (t the fraction of the Newton
step taken, pnjlim's factor included), the iteration searches along that step instead of
taking a new one:

- where f has turned against f0 (f . f0 < 0: the step went past a root along it, across a
  kink or a steep band), it bisects on the sign of f . f0 until |f| <= KAPPA |f0| or
  |f . f0| <= KAPPA |f0|^2: the second where the step cannot reach a root (on a rail the
  E source's own coordinate has a zero step, so along the step |f| stays large while its
  component along f0 vanishes inside the band); inside the band the next Newton step is
  exact;
- else it halves the step until Armijo's test holds (an exponential's overshoot).

Each search ends after SEARCH_DEPTH evaluations at the latest, taking the last point; every
evaluation counts as an iteration, within the rung's `ladder_iter`. The rung accepts by the "step"
rule (the "predicted" one reuses the step's storage). It is only a rung, never plain
Newton's way: inside every Newton it made Newton give up on a MOSFET clipper with charges
that converges without it, and where plain Newton converges it is not entered, so those
samples stay exactly as they were. Where it is first, a sample it solves keeps the sample
rate's discretisation (the same trapezoidal step as its neighbours), and the op-amp's rail
crossings cost ~18 evaluations on the rung instead of every substep level failing first
(`tests/nodal/test_rails.py`'s clipper: 5.9 evaluations per sample over 0.1 s, 34 with the
rung after the substeps).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

from .errors import NodalError

#: |f| at or below ROUNDOFF times the magnitude of its terms is as converged as float64 allows.
ROUNDOFF = 8.0 * 2.220446049250313e-16
#: A full step below STALL volts that is not at most half the one before is converged: the
#: iteration is walking in round-off (ngspice's vntol is 1e-6 V too).
STALL = 1e-6
#: Gmin stepping: the shunt conductance (S) across every port, one Newton solve each.
GMIN_STEPS = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10, 1e-11, 1e-12, 0.0)
#: Source stepping: how many steps walk p to the sample's own.
HOMOTOPY_STEPS = 16
#: The line search's rung: Armijo's sufficient decrease, the bisection's target |f| / |f0|,
#: and the most evaluations one search along a step may take.
ARMIJO = 1e-4
KAPPA = 0.1
SEARCH_DEPTH = 40
#: Where Newton starts at sample n: "previous" q[n-1]; "linear" 2 q[n-1] - q[n-2]; "tangent"
#: q[n-1] + J^-1 (p[n] - p[n-1]), J the previous sample's Newton Jacobian (the explicit step).
PREDICTORS = ("previous", "linear", "tangent")
#: Newton's stopping rules (`NewtonOptions.stopping`; the module's docstring).
STOPPING = ("step", "predicted")
#: The predicted next step must be this many times below the tolerance to accept without it.
AHEAD_SAFETY = 2.0
#: ... and every port's step within AHEAD_REACH vte, where the second-order remainder of an
#: exponential is within 4 % of the whole (a junction switched on by a long step is not
#: foreseen by its curvature where it was off).
AHEAD_REACH = 0.1


@dataclass
class NewtonOptions:
    max_iter: int = 50
    abstol: float = 1e-10      # volts
    reltol: float = 1e-10
    predictor: str = "tangent"  # Newton's start: one of PREDICTORS (see `predict`)
    substep_levels: int = 6    # fallback substeps 2 .. 2^substep_levels (at most 6)
    # the compiled kernel solves independent blocks of the port equations one after the other
    # (`fast.layout`); False: one joint solve, as the torch path and the C export do (the same
    # samples wherever Newton converges; where it fails, the ladder is entered per sample, not
    # per block)
    split: bool = True
    # when a sample has converged: "predicted" (the next step, predicted to second order
    # without evaluating the laws, below the tolerance) or "step" (a step below it)
    stopping: str = "predicted"
    # each Newton solve of the fallback ladder (its line search, each substep, each gmin and
    # source step) may take this many evaluations (at least max_iter): see the module's text.
    # Last, so that options written positionally before it keep their meaning.
    ladder_iter: int = 500


class UnknownStoppingRuleError(NodalError, ValueError):
    """`NewtonOptions.stopping` names no rule of STOPPING."""


def ladder_options(options: NewtonOptions) -> NewtonOptions:
    """`options` for a Newton solve of the fallback ladder: `ladder_iter` evaluations (at least
    `max_iter`)."""
    budget = max(int(getattr(options, "ladder_iter", options.max_iter)), int(options.max_iter))
    return dataclasses.replace(options, max_iter=budget)


def stopping_rule(options: NewtonOptions) -> int:
    """The index in STOPPING of `options.stopping` (as the compiled kernel takes it)."""
    rule = getattr(options, "stopping", "predicted")
    if rule not in STOPPING:
        raise UnknownStoppingRuleError(
            f"NewtonOptions.stopping must be one of {', '.join(STOPPING)}, not {rule!r}")
    return STOPPING.index(rule)


def curvature(n_ports: int, junction_ports: list[int], vte: Tensor) -> Tensor | None:
    """1 / (2 vte) per port [ports] for the "predicted" stopping rule, or None where a port is
    not a junction (its law's curvature is not known: the "step" rule)."""
    if n_ports == 0 or sorted(junction_ports) != list(range(n_ports)):
        return None
    out = torch.empty(n_ports, dtype=vte.dtype)
    out[list(junction_ports)] = 0.5 / vte
    return out


def ahead_step(jac: Tensor, dv: Tensor, half_curv: Tensor, K: Tensor, J: Tensor):
    """The next Newton step predicted after a full step [B, r] and the currents' second-order
    remainder r [B, ports]: r_c = sum_e jac[c, e] dv_e^2 / (2 vte_e), step J^-1 K r (non-finite
    where J is singular)."""
    remainder = (jac * (dv * dv * half_curv)[:, None, :]).sum(-1)
    sol, info = torch.linalg.solve_ex(J, (remainder @ K.T).unsqueeze(-1))
    return torch.where((info == 0)[:, None], sol.squeeze(-1), torch.nan), remainder


def fallback_name(level: int, substep_levels: int = 6) -> str:
    """What a fallback level of `Diagnostics.level` means, in words."""
    from .fast import MAX_LEVELS

    if level == 0:
        return "none"
    if level <= MAX_LEVELS:
        return f"{1 << level} substeps"
    return {MAX_LEVELS + 1: "gmin stepping", MAX_LEVELS + 2: "source stepping",
            MAX_LEVELS + 3: "line search"}.get(level, f"level {level}")


def line_search_level() -> int:
    """The `Diagnostics.level` of a sample the line search solved (after the substeps' and
    the continuation's levels, whatever the order of the rungs)."""
    from .fast import MAX_LEVELS

    return MAX_LEVELS + 3


def predict(q1: Tensor, q2: Tensor, p: Tensor, p_prev: Tensor | None, K: Tensor,
            jac: Tensor | None, expand: Tensor, predictor: str, junction_ports: list[int],
            vte: Tensor, vcrit: Tensor) -> Tensor:
    """Newton's starting point [B, r] for a sample (see PREDICTORS): q1, q2 the last two
    solutions, p and p_prev this and the last sample's linear part, jac the laws' Jacobian at
    q1 [B, ports, ports] (None: not known, then the previous solution). The tangent step is
    limited as a Newton step is (pnjlim)."""
    if predictor == "linear":
        return q1 + (q1 - q2)
    if predictor != "tangent" or p_prev is None or jac is None:
        return q1
    J = torch.eye(q1.shape[1], dtype=q1.dtype) - K @ jac @ expand
    sol, info = torch.linalg.solve_ex(J, (p - p_prev).unsqueeze(-1))
    dq = sol.squeeze(-1)
    if junction_ports:
        alpha = junction_step_scale((q1 @ expand.T)[:, junction_ports],
                                    (dq @ expand.T)[:, junction_ports], vte, vcrit)
        dq = alpha[:, None] * dq
    good = (info == 0) & torch.isfinite(dq).all(1)
    return torch.where(good[:, None], q1 + dq, q1)


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


def shunted(laws, g: float, charge_mask: Tensor | None = None):
    """`laws` with a conductance g across every port (gmin stepping), except the charge ports
    of `charge_mask` (their law is a charge q(v), not a current: `dk.py`)."""
    if g == 0.0:
        return laws

    def with_shunt(v):
        i, jac = laws(v)
        gv = torch.full((v.shape[1],), g, dtype=v.dtype)
        if charge_mask is not None:
            gv = torch.where(charge_mask, torch.zeros_like(gv), gv)
        return i + gv * v, jac + torch.diag(gv)
    return with_shunt


def solve(q: Tensor, p: Tensor, K: Tensor, laws, expand: Tensor, junction_ports: list[int],
          vte: Tensor, vcrit: Tensor, options: NewtonOptions) -> tuple[Tensor, Tensor, Tensor]:
    """Return (q, iterations [B], converged [B]) for f(q) = q - p - K i(Q q) = 0.

    `laws(v)` returns the port currents [B, ports] and their Jacobian [B, ports, ports].
    Iterations count law evaluations, as the compiled kernel counts them.
    """
    return solve_with_jacobian(q, p, K, laws, expand, junction_ports, vte, vcrit, options)[:3]


def solve_with_jacobian(q: Tensor, p: Tensor, K: Tensor, laws, expand: Tensor,
                        junction_ports: list[int], vte: Tensor, vcrit: Tensor,
                        options: NewtonOptions, line_search: bool = False):
    """`solve`, and each item's last evaluated Jacobian di/dv [B, ports, ports] (the one the
    compiled kernel keeps for the next sample's tangent prediction). line_search: the
    ladder's first rung (the module docstring), with the "step" stopping rule."""
    batch, r = q.shape
    half_curv = None
    if stopping_rule(options) == STOPPING.index("predicted") and not line_search:
        half_curv = curvature(expand.shape[0], junction_ports, vte)
    search = _Search(q) if line_search else None
    jac_last = None
    eye = torch.eye(r, dtype=q.dtype)
    iterations = torch.zeros(batch, dtype=torch.long)
    converged = torch.zeros(batch, dtype=torch.bool)
    stopped = torch.zeros(batch, dtype=torch.bool)     # a non-finite step: given up
    last = torch.full((batch,), torch.inf, dtype=q.dtype)
    for _ in range(options.max_iter):
        active = ~converged & ~stopped
        if not bool(active.any()):
            break
        v = q @ expand.T
        i, jac = laws(v)
        iterations += active.long()
        jac_last = jac if jac_last is None else torch.where(active[:, None, None], jac, jac_last)
        Ki = i[:, None, :] * K
        f = q - p - Ki.sum(-1)
        floor = ROUNDOFF * (q.abs() + p.abs() + Ki.abs().sum(-1))
        settled = ((f.abs() <= floor) & (floor < torch.inf)).all(1)
        converged = converged | (active & settled)
        active = active & ~settled
        if not bool(active.any()):
            break
        if search is not None:
            q, along = search.next_point(q, f, active)
            active = active & ~along            # these evaluate a point along the step next
            if not bool(active.any()):
                continue
        J = eye - K @ jac @ expand
        # a singular J (a device far outside its range) fails that item, as the kernel's
        # elimination does (a zero pivot gives a non-finite step), never a LinAlgError
        sol, info = torch.linalg.solve_ex(J, f.unsqueeze(-1))
        dq = torch.where((info == 0)[:, None], -sol.squeeze(-1), torch.nan)
        if junction_ports:
            dv = dq @ expand.T
            alpha = junction_step_scale(v[:, junction_ports], dv[:, junction_ports], vte, vcrit)
        else:
            alpha = torch.ones(batch, dtype=q.dtype)
        step = alpha[:, None] * dq
        ok = torch.isfinite(step).all(1)
        stopped = stopped | (active & ~ok)
        active = active & ok
        q = torch.where(active[:, None], q + step, q)
        small = (step.abs() <= options.abstol + options.reltol * q.abs()).all(1) & (alpha == 1)
        big = step.abs().amax(1) if r else torch.zeros(batch, dtype=q.dtype)
        stall = (alpha == 1) & (big <= STALL) & (big >= 0.5 * last)
        last = torch.where(active, big, last)
        if search is not None:
            search.took(active, f, step, alpha, big)
        if half_curv is not None:
            # the next step, predicted without evaluating the laws: below the tolerance, the
            # sample is accepted, and q takes that step too
            dv = dq @ expand.T
            ahead, _ = ahead_step(jac, dv, half_curv, K, J)
            near = (AHEAD_SAFETY * ahead.abs() <= options.abstol + options.reltol * q.abs())
            reach = (dv.abs() * (2 * half_curv) <= AHEAD_REACH).all(1)
            near = active & near.all(1) & reach & (alpha == 1)
            q = torch.where(near[:, None], q + ahead, q)
            small = small | near
        converged = converged | (active & (small | stall))
    if jac_last is None:
        jac_last = laws(q @ expand.T)[1]
    return q, iterations, converged, jac_last


class _Search:
    """Each item's line search along its last Newton step (the module docstring), as the
    compiled kernel's `_newton_ls_k` and the C file's `newton_ls` run it: the step `alpha dq`
    from the point where f was f0 (|f0|^2 = base), the fraction `lam` of it now evaluated, and
    the search's state (mode 0: none, 1: halving, 2: bisecting on the sign of f . f0 between
    lo and hi, `count` evaluations into it)."""

    def __init__(self, q: Tensor):
        batch = q.shape[0]
        zeros = torch.zeros(batch, dtype=q.dtype)
        self.base = torch.full((batch,), torch.inf, dtype=q.dtype)
        self.f0 = torch.zeros_like(q)
        self.step = torch.zeros_like(q)
        self.alpha, self.lam, self.lo, self.hi = zeros + 1, zeros + 1, zeros, zeros + 1
        self.trial = zeros                  # the step's largest component; 0: none to check
        self.mode = torch.zeros(batch, dtype=torch.long)
        self.count = torch.zeros(batch, dtype=torch.long)

    def next_point(self, q: Tensor, f: Tensor, active: Tensor) -> tuple[Tensor, Tensor]:
        """(q, which items evaluate a point along their step next instead of a new step)."""
        check = active & (self.trial > STALL)
        if not bool(check.any()):
            return q, torch.zeros_like(active)
        norm = (f * f).sum(1)
        good = norm <= (1.0 - 2.0 * ARMIJO * self.lam * self.alpha) * self.base
        psi = (f * self.f0).sum(1)
        past = psi < 0.0                        # f turned against f0: past a root
        begin = check & (self.mode == 0) & ~good
        going = check & (self.mode != 0)
        self.count = torch.where(begin, 0, self.count + going.long())
        self.lo = torch.where(begin, 0.0, torch.where(going & ~past, self.lam, self.lo))
        self.hi = torch.where(begin, 1.0, torch.where(going & past, self.lam, self.hi))
        mode = torch.where(begin, torch.where(past, 2, 1), self.mode)
        done = going & ((self.count >= SEARCH_DEPTH) | torch.where(
            mode == 2, (norm <= KAPPA * KAPPA * self.base) | (psi.abs() <= KAPPA * self.base),
            good))
        self.mode = torch.where(done, 0, mode)
        along = check & (self.mode != 0)
        nxt = torch.where(self.mode == 1, 0.5 * self.lam, 0.5 * (self.lo + self.hi))
        q = torch.where(along[:, None], q + (nxt - self.lam)[:, None] * self.step, q)
        self.lam = torch.where(along, nxt, self.lam)
        return q, along

    def took(self, items: Tensor, f: Tensor, step: Tensor, alpha: Tensor, big: Tensor) -> None:
        """A new Newton step `step` (`alpha` pnjlim's factor) from f for these items."""
        self.base = torch.where(items, (f * f).sum(1), self.base)
        self.f0 = torch.where(items[:, None], f, self.f0)
        self.step = torch.where(items[:, None], step, self.step)
        self.alpha = torch.where(items, alpha, self.alpha)
        self.lam = torch.where(items, 1.0, self.lam)
        self.trial = torch.where(items, big, self.trial)


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

"""The compiled fast path: the DK equations as one numba kernel, forward only, on plain arrays.

    kernel = fast.kernel(eq, fast.layout(eq, arrays.K))   # once per structure and split
    out = fast.run(kernel, arrays, w, start, options)      # `KernelArrays` (numpy), w [B, T, nw]

Blocks: where the structure allows, the port equations split into blocks solved one after the
other (`layout`: two pedals in one file, the Phase 90's buffered stages), each with its own
Newton and small dense J whose dimensions, like the circuit's, are literals compiled in; a
block's linear part is p plus the currents of the blocks before it. A circuit that does not
split is one block. The torch path (`solver.py`) solves the blocks together: the same samples
(to ~1e-12 V), and where the kernel splits, a sample's iteration count is its slowest block's.

The kernel's source is generated from the very Sympy expressions the torch solver lambdifies
(`Equations.currents`, `Equations.jacobian` and each junction port's `(n Vt, Is)`), printed with
Sympy's Python code printer and compiled with `numba.njit`. The numeric DK matrices come from
`NumericEquations.matrices(theta)`, the same call the torch path makes; `run` is a function of
arrays only (matrices, parameters, inputs, where to start) and knows nothing of the solver.
Per sample n, for every signal of the batch (units SI: volts, amperes):

    p     = G x~[n-1] + H w[n]
    solve   q - p - K i(Q q) = 0       Newton, SPICE pnjlim step scaling, as `newton.solve`
    y[n]  = D x~[n-1] + E w[n] + F i
    x[n]  = Ds x~[n-1] + Es w[n] + Fs i
    x~[n] = A x~[n-1] + B w[n] + C i

Newton starts from a prediction (`NewtonOptions.predictor`): by default the tangent step
q[n-1] + J^-1 (p[n] - p[n-1]) with the previous sample's Jacobian J (first order in the change
of the linear part, so it follows a clipping diode's flattened slope), and stops by
`NewtonOptions.stopping`: by default when the next step, predicted from the junctions'
curvature, is below the tolerance (`newton.py`; in a block whose ports are all junctions, the
others when an evaluated step is). Where it does not
converge, the sample is solved again as SPICE would cut its time step (`newton.py` describes
the ladder): by Newton with a line search at the full step (`_newton_ls_k`), in 2, 4, ...
2^levels trapezoidal substeps with the DK matrices for T/k (inputs interpolated linearly
within the sample), then by gmin stepping, then by stepping the sources; only if all fail
is the sample reported in `failed` (keeping the previous sample's solution, never NaN).
The torch path (`solver.py`) runs the same ladder, so both backends give the same samples to
round-off. The ladder is its own function (`ladder`, one
sample): the sample loop stops an item where Newton fails, `run` solves that sample with the
ladder and resumes the loop after it, so the ladder is compiled only where a run needs it
(it was ~40 % of a kernel's compile time).

Kernels are compiled once per circuit structure and cached in this process (and on disk,
`cache_folder`), keyed on the generated source; component values enter at run time, so
changing a value never recompiles. The source itself is kept on disk too for equations from
the derivation cache, so a second process does not write it again (`_source`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import math
import os
import sys
import textwrap
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sympy as sp

from .files import atomic_write, cache_dir
from . import kind_laws, port_map, scalar_block
from .law_text import assignments
from .mna import Equations
from .newton import (AHEAD_REACH, AHEAD_SAFETY, ARMIJO, GMIN_STEPS, HOMOTOPY_STEPS, KAPPA,
                     PREDICTORS, ROUNDOFF, SEARCH_DEPTH, STALL, ladder_options, stopping_rule)

# The per-sample loop. `_laws_k`, `_junctions`, `_newton_k`, `_solve_all` and the block sections
# of `run` are generated per circuit (`kernel_source`); dimensions and each block's ranges are
# literals that numba compiles in. Everything here is in the kernel's frame: coordinates and
# ports permuted so that each block's are contiguous (`Layout`).
_KERNEL = '''
@numba.njit(cache=CACHE, nogil=True, error_model="numpy", inline="always")
def _exp(x):
    """exp(x), the laws' (`law_text`): 0.0 below -746, where exp underflows to 0.0 anyway,
    without the C library's underflow path (errno: a slow call, on every evaluation of a
    far reverse-biased junction's term in some cards). NaN stays NaN."""
    if x < -746.0:
        return 0.0
    return math.exp(x)


@numba.njit(cache=CACHE, nogil=True, error_model="numpy")
def _ports(expand, q, v, p0, p1, r0, r1, ident):
    """v = Q q for ports p0..p1 (a block's), whose rows are zero past coordinate r1 (ident:
    the block's Q is the identity, zero before r0)."""
    if ident:
        for c in range(p0, p1):
            v[c] = q[r0 + c - p0]
        return
    for c in range(p0, p1):
        acc = 0.0
        for a in range(r1):
            acc += expand[c, a] * q[a]
        v[c] = acc


@numba.njit(cache=CACHE, nogil=True, error_model="numpy")
def _dports(expand, dq, dv, p0, p1, r0, nb, ident):
    """dv = Q dq for a block's ports, dq its own coordinates' step (local, 0..nb)."""
    if ident:
        for c in range(p0, p1):
            dv[c] = dq[c - p0]
        return
    for c in range(p0, p1):
        acc = 0.0
        for a in range(nb):
            acc += expand[c, r0 + a] * dq[a]
        dv[c] = acc


@numba.njit(cache=CACHE, nogil=True, error_model="numpy")
def _matrix(KN, jac, expand, KJ, J, r0, nb, p0, npb, ident):
    """A block's J = I - K (di/dv) Q (local indices), over the Jacobian's structural nonzeros
    (JAC_ROW[JAC_PTR[c]:JAC_PTR[c + 1]]: the rows of column c, inside its block)."""
    _matrix_on(KN, jac, expand, KJ, J, r0, nb, p0, npb, ident, JAC_PTR, JAC_ROW)


@numba.njit(cache=CACHE, nogil=True, error_model="numpy")
def _matrix_on(KN, jac, expand, KJ, J, r0, nb, p0, npb, ident, ptr, row):
    """`_matrix` over a given pattern (ptr, row): the circuit's, or a group's shape's on a
    block's local arrays (r0 = p0 = 0)."""
    for a in range(nb):
        for c in range(npb):
            acc = 0.0
            for k in range(ptr[p0 + c], ptr[p0 + c + 1]):
                acc += KN[r0 + a, row[k]] * jac[row[k], p0 + c]
            KJ[a, c] = acc
    for a in range(nb):
        for b in range(nb):
            acc = 1.0 if a == b else 0.0
            if ident:
                J[a, b] = acc - KJ[a, b]
                continue
            for c in range(npb):
                acc -= KJ[a, c] * expand[p0 + c, r0 + b]
            J[a, b] = acc


@numba.njit(cache=CACHE, nogil=True, error_model="numpy")
def _pnjlim(v, dv, jports, vte, vcrit, j0, j1):
    """SPICE pnjlim over junctions j0..j1: the largest factor in (0, 1] keeping every
    junction's step in bounds."""
    alpha = 1.0
    for j in range(j0, j1):
        t = vte[j]
        v_old = v[jports[j]]
        d = dv[jports[j]]
        v_new = v_old + d
        ratio = 1.0
        if v_new > vcrit[j] and abs(d) > 2.0 * t:
            if v_old > 0.0:
                arg = 1.0 + d / t
                if arg > 0.0:
                    v_lim = v_old + t * math.log(max(arg, 1e-300))
                else:
                    v_lim = vcrit[j]
            else:
                v_lim = t * math.log(max(v_new / t, 1e-300))
            ratio = (v_lim - v_old) / d
        ratio = min(max(ratio, 1e-6), 1.0)
        if ratio < alpha:
            alpha = ratio
    return alpha


@numba.njit(cache=CACHE, nogil=True, error_model="numpy")
def _effective(p, KN, cur, pe, r0, r1, p0):
    """A block's linear part: p plus the currents of the ports of the blocks before it."""
    for a in range(r0, r1):
        acc = p[a]
        for c in range(p0):
            acc += KN[a, c] * cur[c]
        pe[a] = acc


@numba.njit(cache=CACHE, nogil=True, error_model="numpy")
def _predict(G, H, s, w, p):
    """p = G x~ + H w: the linear part of the port coordinates."""
    for a in range(NR):
        acc = 0.0
        for k in range(NX):
            acc += G[a, k] * s[k]
        for k in range(NW):
            acc += H[a, k] * w[k]
        p[a] = acc


@numba.njit(cache=CACHE, nogil=True, error_model="numpy", inline="always")
def _output(D, E, F, s, w, cur):
    """y = D x~ + E w + F i."""
    y = 0.0
    for k in range(NX):
        y += D[0, k] * s[k]
    for k in range(NW):
        y += E[0, k] * w[k]
    for c in range(NP):
        y += F[0, c] * cur[c]
    return y


@numba.njit(cache=CACHE, nogil=True, error_model="numpy", inline="always")
def _update(D, E, F, Ds, Es, Fs, A, B, C, s, w, cur, xs, s_new):
    """One pass of the DK update: returns y; xs = Ds x~ + Es w + Fs i, s_new = A x~ + B w + C i."""
    y = _output(D, E, F, s, w, cur)
    for a in range(NX):
        acc = 0.0
        acc2 = 0.0
        for k in range(NX):
            acc += Ds[a, k] * s[k]
            acc2 += A[a, k] * s[k]
        for k in range(NW):
            acc += Es[a, k] * w[k]
            acc2 += B[a, k] * w[k]
        for c in range(NP):
            acc += Fs[a, c] * cur[c]
            acc2 += C[a, c] * cur[c]
        xs[a] = acc
        s_new[a] = acc2
    return y


@numba.njit(cache=CACHE, nogil=True, error_model="numpy", inline="always")
def _predict_t(GT, HT, s, w, p):
    """`_predict` from the transposes GT = G^T, HT = H^T: the same sums in the same order,
    taken a column at a time (a loop over the rows that LLVM vectorises; the row-at-a-time
    sum cannot be reordered without changing its rounding)."""
    for a in range(NR):
        p[a] = 0.0
    for k in range(NX):
        t = s[k]
        for a in range(NR):
            p[a] += GT[k, a] * t
    for k in range(NW):
        t = w[k]
        for a in range(NR):
            p[a] += HT[k, a] * t


@numba.njit(cache=CACHE, nogil=True, error_model="numpy", inline="always")
def _update_t(D, E, F, DsT, EsT, FsT, AT, BT, CT, s, w, cur, xs, s_new):
    """`_update` with the state matrices given as transposes (DsT = Ds^T, ...): the same sums
    in the same order, a column at a time (as `_predict_t`); the sample loop's."""
    y = _output(D, E, F, s, w, cur)
    for a in range(NX):
        xs[a] = 0.0
        s_new[a] = 0.0
    for k in range(NX):
        t = s[k]
        for a in range(NX):
            xs[a] += DsT[k, a] * t
            s_new[a] += AT[k, a] * t
    for k in range(NW):
        t = w[k]
        for a in range(NX):
            xs[a] += EsT[k, a] * t
            s_new[a] += BT[k, a] * t
    for c in range(NP):
        t = cur[c]
        for a in range(NX):
            xs[a] += FsT[c, a] * t
            s_new[a] += CT[c, a] * t
    return y


@numba.njit(cache=CACHE, nogil=True, error_model="numpy")
def _expand_ports(expand, q, out):
    """out = Q q: every port voltage from the coordinates."""
    for c in range(NP):
        acc = 0.0
        for a in range(NR):
            acc += expand[c, a] * q[a]
        out[c] = acc


# the ladder's Newton (rarely run) calls these rather than inlining them: compile time
_ports_c = numba.njit(cache=CACHE, nogil=True, error_model="numpy")(_ports.py_func)
_dports_c = numba.njit(cache=CACHE, nogil=True, error_model="numpy")(_dports.py_func)
_matrix_c = numba.njit(cache=CACHE, nogil=True, error_model="numpy")(_matrix.py_func)
_pnjlim_c = numba.njit(cache=CACHE, nogil=True, error_model="numpy")(_pnjlim.py_func)


@numba.njit(cache=CACHE, nogil=True, error_model="numpy")
def _group_locals(KN, expand, jports, vte, vcrit, members, r0s, p0s, j0s, nb, npb, njb):
    """A group's blocks (`members`, of one shape) on local arrays: each block's part of K
    (its rows and its own ports' columns) and of Q (its ports' rows, its coordinates'
    columns), its junctions' ports (from the block's first), n Vt and critical voltages;
    [member, ...]."""
    nm = len(members)
    kg = np.empty((nm, nb, npb))
    exg = np.empty((nm, npb, nb))
    jpl = np.empty((nm, njb), dtype=np.int64)
    vtel = np.empty((nm, njb))
    vcritl = np.empty((nm, njb))
    for m in range(nm):
        k = members[m]
        for a in range(nb):
            for c in range(npb):
                kg[m, a, c] = KN[r0s[k] + a, p0s[k] + c]
                exg[m, c, a] = expand[p0s[k] + c, r0s[k] + a]
        for t in range(njb):
            jpl[m, t] = jports[j0s[k] + t] - p0s[k]
            vtel[m, t] = vte[j0s[k] + t]
            vcritl[m, t] = vcrit[j0s[k] + t]
    return kg, exg, jpl, vtel, vcritl


@numba.njit(cache=CACHE, nogil=True, error_model="numpy")
def _block_out(ql, vl, curl, jacl, q, v, cur, jac, r0, nb, p0, npb):
    """A group's block back from its local arrays: q, port voltages, currents, Jacobian."""
    for a in range(nb):
        q[r0 + a] = ql[a]
    for c in range(npb):
        v[p0 + c] = vl[c]
        cur[p0 + c] = curl[c]
        for e in range(npb):
            jac[p0 + c, p0 + e] = jacl[c, e]


@numba.njit(cache=CACHE, nogil=True, error_model="numpy")
def _jac_in(jac, jacl, p0, npb):
    for c in range(npb):
        for e in range(npb):
            jacl[c, e] = jac[p0 + c, p0 + e]


@@SOLVERS@@
@@PNJLIM_ONE@@

@@BLOCK_NEWTONS@@

@numba.njit(cache=CACHE, nogil=True, error_model="numpy")
def _solve_all(q, p, pe, KN, expand, jports, theta, vte, vcrit, gshunt, max_iter, abstol,
               reltol, stopping, v, dv, cur, jac, f, dq, J, KJ, tmp):
    """Every block's Newton in order from q (in place); (iterations: the most of any block,
    converged). pe: each block's linear part (p and the currents of the blocks before it)."""
    total = 0
@@SOLVE_ALL@@
    return total, True


@@LINE_SEARCH@@

@numba.njit(cache=CACHE, nogil=True, error_model="numpy")
def _substeps(lev, G, H, K, A, B, C, D, E, F, Ds, Es, Fs, gx, is_ind, expand, jports, theta,
              vte, vcrit, max_iter, abstol, reltol, stopping, s, xprev, wprev, wn, q, p, pe, ss,
              ss_new, wsub, xs, ys, s_out, v, dv, cur, jac, f, dq, J, KJ, tmp):
    """The sample again in k = 2^lev trapezoidal substeps (matrices [lev]: T/k), from canonical
    state s with the previous sample's exposed states xprev, inputs interpolated linearly from
    wprev to wn. On success: ys[0], xs, s_out (the canonical state at T) and q, cur at the end.
    Returns (iterations, converged)."""
    k = 1 << lev
    # x~ at T -> at T/k: a capacitor's x~ = g v + i, an inductor's i + g v (g = T / 2L)
    for a in range(NX):
        if is_ind[a]:
            ss[a] = xprev[a] + (s[a] - xprev[a]) / k
        else:
            ss[a] = s[a] + (k - 1) * gx[a] * xprev[a]
    total = 0
    for j in range(k):
        if j == k - 1:
            for a in range(NW):
                wsub[a] = wn[a]
        else:
            frac = (j + 1) / k
            for a in range(NW):
                wsub[a] = wprev[a] + frac * (wn[a] - wprev[a])
        _predict(G[lev], H[lev], ss, wsub, p)
        it, ok = _solve_all(q, p, pe, K[lev], expand, jports, theta, vte, vcrit, 0.0, max_iter,
                            abstol, reltol, stopping, v, dv, cur, jac, f, dq, J, KJ, tmp)
        total += it
        if not ok:
            return total, False
        ys[0] = _update(D[lev], E[lev], F[lev], Ds[lev], Es[lev], Fs[lev], A[lev], B[lev],
                        C[lev], ss, wsub, cur, xs, ss_new)
        for a in range(NX):
            ss[a] = ss_new[a]
    for a in range(NX):
        if is_ind[a]:
            s_out[a] = xs[a] + k * (ss[a] - xs[a])
        else:
            s_out[a] = ss[a] - (k - 1) * gx[a] * xs[a]
    return total, True


@numba.njit(cache=CACHE, nogil=True, error_model="numpy")
def _continuation(K, expand, jports, theta, vte, vcrit, max_iter, abstol, reltol, stopping, p,
                  pe, qstart, q, p0, pl, v, dv, cur, jac, f, dq, J, KJ, tmp):
    """Gmin stepping, then source stepping, at the full step; (iterations, level or -1)."""
    total = 0
    for a in range(NR):
        q[a] = qstart[a]
    ok = True
    for g in GMIN_STEPS:
        it, ok = _solve_all(q, p, pe, K, expand, jports, theta, vte, vcrit, g, max_iter,
                            abstol, reltol, stopping, v, dv, cur, jac, f, dq, J, KJ, tmp)
        total += it
        if not ok:
            break
    if ok:
        return total, NLEV + 1
    # source stepping: p0 makes qstart an exact root; walk p0 -> p
    for a in range(NR):
        q[a] = qstart[a]
    _expand_ports(expand, q, v)
    _laws_all(v, theta, cur, jac)
    for a in range(NR):
        acc = q[a]
        for c in range(NP):
            acc -= K[a, c] * cur[c]
        p0[a] = acc
    for j in range(1, HOMOTOPY + 1):
        for a in range(NR):
            pl[a] = p[a] if j == HOMOTOPY else p0[a] + (j / HOMOTOPY) * (p[a] - p0[a])
        it, ok = _solve_all(q, pl, pe, K, expand, jports, theta, vte, vcrit, 0.0, max_iter,
                            abstol, reltol, stopping, v, dv, cur, jac, f, dq, J, KJ, tmp)
        total += it
        if not ok:
            return total, -1
    return total, NLEV + 2


@numba.njit(cache=CACHE, nogil=True, error_model="numpy")
def run(G, H, K, A, B, C, D, E, F, Ds, Es, Fs, gx, is_ind, expand, jports, theta, w, wprev0,
        s0, x0, q0, q00, p00, jac00, use_q0, use_p0, first, predictor, max_iter, abstol,
        reltol, stopping, y, x, s_final, q_out, p_last, jac_last, iters, level, stop, x_stop,
        w_stop, q_stop):
    """The sample loop, items b from sample first[b] (< 0: skip the item). Where Newton fails
    at a sample the item stops there: stop[b] = n, with what `ladder` needs to solve the
    sample (s_final[b] the canonical state before it, x_stop, w_stop the previous sample's
    exposed states and sources, q_stop the previous solution); the caller then resumes the
    item after it. Without a failure stop[b] stays -1."""
    theta = _extended(theta)
    batch, length = w.shape[0], w.shape[1]
    keep_q = q_out.shape[1] == length       # else two rows, sample n in row n & 1
    vte = np.empty(NJ)
    i_s = np.empty(NJ)
    vcrit = np.empty(NJ)
    _junctions(theta, vte, i_s)
    for j in range(NJ):
        vcrit[j] = vte[j] * math.log(vte[j] / (math.sqrt(2.0) * i_s[j]))
    v = np.zeros(NP)
    dv = np.zeros(NP)
    cur = np.zeros(NP)
    jac = np.zeros((NP, NP))
    f = np.empty(NB_MAX)
    dq = np.empty(NB_MAX)
    J = np.empty((NB_MAX, NB_MAX))
    KJ = np.empty((NB_MAX, NP))
    tmp = np.empty(NP)
    wn = np.empty(NW)
    gshunt = 0.0
    s = np.empty(NX)
    s_new = np.empty(NX)
    xprev = np.empty(NX)
    xs = np.empty(NX)
    wprev = np.empty(NW)
    q = np.empty(NR)
    q1 = np.empty(NR)
    q2 = np.empty(NR)
    pprev = np.empty(NR)
    p = np.empty(NR)
    pe = np.empty(NR)
    G0, H0, KN, A0, B0, C0 = G[0], H[0], K[0], A[0], B[0], C[0]
    D0, E0, F0, Ds0, Es0, Fs0 = D[0], E[0], F[0], Ds[0], Es[0], Fs[0]
    # with many states, the sample loop's products a column at a time (`_update_t`,
    # `_predict_t`: COLUMNS, see `COLUMN_STATES`)
    GT, HT = np.ascontiguousarray(G0.T), np.ascontiguousarray(H0.T)
    AT, BT, CT = np.ascontiguousarray(A0.T), np.ascontiguousarray(B0.T), np.ascontiguousarray(C0.T)
    DsT, EsT = np.ascontiguousarray(Ds0.T), np.ascontiguousarray(Es0.T)
    FsT = np.ascontiguousarray(Fs0.T)
@@PROLOGUE@@
    for b in range(batch):
        if first[b] < 0:
            continue
        for k in range(NX):
            s[k] = s0[b, k]
            xprev[k] = x0[b, k]
        for k in range(NW):
            wprev[k] = wprev0[b, k]
        for a in range(NR):
            q1[a] = q0[b, a]
            q2[a] = q00[b, a]
            pprev[a] = p00[b, a]
        have_p = use_p0[b]
@@ITEM_START@@
        if use_p0[b]:
            # the Jacobian where the previous run's last Newton left it, for the tangent step
            for c in range(NP):
                for e in range(NP):
                    jac[c, e] = jac00[b, c, e]
        stopped = False
        for n in range(first[b], length):
            for k in range(NW):
                wn[k] = w[b, n, k]
            if NR > 0:
                if COLUMNS:
                    _predict_t(GT, HT, s, wn, p)
                else:
                    _predict(G0, H0, s, wn, p)
                if n == first[b] and not use_q0[b]:
                    # no previous solution: start from the linear prediction p
                    for a in range(NR):
                        q1[a] = p[a]
                        q2[a] = p[a]
                for a in range(NR):
                    q[a] = q1[a] + (q1[a] - q2[a]) if predictor == 1 else q1[a]
                total = 0
                ok = True
@@MAIN_BLOCKS@@
                iters[b, n] = total
                if not ok:
                    # the ladder (`ladder`, compiled on first need) solves this sample
                    stop[b] = n
                    for a in range(NX):
                        s_final[b, a] = s[a]
                        x_stop[b, a] = xprev[a]
                    for k in range(NW):
                        w_stop[b, k] = wprev[k]
                    for a in range(NR):
                        q_stop[b, a] = q1[a]
                    stopped = True
                    break
                qn = n if keep_q else n & 1
                for a in range(NR):
                    q_out[b, qn, ORDER_R[a]] = q[a]
                    q2[a] = q1[a]
                    q1[a] = q[a]
                    pprev[a] = pe[a]
                have_p = True
            if COLUMNS:
                y[b, n] = _update_t(D0, E0, F0, DsT, EsT, FsT, AT, BT, CT, s, wn, cur, xs,
                                    s_new)
            else:
                y[b, n] = _update(D0, E0, F0, Ds0, Es0, Fs0, A0, B0, C0, s, wn, cur, xs, s_new)
            for a in range(NX):
                x[b, n, a] = xs[a]
                s[a] = s_new[a]
                xprev[a] = xs[a]
            for k in range(NW):
                wprev[k] = wn[k]
        if stopped:
            continue
        for k in range(NX):
            s_final[b, k] = s[k]
        for a in range(NR):
            p_last[b, a] = pprev[a]
        for c in range(NP):
            for e in range(NP):
                jac_last[b, c, e] = jac[c, e]


@numba.njit(cache=CACHE, nogil=True, error_model="numpy")
def ladder(G, H, K, A, B, C, D, E, F, Ds, Es, Fs, gx, is_ind, expand, jports, theta, s, xprev,
           wprev, wn, q1, levels, max_iter, abstol, reltol, stopping, y, xs, s_new, q,
           pe, jac):
    """One sample where Newton failed, solved as SPICE would cut its time step: Newton with
    the line search at the full step, substeps 2, 4, ... 2^levels, then gmin and source
    stepping, each from the previous solution q1.
    From the canonical state s, the previous exposed states xprev and sources wprev, this
    sample's sources wn. Out: y[0], xs, s_new, q (failed: q1 kept), pe (each block's linear
    part at the sample, for the next tangent), jac (the laws' Jacobian last evaluated).
    Returns (iterations, level, failed). Only compiled where a sample needs it."""
    theta = _extended(theta)
    vte = np.empty(NJ)
    i_s = np.empty(NJ)
    vcrit = np.empty(NJ)
    _junctions(theta, vte, i_s)
    for j in range(NJ):
        vcrit[j] = vte[j] * math.log(vte[j] / (math.sqrt(2.0) * i_s[j]))
    v = np.zeros(NP)
    dv = np.zeros(NP)
    cur = np.zeros(NP)
    f = np.empty(NB_MAX)
    dq = np.empty(NB_MAX)
    J = np.empty((NB_MAX, NB_MAX))
    KJ = np.empty((NB_MAX, NP))
    tmp = np.empty(NP)
    ss = np.empty(NX)
    ss_new = np.empty(NX)
    ys = np.empty(1)
    wsub = np.empty(NW)
    p = np.empty(NR)
    p0 = np.empty(NR)
    pl = np.empty(NR)
    f0 = np.empty(NB_MAX)
    KN = K[0]
    _predict(G[0], H[0], s, wn, p)
    # rung 1: Newton with the line search at the full step, from the previous solution
    for a in range(NR):
        q[a] = q1[a]
    total, ok = _solve_all_ls(q, p, pe, KN, expand, jports, theta, vte, vcrit, max_iter,
                              abstol, reltol, v, dv, cur, jac, f, dq, J, KJ, tmp, f0)
    lev = NLEV + 3 if ok else 0
    for lv in range(1, levels + 1):
        if ok:
            break
        for a in range(NR):
            q[a] = q1[a]
        it, ok = _substeps(lv, G, H, K, A, B, C, D, E, F, Ds, Es, Fs, gx, is_ind, expand,
                           jports, theta, vte, vcrit, max_iter, abstol, reltol, stopping, s,
                           xprev, wprev, wn, q, pl, pe, ss, ss_new, wsub, xs, ys, s_new, v, dv,
                           cur, jac, f, dq, J, KJ, tmp)
        total += it
        if ok:
            lev = lv
            break
    if not ok:
        it, lv = _continuation(KN, expand, jports, theta, vte, vcrit, max_iter, abstol, reltol,
                               stopping, p, pe, q1, q, p0, pl, v, dv, cur, jac, f, dq, J, KJ,
                               tmp)
        total += it
        if lv > 0:
            ok = True
            lev = lv
    if not ok:
        # Keep the previous sample's solution (finite, as the torch path does); the sample
        # is reported as failed, and the caller raises or warns.
        for a in range(NR):
            q[a] = q1[a]
        _expand_ports(expand, q, v)
        _laws_all(v, theta, cur, jac)
    # the tangent's next start: each block's linear part at this sample
    _predict(G[0], H[0], s, wn, p)
@@EFFECTIVE_ALL@@
    if 1 <= lev <= NLEV:
        y[0] = ys[0]
    else:
        y[0] = _update(D[0], E[0], F[0], Ds[0], Es[0], Fs[0], A[0], B[0], C[0], s, wn, cur, xs,
                       s_new)
    return total, lev, not ok
'''

# Pieces of Newton on one block that `_NEWTON` and the ladder's `_NEWTON_LS` share, written
# once (hooks: @NORM@ the line search's |f|^2, @STALL_NOTE@ a comment).
# The residual f = -(q - pe - K i) and whether it is already at its round-off floor:
_RESIDUAL = """settled = True
for a in range(@R0@, @R1@):
    acc = q[a] - pe[a]
    mag = abs(q[a]) + abs(pe[a])
    for c in range(@P0@, @P1@):
        t = KN[a, c] * cur[c]
        acc -= t
        mag += abs(t)
    f[a - @R0@] = -acc
@NORM@    if not (abs(acc) <= ROUNDOFF * mag and mag < math.inf):
        settled = False
"""
# The step alpha dq taken, and whether it is below the tolerance (or has stalled):
_STEP = """small = alpha == 1.0
big = 0.0
for a in range(@NB@):
    step = alpha * dq[a]
    q[@R0@ + a] += step
    if abs(step) > abstol + reltol * abs(q[@R0@ + a]):
        small = False
    if abs(step) > big:
        big = abs(step)
if alpha == 1.0 and big <= STALL and big >= 0.5 * last:
    small = True@STALL_NOTE@
last = big
"""
# The step's port voltages, SPICE's limiting factor alpha, and whether alpha dq is finite:
_LIMIT = """_dports(expand, dq, dv, @P0@, @P1@, @R0@, @NB@, @ID@)
alpha = _pnjlim(v, dv, jports, vte, vcrit, @J0@, @J1@)
@FLAG@ = True
for a in range(@NB@):
    if not math.isfinite(alpha * dq[a]):
        @FLAG@ = False
"""
# The currents at the accepted q to first order from the last evaluation:
_FIRST_ORDER = """for c in range(@P0@, @P1@):
    acc = cur[c]
    for e in range(@P0@, @P1@):
        acc += jac[c, e] * dv[e]
    tmp[c] = acc
for c in range(@P0@, @P1@):
    cur[c] = tmp[c]
"""


def _piece(snippet: str, indent: int, **hooks: str) -> str:
    """A shared piece at this indentation, its hooks filled."""
    for key, value in hooks.items():
        snippet = snippet.replace(f"@{key}@", value)
    return textwrap.indent(snippet, " " * indent)


# Newton on one block (q - pe - K i(Q q) = 0 over its coordinates R0..R1 and ports P0..P1),
# written out in `_newton_k` (the ladder calls it) and inline in the sample loop, where a call
# would cost as much as an iteration. Local arrays f, dq, J, KJ are indexed from 0.
_NEWTON = '''it = 0
conv = False
fresh = False
last = math.inf
for _ in range(max_iter):
    _ports(expand, q, v, @P0@, @P1@, @R0@, @R1@, @ID@)
    _laws_@K@(v, theta, cur, jac)
    if gshunt != 0.0:
        for c in range(@P0@, @P1@):
            if not IS_CHARGE[c]:        # a charge port's law is q(v): no shunt (newton.py)
                cur[c] += gshunt * v[c]
                jac[c, c] += gshunt
    it += 1
    # f = q - pe - K i, and whether it is already at its round-off floor
''' + _piece(_RESIDUAL, 4, NORM="") + '''    if settled:
        conv = True
        break
    _matrix(KN, jac, expand, KJ, J, @R0@, @NB@, @P0@, @NPB@, @ID@)
    _solve_@NB@(J, f, dq)
''' + _piece(_LIMIT, 4, FLAG="finite") + '''    if not finite:
        break
''' + _piece(_STEP, 4, STALL_NOTE="       # steps no longer shrink, below STALL volts: round-off, "
                                 "not Newton") + '''@AHEAD@    if small:
        # The currents at the converged q, to first order from the last evaluation: the last
        # step is below the Newton tolerance (~1e-10 V), so the remainder is ~i''/2 * 1e-20,
        # far below round-off in y, and an evaluation is saved.
''' + _piece(_FIRST_ORDER, 8) + '''        conv = True
        fresh = True
        break
'''

# The "predicted" stopping rule (`newton.py`) for a block whose ports are all junctions (port
# P0 + k is junction J0 + k): after a full step whose port steps are all within AHEAD_REACH
# vte, the next step J^-1 K r is predicted from the
# currents' second-order remainder r_c = sum_e jac[c, e] dv_e^2 / (2 vte_e), with J's
# factors kept by `_solve_n` (pivots left in f); below the tolerance (times AHEAD_SAFETY) the
# block is accepted with q and the currents taken to that point, without evaluating the laws.
_AHEAD = '''if stopping == 1 and alpha == 1.0:
    near = True
    for e in range(@P0@, @P1@):
        if not abs(dv[e]) <= AHEAD_REACH * vte[@J0@ + e - @P0@]:
            near = False
    if near:
        for c in range(@P0@, @P1@):
            tmp[c] = 0.0
        for e in range(@P0@, @P1@):
            d = dv[e]
            d2 = d * d * (0.5 / vte[@J0@ + e - @P0@])
            for k in range(JAC_PTR[e], JAC_PTR[e + 1]):
                tmp[JAC_ROW[k]] += jac[JAC_ROW[k], e] * d2
        for a in range(@NB@):
            acc = 0.0
            for c in range(@P0@, @P1@):
                acc += KN[@R0@ + a, c] * tmp[c]
            dq[a] = acc
        _resolve_@NB@(J, f, dq)
        for a in range(@NB@):
            if not AHEAD_SAFETY * abs(dq[a]) <= abstol + reltol * abs(q[@R0@ + a]):
                near = False
    if near:
        for a in range(@NB@):
            q[@R0@ + a] += dq[a]
        # the ports' step to the accepted q, and the currents there to second order
        for c in range(@P0@, @P1@):
            if @ID@:
                dv[c] += dq[c - @P0@]
            else:
                acc = 0.0
                for a in range(@NB@):
                    acc += expand[c, @R0@ + a] * dq[a]
                dv[c] += acc
        for c in range(@P0@, @P1@):
            acc = cur[c] + tmp[c]
            for e in range(@P0@, @P1@):
                acc += jac[c, e] * dv[e]
            cur[c] = acc
        conv = True
        fresh = True
        break
'''

# The tangent's step dq, limited as a Newton step and taken from the last solution q1 (both
# block sections; a large block's calls the `_c` helpers):
_TANGENT_STEP = '''# limited as a Newton step: a junction never starts far past its knee
_ports(expand, q1, v, @P0@, @P1@, @R0@, @R1@, @ID@)
''' + _piece(_LIMIT, 0, FLAG="good") + '''if good:
    for a in range(@NB@):
        q[@R0@ + a] = q1[@R0@ + a] + alpha * dq[a]
'''

# One block's part of the sample loop: its linear part, Newton's start, Newton.
_MAIN_BLOCK = '''if ok:
    _effective(p, KN, cur, pe, @R0@, @R1@, @P0@)
    if predictor == 2 and have_p:
        # tangent: J dq = pe - pe_prev with J = I - K (di/dv) Q at the last evaluation
        _matrix(KN, jac, expand, KJ, J, @R0@, @NB@, @P0@, @NPB@, @ID@)
        for a in range(@NB@):
            f[a] = pe[@R0@ + a] - pprev[@R0@ + a]
        _solve_@NB@(J, f, dq)
''' + _piece(_TANGENT_STEP, 8) + '''@NEWTON@
    if it > total:
        total = it
    ok = conv
'''

# A large block (its Newton called, `_newton_k`) keeps its own J_k and f_k: Newton leaves in
# them the factors of J at its last evaluation and their pivot rows wherever it stopped after
# a step without evaluating again (`fresh`: the small-step and the predicted stops), and the
# tangent's J is that same matrix: it is solved with those factors instead of being built and
# factored again (the same arithmetic: the same samples to the last bit).
_MAIN_BLOCK_CALLED = '''if ok:
    _effective(p, KN, cur, pe, @R0@, @R1@, @P0@)
    if predictor == 2 and have_p:
        # tangent: J dq = pe - pe_prev with J = I - K (di/dv) Q at the last evaluation
        for a in range(@NB@):
            dq[a] = pe[@R0@ + a] - pprev[@R0@ + a]
        if fresh_@K@:
            _resolve_@NB@(J_@K@, f_@K@, dq)
        else:
            _matrix_c(KN, jac, expand, KJ, J_@K@, @R0@, @NB@, @P0@, @NPB@, @ID@)
            for a in range(@NB@):
                f_@K@[a] = dq[a]
            _solve_@NB@(J_@K@, f_@K@, dq)
''' + _piece(_TANGENT_STEP, 8) + '''    it, conv, fresh_@K@ = _newton_@K@(@CALLED_ARGS@)
    if it > total:
        total = it
    ok = conv
'''

# `_solve_n`: out = J^-1 b for an n x n block by Gaussian elimination with partial pivoting;
# J is left holding its LU factors (the multipliers below the diagonal) and b the pivot rows,
# for `_resolve_n`; n = 1 is a division (J kept).
_SOLVE_ONE = '''
@numba.njit(cache=CACHE, nogil=True, error_model="numpy")
def _solve_1(J, b, out):
    out[0] = b[0] / J[0, 0]
'''

_SOLVE = '''
@numba.njit(cache=CACHE, nogil=True, error_model="numpy"@INLINE@)
def _solve_@N@(J, b, out):
    for c in range(@N@):
        piv = c
        big = abs(J[c, c])
        for k in range(c + 1, @N@):
            if abs(J[k, c]) > big:
                big = abs(J[k, c])
                piv = k
        out[c] = piv
        if piv != c:
            for j in range(@N@):
                J[c, j], J[piv, j] = J[piv, j], J[c, j]
        for k in range(c + 1, @N@):
            m = J[k, c] / J[c, c]
            J[k, c] = m
            if m != 0.0:
                for j in range(c + 1, @N@):
                    J[k, j] -= m * J[c, j]
    # the pivot rows to b, the right-hand side to out, solved there by the factors
    for c in range(@N@):
        b[c], out[c] = out[c], b[c]
    _resolve_@N@(J, b, out)
'''

# `_resolve_n`: b = J^-1 b in place for a second right-hand side, from the factors `_solve_n`
# leaves: U above the diagonal of J, the multipliers below it (rows as finally permuted) and
# the pivot rows in piv (the b it was given, as floats).
_RESOLVE_ONE = '''
@numba.njit(cache=CACHE, nogil=True, error_model="numpy")
def _resolve_1(J, piv, b):
    b[0] = b[0] / J[0, 0]
'''

_RESOLVE = '''
@numba.njit(cache=CACHE, nogil=True, error_model="numpy"@INLINE@)
def _resolve_@N@(J, piv, b):
    for c in range(@N@):
        k = int(piv[c])
        if k != c:
            b[c], b[k] = b[k], b[c]
    for c in range(@N@):
        for k in range(c + 1, @N@):
            b[k] -= J[k, c] * b[c]
    for c in range(@N@ - 1, -1, -1):
        acc = b[c]
        for j in range(c + 1, @N@):
            acc -= J[c, j] * b[j]
        b[c] = acc / J[c, c]
'''


def _print_function(name: str, args: str, outputs: list[tuple[str, sp.Expr]],
                    inputs: list[tuple[str, sp.Symbol]], returns: bool = False) -> str:
    """A numba function assigning each output `target = expr`, with common subexpressions shared
    (returns: the targets are local names, returned as a tuple).

    inputs: (array element, symbol) pairs read at the top, e.g. ("v[0]", v_d1).
    """
    safe = {sym: sp.Symbol(f"_a{k}") for k, (_, sym) in enumerate(inputs)}
    exprs = [sp.sympify(e).xreplace(safe) for _, e in outputs]
    common, reduced = sp.cse(exprs, symbols=sp.numbered_symbols("_c"))
    used = set().union(*(e.free_symbols for e in exprs)) if exprs else set()
    lines = [f"{safe[sym]} = {src}" for src, sym in inputs if safe[sym] in used]
    lines += assignments(common, reduced, [target for target, _ in outputs])
    if returns:
        lines.append(f"return ({', '.join(target for target, _ in outputs)},)")
    body = textwrap.indent("\n".join(lines) or "pass", "    ")
    # Numba's own inlining (inline="always") re-types the callee at every call site, which
    # doubled the compile time (Phase 90 63 s -> 28 s without it) for no measured gain: the
    # laws and the loop helpers are left to LLVM, which inlines small functions itself; only
    # a small block's elimination keeps it (the Tube Screamer ran 17 % slower without).
    # A block's laws written for the scalar Newton (`returns`) have one call site in the
    # sample loop; numba inlines them there, LLVM did not (their size): the theta-only terms
    # are then hoisted out of Newton's loop (Tube Screamer ~300 -> ~245 ns a sample).
    inline = ", inline='always'" if returns else ""
    return (f"@numba.njit(cache=CACHE, nogil=True, error_model='numpy'{inline})\n"
            f"def {name}({args}):\n{body}\n")


#: A block of at least this many ports has its laws as one loop per kind of device
#: (`kind_laws`): their compile no longer grows with its devices (sixteen direct-coupled
#: stages, 32 ports, `python bench/scale.py --startup tests/nodal/fixtures/
#: direct_coupled_chain.cir`: cold start 29.0 -> 19.9 s), at 7-10 % a sample (the kernel 0.60 ->
#: 0.56x real time there; the laws written out per port overlap every device's exponentials in
#: one function: a 12-port Big Muff board ran 8.9-9.0 -> 9.7-10.4 us a sample as loops, for
#: 0.6-0.9 s of compile saved, in a scratch A/B).
KIND_LOOP_PORTS = 24

#: Substep levels compiled into every kernel: k = 2, 4, ... 2^MAX_LEVELS substeps.
MAX_LEVELS = 6

#: A coupling K[a, c] at or below this fraction of the largest entry of its row or column is
#: round-off (an ideal buffer's "no path back" comes out ~1e-20 of the forward entries).
COUPLING_ROUNDOFF = 1e-12


def _frozen(indices: list[int]) -> np.ndarray:
    out = np.array(indices, dtype=np.int64)
    out.setflags(write=False)           # kept by the layout: shared by every caller
    return out


@dataclass(frozen=True)
class Layout:
    """How the port equations q - p - K i(Q q) = 0 split into blocks solved one after the
    other: per block, in solve order, its coordinates and its ports (indices into
    `Equations.reduced` and `Equations.ports`). Each block needs only itself and the blocks
    before it. The kernel works in the frame where each block's coordinates and ports are
    contiguous (`order_r`, `order_p`: the original index at each kernel position)."""

    blocks: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]

    # computed once per layout (a stream calls `run` per block of samples)
    @functools.cached_property
    def order_r(self) -> np.ndarray:
        return _frozen([a for coords, _ in self.blocks for a in coords])

    @functools.cached_property
    def order_p(self) -> np.ndarray:
        return _frozen([c for _, ports in self.blocks for c in ports])

    @functools.cached_property
    def identity(self) -> bool:
        r, p = self.order_r, self.order_p
        return bool(np.array_equal(r, np.arange(len(r))) and np.array_equal(p, np.arange(len(p))))

    @property
    def n_blocks(self) -> int:
        return len(self.blocks)

    def coordinates(self) -> list[list[int]]:
        return [list(coords) for coords, _ in self.blocks]


def one_block(eq: Equations) -> Layout:
    """Everything solved together (no split)."""
    r, n = len(eq.reduced), len(eq.ports)
    return Layout(((tuple(range(r)), tuple(range(n))),) if r or n else ())


def couplings(K: np.ndarray) -> np.ndarray:
    """[r, ports] bool: where K (any level of a stack [levels, r, ports]) is not round-off."""
    K = np.abs(np.asarray(K, dtype=float))
    K = K.reshape((-1, *K.shape[-2:])) if K.size else np.zeros((1, *K.shape[-2:]))
    out = np.zeros(K.shape[1:], dtype=bool)
    for level in K:
        scale = np.maximum(level.max(1, initial=0.0)[:, None], level.max(0, initial=0.0)[None])
        out |= level > COUPLING_ROUNDOFF * scale
    return out


def layout(eq: Equations, K: np.ndarray) -> Layout:
    """The blocks of q - p - K i(Q q) = 0 (as ACME.jl splits its nonlinear system), from the
    structure: coordinate a needs port c's current where K[a, c] is not round-off (K [r, ports]
    or a stack [levels, r, ports]); port c needs the coordinates of its row of Q
    (`eq.expand`) and the ports its law reads (`eq.jacobian`'s structural nonzeros). A block
    is a strongly connected set of these, ordered so that each needs only the ones before
    it: two pedals in one file are two independent blocks; stages that do not load each
    other (K block lower triangular: buffered stages) one block per stage. A set of ports
    with no coordinate of its own (or coordinates without ports) joins the next block."""
    import graphlib

    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    r, n = len(eq.reduced), len(eq.ports)
    if r == 0 and n == 0:
        return Layout(())
    needs: list[tuple[int, int]] = []            # (node, a node it needs)
    a_idx, c_idx = np.nonzero(couplings(K))
    needs += [(int(a), r + int(c)) for a, c in zip(a_idx, c_idx, strict=True)]
    c_idx, a_idx = np.nonzero(np.asarray(eq.expand))
    needs += [(r + int(c), int(a)) for c, a in zip(c_idx, a_idx, strict=True)]
    needs += [(r + c, r + e) for c in range(n) for e in range(n)
              if c != e and eq.jacobian[c, e] != 0]
    rows = [x for x, _ in needs]
    cols = [y for _, y in needs]
    graph = coo_matrix((np.ones(len(needs)), (rows, cols)), shape=(r + n, r + n)).tocsr()
    count, label = connected_components(graph, directed=True, connection="strong")
    order = graphlib.TopologicalSorter({b: set() for b in range(count)})
    for x, y in needs:
        if label[x] != label[y]:
            order.add(int(label[x]), int(label[y]))
    # ties broken by the lowest member, so an unsplit order stays the netlist's
    first = {int(b): int(np.flatnonzero(label == b)[0]) for b in range(count)}
    order.prepare()
    sequence = []
    while order.is_active():
        ready = sorted(order.get_ready(), key=first.get)
        sequence += ready
        order.done(*ready)
    groups: list[tuple[list[int], list[int]]] = []
    pending: tuple[list[int], list[int]] = ([], [])
    for b in sequence:
        members = np.flatnonzero(label == b)
        pending[0].extend(int(m) for m in members if m < r)
        pending[1].extend(int(m) - r for m in members if m >= r)
        if pending[0] and pending[1]:
            groups.append(pending)
            pending = ([], [])
    if pending[0] or pending[1]:
        if groups:
            groups[-1][0].extend(pending[0])
            groups[-1][1].extend(pending[1])
        else:
            groups.append(pending)
    # large blocks (those that can share compiled laws: `_groups`) in a canonical order;
    # smaller ones keep the netlist's (their arithmetic, and samples, as before)
    kinds = _port_kinds(eq) if any(len(c) > INLINE_BLOCK for c, _ in groups) else []
    blocks = [_canonical(eq, kinds, c, p) if len(c) > INLINE_BLOCK
              else (tuple(sorted(c)), tuple(sorted(p))) for c, p in groups]
    return Layout(tuple(blocks))


def _port_kinds(eq: Equations) -> list[tuple]:
    """A key per port that names what it is without naming its element, model or nodes: a
    junction or not, a charge or not, the number of ports its law reads, and the operations
    of its law (`sympy.count_ops`, which counts the same for every 2N5088 of a board whatever
    its model card is called)."""
    charge = set(int(c) for c in eq.charge_ports)
    out = []
    for c, port in enumerate(eq.ports):
        reads = sum(1 for e in range(len(eq.ports)) if e != c and eq.jacobian[c, e] != 0)
        ops = str(sp.count_ops(eq.currents[c], visual=True))
        out.append((port.junction is None, c in charge, reads, ops))
    return out


def _canonical(eq: Equations, kinds: list[tuple], coords: list[int], ports: list[int]):
    """A large block's ports ordered by kind (`_port_kinds`), the netlist's order within a kind,
    and its coordinates in the order its ports first read them. Two boards of the same parts
    listed in different orders (a KiCad export numbers each board's parts its own way) then
    come out in the same order: their Jacobian patterns are the same and their large blocks
    share compiled laws and Newton (`_groups`). A device's ports are made together, so its
    ports keep their pairing within each kind."""
    ports = sorted(ports, key=lambda c: (kinds[c], c))
    expand = np.asarray(eq.expand)
    first = {}
    for pos, c in enumerate(ports):
        for a in coords:
            if expand[c, a] != 0:
                first.setdefault(a, pos)
    coords = sorted(coords, key=lambda a: (first.get(a, len(ports)), a))
    return tuple(coords), tuple(ports)


def _fill(template: str, values: dict) -> str:
    for key, value in values.items():
        template = template.replace(f"@{key}@", str(value))
    return template


def _solvers(sizes: set[int]) -> str:
    out = []
    for size in sorted(sizes):
        if size == 1:
            out += [_SOLVE_ONE, _RESOLVE_ONE]
        else:
            inline = ', inline="always"' if size <= _INLINE_SOLVE else ""
            out += [_fill(_SOLVE, {"N": size, "INLINE": inline}),
                    _fill(_RESOLVE, {"N": size, "INLINE": inline})]
    return "\n".join(out)


#: Circuits of at least this many states run the sample loop's state update and linear
#: prediction a column at a time (`_update_t`, `_predict_t`: vectorised, the same sums in the
#: same order). Below it the row-at-a-time sums are faster: the Tube Screamer (4 states)
#: lost ~6 % a sample with columns; the Ram's Head Big Muff export (61 states) gained ~13 %
#: (scratch A/Bs, same samples to the bit).
COLUMN_STATES = 16

#: Blocks up to this many coordinates have their Newton written out in the sample loop.
INLINE_BLOCK = 8

#: Blocks up to this size have their elimination inlined (and unrolled by LLVM).
_INLINE_SOLVE = 4

_NEWTON_ARGS = ("q, pe, KN, expand, jports, theta, vte, vcrit, gshunt, max_iter, abstol, reltol, "
                "stopping, v, dv, cur, jac, f, dq, J, KJ, tmp")


def _matrix_code(k: int, rg: dict) -> str:
    """`_matrix_k`: `_matrix` for block k whose Q is the identity, written out over its
    Jacobian's structural nonzeros (rg["COLS"][y]: the ports whose currents depend on port y,
    in `JAC_ROW`'s order), so that no index is read from an array; the same sums in the same
    order, so the same J to the last bit."""
    lines = ['@numba.njit(cache=CACHE, nogil=True, error_model="numpy")',
             f"def _matrix_{k}(KN, jac, J):"]
    for y, rows in enumerate(rg["COLS"]):
        lines += [f"    g{c}_{y} = jac[{c}, {rg['P0'] + y}]" for c in rows]
    lines.append(f"    for a in range({rg['NB']}):")
    lines.append(f"        r = {rg['R0']} + a")
    for y, rows in enumerate(rg["COLS"]):
        lines.append(f"        J[a, {y}] = -(" + " + ".join(f"KN[r, {c}] * g{c}_{y}"
                                                       for c in rows) + ")")
    lines.append("        J[a, a] += 1.0")
    return "\n".join(lines) + "\n"


# A group: two or more consecutive large blocks of one shape (`_groups`) share one compiled
# Newton, `_newton_sS`, that works on a block's own local arrays (its coordinates from 0, its
# part of K, its junctions), and one section of the sample loop that runs it for each block in
# turn, copying the block's q and linear part in and its q, voltages, currents and Jacobian
# back: the compile no longer grows with every copy of a board (each block's own Newton and
# section were ~3.5 s of a Big Muff board's cold start), the same arithmetic in the same order
# (the same samples to the last bit). Each block keeps its own J and f (the tangent reuses
# Newton's factors, as a large block's does).
_GROUP_MAIN = """if ok:
    for m in range(@NM@):
        k = GRP_@G@[m]
        r0 = BLOCK_R0[k]
        p0 = BLOCK_P0[k]
        j0 = BLOCK_J0[k]
        _effective(p, KN, cur, pe, r0, r0 + @NB@, p0)
        if predictor == 2 and have_p:
            # tangent, as a large block's
            for a in range(@NB@):
                dq[a] = pe[r0 + a] - pprev[r0 + a]
            if fresh_@G@[m]:
                _resolve_@NB@(JG_@G@[m], FG_@G@[m], dq)
            else:
                _jac_in(jac, jl_@G@, p0, @NPB@)
                @TANGENT_MATRIX@
                for a in range(@NB@):
                    FG_@G@[m, a] = dq[a]
                _solve_@NB@(JG_@G@[m], FG_@G@[m], dq)
""" + _piece(_fill(_TANGENT_STEP, {"P0": "p0", "P1": "p0 + @NPB@", "R0": "r0", "R1": "r0 + @NB@",
                                    "J0": "j0", "J1": "j0 + @NJB@"}).replace(
    "_ports(", "_ports_c(").replace("_dports(", "_dports_c(").replace("_pnjlim(", "_pnjlim_c("),
    12) + """        for a in range(@NB@):
            ql_@G@[a] = q[r0 + a]
            pel_@G@[a] = pe[r0 + a]
        it, conv, fr = _newton_s@S@(@GROUP_ARGS@)
        fresh_@G@[m] = fr
        _block_out(ql_@G@, vl_@G@, curl_@G@, jl_@G@, q, v, cur, jac, r0, @NB@, p0, @NPB@)
        if it > total:
            total = it
        ok = conv
        if not ok:
            break
"""

_GROUP_LOCALS = """KG_@G@, EXG_@G@, JPL_@G@, VTEL_@G@, VCRITL_@G@ = _group_locals(
    KN, expand, jports, vte, vcrit, GRP_@G@, BLOCK_R0, BLOCK_P0, BLOCK_J0, @NB@, @NPB@, @NJB@)
ql_@G@ = np.empty(@NB@)
pel_@G@ = np.empty(@NB@)
vl_@G@ = np.zeros(@NPB@)
dvl_@G@ = np.zeros(@NPB@)
curl_@G@ = np.zeros(@NPB@)
tmpl_@G@ = np.empty(@NPB@)
jl_@G@ = np.zeros((@NPB@, @NPB@))
KJl_@G@ = np.empty((@NB@, @NPB@))
"""

_GROUP_PROLOGUE = _GROUP_LOCALS + """JG_@G@ = np.empty((@NM@, @NB@, @NB@))
FG_@G@ = np.empty((@NM@, @NB@))
fresh_@G@ = np.zeros(@NM@, dtype=np.bool_)
"""

_GROUP_SOLVE_ALL = _GROUP_LOCALS + """for m in range(@NM@):
    k = GRP_@G@[m]
    r0 = BLOCK_R0[k]
    p0 = BLOCK_P0[k]
    _effective(p, KN, cur, pe, r0, r0 + @NB@, p0)
    for a in range(@NB@):
        ql_@G@[a] = q[r0 + a]
        pel_@G@[a] = pe[r0 + a]
    it, ok, _ = _newton_s@S@(@GROUP_ARGS@)
    _block_out(ql_@G@, vl_@G@, curl_@G@, jl_@G@, q, v, cur, jac, r0, @NB@, p0, @NPB@)
    if it > total:
        total = it
    if not ok:
        return total, False
"""

_GROUP_ARGS = ("ql_@G@, pel_@G@, KG_@G@[m], EXG_@G@[m], JPL_@G@[m], theta, VTEL_@G@[m], "
               "VCRITL_@G@[m], gshunt, max_iter, abstol, reltol, stopping, vl_@G@, dvl_@G@, "
               "curl_@G@, jl_@G@, @F@, dq, @J@, KJl_@G@, tmpl_@G@, TXG_@G@[m]")


def _groups(ranges: list[dict], charge: list[bool]) -> list[list[int]]:
    """Runs of two or more consecutive blocks that share their laws (`SHAPE`) and can run on
    local arrays: ports reading only their own block's coordinates (`LOCAL_Q`), laws reading
    no other block's port, the same charge ports."""
    def key(rg: dict):
        if rg.get("SHAPE") is None or not rg["LOCAL_Q"] or rg.get("READS_OUTSIDE", True):
            return None
        return rg["SHAPE"], tuple(charge[rg["P0"]:rg["P1"]]), port_map.local_rows(rg)

    runs: list[list[int]] = []
    for k, rg in enumerate(ranges):
        here = key(rg)
        if here is not None and runs and key(ranges[runs[-1][-1]]) == here \
                and runs[-1][-1] == k - 1:
            runs[-1].append(k)
        elif here is not None:
            runs.append([k])
    return [members for members in runs if len(members) > 1]


def _tangent_matrix(rg: dict, kn: str, jac: str, expand: str, kj: str, J: str) -> str:
    """The call that builds J for a group's block on local arrays: written out
    (`_matrix_code`) where Q is the identity, else `_matrix_on` over the shape's pattern."""
    shape = rg["SHAPE"]
    if rg["ID"]:
        return f"_matrix_s{shape}({kn}, {jac}, {J})"
    if port_map.applies(rg):
        return f"_matrix_s{shape}({kn}, {jac}, {expand}, {J})"
    return (f"_matrix_on({kn}, {jac}, {expand}, {kj}, {J}, 0, {rg['NB']}, 0, {rg['NPB']}, "
            f"False, JPTR_S{shape}, JROW_S{shape})")


def _shape_newton(rg: dict, charge: list[bool]) -> str:
    """A group's shape: its Jacobian pattern and charge ports as constants (relative to the
    block), `_matrix_sS` and `_newton_sS` on a block's local arrays (`_GROUP_MAIN`)."""
    shape, nb, npb, njb = rg["SHAPE"], rg["NB"], rg["NPB"], rg["J1"] - rg["J0"]
    cols = [[c - rg["P0"] for c in col] for col in rg["COLS"]]
    ptr = [0]
    rows: list[int] = []
    for col in cols:
        rows += col
        ptr.append(len(rows))
    local = dict(rg, R0=0, R1=nb, P0=0, P1=npb, J0=0, J1=njb, COLS=cols,
                 QROWS=port_map.local_rows(rg))
    ahead = textwrap.indent(_fill(_AHEAD, local), " " * 4) if rg["AHEAD"] else ""
    body = _fill(_NEWTON, dict(local, K=f"s{shape}", AHEAD=ahead))
    mapped = port_map.applies(local)
    if mapped:          # Q written out on the block's local arrays (`port_map`)
        body = port_map.use(body, f"s{shape}", local)
    body = body.replace(_fill("_matrix(KN, jac, expand, KJ, J, @R0@, @NB@, @P0@, @NPB@, @ID@)",
                              local), _tangent_matrix(rg, "KN", "jac", "expand", "KJ", "J"))
    body = body.replace(f"_laws_s{shape}(v, theta, cur, jac)",
                        f"_laws_g{shape}(v, theta, cur, jac, 0, tx)")
    for helper in ("_ports", "_dports", "_pnjlim"):
        body = body.replace(f"{helper}(", f"{helper}_c(")
    body = (body.replace("JAC_PTR[", f"JPTR_S{shape}[").replace("JAC_ROW[", f"JROW_S{shape}[")
            .replace("IS_CHARGE[", f"ISC_S{shape}["))
    header = (f"JPTR_S{shape} = np.array({ptr}, dtype=np.int64)\n"
              f"JROW_S{shape} = np.array({rows}, dtype=np.int64)\n"
              f"ISC_S{shape} = np.array({list(charge[rg['P0']:rg['P1']])}, dtype=np.bool_)\n\n")
    return (header + (_matrix_code(f"s{shape}", local) + "\n\n" if rg["ID"] else "")
            + (port_map.code(f"s{shape}", local) + "\n\n" if mapped else "")
            + '@numba.njit(cache=CACHE, nogil=True, error_model="numpy")\n'
            f"def _newton_s{shape}({_NEWTON_ARGS}, tx):\n"
            + textwrap.indent(body, "    ") + "    return it, conv, fresh\n")


def _block_code(ranges: list[dict], groups: list[list[int]] | None = None,
                charge: list[bool] | None = None) -> tuple[str, str, str, str, str, str]:
    """The generated per-block parts: the `_newton_k` functions, `_solve_all`'s body, the
    sample loop's block sections, the effective linear parts after the ladder, the sample
    loop's prologue (the locals of the blocks written out in scalars, a large block's own J
    and f) and what each batch item starts with (a large block's factors not yet fresh).
    groups: runs of blocks of one shape solved by one shared Newton (`_groups`)."""
    newtons, solve_all, main, effective, prologue, item_start = [], [], [], [], [], []
    member = {k: g for g, members in enumerate(groups or []) for k in members}
    shapes_done: set[int] = set()
    for k, rg in enumerate(ranges):
        effective.append(_fill("_effective(p, KN, cur, pe, @R0@, @R1@, @P0@)\n", rg))
        if k in member:
            g = member[k]
            members = groups[g]
            if k != members[0]:
                continue
            values = dict(rg, G=g, S=rg["SHAPE"], NM=len(members), NJB=rg["J1"] - rg["J0"])
            if rg["SHAPE"] not in shapes_done:
                shapes_done.add(rg["SHAPE"])
                newtons.append(_shape_newton(rg, charge))
            run_args = _fill(_GROUP_ARGS, dict(values, F="FG_@G@[m]", J="JG_@G@[m]"))
            tangent = _tangent_matrix(rg, "KG_@G@[m]", "jl_@G@", "EXG_@G@[m]", "KJl_@G@",
                                      "JG_@G@[m]")
            main.append(_fill(_fill(_GROUP_MAIN, {"GROUP_ARGS": run_args,
                                                  "TANGENT_MATRIX": tangent}), values))
            prologue.append(_fill(_GROUP_PROLOGUE, values))
            item_start.append(_fill("for m in range(@NM@):\n    fresh_@G@[m] = False\n",
                                    values))
            ladder_args = _fill(_GROUP_ARGS, dict(values, F="f", J="J"))
            solve_all.append(_fill(_fill(_GROUP_SOLVE_ALL, {"GROUP_ARGS": ladder_args}),
                                   values))
            continue
        ahead = textwrap.indent(_fill(_AHEAD, rg), " " * 4) if rg["AHEAD"] else ""
        values = dict(rg, K=k, AHEAD=ahead)
        body = _fill(_NEWTON, values)
        written = rg["ID"] and rg["COLS"] and not scalar_block.fits(rg)
        mapped = port_map.applies(rg) and not scalar_block.fits(rg)
        if mapped:
            # Q not the identity: its products written out over its nonzeros (`port_map`)
            body = port_map.use(body, k, rg)
            newtons.append(port_map.code(k, rg) + "\n\n")
        generic = _fill("_matrix(KN, jac, expand, KJ, J, @R0@, @NB@, @P0@, @NPB@, @ID@)",
                        values)
        if written:
            # a larger block's J written out (`_matrix_code`): the generic loop reads every
            # index from JAC_PTR / JAC_ROW and was a third of the Big Muff pair's time
            body = body.replace(generic, f"_matrix_{k}(KN, jac, J)")
            newtons.append(_matrix_code(k, rg) + "\n\n")
        called = body
        for helper in ("_ports", "_dports", "_matrix", "_pnjlim", f"_laws_{k}"):
            called = called.replace(f"{helper}(", f"{helper}_c(")
        newtons.append(f"_laws_{k}_c = _laws_{k}\n\n\n")
        newtons.append(f'@numba.njit(cache=CACHE, nogil=True, error_model="numpy")\n'
                       f"def _newton_{k}({_NEWTON_ARGS}):\n"
                       + textwrap.indent(called, "    ") + "    return it, conv, fresh\n")
        solve_all.append(_fill(
            "_effective(p, KN, cur, pe, @R0@, @R1@, @P0@)\n"
            f"it, ok, _ = _newton_{k}({_NEWTON_ARGS})\n"
            "if it > total:\n    total = it\nif not ok:\n    return total, False\n", values))
        section = _fill(_MAIN_BLOCK, values)
        if written:
            section = section.replace(generic, f"_matrix_{k}(KN, jac, J)")
        if mapped:
            section = port_map.use(section, k, rg)
        if scalar_block.fits(rg):
            section = scalar_block.section(k, rg)
            prologue.append(scalar_block.prologue(rg))
        elif rg["NB"] <= INLINE_BLOCK:
            section = section.replace("@NEWTON@\n", textwrap.indent(body, " " * 4))
        else:
            # a large block: its Newton is called, not written out (compile time grows with
            # every copy; the call costs nothing beside a large block's solve), on its own
            # J_k and f_k, whose factors its tangent reuses
            called_args = _NEWTON_ARGS.replace(", f,", f", f_{k},").replace(
                ", J,", f", J_{k},")
            section = _fill(_MAIN_BLOCK_CALLED, dict(values, CALLED_ARGS=called_args))
            for helper in ("_ports", "_dports", "_pnjlim"):
                section = section.replace(f"{helper}(", f"{helper}_c(")
            if written:
                section = section.replace(
                    _fill("_matrix_c(KN, jac, expand, KJ, J_@K@, @R0@, @NB@, @P0@, @NPB@, "
                          "@ID@)", values), f"_matrix_{k}(KN, jac, J_{k})")
            if mapped:
                section = port_map.use(section, k, rg)
            prologue.append(f"J_{k} = np.empty(({rg['NB']}, {rg['NB']}))\n"
                            f"f_{k} = np.empty({rg['NB']})\nfresh_{k} = False\n")
            item_start.append(f"fresh_{k} = False\n")
        main.append(section)
    return ("\n\n".join(newtons), textwrap.indent("".join(solve_all), " " * 4),
            textwrap.indent("".join(main), " " * 16),
            textwrap.indent("".join(effective), " " * 4),
            textwrap.indent("".join(prologue), " " * 4),
            textwrap.indent("".join(item_start), " " * 8))


# The ladder's first rung (`newton.py`: the line search): Newton on one block with every step
# checked by Armijo's test and searched along where it fails, the "step" stopping rule; as
# `newton._Search` runs it in torch. Only the ladder calls it, so it is compiled only where a
# sample needs the ladder. f0 keeps f where the step began; dq stays the step meanwhile.
_NEWTON_LS = '''
@numba.njit(cache=CACHE, nogil=True, error_model="numpy")
def _newton_ls_@K@(q, pe, KN, expand, jports, theta, vte, vcrit, max_iter, abstol, reltol, v,
                   dv, cur, jac, f, dq, J, KJ, tmp, f0):
    it = 0
    last = math.inf
    alpha = 1.0
    base = math.inf         # |f0|^2
    lam = 1.0               # the fraction of the step alpha dq now evaluated
    lo = 0.0
    hi = 1.0
    trial = 0.0             # the step's largest component: 0, none to check
    mode = 0                # 0: no search, 1: halving, 2: bisecting on the sign of f . f0
    count = 0
    for _ in range(max_iter):
        _ports_c(expand, q, v, @P0@, @P1@, @R0@, @R1@, @ID@)
        _laws_@K@(v, theta, cur, jac)
        it += 1
        norm = 0.0
''' + _piece(_RESIDUAL, 8, NORM="    norm += acc * acc\n") + '''        if settled:
            return it, True
        if trial > STALL:
            good = norm <= (1.0 - 2.0 * ARMIJO * lam * alpha) * base
            psi = 0.0
            for a in range(@NB@):
                psi += f[a] * f0[a]
            if mode == 0:
                if not good:
                    mode = 2 if psi < 0.0 else 1
                    count = 0
                    lo = 0.0
                    hi = 1.0
            else:
                count += 1
                if psi < 0.0:
                    hi = lam
                else:
                    lo = lam
                if count >= SEARCH_DEPTH or (
                        (norm <= KAPPA * KAPPA * base or abs(psi) <= KAPPA * base)
                        if mode == 2 else good):
                    mode = 0
            if mode != 0:
                nxt = 0.5 * lam if mode == 1 else 0.5 * (lo + hi)
                for a in range(@NB@):
                    q[@R0@ + a] += (nxt - lam) * (alpha * dq[a])
                lam = nxt
                continue
        base = norm
        lam = 1.0
        for a in range(@NB@):
            f0[a] = f[a]
        _matrix_c(KN, jac, expand, KJ, J, @R0@, @NB@, @P0@, @NPB@, @ID@)
        _solve_@NB@(J, f, dq)
        _dports_c(expand, dq, dv, @P0@, @P1@, @R0@, @NB@, @ID@)
        alpha = _pnjlim_c(v, dv, jports, vte, vcrit, @J0@, @J1@)
        for a in range(@NB@):
            if not math.isfinite(alpha * dq[a]):
                return it, False
''' + _piece(_STEP, 8, STALL_NOTE="") + '''        trial = big
        if small:
            # the currents at the converged q, to first order from the last evaluation
''' + _piece(_FIRST_ORDER, 12) + '''            return it, True
    return it, False
'''


def _line_search_code(ranges: list[dict]) -> str:
    """The ladder's line-search rung for a kernel's blocks: its constants, `_newton_ls_k` per
    block and `_solve_all_ls` (every block's in order, as `_solve_all`)."""
    lines = [f"ARMIJO = {ARMIJO!r}", f"KAPPA = {KAPPA!r}", f"SEARCH_DEPTH = {SEARCH_DEPTH!r}",
             ""]
    body = []
    for k, rg in enumerate(ranges):
        lines.append(_fill(_NEWTON_LS, dict(rg, K=k)))
        body.append(_fill(
            "    _effective(p, KN, cur, pe, @R0@, @R1@, @P0@)\n"
            f"    it, ok = _newton_ls_{k}(q, pe, KN, expand, jports, theta, vte, vcrit, "
            "max_iter, abstol, reltol, v, dv, cur, jac, f, dq, J, KJ, tmp, f0)\n"
            "    if it > total:\n        total = it\n"
            "    if not ok:\n        return total, False\n", rg))
    lines.append('\n@numba.njit(cache=CACHE, nogil=True, error_model="numpy")\n'
                 "def _solve_all_ls(q, p, pe, KN, expand, jports, theta, vte, vcrit, max_iter,"
                 " abstol, reltol, v, dv, cur, jac, f, dq, J, KJ, tmp, f0):\n"
                 '    """Every block\'s Newton with the line search in order from q (in place);'
                 ' (iterations: the most of any block, converged)."""\n'
                 "    total = 0\n" + "".join(body) + "    return total, True\n")
    return "\n".join(lines)


#: Operators whose arguments Sympy orders by value: their blanked texts are sorted instead.
_UNORDERED = (sp.Add, sp.Mul, sp.Min, sp.Max, sp.And, sp.Or)


class _Shapes:
    """Value-free, deterministic texts of the nodes above the constants of one expression:
    `text(node, here)` is the node's tree with constant `here` written "@", the other
    constants of `found` "X", and the arguments of sums, products, min/max and and/or sorted
    (Sympy orders those by value). Built without rebuilding a Sympy expression (xreplace
    canonicalises every node again: seconds for the laws of a transistor with every parameter
    given), and shared between the constants: a subtree without `here` has one text."""

    def __init__(self, found: dict):
        self.found = found
        self.plain: dict = {}       # node -> its text with every constant "X"
        self.floats: dict = {}      # node -> the constants of `found` below it

    def _below(self, node) -> frozenset:
        got = self.floats.get(node)
        if got is None:
            if node in self.found:
                got = frozenset((node,))
            else:
                args = node.args[:1] if isinstance(node, sp.Pow) else node.args
                got = frozenset().union(*(self._below(a) for a in args))
            self.floats[node] = got
        return got

    def text(self, node, here=None) -> str:
        if here is not None and here not in self._below(node):
            here = None
        if here is None and node in self.plain:
            return self.plain[node]
        if node in self.found:
            out = "@" if node == here else "X"
        elif not node.args:
            out = str(node)
        else:
            parts = [self.text(a, here) for a in node.args]
            if isinstance(node, _UNORDERED):
                parts.sort()
            out = f"{type(node).__name__}({','.join(parts)})"
        if here is None:
            self.plain[node] = out
        return out


class _Literals:
    """The floating-point constants of the device laws taken out of the source: each becomes
    an entry of theta after the parameters, so that circuits whose laws differ only in
    constants (the thermal voltage and IS factors of another `.temp`, a gain written as a
    number) share one compiled kernel. Sympy orders a sum's terms by their coefficients, so
    the constants are numbered by where they sit in the expression with every constant
    blanked out (a value-free key: the terms each sits in, then the terms around those where
    two sit alike), not by the order Sympy keeps them in; equal values share one entry. An
    exponent stays in the source (x**0.5 keeps its square root)."""

    def __init__(self, offset: int):
        self.offset = offset
        self.values: list[float] = []
        self.symbols: dict[float, sp.Symbol] = {}

    def __call__(self, expr: sp.Expr) -> sp.Expr:
        expr = sp.sympify(expr)
        found: dict = {}
        self._collect(expr, (), found)
        if not found:
            return expr
        names = {}
        for f in self._ordered(list(found), found, 0, _Shapes(found)):
            value = float(f)
            if value not in self.symbols:
                self.symbols[value] = sp.Symbol(f"_lit{len(self.values)}", real=True)
                self.values.append(value)
            names[f] = self.symbols[value]
        return expr.xreplace(names)

    def _ordered(self, group: list, found: dict, depth: int, shapes: _Shapes) -> list:
        """`group` ordered by the terms each constant sits in (its ancestors `depth` levels
        up, every constant blanked out); where those are the same, by the next level up
        (two temperature factors each in "X + @*T" differ further up); at the root, by
        value."""
        if len(group) <= 1:
            return group
        if all(len(chain) <= depth for f in group for chain in found[f]):
            return sorted(group, key=float)

        def key(f):
            return tuple(sorted(shapes.text(chain[depth], f) if len(chain) > depth else ""
                                for chain in found[f]))

        ties: dict = {}
        for f in group:
            ties.setdefault(key(f), []).append(f)
        return [f for k in sorted(ties) for f in self._ordered(ties[k], found, depth + 1, shapes)]

    def _collect(self, expr, chain: tuple, found: dict) -> None:
        """found: each constant -> the chains of nodes above it (its context), nearest first."""
        if isinstance(expr, sp.Float):
            if math.isfinite(float(expr)):
                found.setdefault(expr, set()).add(chain or (expr,))
            return
        args = expr.args[:1] if isinstance(expr, sp.Pow) else expr.args
        for arg in args:
            self._collect(arg, (expr,) + chain, found)

    def inputs(self) -> list[tuple[str, sp.Symbol]]:
        return [(f"theta[{self.offset + k}]", sym) for k, sym in enumerate(self.symbols.values())]


# Large blocks of one shape (laws the same up to where their ports and parameters sit: the
# boards of a two-pedal file) share their compiled laws: each block keeps a small `_laws_k`
# that passes its port offset (read from an array, so that numba compiles one version, not
# one per constant) and its parameter indices to the shared `_laws_g`, whose compile is paid
# once. Where such blocks follow one another they share their Newton too (a group,
# `_GROUP_MAIN`), on each block's local arrays: passing the offsets to a shared Newton instead
# was ~10% slower a sample.
_SHARED_LAWS = '''@numba.njit(cache=CACHE, nogil=True, error_model='numpy')
def _laws_@K@(v, theta, i, jac):
    _laws_g@G@(v, theta, i, jac, BLOCK_P0[@K@], TX_@K@)
'''


def _relative_laws(out: list, rg: dict, voltages: list,
                   params: list) -> tuple[str, list[int]]:
    """A large block's laws as the text of `_laws_g@SHAPE@(v, theta, i, jac, p0, tx)`: its
    ports at p0 + their place in the block (a port of another block stays where it is), the
    parameters it reads at theta[tx[j]] (in the order of theta); and tx. `out`, `voltages`
    and `params` are `kernel_text`'s (target or element text, expression) pairs. Two blocks
    with the same text share the function. Sets rg["READS_OUTSIDE"]: whether a law reads a
    port of another block (such a block cannot run on local arrays: `_groups`)."""
    p0, p1 = rg["P0"], rg["P1"]

    def local(element: str) -> str:
        # "i[7]" -> "i[p0 + 3]", "jac[7, 8]" -> "jac[p0 + 3, p0 + 4]", "v[30]" unchanged
        name, inside = element[:-1].split("[")
        places = [int(x) for x in inside.split(",")]
        if not all(p0 <= x < p1 for x in places):
            rg["READS_OUTSIDE"] = True
            return element
        return name + "[" + ", ".join(f"p0 + {x - p0}" for x in places) + "]"

    free = set().union(*(sp.sympify(e).free_symbols for _, e in out)) if out else set()
    rg["READS_OUTSIDE"] = False
    # the port voltages in the kernel's order (`voltages` is in the netlist's)
    read = sorted(((element, sym) for element, sym in voltages if sym in free),
                  key=lambda pair: int(pair[0][2:-1]))
    inputs = [(local(element), sym) for element, sym in read]
    # the parameters in the order the block's outputs first read them (then by their own
    # name, a model card's parameter name, then their place in theta): two boards whose
    # parts have model cards of their own (__Q1 ... __Q12 in a KiCad export) name them in
    # the same order when their ports come in the same order
    first: dict = {}
    for k, (_, e) in enumerate(out):
        for sym in sorted(sp.sympify(e).free_symbols, key=lambda x: (str(x).rsplit(".", 1)[-1],
                                                                     str(x))):
            first.setdefault(sym, k)
    used = [(first[sym], str(sym).rsplit(".", 1)[-1], t, element, sym)
            for t, (element, sym) in enumerate(params) if sym in free]
    tx = []
    for _, _, _, element, sym in sorted(used, key=lambda u: u[:3]):
        inputs.append((f"theta[tx[{len(tx)}]]", sym))
        tx.append(int(element[len("theta["):-1]))
    outputs = [(local(target), e) for target, e in out]
    text = _print_function("_laws_g@SHAPE@", "v, theta, i, jac, p0, tx", outputs, inputs)
    return text, tx


def _shape_key(rg: dict) -> tuple:
    """What two blocks of one shape have in common before their laws are printed (sizes,
    Jacobian pattern relative to the block): only blocks whose key repeats have their laws
    printed a second time, relatively, to be compared."""
    cols = tuple(tuple(c - rg["P0"] for c in col) for col in rg["COLS"])
    return rg["NB"], rg["NPB"], rg["ID"], rg["AHEAD"], cols, rg["J1"] - rg["J0"]


def kernel_source(eq: Equations, plan: Layout | None = None) -> str:
    """The Python source of a circuit's kernel (`kernel_text` without the constants)."""
    return kernel_text(eq, plan)[0]


def kernel_text(eq: Equations, plan: Layout | None = None) -> tuple[str, list[float]]:
    """The Python source of a circuit's kernel for a split into blocks (`layout`; default
    one block): its device laws per block, then the shared sample loop; and the constants of
    the laws, read at run time after the parameters in theta (`_Literals`)."""
    plan = one_block(eq) if plan is None else plan
    order_r, order_p = plan.order_r, plan.order_p
    n = len(eq.ports)
    at = {int(c): k for k, c in enumerate(order_p)}          # original port -> kernel position
    lit = _Literals(len(eq.symbols))
    params = [(f"theta[{k}]", s) for k, s in enumerate(eq.symbols)]
    voltages = [(f"v[{at[c]}]", s) for c, s in enumerate(eq.port_voltages)]
    laws, ranges = [], []
    r0 = p0 = j0 = 0
    junction_out = []
    ptr, rows = [0], []
    for k, (coords, ports) in enumerate(plan.blocks):
        out = [(f"i[{at[c]}]", lit(eq.currents[c])) for c in ports]
        out += [(f"jac[{at[c]}, {at[e]}]", lit(eq.jacobian[c, e])) for c in ports for e in ports
                if c == e or eq.jacobian[c, e] != 0]
        nz = [(x, y) for x, c in enumerate(ports) for y, e in enumerate(ports)
              if c == e or eq.jacobian[c, e] != 0]
        laws.append((f"_laws_{k}", out, nz))
        cols = []
        for e in ports:
            cols.append([at[c] for c in ports if c == e or eq.jacobian[c, e] != 0])
            rows += cols[-1]
            ptr.append(len(rows))
        junctions = [c for c in ports if eq.ports[c].junction]
        for c in junctions:
            junction = eq.ports[c].junction
            m = len(junction_out) // 2
            junction_out += [(f"vte[{m}]", lit(junction[0])), (f"i_s[{m}]", lit(junction[1]))]
        rows_q = np.asarray(eq.expand)[np.ix_(ports, order_r[:r0 + len(coords)])]
        ident = len(coords) == len(ports) and bool(np.array_equal(
            rows_q, np.hstack([np.zeros((len(ports), r0)), np.eye(len(ports))])))
        local_q = not np.any(rows_q[:, :r0])     # its ports read only its own coordinates
        ranges.append(dict(R0=r0, R1=r0 + len(coords), P0=p0, P1=p0 + len(ports), J0=j0,
                           J1=j0 + len(junctions), NB=len(coords), NPB=len(ports), ID=ident,
                           LOCAL_Q=local_q,
                           # the "predicted" stopping rule: every port a junction (newton.py)
                           AHEAD=bool(coords) and bool(ports) and len(junctions) == len(ports),
                           NZ=nz, JUNCTIONS=[(j0 + t, ports.index(c))
                                             for t, c in enumerate(junctions)], K=k, THETA=[],
                           OUTSIDE=[], COLS=cols,
                           QROWS=port_map.rows(rows_q, r0 + len(coords))))
        r0, p0, j0 = r0 + len(coords), p0 + len(ports), j0 + len(junctions)
    laws_all = ("@numba.njit(cache=CACHE, nogil=True, error_model='numpy')\n"
                "def _laws_all(v, theta, i, jac):\n"
                "    theta = _extended(theta)\n"
                + "".join(f"    _laws_{k}(v, theta, i, jac)\n" for k in range(len(ranges)))
                + "    return\n")
    params += lit.inputs()
    kinds = kind_laws.Kinds(len(params))
    printed = []
    shapes: dict[str, int] = {}         # a large block's relative laws -> its shape
    large = [k for k, rg in enumerate(ranges)
             if not scalar_block.fits(rg) and rg["NB"] > INLINE_BLOCK]
    keys = [_shape_key(ranges[k]) for k in large]
    relative = {k: _relative_laws(laws[k][1], ranges[k], voltages, params)
                for k, key in zip(large, keys, strict=True) if keys.count(key) > 1}
    counts: dict[str, int] = {}
    for text, _ in relative.values():
        counts[text] = counts.get(text, 0) + 1
    for k, (name, out, nz) in enumerate(laws):
        rg = ranges[k]
        if k in relative and counts[relative[k][0]] > 1:
            # a large block whose laws are another's up to where its ports and parameters
            # sit: one shared function of its port offset and parameter indices
            text, tx = relative[k]
            if text not in shapes:
                shapes[text] = len(shapes)
                printed.append(text.replace("@SHAPE@", str(shapes[text])))
            rg["SHAPE"], rg["TX"] = shapes[text], tx
            printed.append(_fill(_SHARED_LAWS, dict(rg, K=k, G=rg["SHAPE"])))
            continue
        if not scalar_block.fits(rg):
            if rg["NPB"] >= KIND_LOOP_PORTS:
                printed.append(kinds.block_laws(k, rg, out, voltages, params))
            else:
                printed.append(_print_function(name, "v, theta, i, jac", out, voltages + params))
            continue
        # the block's laws as a function of its port voltages and the parameters they read,
        # returning a tuple (the scalar Newton calls it), and the array form over it (the
        # ladder's)
        # (a law may read a port of another block where its derivative there is zero, as a
        # step function's does: that voltage comes from the loop's array, as in the generic
        # Newton; the parameters come as one tuple, read before the sample loop)
        free = set().union(*(sp.sympify(e).free_symbols for _, e in out))
        local = [(f"v{at[c] - rg['P0']}", s) for c, s in enumerate(eq.port_voltages)
                 if rg["P0"] <= at[c] < rg["P1"]]
        outside = [(at[c], s) for c, s in enumerate(eq.port_voltages)
                   if s in free and not rg["P0"] <= at[c] < rg["P1"]]
        rg["OUTSIDE"] = [pos for pos, _ in outside]
        rg["THETA"] = [t for t, (_, sym) in enumerate(params) if sym in free]
        names = scalar_block.laws_outputs(rg["NPB"], nz)
        args = ", ".join([f"v{c}" for c in range(rg["NPB"])]
                         + [f"u{j}" for j in range(len(outside))] + ["th"])
        given = (local + [(f"u{j}", sym) for j, (_, sym) in enumerate(outside)]
                 + [(f"th[{j}]", params[t][1]) for j, t in enumerate(rg["THETA"])])
        printed.append(_print_function(f"_laws_s_{k}", args,
                                       list(zip(names, (e for _, e in out), strict=True)),
                                       given, returns=True)
                       + "\n\n" + scalar_block.laws_wrapper(k, rg))
    kind_text, kind_header = kinds.text()
    laws = printed + [kind_text]
    junctions_fn = _print_function("_junctions", "theta, vte, i_s", junction_out, params)
    nb_max = max([rg["NB"] for rg in ranges] + [1])
    dims = dict(NW=len(eq.sources), NX=eq.n_states, NR=len(eq.reduced), NP=n,
                NJ=len(junction_out) // 2, NLEV=MAX_LEVELS, HOMOTOPY=HOMOTOPY_STEPS,
                NB_MAX=nb_max, COLUMNS=int(eq.n_states >= COLUMN_STATES))
    header = ["import math", "import numba", "import numpy as np", "", "CACHE = False"]
    header += [f"{k} = {v}" for k, v in dims.items()]
    header += [f"JAC_PTR = np.array({ptr}, dtype=np.int64)",
               f"JAC_ROW = np.array({rows}, dtype=np.int64)",
               f"ORDER_R = np.array({order_r.tolist()}, dtype=np.int64)",
               f"IS_CHARGE = np.array({[int(c) in eq.charge_ports for c in order_p]}, "
               "dtype=np.bool_)"]
    charge = [int(c) in eq.charge_ports for c in order_p]
    groups = _groups(ranges, charge)
    if shapes:
        header.append(f"BLOCK_P0 = np.array({[rg['P0'] for rg in ranges]}, dtype=np.int64)")
        header += [f"TX_{k} = np.array({rg['TX']}, dtype=np.int64)"
                   for k, rg in enumerate(ranges) if rg.get("SHAPE") is not None]
    if groups:
        header.append(f"BLOCK_R0 = np.array({[rg['R0'] for rg in ranges]}, dtype=np.int64)")
        header.append(f"BLOCK_J0 = np.array({[rg['J0'] for rg in ranges]}, dtype=np.int64)")
        for g, members in enumerate(groups):
            header.append(f"GRP_{g} = np.array({members}, dtype=np.int64)")
            header.append(f"TXG_{g} = np.array({[ranges[k]['TX'] for k in members]}, "
                          "dtype=np.int64)")
    header += kind_header
    header += [f"ROUNDOFF = {ROUNDOFF!r}", f"STALL = {STALL!r}",
               f"AHEAD_SAFETY = {AHEAD_SAFETY!r}", f"AHEAD_REACH = {AHEAD_REACH!r}",
               f"GMIN_STEPS = ({', '.join(repr(float(g)) for g in GMIN_STEPS)},)", "", ""]
    newtons, solve_all, main, effective, prologue, item_start = _block_code(ranges, groups,
                                                                            charge)
    loop = (_KERNEL.replace("@@SOLVERS@@", _solvers({rg["NB"] for rg in ranges}))
            .replace("@@PNJLIM_ONE@@\n", scalar_block.PNJLIM_ONE)
            .replace("@@BLOCK_NEWTONS@@", newtons)
            .replace("@@SOLVE_ALL@@\n", solve_all)
            .replace("@@MAIN_BLOCKS@@\n", main)
            .replace("@@EFFECTIVE_ALL@@\n", effective)
            .replace("@@PROLOGUE@@\n", prologue)
            .replace("@@ITEM_START@@\n", item_start)
            .replace("@@LINE_SEARCH@@", _line_search_code(ranges)))
    return ("\n".join(header) + "\n\n".join(laws) + "\n\n" + laws_all + "\n\n" + junctions_fn
            + "\n" + loop), lit.values


_COMPILED: dict[str, tuple] = {}


def cache_folder() -> Path | None:
    """Where generated kernels and numba's machine code are kept between processes:
    `nodal.files.cache_dir("kernels")` (None: compile in memory only)."""
    return cache_dir("kernels")


class KernelCacheWarning(UserWarning):
    """The kernel cache folder cannot be used as it should: the kernel is compiled in memory
    instead, or a kernel from it is loaded without its helpers' own code (`_load_callees`)."""


def _writable_folder(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK | os.X_OK)


def _load(source: str):
    """Import the kernel from a file named by its hash (numba then caches the machine code
    beside it, so a second process skips the compile), or exec it in memory. A cache folder
    that cannot be written is a `KernelCacheWarning` and an in-memory compile, never an error."""
    folder = cache_folder()
    if folder is not None:
        if not _writable_folder(folder):
            warnings.warn(f"kernel cache folder {folder} is not writable (set NODALNET_CACHE to "
                          "a writable folder, or to an empty string to compile in memory); "
                          "compiling in memory", KernelCacheWarning, stacklevel=4)
        else:
            try:
                return _load_file(folder, source)
            except OSError as exc:
                warnings.warn(f"kernel cache folder {folder}: {exc}; compiling in memory",
                              KernelCacheWarning, stacklevel=4)
    namespace: dict = {}
    exec(compile(source, f"<nodal.fast kernel {len(_COMPILED)}>", "exec"), namespace)
    return namespace["run"], namespace["ladder"]


def _load_file(folder: Path, source: str):
    name = "kernel_" + hashlib.sha256(source.encode()).hexdigest()[:24]
    path = folder / f"{name}.py"
    text = source.replace("CACHE = False", "CACHE = True")
    if not path.exists() or path.read_text() != text:
        atomic_write(path, text)
    module_name = f"nodal_fast_{name}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module      # numba's cache re-imports it by name
    spec.loader.exec_module(module)
    _load_callees(module)
    return module.run, module.ladder


def _load_callees(module) -> int:
    """Load the machine code numba cached for the kernel's helpers (the laws, `_newton_k`,
    the eliminations...) before `run` is loaded; returns how many were loaded.

    `run`'s cached object holds its own copies of every function it calls, as weak
    definitions; the process's linker binds each call to the first definition it has seen.
    In the process that compiled the kernel the helpers' own code came first; a process
    that loads `run` alone from the cache runs `run`'s copies instead, and on the Big Muff
    pair (blocks of 12 ports, whose Newton is a call) those ran ~45% slower (13.4 against
    19.5 us a sample, measured both ways on the same cache folder). Loading the helpers
    first gives a warm start the code of a cold one. Uses numba's cache index, which is not
    a public interface: where it differs, `run` keeps its copies and a `KernelCacheWarning`
    says so (the kernel is right, only slower)."""
    import numba
    from numba.core.registry import CPUDispatcher

    loaded = 0
    failed = []
    for name, obj in list(vars(module).items()):
        if name in ("run", "ladder") or not isinstance(obj, CPUDispatcher) or obj.overloads:
            continue
        try:
            cache = obj._cache
            codegen = obj.targetctx.codegen()
            for key in list(cache._cache_file._load_index()):
                # an entry of this machine and this source: `compile` loads it from disk
                # (with numba's own bookkeeping), it does not compile
                if key == cache._index_key(key[0], codegen):
                    obj.compile(key[0])
                    loaded += 1
        except Exception as exc:       # numba's internals moved: keep `run`'s own copies
            failed.append(f"{name} ({type(exc).__name__}: {exc})")
    if failed:
        warnings.warn(f"the kernel {module.__name__} is loaded from the cache without the code "
                      f"its helpers were compiled to ({len(failed)} not loaded, first "
                      f"{failed[0]}): it runs correctly but can be slower (~45% on blocks "
                      "above 8 ports) than in the process that compiled it: numba "
                      f"{numba.__version__} keeps its cache index otherwise than nodalnet "
                      "expects (tested with numba 0.68); install that release, or run the "
                      "test tests/nodal/test_fast.py::test_a_kernel_from_the_disk_cache_loads_"
                      "its_helpers_before_its_loop and report what it says",
                      KernelCacheWarning, stacklevel=5)
    return loaded


def _text(eq: Equations, plan: Layout) -> tuple[str, list[float]]:
    """`kernel_text(eq, plan)`, kept in the cache folder for equations that came through the
    derivation cache (`eq.derived_key`, which covers the netlist, its includes and `nodal`'s
    own code): on a large circuit writing the source costs seconds of Sympy CSE, a second
    process reads it. A file that does not carry its own digest is written again."""
    folder = cache_folder()
    if not eq.derived_key or folder is None or not _writable_folder(folder):
        return kernel_text(eq, plan)
    name = hashlib.sha256(f"{eq.derived_key} {plan.blocks!r}".encode()).hexdigest()[:24]
    path = folder / f"source_{name}.json"
    try:
        head, body = path.read_text().split("\n", 1)
        if head == hashlib.sha256(body.encode()).hexdigest():
            stored = json.loads(body)
            return stored["source"], [float(v) for v in stored["literals"]]
    except (OSError, ValueError, UnicodeDecodeError, KeyError, TypeError):
        pass
    source, literals = kernel_text(eq, plan)
    body = json.dumps({"source": source, "literals": literals})
    with contextlib.suppress(OSError):
        atomic_write(path, hashlib.sha256(body.encode()).hexdigest() + "\n" + body)
    return source, literals


@dataclass(eq=False)
class Kernel:
    """A circuit's kernel: the sample loop `run` and the one-sample fallback `ladder` (numba;
    each compiled on its first call, so a run where Newton never fails never compiles the
    ladder, and shared by every circuit with the same source), the block layout compiled
    into them and this circuit's constants of the laws (read after the parameters in theta)."""

    run: object
    ladder: object
    layout: Layout
    literals: np.ndarray


def kernel(eq: Equations, plan: Layout | None = None) -> Kernel:
    """The compiled kernel of `eq`'s structure split as `plan` (default: one block); compiled
    on first call, then cached."""
    plan = one_block(eq) if plan is None else plan
    source, literals = _text(eq, plan)
    if source not in _COMPILED:
        _COMPILED[source] = _load(source)
    run_fn, ladder_fn = _COMPILED[source]
    return Kernel(run_fn, ladder_fn, plan, np.array(literals, dtype=np.float64))


@dataclass
class KernelArrays:
    """Everything constant over a run, as numpy float64 arrays (int64 for `jports`, bool for
    `is_ind`). The DK matrices are stacked by level: [0] at the sample period T, [l] at T/2^l
    (the substeps of the fallback), e.g. G [levels + 1, r, nx]. gx: each reactive element's
    companion conductance at T; is_ind: which are inductors; expand: Q [ports, r]; jports: the
    junction ports; theta: the parameter values, then T."""

    G: np.ndarray
    H: np.ndarray
    K: np.ndarray
    A: np.ndarray
    B: np.ndarray
    C: np.ndarray
    D: np.ndarray
    E: np.ndarray
    F: np.ndarray
    Ds: np.ndarray
    Es: np.ndarray
    Fs: np.ndarray
    gx: np.ndarray
    is_ind: np.ndarray
    expand: np.ndarray
    jports: np.ndarray
    theta: np.ndarray

    MATRICES = ("G", "H", "K", "A", "B", "C", "D", "E", "F", "Ds", "Es", "Fs")

    @property
    def levels(self) -> int:
        return self.G.shape[0] - 1

    def as_tuple(self) -> tuple:
        return tuple(getattr(self, name) for name in self.MATRICES) + (
            self.gx, self.is_ind, self.expand, self.jports, self.theta)

    def in_frame(self, plan: Layout) -> tuple:
        """`as_tuple` in the kernel's frame of `plan` (each block's coordinates and ports
        contiguous), kept while the layout stays."""
        cached = self.__dict__.get("_frame")
        if cached is not None and cached[0] == plan:
            return cached[1]
        if plan.identity:
            out = self.as_tuple()
        else:
            r, p = plan.order_r, plan.order_p
            at = np.empty(len(p), dtype=np.int64)
            at[p] = np.arange(len(p))
            rows = {"G": (r, None), "H": (r, None), "K": (r, p), "C": (None, p),
                    "F": (None, p), "Fs": (None, p)}
            mats = []
            for name in self.MATRICES:
                m = getattr(self, name)
                row, col = rows.get(name, (None, None))
                if row is not None:
                    m = m[:, row]
                if col is not None:
                    m = m[:, :, col]
                mats.append(np.ascontiguousarray(m))
            out = tuple(mats) + (self.gx, self.is_ind,
                                 np.ascontiguousarray(self.expand[p][:, r]),
                                 np.sort(at[self.jports]), self.theta)
        self.__dict__["_frame"] = (plan, out)
        return out


@dataclass
class Start:
    """Where a run begins, per batch item: canonical state s [B, nx], the previous sample's
    exposed states x [B, nx] and sources w [B, nw] (for substeps), and Newton's last two port
    coordinates q [B, r], q_before [B, r] (None: no previous solution, start from p), and the
    previous sample's linear part p [B, r] (each block's: p and the currents of the blocks
    before it; None: none, no tangent prediction at the first) with the laws' Jacobian
    [B, ports, ports] that Newton last evaluated (inside each block)."""

    s: np.ndarray
    x: np.ndarray
    w: np.ndarray
    q: np.ndarray | None = None
    q_before: np.ndarray | None = None
    p: np.ndarray | None = None
    jac: np.ndarray | None = None


@dataclass
class Run:
    """One kernel run's outputs (numpy): y [B, T], x [B, T, nx], s_final [B, nx], q [B, T, r]
    (Newton's port coordinates per sample; None unless `run` was asked to keep them), q_last
    and q_before [B, r] (those of the last two samples: q_before is q_last for T = 1), p_last
    [B, r] (the last sample's linear part, per block) and jac_last [B, ports, ports] (the
    laws' Jacobian Newton last evaluated), iterations [B, T] (int32: Newton iterations of the
    sample, the most of any block, fallbacks included), level [B, T] (int8: 0 none,
    l <= MAX_LEVELS 2^l substeps, then gmin stepping, source stepping and the line search:
    `newton.fallback_name`) and failed [B, T] (bool)."""

    y: np.ndarray
    x: np.ndarray
    s_final: np.ndarray
    q: np.ndarray | None
    q_last: np.ndarray
    q_before: np.ndarray
    p_last: np.ndarray
    jac_last: np.ndarray
    iterations: np.ndarray
    level: np.ndarray
    failed: np.ndarray


def _f64(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float64)


def _outputs(batch: int, length: int, nx: int, written: bool):
    """The sample loop's per-sample outputs, each of which it writes at every sample: y [B, T]
    (the output, what a caller keeps) on its own, the states x [B, T, nx] and the iteration
    counts [B, T] (int32; the loop writes them only where the circuit has ports: `written`)
    carved from one allocation. Nothing is zeroed first. Fewer, larger allocations: in a
    process that runs the loop again and again, the C allocator then keeps their memory for
    the next call instead of giving it back and faulting it in again page by page (a 10 s
    diode-clipper call: see bench/README.md)."""
    n = batch * length
    y = np.empty((batch, length))
    block = np.empty(n * (8 * nx + 4), dtype=np.uint8)
    x = block[:8 * n * nx].view(np.float64).reshape(batch, length, nx)
    iters = block[8 * n * nx:].view(np.int32).reshape(batch, length)
    if not written:
        iters[:] = 0
    return y, x, iters


def run(kernel_run: Kernel, arrays: KernelArrays, w: np.ndarray, start: Start, options,
        keep_q: bool = False) -> Run:
    """Run a compiled kernel on sources w [B, T, sources] from `start`; `options` is a
    `newton.NewtonOptions`. Pure arrays in, arrays out (in the circuit's own order). keep_q:
    return Newton's port coordinates of every sample (`Run.q`; else only the last two are
    kept: a long run writes a third less memory)."""
    batch, length = w.shape[:2]
    nx, r = arrays.A.shape[1], arrays.K.shape[1]
    nports = arrays.expand.shape[0]
    plan = kernel_run.layout
    if plan.identity:
        order_r, order_p = slice(None), slice(None)
    else:
        order_r, order_p = plan.order_r, plan.order_p
    y, x, iters = _outputs(batch, length, nx, written=r > 0)
    s_final = np.zeros((batch, nx))
    q = np.zeros((batch, length if keep_q else min(length, 2), r))

    def row(n: int) -> int:             # where sample n's q is (the kernel's own rule)
        return n if keep_q else n & 1

    level = np.zeros((batch, length), dtype=np.int8)
    failed = np.zeros((batch, length), dtype=np.bool_)
    q0 = np.zeros((batch, r)) if start.q is None else _f64(start.q)[:, order_r]
    q00 = q0 if start.q_before is None else _f64(start.q_before)[:, order_r]
    p00 = np.zeros((batch, r)) if start.p is None else _f64(start.p)[:, order_r]
    p_last = np.zeros((batch, r))
    jac_last = np.zeros((batch, nports, nports))
    jac00 = jac_last if start.jac is None else _f64(start.jac)[:, order_p][:, :, order_p]
    levels = min(int(options.substep_levels), arrays.levels, MAX_LEVELS)
    mats = arrays.in_frame(plan)
    mats = mats[:-1] + (np.concatenate([mats[-1], kernel_run.literals]),)   # theta, constants
    w = _f64(w)
    wprev0 = _f64(start.w).reshape(batch, -1).copy()
    s0 = _f64(start.s).reshape(batch, nx).copy()
    x0 = _f64(start.x).reshape(batch, nx).copy()
    q0, q00, p00, jac00 = _f64(q0).copy(), _f64(q00).copy(), _f64(p00).copy(), _f64(jac00).copy()
    use_q0 = np.full(batch, start.q is not None)
    use_p0 = np.full(batch, start.p is not None and start.jac is not None)
    first = np.zeros(batch, dtype=np.int64)
    stop = np.full(batch, -1, dtype=np.int64)
    x_stop, w_stop, q_stop = np.zeros((batch, nx)), np.zeros_like(wprev0), np.zeros((batch, r))
    predictor = PREDICTORS.index(options.predictor)
    tol = (int(options.max_iter), float(options.abstol), float(options.reltol),
           stopping_rule(options))
    ladder_tol = (ladder_options(options).max_iter,) + tol[1:]
    while True:
        kernel_run.run(*mats, w, wprev0, s0, x0, q0, q00, p00, jac00, use_q0, use_p0, first,
                       predictor, *tol, y, x, s_final, q, p_last, jac_last, iters, level, stop,
                       x_stop, w_stop, q_stop)
        stopped = np.flatnonzero(stop >= 0)
        if not len(stopped):
            break
        # Newton failed at sample n of these items: the ladder solves it, the loop resumes
        # after it from the ladder's solution (as if the loop had run the ladder itself)
        first[:] = -1
        for b in stopped:
            n = int(stop[b])
            out_y, out_q = np.zeros(1), np.zeros(r)
            out_p, out_jac = np.zeros(r), np.zeros((nports, nports))
            out_x, out_s = np.zeros(nx), np.zeros(nx)
            it, lev, fail = kernel_run.ladder(*mats, s_final[b], x_stop[b], w_stop[b], w[b, n],
                                              q_stop[b], levels, *ladder_tol, out_y, out_x, out_s,
                                              out_q, out_p, out_jac)
            y[b, n], x[b, n] = out_y[0], out_x
            q[b, row(n), order_r] = out_q
            iters[b, n] += it
            level[b, n], failed[b, n] = lev, fail
            s0[b], x0[b], wprev0[b] = out_s, out_x, w[b, n]
            q00[b], q0[b], p00[b], jac00[b] = q_stop[b], out_q, out_p, out_jac
            use_q0[b] = use_p0[b] = True
            first[b] = n + 1
            stop[b] = -1
    if not plan.identity:
        back_r = np.argsort(plan.order_r)
        back_p = np.argsort(plan.order_p)
        p_last = p_last[:, back_r]
        jac_last = jac_last[:, back_p][:, :, back_p]
    if length:
        q_last = q[:, row(length - 1)]
        q_before = q[:, row(length - 2)] if length > 1 else q_last
    else:
        q_last = q_before = np.zeros((batch, r)) if start.q is None else _f64(start.q)
    return Run(y, x, s_final, q if keep_q else None, q_last, q_before, p_last, jac_last, iters,
               level, failed)

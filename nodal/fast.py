"""The compiled fast path: the DK equations as one numba kernel, forward only, on plain arrays.

    kernel = fast.kernel(eq)                      # compiled once per circuit structure
    out = fast.run(kernel, arrays, w, start)      # arrays: `KernelArrays` (numpy), w [B, T, nw]

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
of the linear part, so it follows a clipping diode's flattened slope). Where it does not
converge, the sample is solved again as SPICE would cut its time step (`newton.py` describes
the ladder): in 2, 4, ... 2^levels trapezoidal substeps with the DK matrices for T/k
(inputs interpolated linearly within the sample), then by gmin stepping, then by stepping
the sources; only if all fail is the sample reported in `failed` (keeping the previous
sample's solution, never NaN). The torch path (`solver.py`) runs the same ladder, so both
backends give the same samples to round-off.

Kernels are compiled once per circuit structure and cached in this process (and on disk,
`cache_folder`), keyed on the generated source; component values enter at run time, so
changing a value never recompiles.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import textwrap
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sympy as sp
from sympy.printing.pycode import PythonCodePrinter

from .files import atomic_write, cache_dir
from .mna import Equations
from .newton import GMIN_STEPS, HOMOTOPY_STEPS, PREDICTORS, ROUNDOFF, STALL

# The per-sample loop, the same for every circuit; `_laws` and `_junctions` are generated, and
# the dimensions NW NX NR NP NJ NLEV are module constants that numba compiles in as literals.
_KERNEL = '''
@numba.njit(cache=CACHE, nogil=True, inline="always", error_model="numpy")
def _solve_linear(J, b, out):
    """out = J^-1 b by Gaussian elimination with partial pivoting (J, b are overwritten)."""
    for c in range(NR):
        piv = c
        big = abs(J[c, c])
        for k in range(c + 1, NR):
            if abs(J[k, c]) > big:
                big = abs(J[k, c])
                piv = k
        if piv != c:
            for j in range(NR):
                J[c, j], J[piv, j] = J[piv, j], J[c, j]
            b[c], b[piv] = b[piv], b[c]
        for k in range(c + 1, NR):
            m = J[k, c] / J[c, c]
            if m != 0.0:
                for j in range(c + 1, NR):
                    J[k, j] -= m * J[c, j]
                b[k] -= m * b[c]
    for c in range(NR - 1, -1, -1):
        acc = b[c]
        for j in range(c + 1, NR):
            acc -= J[c, j] * out[j]
        out[c] = acc / J[c, c]


@numba.njit(cache=CACHE, nogil=True, inline="always", error_model="numpy")
def _expand_ports(expand, q, out):
    """out = Q q: every port voltage from the independent ones."""
    for c in range(NP):
        acc = 0.0
        for a in range(NR):
            acc += expand[c, a] * q[a]
        out[c] = acc


@numba.njit(cache=CACHE, nogil=True, inline="always", error_model="numpy")
def _affine(Mx, Mw, Mi, row, s, w, cur):
    """Row `row` of Mx x~ + Mw w + Mi i: one line of the DK update."""
    acc = 0.0
    for k in range(NX):
        acc += Mx[row, k] * s[k]
    for k in range(NW):
        acc += Mw[row, k] * w[k]
    for c in range(NP):
        acc += Mi[row, c] * cur[c]
    return acc


@numba.njit(cache=CACHE, nogil=True, inline="always", error_model="numpy")
def _newton_matrix(KN, jac, expand, KJ, J):
    """J = I - K (di/dv) Q, over the Jacobian's structural nonzeros only (JAC_ROW[JAC_PTR[c]:
    JAC_PTR[c + 1]]: the rows of column c), and without Q where it is the identity."""
    for a in range(NR):
        for c in range(NP):
            acc = 0.0
            for k in range(JAC_PTR[c], JAC_PTR[c + 1]):
                acc += KN[a, JAC_ROW[k]] * jac[JAC_ROW[k], c]
            KJ[a, c] = acc
    for a in range(NR):
        for c in range(NR):
            acc = 1.0 if a == c else 0.0
            if EXPAND_IDENTITY:
                acc -= KJ[a, c]
            else:
                for e in range(NP):
                    acc -= KJ[a, e] * expand[e, c]
            J[a, c] = acc


@numba.njit(cache=CACHE, nogil=True, inline="always", error_model="numpy")
def _pnjlim(v, dv, jports, vte, vcrit):
    """SPICE pnjlim: the largest factor in (0, 1] keeping every junction's step in bounds."""
    alpha = 1.0
    for j in range(NJ):
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


@numba.njit(cache=CACHE, nogil=True, inline="always", error_model="numpy")
def _predict(G, H, s, w, p):
    """p = G x~ + H w: the linear part of the port coordinates."""
    for a in range(NR):
        acc = 0.0
        for k in range(NX):
            acc += G[a, k] * s[k]
        for k in range(NW):
            acc += H[a, k] * w[k]
        p[a] = acc


@numba.njit(cache=CACHE, nogil=True, error_model="numpy")
def _newton(q, p, KN, expand, jports, theta, vte, vcrit, gshunt, max_iter, abstol, reltol, v, dv,
            cur, jac, f, dq, J, KJ, tmp):
    """Solve q - p - K i(Q q) = 0 in place from q; (iterations, converged).

    On convergence cur holds the currents at q (to first order after a last small step).
    gshunt: a conductance added across every port but the charges' (gmin stepping; 0
    otherwise).
    """
@NEWTON@
    return it, conv


@numba.njit(cache=CACHE, nogil=True, error_model="numpy")
def _substeps(lev, G, H, K, A, B, C, D, E, F, Ds, Es, Fs, gx, is_ind, expand, jports, theta,
              vte, vcrit, max_iter, abstol, reltol, s, xprev, wprev, wn, q, p, ss, ss_new, wsub,
              xs, ys, s_out, v, dv, cur, jac, f, dq, J, KJ, tmp):
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
        it, ok = _newton(q, p, K[lev], expand, jports, theta, vte, vcrit, 0.0, max_iter,
                         abstol, reltol, v, dv, cur, jac, f, dq, J, KJ, tmp)
        total += it
        if not ok:
            return total, False
        ys[0] = _affine(D[lev], E[lev], F[lev], 0, ss, wsub, cur)
        for a in range(NX):
            xs[a] = _affine(Ds[lev], Es[lev], Fs[lev], a, ss, wsub, cur)
        for a in range(NX):
            ss_new[a] = _affine(A[lev], B[lev], C[lev], a, ss, wsub, cur)
        for a in range(NX):
            ss[a] = ss_new[a]
    for a in range(NX):
        if is_ind[a]:
            s_out[a] = xs[a] + k * (ss[a] - xs[a])
        else:
            s_out[a] = ss[a] - (k - 1) * gx[a] * xs[a]
    return total, True


@numba.njit(cache=CACHE, nogil=True, error_model="numpy")
def _continuation(K, expand, jports, theta, vte, vcrit, max_iter, abstol, reltol, p, qstart,
                  q, p0, pl, v, dv, cur, jac, f, dq, J, KJ, tmp):
    """Gmin stepping, then source stepping, at the full step; (iterations, level or -1)."""
    total = 0
    for a in range(NR):
        q[a] = qstart[a]
    ok = True
    for g in GMIN_STEPS:
        it, ok = _newton(q, p, K, expand, jports, theta, vte, vcrit, g, max_iter, abstol,
                         reltol, v, dv, cur, jac, f, dq, J, KJ, tmp)
        total += it
        if not ok:
            break
    if ok:
        return total, NLEV + 1
    # source stepping: p0 makes qstart an exact root; walk p0 -> p
    for a in range(NR):
        q[a] = qstart[a]
    _expand_ports(expand, q, v)
    _laws(v, theta, cur, jac)
    for a in range(NR):
        acc = q[a]
        for c in range(NP):
            acc -= K[a, c] * cur[c]
        p0[a] = acc
    for j in range(1, HOMOTOPY + 1):
        for a in range(NR):
            pl[a] = p[a] if j == HOMOTOPY else p0[a] + (j / HOMOTOPY) * (p[a] - p0[a])
        it, ok = _newton(q, pl, K, expand, jports, theta, vte, vcrit, 0.0, max_iter, abstol,
                         reltol, v, dv, cur, jac, f, dq, J, KJ, tmp)
        total += it
        if not ok:
            return total, -1
    return total, NLEV + 2


@numba.njit(cache=CACHE, nogil=True, error_model="numpy")
def run(G, H, K, A, B, C, D, E, F, Ds, Es, Fs, gx, is_ind, expand, jports, theta, w, wprev0,
        s0, x0, q0, q00, p00, jac00, use_q0, use_p0, predictor, levels, max_iter, abstol,
        reltol, y, x, s_final, q_out, p_last, jac_last, iters, level, failed):
    batch, length = w.shape[0], w.shape[1]
    vte = np.empty(NJ)
    i_s = np.empty(NJ)
    vcrit = np.empty(NJ)
    _junctions(theta, vte, i_s)
    for j in range(NJ):
        vcrit[j] = vte[j] * math.log(vte[j] / (math.sqrt(2.0) * i_s[j]))
    v = np.empty(NP)
    dv = np.empty(NP)
    cur = np.zeros(NP)
    jac = np.zeros((NP, NP))
    f = np.empty(NR)
    dq = np.empty(NR)
    J = np.empty((NR, NR))
    KJ = np.empty((NR, NP))
    tmp = np.empty(NP)
    wn = np.empty(NW)
    gshunt = 0.0
    s = np.empty(NX)
    s_new = np.empty(NX)
    ss = np.empty(NX)
    ss_new = np.empty(NX)
    xprev = np.empty(NX)
    xs = np.empty(NX)
    ys = np.empty(1)
    wprev = np.empty(NW)
    wsub = np.empty(NW)
    q = np.empty(NR)
    q1 = np.empty(NR)
    q2 = np.empty(NR)
    pprev = np.empty(NR)
    p = np.empty(NR)
    p0 = np.empty(NR)
    pl = np.empty(NR)
    G0, H0, KN, A0, B0, C0 = G[0], H[0], K[0], A[0], B[0], C[0]
    D0, E0, F0, Ds0, Es0, Fs0 = D[0], E[0], F[0], Ds[0], Es[0], Fs[0]
    for b in range(batch):
        for k in range(NX):
            s[k] = s0[b, k]
            xprev[k] = x0[b, k]
        for k in range(NW):
            wprev[k] = wprev0[b, k]
        for a in range(NR):
            q1[a] = q0[b, a]
            q2[a] = q00[b, a]
            pprev[a] = p00[b, a]
        have_p = use_p0
        if use_p0:
            # the Jacobian where the previous run's last Newton left it, for the tangent step
            for c in range(NP):
                for e in range(NP):
                    jac[c, e] = jac00[b, c, e]
        for n in range(length):
            for k in range(NW):
                wn[k] = w[b, n, k]
            lev = 0
            if NR > 0:
                _predict(G0, H0, s, wn, p)
                if n == 0 and not use_q0:
                    # no previous solution: start from the linear prediction p
                    for a in range(NR):
                        q1[a] = p[a]
                        q2[a] = p[a]
                for a in range(NR):
                    q[a] = q1[a] + (q1[a] - q2[a]) if predictor == 1 else q1[a]
                if predictor == 2 and have_p:
                    # tangent: J dq = p - p_prev with J = I - K (di/dv) Q at the last evaluation
                    _newton_matrix(KN, jac, expand, KJ, J)
                    for a in range(NR):
                        f[a] = p[a] - pprev[a]
                    _solve_linear(J, f, dq)
                    # limited as a Newton step: a junction never starts far past its knee
                    _expand_ports(expand, q1, v)
                    _expand_ports(expand, dq, dv)
                    alpha = _pnjlim(v, dv, jports, vte, vcrit)
                    good = True
                    for a in range(NR):
                        if not math.isfinite(alpha * dq[a]):
                            good = False
                    if good:
                        for a in range(NR):
                            q[a] = q1[a] + alpha * dq[a]
@MAIN_NEWTON@
                total = it
                ok = conv
                if not ok:
                    # the ladder: substeps 2, 4, ... 2^levels, then gmin and source stepping
                    for lv in range(1, levels + 1):
                        for a in range(NR):
                            q[a] = q1[a]
                        it, ok = _substeps(lv, G, H, K, A, B, C, D, E, F, Ds, Es, Fs, gx,
                                           is_ind, expand, jports, theta, vte, vcrit, max_iter,
                                           abstol, reltol, s, xprev, wprev, wn, q, pl, ss,
                                           ss_new, wsub, xs, ys, s_new, v, dv, cur, jac, f,
                                           dq, J, KJ, tmp)
                        total += it
                        if ok:
                            lev = lv
                            break
                    if not ok:
                        it, lv = _continuation(KN, expand, jports, theta, vte, vcrit, max_iter,
                                               abstol, reltol, p, q1, q, p0, pl, v, dv, cur,
                                               jac, f, dq, J, KJ, tmp)
                        total += it
                        if lv > 0:
                            ok = True
                            lev = lv
                    if not ok:
                        # Keep the previous sample's solution (finite, as the torch path does);
                        # the sample is reported in `failed`, and the caller raises or warns.
                        failed[b, n] = True
                        for a in range(NR):
                            q[a] = q1[a]
                        _expand_ports(expand, q, v)
                        _laws(v, theta, cur, jac)
                iters[b, n] = total
                level[b, n] = lev
                for a in range(NR):
                    q_out[b, n, a] = q[a]
                    q2[a] = q1[a]
                    q1[a] = q[a]
                    pprev[a] = p[a]
                have_p = True
            if 1 <= lev <= NLEV:
                y[b, n] = ys[0]
                for a in range(NX):
                    x[b, n, a] = xs[a]
            else:
                # y, exposed states, and the canonical state update
                y[b, n] = _affine(D0, E0, F0, 0, s, wn, cur)
                for a in range(NX):
                    x[b, n, a] = _affine(Ds0, Es0, Fs0, a, s, wn, cur)
                for a in range(NX):
                    s_new[a] = _affine(A0, B0, C0, a, s, wn, cur)
            for a in range(NX):
                s[a] = s_new[a]
                xprev[a] = x[b, n, a]
            for k in range(NW):
                wprev[k] = wn[k]
        for k in range(NX):
            s_final[b, k] = s[k]
        for a in range(NR):
            p_last[b, a] = pprev[a]
        for c in range(NP):
            for e in range(NP):
                jac_last[b, c, e] = jac[c, e]
'''


_NEWTON = '''it = 0
conv = False
last = math.inf
for _ in range(max_iter):
    _expand_ports(expand, q, v)
    _laws(v, theta, cur, jac)
    if gshunt != 0.0:
        for c in range(NP):
            if not IS_CHARGE[c]:        # a charge port's law is q(v): no shunt (newton.py)
                cur[c] += gshunt * v[c]
                jac[c, c] += gshunt
    it += 1
    # f = q - p - K i, and whether it is already at its round-off floor
    settled = True
    for a in range(NR):
        acc = q[a] - p[a]
        mag = abs(q[a]) + abs(p[a])
        for c in range(NP):
            t = KN[a, c] * cur[c]
            acc -= t
            mag += abs(t)
        f[a] = -acc
        if not (abs(acc) <= ROUNDOFF * mag and mag < math.inf):
            settled = False
    if settled:
        conv = True
        break
    _newton_matrix(KN, jac, expand, KJ, J)
    _solve_linear(J, f, dq)
    _expand_ports(expand, dq, dv)
    alpha = _pnjlim(v, dv, jports, vte, vcrit)
    finite = True
    for a in range(NR):
        if not math.isfinite(alpha * dq[a]):
            finite = False
    if not finite:
        break
    small = alpha == 1.0
    big = 0.0
    for a in range(NR):
        step = alpha * dq[a]
        q[a] += step
        if abs(step) > abstol + reltol * abs(q[a]):
            small = False
        if abs(step) > big:
            big = abs(step)
    if alpha == 1.0 and big <= STALL and big >= 0.5 * last:
        small = True       # steps no longer shrink, below STALL volts: round-off, not Newton
    last = big
    if small:
        # The currents at the converged q, to first order from the last evaluation: the last
        # step is below the Newton tolerance (~1e-10 V), so the remainder is ~i''/2 * 1e-20,
        # far below round-off in y, and an evaluation is saved.
        for c in range(NP):
            acc = cur[c]
            for e in range(NP):
                acc += jac[c, e] * dv[e]
            tmp[c] = acc
        for c in range(NP):
            cur[c] = tmp[c]
        conv = True
        break
'''


class _KernelPrinter(PythonCodePrinter):
    """Sympy's Python printer, plus what device laws of real voltages may contain."""

    def __init__(self):
        super().__init__({"fully_qualified_modules": True, "standard": "python3"})

    def _print_re(self, expr):          # every symbol here is a real number
        return f"({self._print(expr.args[0])})"

    def _print_im(self, expr):
        return "0.0"


_INLINE_LINES = 40


def _print_function(name: str, args: str, outputs: list[tuple[str, sp.Expr]],
                    inputs: list[tuple[str, sp.Symbol]]) -> str:
    """A numba function assigning each output `target = expr`, with common subexpressions shared.

    inputs: (array element, symbol) pairs read at the top, e.g. ("v[0]", v_d1).
    """
    safe = {sym: sp.Symbol(f"_a{k}") for k, (_, sym) in enumerate(inputs)}
    exprs = [sp.sympify(e).xreplace(safe) for _, e in outputs]
    common, reduced = sp.cse(exprs, symbols=sp.numbered_symbols("_c"))
    printer = _KernelPrinter()
    used = set().union(*(e.free_symbols for e in exprs)) if exprs else set()
    lines = [f"{safe[sym]} = {src}" for src, sym in inputs if safe[sym] in used]
    lines += [f"{lhs} = {printer.doprint(rhs)}" for lhs, rhs in common]
    lines += [f"{target} = {printer.doprint(e)}"
              for (target, _), e in zip(outputs, reduced, strict=True)]
    body = textwrap.indent("\n".join(lines) or "pass", "    ")
    # Inlining a small law into the Newton loop pays; inlining a long one (a JFET's) only
    # multiplies numba's compile time.
    inline = ", inline='always'" if len(lines) <= _INLINE_LINES else ""
    return (f"@numba.njit(cache=CACHE, nogil=True, error_model='numpy'{inline})\n"
            f"def {name}({args}):\n{body}\n")


#: Substep levels compiled into every kernel: k = 2, 4, ... 2^MAX_LEVELS substeps.
MAX_LEVELS = 6


def kernel_source(eq: Equations) -> str:
    """The Python source of a circuit's kernel: its device laws, then the shared sample loop."""
    params = [(f"theta[{k}]", s) for k, s in enumerate(eq.symbols)]
    voltages = [(f"v[{k}]", s) for k, s in enumerate(eq.port_voltages)]
    n = len(eq.ports)
    law_out = [(f"i[{k}]", c) for k, c in enumerate(eq.currents)]
    law_out += [(f"jac[{a}, {b}]", eq.jacobian[a, b]) for a in range(n) for b in range(n)]
    junction_out = []
    for k, port in enumerate(p for p in eq.ports if p.junction):
        junction_out += [(f"vte[{k}]", port.junction[0]), (f"i_s[{k}]", port.junction[1])]
    laws = _print_function("_laws", "v, theta, i, jac", law_out, voltages + params)
    junctions = _print_function("_junctions", "theta, vte, i_s", junction_out, params)
    dims = dict(NW=len(eq.sources), NX=eq.n_states, NR=len(eq.reduced), NP=n,
                NJ=len(junction_out) // 2, NLEV=MAX_LEVELS, HOMOTOPY=HOMOTOPY_STEPS)
    header = ["import math", "import numba", "import numpy as np", "", "CACHE = False"]
    header += [f"{k} = {v}" for k, v in dims.items()]
    ptr, rows = [0], []
    for c in range(n):
        rows += [a for a in range(n) if eq.jacobian[a, c] != 0]
        ptr.append(len(rows))
    identity = eq.expand.shape == (n, n) and bool(np.array_equal(eq.expand, np.eye(n)))
    header += [f"JAC_PTR = np.array({ptr}, dtype=np.int64)",
               f"JAC_ROW = np.array({rows}, dtype=np.int64)",
               f"EXPAND_IDENTITY = {identity}",
               f"IS_CHARGE = np.array({[k in eq.charge_ports for k in range(n)]}, "
               "dtype=np.bool_)"]
    header += [f"ROUNDOFF = {ROUNDOFF!r}", f"STALL = {STALL!r}",
               f"GMIN_STEPS = ({', '.join(repr(float(g)) for g in GMIN_STEPS)},)", "", ""]
    return "\n".join(header) + laws + "\n\n" + junctions + "\n" + _kernel_loop()


def _kernel_loop() -> str:
    """The shared loop with Newton's body written out twice: in `_newton` (the fallbacks call
    it) and inline in the sample loop, where a call would cost as much as an iteration."""
    return (_KERNEL.replace("@NEWTON@\n", textwrap.indent(_NEWTON, " " * 4))
            .replace("@MAIN_NEWTON@\n", textwrap.indent(_NEWTON, " " * 16)))


_COMPILED: dict[str, object] = {}


def cache_folder() -> Path | None:
    """Where generated kernels and numba's machine code are kept between processes:
    `nodal.files.cache_dir("kernels")` (None: compile in memory only)."""
    return cache_dir("kernels")


class KernelCacheWarning(UserWarning):
    """The kernel cache folder cannot be used: the kernel is compiled in memory instead."""


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
                          "compiling in memory", KernelCacheWarning, stacklevel=3)
        else:
            try:
                return _load_file(folder, source)
            except OSError as exc:
                warnings.warn(f"kernel cache folder {folder}: {exc}; compiling in memory",
                              KernelCacheWarning, stacklevel=3)
    namespace: dict = {}
    exec(compile(source, f"<nodal.fast kernel {len(_COMPILED)}>", "exec"), namespace)
    return namespace["run"]


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
    return module.run


def kernel(eq: Equations):
    """The compiled `run` function of `eq`'s structure (compiled on first call, then cached)."""
    source = kernel_source(eq)
    if source not in _COMPILED:
        _COMPILED[source] = _load(source)
    return _COMPILED[source]


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


@dataclass
class Start:
    """Where a run begins, per batch item: canonical state s [B, nx], the previous sample's
    exposed states x [B, nx] and sources w [B, nw] (for substeps), and Newton's last two port
    coordinates q [B, r], q_before [B, r] (None: no previous solution, start from p), and the
    previous sample's linear part p [B, r] (None: none, no tangent prediction at the first)
    with the laws' Jacobian [B, ports, ports] that Newton last evaluated."""

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
    (Newton's port coordinates per sample), p_last [B, r] (the last sample's linear part) and
    jac_last [B, ports, ports] (the laws' Jacobian Newton last evaluated),
    iterations [B, T] (int64, every Newton iteration of
    the sample, fallbacks included), level [B, T] (int8: 0 none, l <= MAX_LEVELS 2^l substeps,
    then gmin stepping, then source stepping) and failed [B, T] (bool)."""

    y: np.ndarray
    x: np.ndarray
    s_final: np.ndarray
    q: np.ndarray
    p_last: np.ndarray
    jac_last: np.ndarray
    iterations: np.ndarray
    level: np.ndarray
    failed: np.ndarray


def _f64(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float64)


def run(kernel_run, arrays: KernelArrays, w: np.ndarray, start: Start, options) -> Run:
    """Run a compiled kernel on sources w [B, T, sources] from `start`; `options` is a
    `newton.NewtonOptions`. Pure arrays in, arrays out."""
    batch, length = w.shape[:2]
    nx, r = arrays.A.shape[1], arrays.K.shape[1]
    y = np.zeros((batch, length))
    x = np.zeros((batch, length, nx))
    s_final = np.zeros((batch, nx))
    q = np.zeros((batch, length, r))
    iters = np.zeros((batch, length), dtype=np.int64)
    level = np.zeros((batch, length), dtype=np.int8)
    failed = np.zeros((batch, length), dtype=np.bool_)
    q0 = np.zeros((batch, r)) if start.q is None else _f64(start.q)
    q00 = q0 if start.q_before is None else _f64(start.q_before)
    p00 = np.zeros((batch, r)) if start.p is None else _f64(start.p)
    p_last = np.zeros((batch, r))
    nports = arrays.expand.shape[0]
    jac_last = np.zeros((batch, nports, nports))
    jac00 = jac_last if start.jac is None else _f64(start.jac)
    levels = min(int(options.substep_levels), arrays.levels, MAX_LEVELS)
    kernel_run(*arrays.as_tuple(), _f64(w), _f64(start.w).reshape(batch, -1),
               _f64(start.s).reshape(batch, nx), _f64(start.x).reshape(batch, nx), q0, q00, p00,
               jac00, start.q is not None, start.p is not None and start.jac is not None,
               PREDICTORS.index(options.predictor), levels, int(options.max_iter),
               float(options.abstol), float(options.reltol), y, x, s_final, q, p_last, jac_last,
               iters, level, failed)
    return Run(y, x, s_final, q, p_last, jac_last, iters, level, failed)

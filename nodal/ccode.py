"""A circuit as one self-contained C99 file: `nodalnet export CIRCUIT --format c --out pedal.c`.

    text = ccode.source(nodal.equations("tube_screamer"), values={"drive": 0.8})
    ccode.export("tube_screamer", "pedal.c", values={"drive": 0.8})

The file is generated from the same Sympy expressions the numba kernel compiles (`fast.py`):
the port laws `Equations.currents`, their Jacobian `Equations.jacobian` and each junction's
(n Vt, Is), here printed with Sympy's C99 code printer (common subexpressions shared); and the
DK matrices of `dk.NumericEquations` (at T and at T/2, ... T/64 for the substep fallback, and
the DC ones) evaluated at the given component values, written into the file as numbers. The C
per-sample loop is the kernel's, line for line: the tangent predictor, Newton with SPICE's
pnjlim step limiting and the same convergence tests (the "predicted" stopping rule where every
port is a junction, `newton.py`), then the fallback ladder of `newton.py` (Newton with a line
search, 2 ... 64 substeps, gmin stepping, source stepping); `nodalnet_init` finds the DC
operating point as `NodalSolver` does. Where the kernel splits the circuit into blocks
(`fast.layout`, over every K in the file: each substep level's and the DC one), Newton runs on
each block in turn, as the kernel's does: a block's equations read its own ports' currents and
those of the blocks before it, already solved (`NewtonOptions(split=False)`: one Newton on the
whole circuit, as the torch path's).
So the C build gives the numba path's samples to round-off (the tests hold it there: 1e-9 V
with double samples, 1e-6 V with float ones).

What the file offers (its header comment says the same, with the circuit and its values):

    nodalnet_state st;
    nodalnet_init(&st, 48000.0);                 /* refuses another rate than the file's */
    nodalnet_process(&st, in, out, n);           /* float in/out, volts; double internally */

Only libm is needed. `-DNODALNET_SAMPLE_DOUBLE` makes the sample type double. Including the
file with `NODALNET_DECLARATIONS_ONLY` defined gives just the types and prototypes (for a C++
plug-in that compiles the file as C beside it).

Initial conditions (`.ic`, `IC=`, `uic`) give a start that is computed here (`nodal.initial`)
and written into the file as numbers; without them `nodalnet_init` finds the DC operating
point itself. Not supported (each an `UnsupportedCircuitError` naming it, and nothing
written): a source other than the audio input whose waveform is PULSE or PWL (DC and SIN are
generated in C), and a device law with a function C99's libm has no counterpart for. `.param`
knobs are numbers in the file: export again to change one.

`bench_c` compiles the file with -O2 and times it on a signal (`nodalnet bench`'s C row).
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import tempfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import sympy as sp
from sympy.printing.c import C99CodePrinter, get_math_macros

from .errors import NodalError
from .files import check_output_file, write_output_file
from .mna import Equations
from .newton import (AHEAD_REACH, AHEAD_SAFETY, ARMIJO, GMIN_STEPS, HOMOTOPY_STEPS, KAPPA,
                     ROUNDOFF, SEARCH_DEPTH, STALL, STOPPING, NewtonOptions, ladder_options,
                     stopping_rule)

#: Substep levels written into every file: 2, 4, ... 2^LEVELS substeps (as `fast.MAX_LEVELS`).
LEVELS = 6


class CCodeError(NodalError):
    """Base class of what can go wrong writing or building a circuit's C file."""


class UnsupportedCircuitError(CCodeError):
    """A construct the C generator does not write (names it, and where it is)."""


class OutputPathError(CCodeError):
    """An output path that cannot be written (a folder, a read-only place)."""


class CompilerError(CCodeError):
    """No C compiler, or the generated file did not compile (the compiler's message)."""


# -- the C text -----------------------------------------------------------------------------

_PREAMBLE = r'''
#ifndef NODALNET_CIRCUIT_DECLARATIONS
#define NODALNET_CIRCUIT_DECLARATIONS

#ifdef NODALNET_SAMPLE_DOUBLE
typedef double nodalnet_sample;
#else
typedef float nodalnet_sample;
#endif

#define NODALNET_SAMPLE_RATE @RATE@
#define NODALNET_CONTROLS @NCONTROLS@

enum {
    NODALNET_OK = 0,
    NODALNET_ERR_RATE = -1,      /* init: a sample rate other than NODALNET_SAMPLE_RATE */
    NODALNET_ERR_DC = -2,        /* init: no DC operating point */
    NODALNET_ERR_NOT_READY = -3, /* process: init was not called, or failed */
    NODALNET_ERR_CONTROL = -4    /* set_control: no such control */
};

typedef struct nodalnet_state {
    double s[@NX1@];             /* canonical DK states x~ */
    double xprev[@NX1@];         /* the previous sample's exposed states */
    double wprev[@NW1@];         /* the previous sample's sources */
    double q1[@NR1@], q2[@NR1@]; /* Newton's last two solutions */
    double pprev[@NR1@];         /* the previous sample's linear part of each block */
    double cur[@NP1@];           /* port currents at the last solution */
    double jac[@NP1@ * @NP1@];   /* their Jacobian, for the tangent predictor */
    double vte[@NJ1@], vcrit[@NJ1@];
    double control[@NW1@];       /* a held control value (nodalnet_set_control) */
    int held[@NW1@];
    int have_p;
    int ready;
    long long n;                 /* samples since init: the time of the netlist waveforms */
    long long failed;            /* samples where Newton failed even with the fallbacks */
} nodalnet_state;

#ifdef __cplusplus
extern "C" {
#endif
int nodalnet_init(nodalnet_state *st, double sample_rate);
int nodalnet_process(nodalnet_state *st, const nodalnet_sample *in, nodalnet_sample *out,
                     int n);
int nodalnet_set_control(nodalnet_state *st, int index, double volts);
int nodalnet_release_control(nodalnet_state *st, int index);
#ifdef __cplusplus
}
#endif

#endif /* NODALNET_CIRCUIT_DECLARATIONS */

#ifndef NODALNET_DECLARATIONS_ONLY

#include <math.h>
#include <string.h>

@MACROS@
#define NW @NW@
#define NX @NX@
#define NR @NR@
#define NP @NP@
#define NJ @NJ@
#define NW1 @NW1@
#define NX1 @NX1@
#define NR1 @NR1@
#define NP1 @NP1@
#define NJ1 @NJ1@
#define NLEV @NLEV@
#define HOMOTOPY @HOMOTOPY@
#define MAX_ITER @MAX_ITER@
#define LADDER_ITER @LADDER_ITER@
#define ABSTOL @ABSTOL@
#define RELTOL @RELTOL@
#define ROUNDOFF @ROUNDOFF@
#define STALL @STALL@
#define STOPPING @STOPPING@
#define AHEAD_SAFETY @AHEAD_SAFETY@
#define AHEAD_REACH @AHEAD_REACH@
#define ARMIJO @ARMIJO@
#define KAPPA @KAPPA@
#define SEARCH_DEPTH @SEARCH_DEPTH@
'''

_IPOW = r'''
/* a ** b for an integer b, by squaring (as numba raises a float to an integer power) */
static double ipow(double a, int b)
{
    double r = 1.0;
    int neg = b < 0;
    if (neg)
        b = -b;
    while (b) {
        if (b & 1)
            r *= a;
        b >>= 1;
        a *= a;
    }
    return neg ? 1.0 / r : r;
}
'''

# The per-sample loop: `fast.py`'s kernel, written in C for one signal.
_LOOP = r'''
/* Newton's blocks. Where the kernel splits the circuit (`fast.layout`, over every K in the
   file: each substep level's and the DC one), each block is solved on its own in solve order,
   as the numba kernel solves it: block g's coordinates are BLK_IDX[BLK_PTR[g]:BLK_PTR[g + 1]],
   its ports PBLK_IDX[PBLK_PTR[g]:...] and its junctions JBLK_IDX[JBLK_PTR[g]:...]; its
   equations read only its own ports' currents and those of the blocks before it (their
   currents, already solved, part of its linear part pe). One block: the whole circuit, with
   the indices written as literals. BLOCK_RANGES(g) declares a block's sizes (nb coordinates,
   npb ports, njb junctions) and whether its ports read its own coordinates one to one (ident);
   CO(k), PO(l), JO(t) are its k-th coordinate, l-th port and t-th junction, PLOC(c) a port's
   place in its block. */
#if BLOCKS_SPLIT
#define BLOCK_RANGES(g)                                                                       \
    const int r0 = BLK_PTR[g], nb = BLK_PTR[(g) + 1] - BLK_PTR[g];                            \
    const int p0 = PBLK_PTR[g], npb = PBLK_PTR[(g) + 1] - PBLK_PTR[g];                        \
    const int j0 = JBLK_PTR[g], njb = JBLK_PTR[(g) + 1] - JBLK_PTR[g];                        \
    const int ident = BLK_ID[g];                                                              \
    (void)r0; (void)p0; (void)j0; (void)nb; (void)npb; (void)njb; (void)ident
#define CO(k) BLK_IDX[r0 + (k)]
#define PO(l) PBLK_IDX[p0 + (l)]
#define JO(t) JBLK_IDX[j0 + (t)]
#define PLOC(c) PORT_LOC[c]
#define AHEAD_AT(g) BLK_AHEAD[g]
#else
#define BLOCK_RANGES(g)                                                                       \
    const int nb = NR, npb = NP, njb = NJ, ident = EXPAND_IDENTITY;                           \
    (void)(g); (void)nb; (void)npb; (void)njb; (void)ident
#define CO(k) (k)
#define PO(l) (l)
#define JO(t) (t)
#define PLOC(c) (c)
#define AHEAD_AT(g) STOPPING
#endif

/* Port c's voltage, row c of Q q (where Q is mostly zeros, over the row's nonzeros
   QROW_COL[QROW_PTR[c]:QROW_PTR[c + 1]] in the row's order: the same sum, only exact zeros
   skipped) */
static double port_voltage(int c, const double *q)
{
#if EXPAND_IDENTITY
    return q[c];
#else
    double acc = 0.0;
    int a;
#if EXPAND_SPARSE
    for (a = QROW_PTR[c]; a < QROW_PTR[c + 1]; a++)
        acc += EXPAND[c * NR1 + QROW_COL[a]] * q[QROW_COL[a]];
#else
    for (a = 0; a < NR; a++)
        acc += EXPAND[c * NR1 + a] * q[a];
#endif
    return acc;
#endif
}

@SOLVERS@
/* v = Q q at block g's ports */
static void block_volts(int g, const double *q, double *v)
{
    BLOCK_RANGES(g);
    int l;
    for (l = 0; l < npb; l++)
        v[PO(l)] = ident ? q[CO(l)] : port_voltage(PO(l), q);
}

/* dv = Q dq at block g's ports, dq the step of its own coordinates (dq[k]: CO(k)'s) */
static void block_steps(int g, const double *dq, double *dv)
{
    BLOCK_RANGES(g);
    int l, k;
    for (l = 0; l < npb; l++) {
        int c = PO(l);
        double acc = 0.0;
        if (ident) {
            dv[c] = dq[l];
            continue;
        }
        for (k = 0; k < nb; k++)
            acc += EXPAND[c * NR1 + CO(k)] * dq[k];
        dv[c] = acc;
    }
}

/* Block g's linear part: p plus the currents of the ports of the blocks before it */
static void effective(int g, const double *p, const double *KN, const double *cur,
                      double *pe)
{
    BLOCK_RANGES(g);
    int k;
    for (k = 0; k < nb; k++) {
        int a = CO(k);
        double acc = p[a];
#if BLOCKS_SPLIT
        int x;
        for (x = 0; x < p0; x++)
            acc += KN[a * NP1 + PBLK_IDX[x]] * cur[PBLK_IDX[x]];
#else
        (void)KN;
        (void)cur;
#endif
        pe[a] = acc;
    }
}

#if BLOCKS_SPLIT
/* BLK_KT's set for this K: each block's part of K, transposed ([port][coordinate], local) */
static const double *block_kt(const double *KN)
{
    int l;
    for (l = 0; l <= NLEV; l++)
        if (KN == MAT_K[l])
            return BLK_KT[l];
    return BLK_KT[NLEV + 1];        /* DC_K */
}
#endif

/* Block g's J = I - K (di/dv) Q over its own coordinates and ports (local indices), over
   the Jacobian's structural nonzeros only (JAC_ROW[JAC_PTR[c]:JAC_PTR[c + 1]]: the rows of
   column c, all in c's block) and Q's (EXP_ROW likewise), as the numba kernel */
static void newton_matrix(int g, const double *KN, const double *jac, double *J)
{
    BLOCK_RANGES(g);
    double KJ[NR1 * NP1];
    int k, l, m, x;
    int ks = NP1, ls = 1;           /* KJ[k][l] at KJ[k * ks + l * ls] */
#if BLOCKS_SPLIT
    if (nb >= 4) {
        /* a large block: a column of K (di/dv) at a time over its own part of K, transposed
           (the same sums in the same order as the row form below, over contiguous memory:
           the Big Muff pair's C build 1.23 -> 1.42-1.47x real time; on the Phase 90's
           blocks of one or two coordinates the row form is faster) */
        const double *kt = block_kt(KN) + BLK_KT_OFF[g];
        ks = 1;
        ls = nb;
        for (l = 0; l < npb; l++) {
            int c = PO(l);
            double *col = KJ + l * nb;
            for (k = 0; k < nb; k++)
                col[k] = 0.0;
            for (x = JAC_PTR[c]; x < JAC_PTR[c + 1]; x++) {
                const double jv = jac[JAC_ROW[x] * NP1 + c];
                const double *kr = kt + PLOC(JAC_ROW[x]) * nb;
                for (k = 0; k < nb; k++)
                    col[k] += kr[k] * jv;
            }
        }
    } else
#endif
    {
        for (k = 0; k < nb; k++) {
            int a = CO(k);
            for (l = 0; l < npb; l++) {
                int c = PO(l);
                double acc = 0.0;
                for (x = JAC_PTR[c]; x < JAC_PTR[c + 1]; x++)
                    acc += KN[a * NP1 + JAC_ROW[x]] * jac[JAC_ROW[x] * NP1 + c];
                KJ[k * NP1 + l] = acc;
            }
        }
    }
    for (k = 0; k < nb; k++) {
        for (m = 0; m < nb; m++) {
            double acc = k == m ? 1.0 : 0.0;
            if (ident) {
                acc -= KJ[k * ks + m * ls];
            } else {
                int col = CO(m);
                for (x = EXP_PTR[col]; x < EXP_PTR[col + 1]; x++) {
                    int e = EXP_ROW[x];
#if BLOCKS_SPLIT
                    if (PORT_BLK[e] != g)
                        continue;       /* a later block's port reads this coordinate */
#endif
                    acc -= KJ[k * ks + PLOC(e) * ls] * EXPAND[e * NR1 + col];
                }
            }
            J[k * NR1 + m] = acc;
        }
    }
}

/* SPICE pnjlim over block g's junctions: the largest factor in (0, 1] keeping every
   junction's step in bounds */
static double pnjlim(int g, const double *v, const double *dv, const double *vte,
                     const double *vcrit)
{
    BLOCK_RANGES(g);
    double alpha = 1.0;
    int t;
    for (t = 0; t < njb; t++) {
        int j = JO(t);
        double vt = vte[j];
        double v_old = v[JPORTS[j]];
        double d = dv[JPORTS[j]];
        double v_new = v_old + d;
        double ratio = 1.0;
        if (v_new > vcrit[j] && fabs(d) > 2.0 * vt) {
            double v_lim;
            if (v_old > 0.0) {
                double arg = 1.0 + d / vt;
                if (arg > 0.0)
                    v_lim = v_old + vt * log(arg > 1e-300 ? arg : 1e-300);
                else
                    v_lim = vcrit[j];
            } else {
                double r = v_new / vt;
                v_lim = vt * log(r > 1e-300 ? r : 1e-300);
            }
            ratio = (v_lim - v_old) / d;
        }
        if (ratio < 1e-6)
            ratio = 1e-6;
        if (ratio > 1.0)
            ratio = 1.0;
        if (ratio < alpha)
            alpha = ratio;
    }
    return alpha;
}

/* The currents of block g at the accepted q, to first order from the last evaluation: the
   last step is below the Newton tolerance (~1e-10 V), so the remainder is ~i''/2 * 1e-20 */
static void first_order(int g, const double *jac, const double *dv, double *cur)
{
    BLOCK_RANGES(g);
    double tmp[NP1];
    int l, m;
    for (l = 0; l < npb; l++) {
        int c = PO(l);
        double acc = cur[c];
        for (m = 0; m < npb; m++)
            acc += jac[c * NP1 + PO(m)] * dv[PO(m)];
        tmp[c] = acc;
    }
    for (l = 0; l < npb; l++)
        cur[PO(l)] = tmp[PO(l)];
}

/* The "predicted" stopping rule (newton.py; only for a block whose every port is a
   junction, AHEAD_AT): after a full step (port steps dv, all within AHEAD_REACH vte), the
   next step J^-1 K r is predicted from the currents' second-order remainder
   r_c = sum_e jac[c, e] dv_e^2 / (2 vte_e). Below the tolerance (times AHEAD_SAFETY), q takes
   that step, the currents their value there to second order, and 1 is returned. J, piv: the
   factors and pivots solve_linear left. */
static int ahead(int g, double *q, const double *KN, const double *vte, const double *jac,
                 const double *J, const double *piv, double *dv, double *cur)
{
    BLOCK_RANGES(g);
    double port_vte[NP1], r[NP1], dv2[NP1];
    double d2[NR1] = {0.0};     /* as dq in newton_block */
    int k, l, t, x;
    for (t = 0; t < njb; t++)
        port_vte[JPORTS[JO(t)]] = vte[JO(t)];
    for (l = 0; l < npb; l++)
        if (!(fabs(dv[PO(l)]) <= AHEAD_REACH * port_vte[PO(l)]))
            return 0;
    for (l = 0; l < npb; l++)
        r[PO(l)] = 0.0;
    for (l = 0; l < npb; l++) {
        int e = PO(l);
        double d = dv[e] * dv[e] * (0.5 / port_vte[e]);
        for (x = JAC_PTR[e]; x < JAC_PTR[e + 1]; x++)
            r[JAC_ROW[x]] += jac[JAC_ROW[x] * NP1 + e] * d;
    }
    for (k = 0; k < nb; k++) {
        double acc = 0.0;
        for (l = 0; l < npb; l++)
            acc += KN[CO(k) * NP1 + PO(l)] * r[PO(l)];
        d2[k] = acc;
    }
    resolve_linear(nb, J, piv, d2);
    for (k = 0; k < nb; k++)
        if (!(AHEAD_SAFETY * fabs(d2[k]) <= ABSTOL + RELTOL * fabs(q[CO(k)])))
            return 0;
    for (k = 0; k < nb; k++)
        q[CO(k)] += d2[k];
    block_steps(g, d2, dv2);
    for (l = 0; l < npb; l++) {
        dv[PO(l)] += dv2[PO(l)];
        cur[PO(l)] += r[PO(l)];
    }
    first_order(g, jac, dv, cur);      /* the currents there to second order */
    return 1;
}

/* out = Q q: every port voltage from the independent ones */
static void expand_ports(const double *q, double *out)
{
    int c;
    for (c = 0; c < NP; c++)
        out[c] = port_voltage(c, q);
}


/* row `row` of Mx x~ + Mw w + Mi i: one line of the DK update */
static double affine(const double *Mx, const double *Mw, const double *Mi, int row,
                     const double *s, const double *w, const double *cur)
{
    double acc = 0.0;
    int k;
    for (k = 0; k < NX; k++)
        acc += Mx[row * NX1 + k] * s[k];
    for (k = 0; k < NW; k++)
        acc += Mw[row * NW1 + k] * w[k];
    for (k = 0; k < NP; k++)
        acc += Mi[row * NP1 + k] * cur[k];
    return acc;
}

/* p = G x~ + H w: the linear part of the port coordinates */
static void predict(const double *G, const double *H, const double *s, const double *w,
                    double *p)
{
    int a, k;
    for (a = 0; a < NR; a++) {
        double acc = 0.0;
        for (k = 0; k < NX; k++)
            acc += G[a * NX1 + k] * s[k];
        for (k = 0; k < NW; k++)
            acc += H[a * NW1 + k] * w[k];
        p[a] = acc;
    }
}

/* The residual f = -(q - pe - K i) of block g (local), and whether it is already at its
   round-off floor; *norm: |f|^2 */
static int residual(int g, const double *q, const double *pe, const double *KN,
                    const double *cur, double *f, double *norm)
{
    BLOCK_RANGES(g);
    int settled = 1, k, l;
    double sum = 0.0;
    for (k = 0; k < nb; k++) {
        int a = CO(k);
        double acc = q[a] - pe[a];
        double mag = fabs(q[a]) + fabs(pe[a]);
        for (l = 0; l < npb; l++) {
            double t = KN[a * NP1 + PO(l)] * cur[PO(l)];
            acc -= t;
            mag += fabs(t);
        }
        f[k] = -acc;
        sum += acc * acc;
        if (!(fabs(acc) <= ROUNDOFF * mag && mag < HUGE_VAL))
            settled = 0;
    }
    *norm = sum;
    return settled;
}

/* Newton's step on block g from its residual f and the laws' Jacobian: J's factors (left in
   J, the pivots in f), the step dq, the ports' steps dv, SPICE's limiting factor *alpha, and
   q += alpha dq. 0 where the step is not finite (q untouched). *small: the step is below the
   tolerance, or steps no longer shrink below STALL volts (round-off, not Newton); *last: the
   step's largest component, for that test at the next step. Inline: as a call it cost the
   diode clipper's C build 4 % (235x against 245x). */
static inline int newton_step(int g, double *q, const double *KN, const double *jac,
                              const double *v, const double *vte, const double *vcrit,
                              double *J, double *f, double *dq, double *dv, double *alpha,
                              double *last, int *small)
{
    BLOCK_RANGES(g);
    double a, big = 0.0;
    int k;
    newton_matrix(g, KN, jac, J);
    solve_linear(nb, J, f, dq);
    block_steps(g, dq, dv);
    a = pnjlim(g, v, dv, vte, vcrit);
    for (k = 0; k < nb; k++)
        if (!isfinite(a * dq[k]))
            return 0;
    *small = a == 1.0;
    for (k = 0; k < nb; k++) {
        double step = a * dq[k];
        q[CO(k)] += step;
        if (fabs(step) > ABSTOL + RELTOL * fabs(q[CO(k)]))
            *small = 0;
        if (fabs(step) > big)
            big = fabs(step);
    }
    if (a == 1.0 && big <= STALL && big >= 0.5 * *last)
        *small = 1;
    *last = big;
    *alpha = a;
    return 1;
}

/* Solve block g's q - pe - K i(Q q) = 0 in place from q; 1 if converged. On convergence cur
   holds its currents at q (to first order after a last small step) and jac their Jacobian.
   gshunt: a conductance across every port but the charges' (gmin stepping; 0 otherwise). */
static int newton_block(int g, double *q, const double *pe, const double *KN,
                        const double *vte, const double *vcrit, double gshunt, int max_iter,
                        double *cur, double *jac)
{
    BLOCK_RANGES(g);
    double v[NP1], dv[NP1], J[NR1 * NR1];
    /* f and dq: zeroed for the compiler, which cannot see that solve_linear's size is nb */
    double f[NR1] = {0.0}, dq[NR1] = {0.0};
    double last = HUGE_VAL;
    int it, l;
    for (it = 0; it < max_iter; it++) {
        int small;
        double alpha, norm;
        block_volts(g, q, v);
        block_laws(g, v, cur, jac);
        if (gshunt != 0.0) {
            for (l = 0; l < npb; l++) {
                int c = PO(l);
                if (!IS_CHARGE[c]) {     /* a charge port's law is q(v): no shunt */
                    cur[c] += gshunt * v[c];
                    jac[c * NP1 + c] += gshunt;
                }
            }
        }
        if (residual(g, q, pe, KN, cur, f, &norm))
            return 1;
        if (!newton_step(g, q, KN, jac, v, vte, vcrit, J, f, dq, dv, &alpha, &last, &small))
            return 0;
        if (AHEAD_AT(g) && alpha == 1.0 && ahead(g, q, KN, vte, jac, J, f, dv, cur))
            return 1;
        if (small) {
            first_order(g, jac, dv, cur);
            return 1;
        }
    }
    return 0;
}

/* Every block's Newton in solve order from q (in place); 1 if all converged */
static int newton(double *q, const double *p, const double *KN, const double *vte,
                  const double *vcrit, double gshunt, int max_iter, double *cur, double *jac)
{
#if BLOCKS_SPLIT
    double pe[NR1];
    int g;
    for (g = 0; g < NBLK; g++) {
        effective(g, p, KN, cur, pe);
        if (!newton_block(g, q, pe, KN, vte, vcrit, gshunt, max_iter, cur, jac))
            return 0;
    }
    return 1;
#else
    return newton_block(0, q, p, KN, vte, vcrit, gshunt, max_iter, cur, jac);
#endif
}

/* The ladder's first rung (newton.py: the line search) on block g: Newton at the full step
   whose every step must pass Armijo's test, else it is searched along (halved, or bisected
   on the sign of f . f0 where f turned against f0); the "step" stopping rule; 1 if
   converged. As the numba kernel's _newton_ls_k and newton._Search. */
static int newton_ls_block(int g, double *q, const double *pe, const double *KN,
                           const double *vte, const double *vcrit, int max_iter, double *cur,
                           double *jac)
{
    BLOCK_RANGES(g);
    double v[NP1], dv[NP1], J[NR1 * NR1];
    double f[NR1] = {0.0};                       /* as in newton_block */
    double dq[NR1] = {0.0}, f0[NR1] = {0.0};     /* read by the search before a step */
    double last = HUGE_VAL, alpha = 1.0, base = HUGE_VAL, lam = 1.0, lo = 0.0, hi = 1.0;
    double trial = 0.0;       /* the step's largest component: 0, none to check */
    int mode = 0, count = 0;  /* mode 0: no search, 1: halving, 2: bisecting */
    int it, k;
    for (it = 0; it < max_iter; it++) {
        int small;
        double norm;
        block_volts(g, q, v);
        block_laws(g, v, cur, jac);
        if (residual(g, q, pe, KN, cur, f, &norm))
            return 1;
        if (trial > STALL) {
            int good = norm <= (1.0 - 2.0 * ARMIJO * lam * alpha) * base;
            double psi = 0.0;
            for (k = 0; k < nb; k++)
                psi += f[k] * f0[k];
            if (mode == 0) {
                if (!good) {
                    mode = psi < 0.0 ? 2 : 1;
                    count = 0;
                    lo = 0.0;
                    hi = 1.0;
                }
            } else {
                count++;
                if (psi < 0.0)
                    hi = lam;
                else
                    lo = lam;
                if (count >= SEARCH_DEPTH
                        || (mode == 2 ? (norm <= KAPPA * KAPPA * base
                                         || fabs(psi) <= KAPPA * base)
                                      : good))
                    mode = 0;
            }
            if (mode != 0) {
                double nxt = mode == 1 ? 0.5 * lam : 0.5 * (lo + hi);
                for (k = 0; k < nb; k++)
                    q[CO(k)] += (nxt - lam) * (alpha * dq[k]);
                lam = nxt;
                continue;
            }
        }
        base = norm;
        lam = 1.0;
        for (k = 0; k < nb; k++)
            f0[k] = f[k];
        if (!newton_step(g, q, KN, jac, v, vte, vcrit, J, f, dq, dv, &alpha, &last, &small))
            return 0;
        trial = last;
        if (small) {
            first_order(g, jac, dv, cur);
            return 1;
        }
    }
    return 0;
}

/* The line search's Newton on every block in solve order */
static int newton_ls(double *q, const double *p, const double *KN, const double *vte,
                     const double *vcrit, int max_iter, double *cur, double *jac)
{
    double pe[NR1];
    int g;
    for (g = 0; g < NBLK; g++) {
        effective(g, p, KN, cur, pe);
        if (!newton_ls_block(g, q, pe, KN, vte, vcrit, max_iter, cur, jac))
            return 0;
    }
    return 1;
}

/* Newton's start for block g from the last solution q1: the tangent J dq = pe - pe_prev with
   J = I - K (di/dv) Q at the last evaluation, limited as a Newton step is */
static void tangent(int g, const nodalnet_state *st, const double *pe, double *q)
{
    BLOCK_RANGES(g);
    double J[NR1 * NR1], v[NP1], dv[NP1];
    double f[NR1] = {0.0}, dq[NR1] = {0.0};     /* as in newton_block */
    double alpha;
    int k, good = 1;
    newton_matrix(g, MAT_K[0], st->jac, J);
    for (k = 0; k < nb; k++)
        f[k] = pe[CO(k)] - st->pprev[CO(k)];
    solve_linear(nb, J, f, dq);
    block_volts(g, st->q1, v);
    block_steps(g, dq, dv);
    alpha = pnjlim(g, v, dv, st->vte, st->vcrit);
    for (k = 0; k < nb; k++)
        if (!isfinite(alpha * dq[k]))
            good = 0;
    if (good)
        for (k = 0; k < nb; k++)
            q[CO(k)] = st->q1[CO(k)] + alpha * dq[k];
}

/* The sample again in k = 2^lev trapezoidal substeps (matrices for T/k), inputs interpolated
   linearly from the previous sample's; on success y, x and the canonical state at T. */
static int substeps(nodalnet_state *st, int lev, const double *wn, double *q, double *y,
                    double *xs, double *s_out)
{
    double ss[NX1], ss_new[NX1], wsub[NW1], p[NR1];
    int k = 1 << lev, a, j;
    for (a = 0; a < NX; a++) {
        if (IS_IND[a])
            ss[a] = st->xprev[a] + (st->s[a] - st->xprev[a]) / k;
        else
            ss[a] = st->s[a] + (double)(k - 1) * GX[a] * st->xprev[a];
    }
    for (j = 0; j < k; j++) {
        if (j == k - 1) {
            for (a = 0; a < NW; a++)
                wsub[a] = wn[a];
        } else {
            double frac = (double)(j + 1) / (double)k;
            for (a = 0; a < NW; a++)
                wsub[a] = st->wprev[a] + frac * (wn[a] - st->wprev[a]);
        }
        predict(MAT_G[lev], MAT_H[lev], ss, wsub, p);
        if (!newton(q, p, MAT_K[lev], st->vte, st->vcrit, 0.0, LADDER_ITER, st->cur, st->jac))
            return 0;
        *y = affine(MAT_D[lev], MAT_E[lev], MAT_F[lev], 0, ss, wsub, st->cur);
        for (a = 0; a < NX; a++)
            xs[a] = affine(MAT_Ds[lev], MAT_Es[lev], MAT_Fs[lev], a, ss, wsub, st->cur);
        for (a = 0; a < NX; a++)
            ss_new[a] = affine(MAT_A[lev], MAT_B[lev], MAT_C[lev], a, ss, wsub, st->cur);
        for (a = 0; a < NX; a++)
            ss[a] = ss_new[a];
    }
    for (a = 0; a < NX; a++) {
        if (IS_IND[a])
            s_out[a] = xs[a] + k * (ss[a] - xs[a]);
        else
            s_out[a] = ss[a] - (double)(k - 1) * GX[a] * xs[a];
    }
    return 1;
}

/* Gmin stepping, then source stepping, at the full step from the previous solution;
   the fallback level reached, or -1. */
static int continuation(nodalnet_state *st, const double *p, double *q)
{
    double p0[NR1], pl[NR1], v[NP1];
    int a, c, j, g, ok = 1;
    for (a = 0; a < NR; a++)
        q[a] = st->q1[a];
    for (g = 0; g < (int)(sizeof GMIN_STEPS / sizeof GMIN_STEPS[0]); g++) {
        ok = newton(q, p, MAT_K[0], st->vte, st->vcrit, GMIN_STEPS[g], LADDER_ITER, st->cur,
                    st->jac);
        if (!ok)
            break;
    }
    if (ok)
        return NLEV + 1;
    /* source stepping: p0 makes the previous solution an exact root; walk p0 -> p */
    for (a = 0; a < NR; a++)
        q[a] = st->q1[a];
    expand_ports(q, v);
    laws(v, st->cur, st->jac);
    for (a = 0; a < NR; a++) {
        double acc = q[a];
        for (c = 0; c < NP; c++)
            acc -= MAT_K[0][a * NP1 + c] * st->cur[c];
        p0[a] = acc;
    }
    for (j = 1; j <= HOMOTOPY; j++) {
        for (a = 0; a < NR; a++)
            pl[a] = j == HOMOTOPY ? p[a]
                                  : p0[a] + ((double)j / HOMOTOPY) * (p[a] - p0[a]);
        if (!newton(q, pl, MAT_K[0], st->vte, st->vcrit, 0.0, LADDER_ITER, st->cur, st->jac))
            return -1;
    }
    return NLEV + 2;
}

/* One sample: sources wn -> output y; 1 if Newton failed even with the fallbacks (the
   previous sample's solution is kept then, never NaN). */
static int step(nodalnet_state *st, const double *wn, double *y)
{
    double p[NR1], q[NR1], pe[NR1], v[NP1];
    double xs[NX1] = {0.0}, s_new[NX1] = {0.0}, ys = 0.0;
    int lev = 0, failed = 0, a, g, ok = 1;
    if (NR > 0) {
        predict(MAT_G[0], MAT_H[0], st->s, wn, p);
        for (a = 0; a < NR; a++)
            q[a] = st->q1[a];
        for (g = 0; g < NBLK && ok; g++) {
            /* each block in solve order: its linear part (the blocks before it solved), its
               tangent start, its Newton */
            effective(g, p, MAT_K[0], st->cur, pe);
            if (st->have_p)
                tangent(g, st, pe, q);
            ok = newton_block(g, q, pe, MAT_K[0], st->vte, st->vcrit, 0.0, MAX_ITER, st->cur,
                              st->jac);
        }
        if (!ok) {
            /* the ladder: Newton with the line search at the full step, substeps 2, 4, ...
               2^NLEV, then gmin and source stepping */
            int lv;
            for (a = 0; a < NR; a++)
                q[a] = st->q1[a];
            ok = newton_ls(q, p, MAT_K[0], st->vte, st->vcrit, LADDER_ITER, st->cur, st->jac);
            if (ok)
                lev = NLEV + 3;
            for (lv = 1; lv <= NLEV && !ok; lv++) {
                for (a = 0; a < NR; a++)
                    q[a] = st->q1[a];
                ok = substeps(st, lv, wn, q, &ys, xs, s_new);
                if (ok) {
                    lev = lv;
                    break;
                }
            }
            if (!ok) {
                lv = continuation(st, p, q);
                if (lv > 0) {
                    ok = 1;
                    lev = lv;
                }
            }
            if (!ok) {
                failed = 1;
                for (a = 0; a < NR; a++)
                    q[a] = st->q1[a];
                expand_ports(q, v);
                laws(v, st->cur, st->jac);
            }
            /* the tangent's next start: each block's linear part at this sample */
            for (g = 0; g < NBLK; g++)
                effective(g, p, MAT_K[0], st->cur, pe);
        }
        for (a = 0; a < NR; a++) {
            st->q2[a] = st->q1[a];
            st->q1[a] = q[a];
            st->pprev[a] = pe[a];
        }
        st->have_p = 1;
    }
    if (lev >= 1 && lev <= NLEV) {
        *y = ys;
    } else {
        *y = affine(MAT_D[0], MAT_E[0], MAT_F[0], 0, st->s, wn, st->cur);
        for (a = 0; a < NX; a++)
            xs[a] = affine(MAT_Ds[0], MAT_Es[0], MAT_Fs[0], a, st->s, wn, st->cur);
        for (a = 0; a < NX; a++)
            s_new[a] = affine(MAT_A[0], MAT_B[0], MAT_C[0], a, st->s, wn, st->cur);
    }
    for (a = 0; a < NX; a++) {
        st->s[a] = s_new[a];
        st->xprev[a] = xs[a];
    }
    for (a = 0; a < NW; a++)
        st->wprev[a] = wn[a];
    return failed;
}

/* The DC operating point with the sources at t = 0 and the audio input at 0 V, as
   NodalSolver starts a transient: Newton from zero, then source stepping. */
static int operating_point(nodalnet_state *st, const double *w0)
{
    double p[NR1], pl[NR1], q[NR1], v[NP1];
    int a, k, c, ok = 1;
    for (a = 0; a < NR; a++) {
        double acc = 0.0;
        for (k = 0; k < NW; k++)
            acc += DC_H[a * NW1 + k] * w0[k];
        p[a] = acc;
        q[a] = 0.0;
    }
    memset(st->cur, 0, sizeof st->cur);
    if (FIXED_START) {
        /* the netlist's initial conditions: the start nodalnet computed for them */
        for (a = 0; a < NR; a++)
            q[a] = START_Q[a];
        if (NR > 0) {
            expand_ports(q, v);
            laws(v, st->cur, st->jac);
        }
    } else if (NR > 0) {
        ok = newton(q, p, DC_K, st->vte, st->vcrit, 0.0, 200, st->cur, st->jac);
        if (!ok) {
            int l;
            for (a = 0; a < NR; a++)
                q[a] = 0.0;
            for (l = 0; l < 40; l++) {
                double lam = l == 39 ? 1.0 : 0.05 + l * (0.95 / 39.0);
                for (a = 0; a < NR; a++)
                    pl[a] = lam * p[a];
                ok = newton(q, pl, DC_K, st->vte, st->vcrit, 0.0, 200, st->cur, st->jac);
            }
        }
        if (!ok)
            return NODALNET_ERR_DC;
        expand_ports(q, v);
        laws(v, st->cur, st->jac);
    }
    for (a = 0; a < NX; a++) {
        double acc = 0.0;
        for (k = 0; k < NW; k++)
            acc += DC_XW[a * NW1 + k] * w0[k];
        for (c = 0; c < NP; c++)
            acc += DC_XI[a * NP1 + c] * st->cur[c];
        if (FIXED_START)
            acc = START_S[a];
        st->s[a] = acc;
        st->xprev[a] = acc / STATE_SCALE[a];
    }
    for (a = 0; a < NR; a++) {
        st->q1[a] = q[a];
        st->q2[a] = q[a];
        st->pprev[a] = 0.0;
    }
    for (a = 0; a < NW; a++)
        st->wprev[a] = w0[a];
    st->have_p = 0;
    return NODALNET_OK;
}

int nodalnet_init(nodalnet_state *st, double sample_rate)
{
    double w0[NW1];
    int j, code;
    (void)THETA;                      /* a circuit without device laws reads none */
    memset(st, 0, sizeof *st);
    if (sample_rate != NODALNET_SAMPLE_RATE)
        return NODALNET_ERR_RATE;     /* the matrices are for NODALNET_SAMPLE_RATE only */
    junctions(st->vte, st->vcrit);    /* vcrit holds Is until here */
    for (j = 0; j < NJ; j++)
        st->vcrit[j] = st->vte[j] * log(st->vte[j] / (sqrt(2.0) * st->vcrit[j]));
    sources(st, 0.0, w0);
    code = operating_point(st, w0);
    if (code == NODALNET_OK)
        st->ready = 1;
    return code;
}

int nodalnet_process(nodalnet_state *st, const nodalnet_sample *in, nodalnet_sample *out,
                     int n)
{
    double w[NW1], y;
    int t, failed = 0;
    if (!st->ready)
        return NODALNET_ERR_NOT_READY;
    for (t = 0; t < n; t++) {
        sources(st, (double)in[t], w);
        if (step(st, w, &y) || !isfinite(y)) {
            failed++;
            if (!isfinite(y))
                y = 0.0;
        }
        out[t] = (nodalnet_sample)y;
        st->n++;
    }
    st->failed += failed;
    return failed;
}

int nodalnet_set_control(nodalnet_state *st, int index, double volts)
{
    if (index < 0 || index >= NODALNET_CONTROLS)
        return NODALNET_ERR_CONTROL;
    st->held[index + 1] = 1;
    st->control[index + 1] = volts;
    return NODALNET_OK;
}

int nodalnet_release_control(nodalnet_state *st, int index)
{
    if (index < 0 || index >= NODALNET_CONTROLS)
        return NODALNET_ERR_CONTROL;
    st->held[index + 1] = 0;
    return NODALNET_OK;
}

#endif /* NODALNET_DECLARATIONS_ONLY */
'''


# Gaussian elimination on a block of n coordinates, written once per block size in the file
# with n a literal (with n a run-time size the Big Muff pair's C build ran at 1.10-1.16x real
# time, 1.23x with literal sizes); `solve_linear(nb, ...)` and `resolve_linear(nb, ...)` choose
# by size.
_SOLVE_SIZED = r'''/* out = J^-1 b for an @N@ x @N@ block (rows NR1 apart) by Gaussian elimination
   with partial pivoting; J is left holding its LU factors (the multipliers below the
   diagonal) and b the pivot rows, for resolve_linear */
static void solve_linear_@N@(double *J, double *b, double *out)
{
    const int n = @N@;
    int c, k, j;
    for (c = 0; c < n; c++) {
        int piv = c;
        double big = fabs(J[c * NR1 + c]);
        for (k = c + 1; k < n; k++) {
            if (fabs(J[k * NR1 + c]) > big) {
                big = fabs(J[k * NR1 + c]);
                piv = k;
            }
        }
        out[c] = piv;
        if (piv != c) {
            for (j = 0; j < n; j++) {
                double t = J[c * NR1 + j];
                J[c * NR1 + j] = J[piv * NR1 + j];
                J[piv * NR1 + j] = t;
            }
            {
                double t = b[c];
                b[c] = b[piv];
                b[piv] = t;
            }
        }
        for (k = c + 1; k < n; k++) {
            double m = J[k * NR1 + c] / J[c * NR1 + c];
            J[k * NR1 + c] = m;
            if (m != 0.0) {
                for (j = c + 1; j < n; j++)
                    J[k * NR1 + j] -= m * J[c * NR1 + j];
                b[k] -= m * b[c];
            }
        }
    }
    for (c = n - 1; c >= 0; c--) {
        double acc = b[c];
        b[c] = out[c];
        for (j = c + 1; j < n; j++)
            acc -= J[c * NR1 + j] * out[j];
        out[c] = acc / J[c * NR1 + c];
    }
}

/* b = J^-1 b in place for a second right-hand side, from the factors and pivots (piv) that
   solve_linear_@N@ left */
static void resolve_linear_@N@(const double *J, const double *piv, double *b)
{
    const int n = @N@;
    int c, k, j;
    for (c = 0; c < n; c++) {
        k = (int)piv[c];
        if (k > c && k < n) {       /* a pivot row is in c..n-1: said for the compiler */
            double t = b[c];
            b[c] = b[k];
            b[k] = t;
        }
    }
    for (c = 0; c < n; c++)
        for (k = c + 1; k < n; k++)
            b[k] -= J[k * NR1 + c] * b[c];
    for (c = n - 1; c >= 0; c--) {
        double acc = b[c];
        for (j = c + 1; j < n; j++)
            acc -= J[c * NR1 + j] * b[j];
        b[c] = acc / J[c * NR1 + c];
    }
}

'''


def _solvers(plan) -> str:
    """`solve_linear_N` / `resolve_linear_N` for each block size N, and the two choosers."""
    sizes = sorted({len(coords) for coords, _ in plan.blocks} or {0})
    text = "".join(_SOLVE_SIZED.replace("@N@", str(n)) for n in sizes)
    # the largest size is the default: every block's size is one of them
    labels = [f"case {n}" for n in sizes[:-1]] + ["default"]
    cases = "".join(f"    {at}:\n        solve_linear_{n}(J, b, out);\n        break;\n"
                    for at, n in zip(labels, sizes, strict=True))
    recases = "".join(f"    {at}:\n        resolve_linear_{n}(J, piv, b);\n        break;\n"
                      for at, n in zip(labels, sizes, strict=True))
    return (text + "static void solve_linear(int nb, double *J, double *b, double *out)\n{\n"
            f"    switch (nb) {{\n{cases}    }}\n}}\n\n"
            "static void resolve_linear(int nb, const double *J, const double *piv, double *b)"
            f"\n{{\n    switch (nb) {{\n{recases}    }}\n}}\n")



class _CPrinter(C99CodePrinter):
    """Sympy's C99 printer, strict (a function it cannot print is an error, never a comment),
    plus what device laws of real voltages may contain."""

    def __init__(self):
        super().__init__({"strict": True})

    def _print_re(self, expr):          # every symbol here is a real number
        return f"({self._print(expr.args[0])})"

    def _print_im(self, expr):
        return "0.0"

    def _print_Pow(self, expr):
        base, exp = expr.args
        if exp.is_Integer and exp not in (0, 1, -1) and abs(int(exp)) <= 64:
            return f"ipow({self._print(base)}, {int(exp)})"
        return super()._print_Pow(expr)


def _c_number(value: float) -> str:
    """A double literal that reads back to exactly `value`."""
    value = float(value)
    if math.isnan(value) or math.isinf(value):
        raise UnsupportedCircuitError(f"a value of the circuit is {value}: give finite values")
    text = repr(value)
    return text if any(ch in text for ch in ".en") else text + ".0"


def _c_array(name: str, values, ctype: str = "double") -> str:
    """A static const array, flat; at least one entry (C has no empty arrays)."""
    flat = list(np.asarray(values).reshape(-1)) or [0]
    items = [_c_number(v) if ctype == "double" else str(int(v)) for v in flat]
    body = textwrap.fill(", ".join(items), 96, initial_indent="    ", subsequent_indent="    ")
    return f"static const {ctype} {name}[{len(flat)}] = {{\n{body}\n}};\n"


def _padded(m: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """m [r, c] into a zero matrix [max(rows, 1), max(cols, 1)] (the C arrays' strides)."""
    out = np.zeros((max(rows, 1), max(cols, 1)))
    m = np.asarray(m, dtype=np.float64).reshape(rows, cols)
    out[:rows, :cols] = m
    return out


def _c_levels(name: str, mats: list[np.ndarray], rows: int, cols: int) -> str:
    """[levels][rows * cols] of one DK matrix at T, T/2, ... (padded)."""
    blocks = [", ".join(_c_number(v) for v in _padded(m, rows, cols).reshape(-1)) for m in mats]
    size = max(rows, 1) * max(cols, 1)
    body = ",\n".join("    {" + textwrap.fill(b, 92, subsequent_indent="     ") + "}"
                      for b in blocks)
    return f"static const double {name}[{len(mats)}][{size}] = {{\n{body}\n}};\n"


def _function(name: str, args: str, outputs: list[tuple[str, sp.Expr]],
              inputs: list[tuple[str, sp.Symbol]], where) -> str:
    """A C function assigning each output `target = expr;`, common subexpressions shared (as
    `fast._print_function` prints the numba one). `where(k)`: what output k is, for errors."""
    from sympy.printing.codeprinter import PrintMethodNotImplementedError

    safe = {sym: sp.Symbol(f"_a{k}") for k, (_, sym) in enumerate(inputs)}
    exprs = [sp.sympify(e).xreplace(safe) for _, e in outputs]
    printer = _CPrinter()
    # each law alone first, so that an unprintable function names its own port
    for k, e in enumerate(exprs):
        try:
            printer.doprint(e)
        except PrintMethodNotImplementedError:
            bad = sorted({_describe(f) for f in sp.preorder_traversal(e)
                          if isinstance(f, (sp.Function, sp.Derivative))
                          and not _printable(printer, f)})
            raise UnsupportedCircuitError(
                f"{where(k)} uses {', '.join(bad) or 'a function'}, which the C generator "
                "cannot write with C99's libm; export the circuit without it, or simulate it "
                "with `nodalnet simulate`") from None
    common, reduced = sp.cse(exprs, symbols=sp.numbered_symbols("_c"))
    used = set().union(*(e.free_symbols for e in exprs)) if exprs else set()
    lines = [f"const double {safe[sym]} = {src};" for src, sym in inputs if safe[sym] in used]
    lines += [f"const double {lhs} = {printer.doprint(rhs)};" for lhs, rhs in common]
    lines += [f"{target} = {printer.doprint(e)};"
              for (target, _), e in zip(outputs, reduced, strict=True)]
    unused = [a.strip() for a in args.split(",")]
    lines += [f"(void){a.split()[-1].lstrip('*')};" for a in unused]
    body = textwrap.indent("\n".join(lines), "    ")
    return f"static void {name}({args})\n{{\n{body}\n}}\n"


def _describe(f) -> str:
    if isinstance(f, sp.Derivative):
        inner = f.expr.func.__name__ if isinstance(f.expr, sp.Function) else str(f.expr)
        return f"the derivative of {inner} (which Sympy leaves unevaluated)"
    return type(f).__name__


def _printable(printer, f) -> bool:
    from sympy.printing.codeprinter import PrintMethodNotImplementedError
    try:
        printer.doprint(f)
    except PrintMethodNotImplementedError:
        return False
    return True


def _port_name(eq: Equations, k: int) -> str:
    port = eq.ports[k]
    for el in eq.netlist.elements:
        if tuple(el.nodes[:2]) == (port.p, port.m):
            return (f"the law of {el.name.upper()} ({eq.netlist.file}:{el.line}, port "
                    f"{port.p} -> {port.m})")
    return f"the law of the port {port.p} -> {port.m}"


def _laws(eq: Equations, plan) -> str:
    """The port laws and their Jacobian: `laws` over every port and, where Newton runs on
    blocks, `laws_bG` over block G's ports (its Jacobian's structural nonzeros and diagonal)
    with `block_laws(g, ...)` choosing one; and `junctions` (n Vt and Is of each junction)."""
    params = [(f"THETA[{k}]", s) for k, s in enumerate(eq.symbols)]
    voltages = [(f"v[{k}]", s) for k, s in enumerate(eq.port_voltages)]
    n = len(eq.ports)
    args = "const double *v, double *i, double *jac"
    if len(plan.blocks) <= 1:
        out = [(f"i[{k}]", c) for k, c in enumerate(eq.currents)]
        out += [(f"jac[{a} * NP1 + {b}]", eq.jacobian[a, b]) for a in range(n)
                for b in range(n)]
        where = [_port_name(eq, k) for k in range(n)]
        where += [f"the derivative of {_port_name(eq, a)}" for a in range(n) for _ in range(n)]
        laws = _function("laws", args, out, voltages + params, lambda k: where[k])
        laws += "\n#define block_laws(g, v, i, jac) laws(v, i, jac)\n"
    else:
        laws = ""
        for g, (_, ports) in enumerate(plan.blocks):
            out = [(f"i[{c}]", eq.currents[c]) for c in ports]
            pairs = [(c, e) for c in ports for e in ports if c == e or eq.jacobian[c, e] != 0]
            out += [(f"jac[{c} * NP1 + {e}]", eq.jacobian[c, e]) for c, e in pairs]
            where = [_port_name(eq, c) for c in ports]
            where += [f"the derivative of {_port_name(eq, c)}" for c, _ in pairs]
            laws += _function(f"laws_b{g}", args, out, voltages + params,
                              lambda k, where=where: where[k]) + "\n"
        calls = "".join(f"    laws_b{g}(v, i, jac);\n" for g in range(len(plan.blocks)))
        cases = "".join(f"    case {g}:\n        laws_b{g}(v, i, jac);\n        break;\n"
                        for g in range(len(plan.blocks)))
        laws += (f"static void laws({args})\n{{\n{calls}}}\n\n"
                 f"static void block_laws(int g, {args})\n{{\n    switch (g) {{\n{cases}"
                 "    default:\n        break;\n    }\n}\n")
    junction_out = []
    junction_where = []
    for k, port in enumerate(eq.ports):
        if port.junction:
            j = len(junction_out) // 2
            junction_out += [(f"vte[{j}]", port.junction[0]), (f"i_s[{j}]", port.junction[1])]
            junction_where += [f"the junction of {_port_name(eq, k)}"] * 2
    junctions = _function("junctions", "double *vte, double *i_s", junction_out, params,
                          lambda k: junction_where[k])
    return laws + "\n" + junctions


def _macros() -> str:
    """Sympy's C printer writes M_PI, M_LN10 ...: POSIX names, defined here if libm's header
    does not (strict C99)."""
    lines = []
    for expr, name in sorted(get_math_macros().items(), key=lambda kv: kv[1]):
        lines += [f"#ifndef {name}", f"#define {name} {sp.N(expr, 21)}", "#endif"]
    return "\n".join(lines)


# -- sources --------------------------------------------------------------------------------

def _sources(eq: Equations, values: dict[str, float]) -> tuple[str, list[str]]:
    """The C function filling w[] at sample st->n, and the source descriptions for the header.

    w[0] is the audio input; the controls follow their netlist waveform (or a held value,
    `nodalnet_set_control`); the fixed sources their waveform or DC value, as
    `render.input_matrix` and `NodalSolver.source_values` make them."""
    lines = ["const double t = (double)st->n / NODALNET_SAMPLE_RATE;", "(void)t;",
             "w[0] = audio;"]
    notes = [f"w[0] {eq.sources[0].name.upper()}: the audio input (process's in[])"]
    for k, src in enumerate(eq.sources[1:], start=1):
        control = k < eq.n_inputs
        if control:
            value = eq.netlist.defaults.get(src.name, 0.0)
        else:
            value = values.get(src.name, eq.netlist.defaults.get(src.name, 0.0))
        expr, text = _waveform(eq, src, value)
        what = f"control {k - 1}" if control else "fixed source"
        notes.append(f"w[{k}] {src.name.upper()}: {what}, {text}")
        if control:
            lines.append(f"w[{k}] = st->held[{k}] ? st->control[{k}] : {expr};")
        else:
            lines.append(f"w[{k}] = {expr};")
    body = textwrap.indent("\n".join(lines), "    ")
    return (f"static void sources(const nodalnet_state *st, double audio, double *w)\n{{\n"
            f"{body}\n}}\n"), notes


def _waveform(eq: Equations, src, value: float) -> tuple[str, str]:
    wave = src.waveform
    if wave is None:
        return _c_number(value), f"{value:g} (DC)"
    if wave.kind == "dc":
        return _c_number(wave.args[0]), f"{wave.args[0]:g} (DC)"
    if wave.kind == "sin":
        a = wave.args
        vo, va, freq = a[0], a[1], a[2]
        td = a[3] if len(a) > 3 else 0.0
        theta = a[4] if len(a) > 4 else 0.0
        phase = math.radians(a[5]) if len(a) > 5 else 0.0
        omega = 2 * math.pi * freq           # as `Waveform.at` computes it
        tt = f"(t - {_c_number(td)} > 0.0 ? t - {_c_number(td)} : 0.0)"
        expr = (f"{_c_number(vo)} + {_c_number(va)} * sin({_c_number(omega)} * {tt} + "
                f"{_c_number(phase)}) * exp(-{tt} * {_c_number(theta)})")
        return expr, "SIN(" + " ".join(f"{x:g}" for x in a) + ")"
    raise UnsupportedCircuitError(
        f"{src.name.upper()} ({eq.netlist.file}:{src.line}) follows a {wave.kind.upper()} "
        "waveform, which the C generator does not write (DC and SIN only); drive it as the "
        "audio input or give it a DC value")


# -- the file -------------------------------------------------------------------------------

@dataclass
class CircuitArrays:
    """The numbers a circuit's C file holds (numpy float64), at one set of values and rate."""

    theta: np.ndarray                     # parameter values, then T
    levels: dict[str, list[np.ndarray]]   # "G" ... "Fs": at T, T/2, ... T/2^LEVELS
    dc: dict[str, np.ndarray]             # "H", "K", "Xw", "Xi"
    gx: np.ndarray
    is_ind: np.ndarray
    state_scale: np.ndarray
    expand: np.ndarray
    jports: list[int]
    is_charge: list[bool]
    values: dict[str, float] = field(default_factory=dict)
    #: the start the netlist's initial conditions give (`nodal.initial`), canonical state and
    #: Newton's port coordinates; None: the DC operating point, found by the C code at init
    start: tuple[np.ndarray, np.ndarray] | None = None


def arrays(eq: Equations, values: dict[str, float] | None = None,
           sample_rate: float = 48000.0) -> CircuitArrays:
    """The DK and DC matrices at these values (`dk.NumericEquations`, as the solver takes
    them), checked: unknown names and values are refused as `NodalSolver` refuses them, and an
    operating point that does not converge is a `ConvergenceError`."""
    import torch

    from .solver import NodalSolver

    solver = NodalSolver(eq, sample_rate=sample_rate, values=values)
    solver.initial_state(1)          # no DC operating point: the named error, here
    theta = [t.detach() for t in solver.theta()]
    numeric = solver.numeric
    names = ("G", "H", "K", "A", "B", "C", "D", "E", "F", "Ds", "Es", "Fs")
    levels: dict[str, list[np.ndarray]] = {n: [] for n in names}
    with torch.no_grad():
        for lev in range(LEVELS + 1):
            m = numeric.matrices(list(theta[:-1]) + [theta[-1] / (1 << lev)])
            for n in names:
                levels[n].append(getattr(m, n).numpy().astype(np.float64))
        dc = numeric.dc_matrices(theta)
        g = numeric.reactive_g(theta).numpy().astype(np.float64)
    is_ind = numeric.is_inductor.numpy().astype(bool)
    start = None
    init = eq.netlist.initial
    if init.nodes or init.elements or init.uic:
        from .initial import start as initial_start

        with torch.no_grad():
            s0, q0 = initial_start(solver, 1, torch.zeros(1, eq.n_inputs, dtype=torch.float64))
        start = (s0[0].numpy().astype(np.float64), q0[0].numpy().astype(np.float64))
    return CircuitArrays(
        theta=np.array([float(t) for t in theta]), levels=levels,
        dc={"H": dc.H.numpy(), "K": dc.K.numpy(), "Xw": dc.Xw.numpy(), "Xi": dc.Xi.numpy()},
        gx=g, is_ind=is_ind, state_scale=np.where(is_ind, 1.0, g),
        expand=numeric.expand.numpy(), jports=list(numeric.junction_ports),
        is_charge=[k in eq.charge_ports for k in range(len(eq.ports))],
        values=solver.values(), start=start)


def _sparsity(eq: Equations, expand: np.ndarray) -> list[str]:
    """The structural nonzeros of the Jacobian (per column, from the symbolic one) and of Q
    (per column), and whether Q is the identity: `newton_matrix` walks only those."""
    n, r = len(eq.ports), len(eq.reduced)
    ptr, rows = [0], []
    for c in range(n):
        rows += [a for a in range(n) if eq.jacobian[a, c] != 0]
        ptr.append(len(rows))
    q = np.asarray(expand, dtype=np.float64).reshape(n, r)
    eptr, erows = [0], []
    for c in range(r):
        erows += [e for e in range(n) if q[e, c] != 0.0]
        eptr.append(len(erows))
    identity = n == r and bool(np.array_equal(q, np.eye(n)))
    qptr, qcols = [0], []
    for c in range(n):
        qcols += [a for a in range(r) if q[c, a] != 0.0]
        qptr.append(len(qcols))
    sparse = not identity and 2 * len(qcols) < n * r      # else Q's rows looped whole
    row_pattern = [f"#define EXPAND_SPARSE {int(sparse)}\n"]
    if sparse:
        row_pattern += [_c_array("QROW_PTR", qptr, "int"), _c_array("QROW_COL", qcols, "int")]
    return [_c_array("JAC_PTR", ptr, "int"), _c_array("JAC_ROW", rows, "int"),
            _c_array("EXP_PTR", eptr, "int"), _c_array("EXP_ROW", erows, "int"),
            *row_pattern,
            f"#define EXPAND_IDENTITY {int(identity)}\n"]


def _plan(eq: Equations, a: CircuitArrays, split: bool = True):
    """The blocks Newton solves one after the other: the numba kernel's split (`fast.layout`)
    over every K the file holds (each substep level's and the DC one), so that each block
    needs only itself and the blocks before it in every Newton the file runs; one block where
    nothing splits."""
    from . import fast

    r, n = len(eq.reduced), len(eq.ports)
    stack = [np.asarray(k, dtype=np.float64).reshape(r, n) for k in a.levels["K"]]
    dc = np.asarray(a.dc["K"], dtype=np.float64)
    if split and dc.shape == (r, n) and r:
        plan = fast.layout(eq, np.stack(stack + [dc]))
    else:       # not asked (NewtonOptions.split), nothing to split, another frame at DC
        return fast.one_block(eq)
    coords = sorted(c for block, _ in plan.blocks for c in block)
    ports = sorted(c for _, block in plan.blocks for c in block)
    if len(plan.blocks) <= 1 or coords != list(range(r)) or ports != list(range(n)):
        return fast.one_block(eq)
    return plan


def _blocks(eq: Equations, a: CircuitArrays, plan, predicted: bool) -> list[str]:
    """The blocks' index arrays (`BLOCK_RANGES` in the C text): per block its coordinates,
    ports and junctions, whether its ports read its own coordinates one to one, and whether
    the predicted stopping rule applies (every port of it a junction)."""
    if len(plan.blocks) <= 1:
        return ["#define BLOCKS_SPLIT 0\n#define NBLK 1\n"]
    n = len(eq.ports)
    q = np.asarray(a.expand, dtype=np.float64).reshape(n, len(eq.reduced))
    junction_of = {port: j for j, port in enumerate(a.jports)}
    ptr, pptr, jptr = [0], [0], [0]
    coords, ports, junctions, ident, ahead = [], [], [], [], []
    port_blk, port_loc = [0] * n, [0] * n
    for g, (block, block_ports) in enumerate(plan.blocks):
        coords += block
        ports += block_ports
        own = [junction_of[c] for c in block_ports if c in junction_of]
        junctions += own
        ptr.append(len(coords))
        pptr.append(len(ports))
        jptr.append(len(junctions))
        for loc, c in enumerate(block_ports):
            port_blk[c], port_loc[c] = g, loc
        # its ports read its own coordinates one to one: Q's rows are unit rows, in order
        unit = np.zeros((len(block_ports), q.shape[1]))
        if len(block) == len(block_ports):
            unit[np.arange(len(block)), list(block)] = 1.0
        ident.append(int(len(block) == len(block_ports)
                         and bool(np.array_equal(q[list(block_ports)], unit))))
        ahead.append(int(predicted and len(own) == len(block_ports) > 0))
    # each block's part of every K in the file (levels, then DC), transposed: newton_matrix
    r = len(eq.reduced)
    kts = []
    for k in [*a.levels["K"], a.dc["K"]]:
        k = np.asarray(k, dtype=np.float64).reshape(r, n)
        kts.append(np.concatenate([k[np.ix_(list(block), list(block_ports))].T.reshape(-1)
                                   for block, block_ports in plan.blocks]))
    sizes = [len(block) * len(block_ports) for block, block_ports in plan.blocks]
    offsets = [sum(sizes[:g]) for g in range(len(sizes))]
    return [f"#define BLOCKS_SPLIT 1\n#define NBLK {len(plan.blocks)}\n",
            _c_levels("BLK_KT", [m.reshape(1, -1) for m in kts], 1, sum(sizes)),
            _c_array("BLK_KT_OFF", offsets, "int"),
            _c_array("BLK_PTR", ptr, "int"), _c_array("BLK_IDX", coords, "int"),
            _c_array("PBLK_PTR", pptr, "int"), _c_array("PBLK_IDX", ports, "int"),
            _c_array("JBLK_PTR", jptr, "int"), _c_array("JBLK_IDX", junctions, "int"),
            _c_array("PORT_BLK", port_blk, "int"), _c_array("PORT_LOC", port_loc, "int"),
            _c_array("BLK_ID", ident, "int"), _c_array("BLK_AHEAD", ahead, "int")]


def source(eq: Equations, values: dict[str, float] | None = None,
           sample_rate: float = 48000.0, options: NewtonOptions | None = None,
           name: str | None = None) -> str:
    """The C99 text of the circuit (see the module docstring)."""
    options = options or NewtonOptions()
    sources, source_notes = _sources(eq, dict(values or {}))
    a = arrays(eq, values, sample_rate)
    plan = _plan(eq, a, options.split)
    laws = _laws(eq, plan)
    nw, nx, nr, n_p = len(eq.sources), eq.n_states, len(eq.reduced), len(eq.ports)
    nj = len(a.jports)
    dims = {"NW": nw, "NX": nx, "NR": nr, "NP": n_p, "NJ": nj}
    subs = {f"@{k}@": str(v) for k, v in dims.items()}
    subs.update({f"@{k}1@": str(max(v, 1)) for k, v in dims.items()})
    subs.update({"@RATE@": _c_number(sample_rate), "@NCONTROLS@": str(eq.n_inputs - 1),
                 "@NLEV@": str(LEVELS), "@HOMOTOPY@": str(HOMOTOPY_STEPS),
                 "@MAX_ITER@": str(int(options.max_iter)),
                 "@LADDER_ITER@": str(ladder_options(options).max_iter),
                 "@ABSTOL@": _c_number(options.abstol), "@RELTOL@": _c_number(options.reltol),
                 "@ROUNDOFF@": _c_number(ROUNDOFF), "@STALL@": _c_number(STALL),
                 "@STOPPING@": str(int(stopping_rule(options) == STOPPING.index("predicted")
                                       and n_p > 0 and nj == n_p)),
                 "@AHEAD_SAFETY@": _c_number(AHEAD_SAFETY),
                 "@AHEAD_REACH@": _c_number(AHEAD_REACH),
                 "@ARMIJO@": _c_number(ARMIJO), "@KAPPA@": _c_number(KAPPA),
                 "@SEARCH_DEPTH@": str(SEARCH_DEPTH),
                 "@MACROS@": _macros()})
    preamble = _PREAMBLE
    for key, value in subs.items():
        preamble = preamble.replace(key, value)
    shapes = {"G": (nr, nx), "H": (nr, nw), "K": (nr, n_p), "A": (nx, nx), "B": (nx, nw),
              "C": (nx, n_p), "D": (1, nx), "E": (1, nw), "F": (1, n_p), "Ds": (nx, nx),
              "Es": (nx, nw), "Fs": (nx, n_p)}
    data = [_c_array("THETA", a.theta)]
    data += [_c_levels(f"MAT_{n}", a.levels[n], *shapes[n]) for n in shapes]
    data += [_c_array("DC_H", _padded(a.dc["H"], nr, nw)),
             _c_array("DC_K", _padded(a.dc["K"], nr, n_p)),
             _c_array("DC_XW", _padded(a.dc["Xw"], nx, nw)),
             _c_array("DC_XI", _padded(a.dc["Xi"], nx, n_p)),
             _c_array("EXPAND", _padded(a.expand, n_p, nr)),
             _c_array("GX", a.gx), _c_array("STATE_SCALE", a.state_scale),
             _c_array("IS_IND", a.is_ind, "int"), _c_array("IS_CHARGE", a.is_charge, "int"),
             _c_array("JPORTS", a.jports, "int"),
             *_sparsity(eq, a.expand),
             *_blocks(eq, a, plan, stopping_rule(options) == STOPPING.index("predicted")),
             _c_array("GMIN_STEPS", [float(g) for g in GMIN_STEPS]),
             f"#define FIXED_START {int(a.start is not None)}\n",
             _c_array("START_S", a.start[0] if a.start is not None else []),
             _c_array("START_Q", a.start[1] if a.start is not None else [])]
    header = _header(eq, a, sample_rate, source_notes, name)
    if "ipow(" in laws:
        laws = _IPOW.lstrip("\n") + "\n" + laws
    return (header + preamble + "\n" + "".join(data) + "\n" + laws + "\n" + sources
            + _LOOP.replace("@SOLVERS@", _solvers(plan)))


def _header(eq: Equations, a: CircuitArrays, sample_rate: float, source_notes: list[str],
            name: str | None) -> str:
    out = eq.netlist.output
    shown = f"v({out[0]})" + (f" - v({out[1]})" if out[1] != "0" else "")
    values = ", ".join(f"{k}={v:g}" for k, v in a.values.items())
    controls = [s.name.upper() for s in eq.sources[1:eq.n_inputs]]
    lines = [
        f"{name or eq.netlist.file}: a virtual-analog model in C99, generated by "
        "`nodalnet export --format c`.",
        "",
        f"Circuit: {eq.netlist.file}; output {shown} (volts) for the input "
        f"{eq.sources[0].name.upper()} (volts).",
        f"Sample rate: {sample_rate:g} Hz (NODALNET_SAMPLE_RATE; nodalnet_init refuses "
        "another: export again at that rate).",
        f"States: {', '.join(eq.state_names) or 'none'}; {len(eq.ports)} nonlinear ports, "
        f"{len(a.jports)} junctions.",
        *textwrap.wrap("Values (SI units): " + values, 92, subsequent_indent="  "),
        "Start: " + ("the netlist's initial conditions (.ic, IC=, uic), as computed by nodalnet"
                     if a.start is not None else
                     "the DC operating point (audio input at 0 V, sources at t = 0), found by "
                     "nodalnet_init") + ".",
        "Sources:",
        *[f"  {n}" for n in source_notes],
        "",
        "The device laws below are printed from the same Sympy expressions as nodalnet's",
        "compiled solver; the DK matrices are numbers at these values. Per sample: Newton with",
        "SPICE's junction limiting from a tangent prediction, and where it fails Newton with",
        f"a line search, the sample again in 2 ... {1 << LEVELS} substeps, then gmin and source",
        "stepping. Only libm is needed.",
        "",
        "Build:  cc -std=c99 -O2 -c pedal.c     (-DNODALNET_SAMPLE_DOUBLE: double samples)",
        "Use:",
        "    nodalnet_state st;                          (no globals: one per channel)",
        f"    if (nodalnet_init(&st, {sample_rate:g}) != NODALNET_OK) ...  "
        "(DC operating point)",
        "    int bad = nodalnet_process(&st, in, out, n);  (volts in, volts out)",
        "nodalnet_process returns how many samples of the block Newton could not solve even",
        "with the fallbacks (they hold the previous sample's solution, never NaN), or",
        "NODALNET_ERR_NOT_READY. Scale the plug-in's samples to volts (a guitar: ~1 V peak).",
    ]
    if controls:
        lines += [f"Controls {', '.join(controls)} follow their netlist waveform; "
                  "nodalnet_set_control(&st, k, volts)",
                  "holds control k at a value, nodalnet_release_control(&st, k) lets it go."]
    lines += ["From C++: compile this file as C, and include it with",
              "NODALNET_DECLARATIONS_ONLY defined for the types and prototypes."]
    text = "\n".join(f" * {line}".rstrip() for line in lines).replace("*/", "* /")
    return f"/*\n{text}\n */\n"


def export(circuit: str | Path | Equations, out: str | Path,
           values: dict[str, float] | None = None, sample_rate: float = 48000.0) -> Path:
    """Write the circuit's C file to `out` (atomically; nothing written on any error)."""
    import nodal

    out = Path(out)
    check_output_file(out, OutputPathError, "pedal.c")
    eq = circuit if isinstance(circuit, Equations) else nodal.equations(circuit)
    return write_output_file(out, source(eq, values, sample_rate), OutputPathError)


# -- building and running it ----------------------------------------------------------------

#: A small program around a circuit's file: `prog IN OUT [REPEATS]` reads raw samples
#: (nodalnet_sample) from IN, processes them in blocks of 512 and writes OUT; with REPEATS it
#: also times the whole signal that many times (re-initialised each time) and prints the best
#: seconds (CPU clock) on stdout.
DRIVER = r'''
#define NODALNET_DECLARATIONS_ONLY
#include "circuit.c"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static int run(nodalnet_state *st, const nodalnet_sample *in, nodalnet_sample *out, long n)
{
    long k;
    int code, bad = 0;
    if ((code = nodalnet_init(st, NODALNET_SAMPLE_RATE)) != NODALNET_OK)
        return code;
    for (k = 0; k < n; k += 512) {
        code = nodalnet_process(st, in + k, out + k, (int)(n - k < 512 ? n - k : 512));
        if (code < 0)
            return code;
        bad += code;
    }
    return bad;
}

int main(int argc, char **argv)
{
    FILE *f;
    long n, r, repeats = argc > 3 ? atol(argv[3]) : 0;
    nodalnet_sample *in, *out;
    nodalnet_state st;
    double best = -1.0;
    int code;
    if (argc < 3) {
        fprintf(stderr, "usage: %s IN OUT [REPEATS]\n", argv[0]);
        return 2;
    }
    f = fopen(argv[1], "rb");
    if (!f) {
        perror(argv[1]);
        return 2;
    }
    fseek(f, 0, SEEK_END);
    n = ftell(f) / (long)sizeof(nodalnet_sample);
    fseek(f, 0, SEEK_SET);
    in = (nodalnet_sample *)malloc((size_t)(n > 0 ? n : 1) * sizeof *in);
    out = (nodalnet_sample *)malloc((size_t)(n > 0 ? n : 1) * sizeof *out);
    if (!in || !out || fread(in, sizeof *in, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "cannot read %s\n", argv[1]);
        return 2;
    }
    fclose(f);
    for (r = 0; r < repeats; r++) {
        clock_t t0 = clock();
        run(&st, in, out, n);
        double s = (double)(clock() - t0) / CLOCKS_PER_SEC;
        if (best < 0 || s < best)
            best = s;
    }
    code = run(&st, in, out, n);
    if (code < 0) {
        fprintf(stderr, "nodalnet error %d\n", code);
        return 3;
    }
    if (code > 0)
        fprintf(stderr, "%d samples not solved\n", code);
    f = fopen(argv[2], "wb");
    if (!f || fwrite(out, sizeof *out, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "cannot write %s\n", argv[2]);
        return 2;
    }
    fclose(f);
    if (repeats > 0)
        printf("%.9f\n", best);
    return 0;
}
'''


def compiler() -> str | None:
    """The system C compiler ($CC, else cc, else gcc), or None."""
    for candidate in (os.environ.get("CC"), "cc", "gcc"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    return None


def build(c_text: str, folder: str | Path, double: bool = False, flags: tuple = ("-O2",)) -> Path:
    """Compile a circuit's C text with the driver (`DRIVER`) into `folder`/circuit; returns the
    program. -std=c99 -Wall -Wextra -pedantic; a warning or error is a `CompilerError`."""
    cc = compiler()
    if cc is None:
        raise CompilerError("no C compiler found (cc, gcc or $CC): install one to build the "
                            "exported C file")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "circuit.c").write_text(c_text)
    (folder / "driver.c").write_text(DRIVER)
    exe = folder / ("circuit_double" if double else "circuit")
    cmd = [cc, "-std=c99", *flags, "-Wall", "-Wextra", "-pedantic", "-Werror",
           *(["-DNODALNET_SAMPLE_DOUBLE"] if double else []), "-o", str(exe),
           str(folder / "driver.c"), str(folder / "circuit.c"), "-lm"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise CompilerError(f"{Path(cc).name} could not build the generated file:\n"
                            + done.stderr.strip()[-4000:])
    return exe


def run_program(exe: str | Path, signal: np.ndarray, double: bool = False,
                repeats: int = 0) -> tuple[np.ndarray, float | None]:
    """Run a built program on `signal` (volts); (output, best seconds of `repeats` timings)."""
    dtype = np.float64 if double else np.float32
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.raw", Path(tmp) / "out.raw"
        np.ascontiguousarray(signal, dtype=dtype).tofile(src)
        done = subprocess.run([str(exe), str(src), str(dst), str(int(repeats))],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise CompilerError(f"the built program failed ({done.returncode}): "
                                f"{done.stderr.strip()}")
        y = np.fromfile(dst, dtype=dtype).astype(np.float64)
    seconds = float(done.stdout.split()[0]) if repeats else None
    return y, seconds


@dataclass
class CBench:
    """The C build's speed on one circuit: rtf None (and `note` why) where it was not run."""

    rtf: float | None
    seconds: float | None            # best CPU seconds for the whole signal
    compiler: str
    note: str = ""


def bench_c(name: str, seconds: float = 10.0, sample_rate: float = 48000.0,
            repeats: int = 3) -> CBench:
    """Export the circuit at its default values, compile it once with -O2 and time the program
    on `seconds` of the bench's plucked string (1 V peak), best of `repeats` (CPU clock)."""
    import nodal

    from . import signals
    from .metrics import real_time_factor

    cc = compiler()
    if cc is None:
        return CBench(None, None, "", "no C compiler (cc, gcc or $CC): C build not measured")
    eq = nodal.equations(name)
    audio = signals.plucked_string(seconds, sample_rate, peak=1.0)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            exe = build(source(eq, sample_rate=sample_rate), tmp)
            _, best = run_program(exe, audio, repeats=max(1, repeats))
        except CompilerError as exc:
            return CBench(None, None, Path(cc).name, f"C build failed: {exc}")
    version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout
    return CBench(real_time_factor(seconds, best), best, (version.splitlines() or [cc])[0])


def difference(circuit: str | Path, samples: int = 4800, sample_rate: float = 48000.0,
               double: bool = True) -> float:
    """max |C build - numba path| (volts) on `samples` of 1 V plucked string (rounded to
    float32, so both see one input): the figure of the README's table.

        python -c "from nodal import ccode; print(ccode.difference('phase90', double=False))"
    """
    import nodal

    from . import signals
    from .render import render

    eq = nodal.equations(circuit)
    x = signals.plucked_string(samples / sample_rate, sample_rate, peak=1.0)
    x = x.astype(np.float32).astype(np.float64)
    reference, _ = render(eq, x, sample_rate)
    with tempfile.TemporaryDirectory() as tmp:
        exe = build(source(eq, sample_rate=sample_rate), tmp, double=double)
        y, _ = run_program(exe, x, double=double)
    return float(np.max(np.abs(y - reference)))

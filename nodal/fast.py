"""The compiled fast path: the same DK equations as `solver.py`, as one numba kernel, forward only.

The kernel's source is generated from the very Sympy expressions the torch solver lambdifies
(`Equations.currents`, `Equations.jacobian` and each junction port's `(n Vt, Is)`), printed with
Sympy's Python code printer, `exec`uted and compiled with `numba.njit`. The numeric DK matrices
come from `NumericEquations.matrices(theta)`, the same call the torch path makes. Per sample n,
for every signal of the batch (units SI: volts, amperes):

    p     = G x~[n-1] + H w[n]
    solve   q - p - K i(Q q) = 0       Newton, SPICE pnjlim step scaling, as `newton.solve`
    y[n]  = D x~[n-1] + E w[n] + F i
    x[n]  = Ds x~[n-1] + Es w[n] + Fs i
    x~[n] = A x~[n-1] + B w[n] + C i

Newton's tolerances, iteration bound, step scaling and starting point are those of
`newton.solve`, so both backends give the same samples to round-off. A sample whose Newton
does not converge is reported and keeps Newton's last (finite, junction-limited) iterate, never NaN.

`NodalSolver.forward` runs this kernel for Newton (and, without autograd, for everything);
with autograd it adds one differentiable Newton step per sample in torch (see `solver.py`).

Kernels are compiled once per circuit structure and cached in this process, keyed on the
generated source; component values enter at run time, so changing a value never recompiles.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import textwrap
from pathlib import Path

import numpy as np
import sympy as sp
import torch
from sympy.printing.pycode import PythonCodePrinter
from torch import Tensor

from .arrays import as_numpy
from .files import cache_dir
from .interface import Trajectory
from .mna import Equations

F64 = torch.float64

# The per-sample loop, the same for every circuit; `_laws` and `_junctions` are generated.
_KERNEL = '''
@numba.njit(cache=CACHE, nogil=True, inline="always", error_model="numpy")
def _solve_linear(J, b, out, r):
    """out = J^-1 b by Gaussian elimination with partial pivoting (J, b are overwritten)."""
    for c in range(r):
        piv = c
        big = abs(J[c, c])
        for k in range(c + 1, r):
            if abs(J[k, c]) > big:
                big = abs(J[k, c])
                piv = k
        if piv != c:
            for j in range(r):
                J[c, j], J[piv, j] = J[piv, j], J[c, j]
            b[c], b[piv] = b[piv], b[c]
        for k in range(c + 1, r):
            m = J[k, c] / J[c, c]
            if m != 0.0:
                for j in range(c + 1, r):
                    J[k, j] -= m * J[c, j]
                b[k] -= m * b[c]
    for c in range(r - 1, -1, -1):
        acc = b[c]
        for j in range(c + 1, r):
            acc -= J[c, j] * out[j]
        out[c] = acc / J[c, c]

@numba.njit(cache=CACHE, nogil=True, inline="always", error_model="numpy")
def _expand_ports(expand, q, out, nports, r):
    """out = Q q: every port voltage from the independent ones."""
    for c in range(nports):
        acc = 0.0
        for a in range(r):
            acc += expand[c, a] * q[a]
        out[c] = acc


@numba.njit(cache=CACHE, nogil=True, inline="always", error_model="numpy")
def _affine_row(Mx, Mw, Mi, row, s, w, b, n, cur, nx, nw, nports):
    """Row `row` of Mx x~ + Mw w[n] + Mi i: one line of the DK update."""
    acc = 0.0
    for k in range(nx):
        acc += Mx[row, k] * s[k]
    for k in range(nw):
        acc += Mw[row, k] * w[b, n, k]
    for c in range(nports):
        acc += Mi[row, c] * cur[c]
    return acc


@numba.njit(cache=CACHE, nogil=True, error_model="numpy")
def run(G, H, K, A, B, C, D, E, F, Ds, Es, Fs, expand, jports, theta, w, s0, q0, use_q0,
        max_iter, abstol, reltol, y, x, s_final, q_out, iters, failed):
    batch, length = w.shape[0], w.shape[1]
    # the circuit's dimensions as literals, so that LLVM unrolls the small loops
    nw = {nw}
    nx = {nx}
    nxs = {nxs}
    r = {r}
    nports = {nports}
    nj = {nj}
    vte = np.empty(nj)
    i_s = np.empty(nj)
    vcrit = np.empty(nj)
    _junctions(theta, vte, i_s)
    for j in range(nj):
        vcrit[j] = vte[j] * math.log(vte[j] / (math.sqrt(2.0) * i_s[j]))
    s = np.empty(nx)
    s_new = np.empty(nx)
    q = np.empty(r)
    p = np.empty(r)
    f = np.empty(r)
    dq = np.empty(r)
    step = np.empty(r)
    J = np.empty((r, r))
    KJ = np.empty((r, nports))
    v = np.empty(nports)
    dv = np.empty(nports)
    cur = np.zeros(nports)
    cur_new = np.zeros(nports)
    jac = np.zeros((nports, nports))
    for b in range(batch):
        for k in range(nx):
            s[k] = s0[b, k]
        for n in range(length):
            # p = G x~ + H w
            for a in range(r):
                acc = 0.0
                for k in range(nx):
                    acc += G[a, k] * s[k]
                for k in range(nw):
                    acc += H[a, k] * w[b, n, k]
                p[a] = acc
            if r > 0:
                if n == 0:
                    # Newton starts from q0 (the operating point's ports, or where the last
                    # run ended), else from the linear prediction p
                    for a in range(r):
                        q[a] = q0[b, a] if use_q0 else p[a]
                converged = False
                it = 0
                for _ in range(max_iter):
                    _expand_ports(expand, q, v, nports, r)
                    _laws(v, theta, cur, jac)
                    # f = q - p - K i;  J = I - K (di/dv) Q
                    for a in range(r):
                        acc = q[a] - p[a]
                        for c in range(nports):
                            acc -= K[a, c] * cur[c]
                        f[a] = -acc
                        for c in range(nports):
                            acc2 = 0.0
                            for e in range(nports):
                                acc2 += K[a, e] * jac[e, c]
                            KJ[a, c] = acc2
                    for a in range(r):
                        for c in range(r):
                            acc = 1.0 if a == c else 0.0
                            for e in range(nports):
                                acc -= KJ[a, e] * expand[e, c]
                            J[a, c] = acc
                    _solve_linear(J, f, dq, r)
                    # SPICE pnjlim: the largest factor keeping every junction's step in bounds
                    _expand_ports(expand, dq, dv, nports, r)
                    alpha = 1.0
                    if nj > 0:
                        for j in range(nj):
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
                    finite = True
                    for a in range(r):
                        step[a] = alpha * dq[a]
                        if not math.isfinite(step[a]):
                            finite = False
                    if not finite:
                        break
                    small = alpha == 1.0
                    for a in range(r):
                        q[a] += step[a]
                        if abs(step[a]) > abstol + reltol * abs(q[a]):
                            small = False
                    it += 1
                    if small:
                        converged = True
                        break
                iters[b, n] = it
                if converged:
                    # The currents at the converged q, to first order from the last evaluation:
                    # the last step is below the Newton tolerance (~1e-10 V), so the remainder
                    # is ~i''/2 * 1e-20, far below round-off in y, and an evaluation is saved.
                    for c in range(nports):
                        acc = cur[c]
                        for e in range(nports):
                            acc += jac[c, e] * dv[e]
                        cur_new[c] = acc
                    for c in range(nports):
                        cur[c] = cur_new[c]
                else:
                    # Keep Newton's last iterate (pnjlim kept it finite); the sample is reported
                    # in `failed`, and the caller raises or warns.
                    failed[b, n] = True
                    for a in range(r):
                        if not math.isfinite(q[a]):
                            q[a] = p[a]
                    _expand_ports(expand, q, v, nports, r)
                    _laws(v, theta, cur, jac)
                for a in range(r):
                    q_out[b, n, a] = q[a]
            # y, exposed states, and the canonical state update
            y[b, n] = _affine_row(D, E, F, 0, s, w, b, n, cur, nx, nw, nports)
            for a in range(nxs):
                x[b, n, a] = _affine_row(Ds, Es, Fs, a, s, w, b, n, cur, nx, nw, nports)
            for a in range(nx):
                s_new[a] = _affine_row(A, B, C, a, s, w, b, n, cur, nx, nw, nports)
            for a in range(nx):
                s[a] = s_new[a]
        for k in range(nx):
            s_final[b, k] = s[k]
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
    lines += [f"{target} = {printer.doprint(e)}" for (target, _), e in zip(outputs, reduced)]
    body = textwrap.indent("\n".join(lines) or "pass", "    ")
    # Inlining a small law into the Newton loop pays; inlining a long one (a JFET's) only
    # multiplies numba's compile time.
    inline = ", inline='always'" if len(lines) <= _INLINE_LINES else ""
    return (f"@numba.njit(cache=CACHE, nogil=True, error_model='numpy'{inline})\n"
            f"def {name}({args}):\n{body}\n")


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
    header = "import math\nimport numba\nimport numpy as np\n\nCACHE = False\n\n"
    dims = dict(nw=len(eq.sources), nx=len(eq.reactive), nxs=len(eq.reactive),
                r=len(eq.reduced), nports=n, nj=len(junction_out) // 2)
    loop = _KERNEL
    for name, value in dims.items():
        loop = loop.replace(f"{name} = {{{name}}}", f"{name} = {value}")
    return header + laws + "\n\n" + junctions + "\n" + loop


_COMPILED: dict[str, object] = {}


def cache_folder() -> Path | None:
    """Where generated kernels and numba's machine code are kept between processes:
    `nodal.files.cache_dir("kernels")` (None: compile in memory only)."""
    return cache_dir("kernels")


def _load(source: str):
    """Import the kernel from a file named by its hash (numba then caches the machine code
    beside it, so a second process skips the compile), or exec it in memory."""
    folder = cache_folder()
    if folder is not None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            name = "kernel_" + hashlib.sha256(source.encode()).hexdigest()[:24]
            path = folder / f"{name}.py"
            text = source.replace("CACHE = False", "CACHE = True")
            if not path.exists() or path.read_text() != text:
                tmp = path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(text)
                tmp.replace(path)
            module_name = f"nodal_fast_{name}"
            spec = importlib.util.spec_from_file_location(module_name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module      # numba's cache re-imports it by name
            spec.loader.exec_module(module)
            return module.run
        except OSError:
            pass
    namespace: dict = {}
    exec(compile(source, f"<nodal.fast kernel {len(_COMPILED)}>", "exec"), namespace)
    return namespace["run"]


def kernel(eq: Equations):
    """The compiled `run` function of `eq`'s structure (compiled on first call, then cached)."""
    source = kernel_source(eq)
    if source not in _COMPILED:
        _COMPILED[source] = _load(source)
    return _COMPILED[source]


class Run:
    """One kernel run's outputs (numpy, float64 unless said): y [B, T], x [B, T, n_states],
    s_final [B, n_states], q [B, T, r] (Newton's port coordinates per sample), iterations
    [B, T] (int64) and failed [B, T] (bool)."""

    def __init__(self, y, x, s_final, q, iterations, failed):
        self.y, self.x, self.s_final, self.q = y, x, s_final, q
        self.iterations, self.failed = iterations, failed


def prepare(solver, m=None, theta=None) -> tuple:
    """The kernel and its constant arguments at the solver's current values (reuse across runs
    of one forward call: converting the matrices costs more than a short run)."""
    cached = getattr(solver, "_fast_kernel", None)
    if cached is None or cached[0] is not solver.eq:
        cached = (solver.eq, kernel(solver.eq))
        solver._fast_kernel = cached
    with torch.no_grad():
        theta = solver.theta() if theta is None else theta
        m = solver.matrices() if m is None else m
    numeric = solver.numeric
    consts = tuple(as_numpy(t, F64) for t in (m.G, m.H, m.K, m.A, m.B, m.C, m.D, m.E, m.F,
                                              m.Ds, m.Es, m.Fs, numeric.expand))
    consts += (np.asarray(numeric.junction_ports, dtype=np.int64),
               np.array([float(t.detach()) for t in theta]))
    return cached[1], consts, (m.A.shape[0], m.Ds.shape[0], m.K.shape[0])


def run(solver, prepared, w: np.ndarray, s0: np.ndarray, q0: np.ndarray | None) -> Run:
    """Run the kernel on sources w [B, T, sources] from canonical state s0 [B, n]; Newton's
    first sample starts from q0 [B, r] (None: from the linear prediction p)."""
    kernel_run, consts, (nx, nxs, r) = prepared
    batch, length = w.shape[:2]
    y = np.zeros((batch, length))
    x = np.zeros((batch, length, nxs))
    s_final = np.zeros((batch, nx))
    q = np.zeros((batch, length, r))
    iters = np.zeros((batch, length), dtype=np.int64)
    failed = np.zeros((batch, length), dtype=np.bool_)
    options = solver.newton
    start = np.zeros((batch, r)) if q0 is None else np.ascontiguousarray(q0, dtype=np.float64)
    kernel_run(*consts, np.ascontiguousarray(w, dtype=np.float64),
               np.ascontiguousarray(s0, dtype=np.float64).reshape(batch, nx), start,
               q0 is not None, int(options.max_iter), float(options.abstol),
               float(options.reltol), y, x, s_final, q, iters, failed)
    return Run(y, x, s_final, q, iters, failed)


def simulate(solver, u: Tensor, s0: Tensor | None = None) -> Trajectory:
    """Run `solver`'s circuit on inputs u [B, T, n_inputs] (volts) with the compiled kernel.

    Returns a `Trajectory` of float64 tensors shaped as `NodalSolver.forward` returns them:
    y [B, T, 1], x [B, T, n_states], s_final [B, n_states]. Sets `solver.last_iterations`
    (Newton iterations per sample, the most over the batch, averaged over time, as the torch
    path counts them) and `solver.last_failures`; raises `ConvergenceError` naming the samples
    where Newton did not converge if `solver.strict` (else warns). This is `solver.forward`
    without autograd, which runs the kernel alone.
    """
    with torch.no_grad():
        return solver.forward(torch.as_tensor(u), s0)

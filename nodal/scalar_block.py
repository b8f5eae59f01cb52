"""A small Newton block of the compiled kernel written out in scalars.

The sample loop's generic block Newton (`fast._NEWTON`) works on arrays (port voltages,
currents, the Jacobian, J and its factors). Numba allocates them on the heap and LLVM cannot
tell them apart, so every store to one reloads the others and nothing stays in a register: on
the diode clipper (one coordinate, two ports) the generic loop took ~2.5x the time of the same
algorithm written in scalars. For a block of at most `MAX_COORDINATES` coordinates and
`MAX_PORTS` ports this module writes the same Newton (the same start, tangent prediction,
residual, round-off floor, SPICE pnjlim, step test, stall test and "predicted" stopping rule)
with one local variable per quantity, unrolled; the laws come from a function of the port
voltages that returns the currents and the Jacobian's structural nonzeros as a tuple. The
block's coordinates, currents and Jacobian are written back to the loop's arrays once per
sample, where the update, the next blocks and the next sample's tangent read them. Only
round-off differs from the generic Newton; the ladder keeps the generic one.
"""

from __future__ import annotations

MAX_COORDINATES = 2
MAX_PORTS = 4


def fits(rg: dict) -> bool:
    """Whether a block (`fast.kernel_text`'s ranges) is written out in scalars."""
    return 1 <= rg["NB"] <= MAX_COORDINATES and 1 <= rg["NPB"] <= MAX_PORTS


def laws_outputs(npb: int, nz: list[tuple[int, int]]) -> list[str]:
    """The names the scalar laws return, in order: currents, then the Jacobian's nonzeros."""
    return [f"i{c}" for c in range(npb)] + [f"g{c}_{e}" for c, e in nz]


def _theta_tuple(rg: dict) -> str:
    """The parameters a block's laws read, as a tuple literal of theta's elements."""
    items = "".join(f"theta[{t}], " for t in rg["THETA"])
    return f"({items.rstrip()})" if rg["THETA"] else "()"


def laws_wrapper(k: int, rg: dict) -> str:
    """`_laws_k(v, theta, i, jac)` (the array form the ladder uses) over `_laws_s_k`, which
    takes the block's port voltages, the other ports' voltages its laws read (`OUTSIDE`) and
    the parameters they read (`THETA`, one tuple)."""
    p0, npb, nz = rg["P0"], rg["NPB"], rg["NZ"]
    outs = laws_outputs(npb, nz)
    args = ", ".join([f"v[{p0 + c}]" for c in range(npb)] + [f"v[{pos}]" for pos in rg["OUTSIDE"]]
                     + [_theta_tuple(rg)])
    lines = [f"({', '.join(outs)},) = _laws_s_{k}({args})"]
    lines += [f"i[{p0 + c}] = i{c}" for c in range(npb)]
    lines += [f"jac[{p0 + c}, {p0 + e}] = g{c}_{e}" for c, e in nz]
    body = "".join(f"    {line}\n" for line in lines)
    return (f"@numba.njit(cache=CACHE, nogil=True, error_model='numpy')\n"
            f"def _laws_{k}(v, theta, i, jac):\n{body}")


def kn(rg: dict, a: int, c: int) -> str:
    """The local holding KN[R0 + a, P0 + c] (read once per run, `prologue`)."""
    return f"kn{rg['K']}_{a}_{c}"


def ex(rg: dict, c: int, a: int) -> str:
    """The local holding expand[P0 + c, R0 + a]."""
    return f"ex{rg['K']}_{c}_{a}"


def prologue(rg: dict) -> str:
    """Locals read once per run, before the sample loop, for a written-out block: its part of
    K and Q, its junctions' constants and the parameters its laws read. As locals (not array
    elements, which a store to any output array makes LLVM read again) LLVM keeps them in
    registers and hoists whatever the laws compute from parameters alone out of the loop."""
    nb, npb, r0, p0 = rg["NB"], rg["NPB"], rg["R0"], rg["P0"]
    lines = [f"{kn(rg, a, c)} = KN[{r0 + a}, {p0 + c}]" for a in range(nb) for c in range(npb)]
    if not rg["ID"]:
        lines += [f"{ex(rg, c, a)} = expand[{p0 + c}, {r0 + a}]"
                  for c in range(npb) for a in range(nb)]
    for m, _ in rg["JUNCTIONS"]:
        lines += [f"vt{m} = vte[{m}]", f"vc{m} = vcrit[{m}]", f"hv{m} = 0.5 / vte[{m}]"]
    lines.append(f"th{rg['K']} = {_theta_tuple(rg)}")
    return "".join(line + "\n" for line in lines)


class _Code:
    def __init__(self):
        self.lines: list[str] = []
        self.depth = 0

    def __call__(self, *lines: str) -> None:
        self.lines += ["    " * self.depth + line for line in lines]

    def indent(self):
        code = self

        class _Block:
            def __enter__(self):
                code.depth += 1

            def __exit__(self, *exc):
                code.depth -= 1

        return _Block()

    def text(self) -> str:
        return "".join(line + "\n" for line in self.lines)


def _solve(code: _Code, nb: int, J: str, b: str, x: str) -> None:
    """x = J^-1 b by Gaussian elimination with partial pivoting (as `fast._SOLVE`), leaving
    the factors in J{a}_{b}, the multipliers in {J}m{k}_{c} and the swaps in {J}s{c} for
    `_resolve`. b{a} is overwritten."""
    if nb == 1:
        # the reciprocal, computed beside the right-hand side, is used again by `_resolve`:
        # a multiplication on the sample's critical path instead of a division (1 ulp apart)
        code(f"{J}r = 1.0 / {J}0_0", f"{x}0 = {b}0 * {J}r")
        return
    # nb == 2
    code(f"{J}s0 = abs({J}1_0) > abs({J}0_0)",
         f"if {J}s0:")
    with code.indent():
        code(f"{J}0_0, {J}1_0 = {J}1_0, {J}0_0",
             f"{J}0_1, {J}1_1 = {J}1_1, {J}0_1",
             f"{b}0, {b}1 = {b}1, {b}0")
    code(f"{J}m1_0 = {J}1_0 / {J}0_0",
         f"{J}1_1 -= {J}m1_0 * {J}0_1",
         f"{b}1 -= {J}m1_0 * {b}0",
         f"{x}1 = {b}1 / {J}1_1",
         f"{x}0 = ({b}0 - {J}0_1 * {x}1) / {J}0_0")


def _resolve(code: _Code, nb: int, J: str, b: str) -> None:
    """b = J^-1 b in place from `_solve`'s factors."""
    if nb == 1:
        code(f"{b}0 = {b}0 * {J}r")
        return
    code(f"if {J}s0:")
    with code.indent():
        code(f"{b}0, {b}1 = {b}1, {b}0")
    code(f"{b}1 -= {J}m1_0 * {b}0",
         f"{b}1 = {b}1 / {J}1_1",
         f"{b}0 = ({b}0 - {J}0_1 * {b}1) / {J}0_0")


def _matrix(code: _Code, rg: dict, nz: list[tuple[int, int]], J: str, g: str) -> None:
    """J = I - K (di/dv) Q over the block, with the Jacobian's nonzeros in {g}{c}_{e}."""
    nb, npb, ident = rg["NB"], rg["NPB"], rg["ID"]
    for a in range(nb):
        for c in range(npb):
            terms = [f"{kn(rg, a, r)} * {g}{r}_{e}" for r, e in nz if e == c]
            code(f"kj{a}_{c} = {' + '.join(terms) if terms else '0.0'}")
    for a in range(nb):
        for b in range(nb):
            one = "1.0" if a == b else "0.0"
            if ident:
                code(f"{J}{a}_{b} = {one} - kj{a}_{b}")
            else:
                terms = " + ".join(f"kj{a}_{c} * {ex(rg, c, b)}" for c in range(npb))
                code(f"{J}{a}_{b} = {one} - ({terms})")


def _ports(code: _Code, rg: dict, q: str, v: str, base: str) -> None:
    """{v}{c} = Q q over the block's ports from the block's coordinates {q}{a} and, where Q
    reaches the blocks before it, their part `base`{c} (computed once per sample)."""
    nb, npb, r0, ident = rg["NB"], rg["NPB"], rg["R0"], rg["ID"]
    for c in range(npb):
        if ident:
            code(f"{v}{c} = {q}{c}")
        else:
            terms = " + ".join(f"{ex(rg, c, a)} * {q}{a}" for a in range(nb))
            code(f"{v}{c} = {base}{c} + {terms}" if r0 else f"{v}{c} = {terms}")


def _dports(code: _Code, rg: dict, dq: str, dv: str, add: bool = False) -> None:
    nb, npb, ident = rg["NB"], rg["NPB"], rg["ID"]
    op = "+=" if add else "="
    for c in range(npb):
        if ident:
            code(f"{dv}{c} {op} {dq}{c}")
        else:
            terms = " + ".join(f"{ex(rg, c, a)} * {dq}{a}" for a in range(nb))
            code(f"{dv}{c} {op} {terms}")


def _limit(code: _Code, junctions: list[tuple[int, int]], v: str, dv: str) -> None:
    """alpha: SPICE's pnjlim over the block's junctions (global index m at local port c)."""
    code("alpha = 1.0")
    for m, c in junctions:
        code(f"alpha = min(alpha, _pnjlim_one({v}{c}, {dv}{c}, vt{m}, vc{m}))")


def _finite(code: _Code, nb: int, dq: str) -> None:
    code("good = " + " and ".join(f"math.isfinite(alpha * {dq}{a})" for a in range(nb)))


def _limited(code: _Code, rg: dict) -> None:
    """The step d{a} as the ports see it (dv{c}), SPICE's limiting factor alpha over the
    block's junctions from the voltages v{c}, and whether alpha * d is finite (good)."""
    _dports(code, rg, "d", "dv")
    _limit(code, rg["JUNCTIONS"], "v", "dv")
    _finite(code, rg["NB"], "d")


def _earlier(code: _Code, rg: dict, q: str, base: str) -> None:
    """{base}{c}: the part of the block's port voltages from the coordinates of the blocks
    before it (array `q`), where Q reaches them; fixed while this block's Newton runs."""
    if not rg["R0"] or rg["ID"]:
        return
    for c in range(rg["NPB"]):
        code(f"{base}{c} = 0.0", f"for a in range({rg['R0']}):")
        with code.indent():
            code(f"{base}{c} += expand[{rg['P0'] + c}, a] * {q}[a]")


def _tangent(code: _Code, rg: dict) -> None:
    """Newton's start from the tangent: J dq = pe - pe_prev with J at the last evaluation
    (the jac array), limited as a Newton step (a junction never starts far past its knee)."""
    nz = rg["NZ"]
    nb, r0, p0 = rg["NB"], rg["R0"], rg["P0"]
    # tangent: J dq = pe - pe_prev with J at the last evaluation (the jac array)
    for c, e in nz:
        code(f"h{c}_{e} = jac[{p0 + c}, {p0 + e}]")
    _matrix(code, rg, nz, "T", "h")
    for a in range(nb):
        code(f"b{a} = pe[{r0 + a}] - pprev[{r0 + a}]")
    _solve(code, nb, "T", "b", "d")
    for a in range(nb):
        code(f"o{a} = q1[{r0 + a}]")
    _earlier(code, rg, "q1", "vp")
    _ports(code, rg, "o", "v", "vp")
    _limited(code, rg)
    code("if good:")
    with code.indent():
        for a in range(nb):
            code(f"z{a} = o{a} + alpha * d{a}")


def section(k: int, rg: dict) -> str:
    """The sample loop's part for block k (replaces `fast._MAIN_BLOCK`), at the loop's
    indentation 0. rg["NZ"]: the Jacobian's structural nonzeros (local c, e);
    rg["JUNCTIONS"]: (global junction index, local port)."""
    nz = rg["NZ"]
    nb, npb, r0, p0 = rg["NB"], rg["NPB"], rg["R0"], rg["P0"]
    code = _Code()
    code("if ok:")
    with code.indent():
        code(f"_effective(p, KN, cur, pe, {r0}, {rg['R1']}, {p0})")
        _earlier(code, rg, "q", "vb")
        for a in range(nb):
            code(f"z{a} = q[{r0 + a}]")
        code("if predictor == 2 and have_p:")
        with code.indent():
            _tangent(code, rg)
        code("it = 0", "conv = False", "last = math.inf")
        for c in range(npb):
            code(f"i{c} = cur[{p0 + c}]", f"v{c} = v[{p0 + c}]")
        for c, e in nz:
            code(f"g{c}_{e} = jac[{p0 + c}, {p0 + e}]")
        code("for _ in range(max_iter):")
        with code.indent():
            _newton_body(code, k, rg, nz)
        code("if it > total:")
        with code.indent():
            code("total = it")
        code("ok = conv")
        for a in range(nb):
            code(f"q[{r0 + a}] = z{a}")
        for c in range(npb):
            code(f"cur[{p0 + c}] = i{c}")
        for c, e in nz:
            code(f"jac[{p0 + c}, {p0 + e}] = g{c}_{e}")
        for c in range(npb):
            # the ports' voltages at the last evaluation, as the generic Newton leaves them
            # (a later block's law may read one)
            code(f"v[{p0 + c}] = v{c}")
    return code.text()


def _newton_body(code: _Code, k: int, rg: dict, nz) -> None:
    nb, npb, r0 = rg["NB"], rg["NPB"], rg["R0"]
    outs = laws_outputs(npb, nz)
    _ports(code, rg, "z", "v", "vb")
    args = ([f"v{c}" for c in range(npb)] + [f"v[{pos}]" for pos in rg["OUTSIDE"]]
            + [f"th{k}"])
    code(f"({', '.join(outs)},) = _laws_s_{k}({', '.join(args)})")
    code("it += 1")
    # f = q - pe - K i, and whether it is already at its round-off floor
    code("settled = True")
    for a in range(nb):
        terms = [f"{kn(rg, a, c)} * i{c}" for c in range(npb)]
        code(f"acc = z{a} - pe[{r0 + a}]", f"mag = abs(z{a}) + abs(pe[{r0 + a}])")
        for term in terms:
            code(f"t = {term}", "acc -= t", "mag += abs(t)")
        code(f"f{a} = -acc",
             "if not (abs(acc) <= ROUNDOFF * mag and mag < math.inf):")
        with code.indent():
            code("settled = False")
    code("if settled:")
    with code.indent():
        code("conv = True", "break")
    _matrix(code, rg, nz, "J", "g")
    _solve(code, nb, "J", "f", "d")
    _limited(code, rg)
    code("if not good:")
    with code.indent():
        code("break")
    code("small = alpha == 1.0", "big = 0.0")
    for a in range(nb):
        code(f"step = alpha * d{a}", f"z{a} += step",
             f"if abs(step) > abstol + reltol * abs(z{a}):")
        with code.indent():
            code("small = False")
        code("if abs(step) > big:")
        with code.indent():
            code("big = abs(step)")
    code("if alpha == 1.0 and big <= STALL and big >= 0.5 * last:")
    with code.indent():
        code("small = True")
    code("last = big")
    if rg["AHEAD"]:
        _ahead(code, rg, nz)
    code("if small:")
    with code.indent():
        # the currents at the converged q, to first order from the last evaluation
        for c in range(npb):
            terms = "".join(f" + g{c}_{e} * dv{e}" for cc, e in nz if cc == c)
            code(f"i{c} = i{c}{terms}")
        code("conv = True", "break")


def _ahead(code: _Code, rg: dict, nz) -> None:
    """The "predicted" stopping rule (`fast._AHEAD`), for a block whose port c is junction
    J0 + c."""
    nb, npb, j0 = rg["NB"], rg["NPB"], rg["J0"]
    code("if stopping == 1 and alpha == 1.0:")
    with code.indent():
        code("near = " + " and ".join(f"abs(dv{e}) <= AHEAD_REACH * vt{j0 + e}"
                                      for e in range(npb)))
        code("if near:")
        with code.indent():
            for e in range(npb):
                code(f"sq{e} = dv{e} * dv{e} * hv{j0 + e}")
            for c in range(npb):
                terms = " + ".join(f"g{c}_{e} * sq{e}" for cc, e in nz if cc == c)
                code(f"r{c} = {terms or '0.0'}")
            for a in range(nb):
                terms = " + ".join(f"{kn(rg, a, c)} * r{c}" for c in range(npb))
                code(f"e{a} = {terms}")
            _resolve(code, nb, "J", "e")
            code("near = " + " and ".join(
                f"AHEAD_SAFETY * abs(e{a}) <= abstol + reltol * abs(z{a})" for a in range(nb)))
        code("if near:")
        with code.indent():
            for a in range(nb):
                code(f"z{a} += e{a}")
            # the ports' step to the accepted q, and the currents there to second order
            _dports(code, rg, "e", "dv", add=True)
            for c in range(npb):
                terms = "".join(f" + g{c}_{e} * dv{e}" for cc, e in nz if cc == c)
                code(f"i{c} = i{c} + r{c}{terms}")
            code("conv = True", "break")


#: SPICE's pnjlim for one junction, as `fast._pnjlim` (a scalar function LLVM inlines)
PNJLIM_ONE = '''
@numba.njit(cache=CACHE, nogil=True, error_model="numpy")
def _pnjlim_one(v_old, d, t, vcrit):
    v_new = v_old + d
    ratio = 1.0
    if v_new > vcrit and abs(d) > 2.0 * t:
        if v_old > 0.0:
            arg = 1.0 + d / t
            if arg > 0.0:
                v_lim = v_old + t * math.log(max(arg, 1e-300))
            else:
                v_lim = vcrit
        else:
            v_lim = t * math.log(max(v_new / t, 1e-300))
        ratio = (v_lim - v_old) / d
    return min(max(ratio, 1e-6), 1.0)
'''

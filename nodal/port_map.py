"""A block's port map Q written out where it is not the identity.

The port voltages of a Newton block are v = Q q over the coordinates q. Where two ports
share their nodes (a diode's junction and its depletion charge; an antiparallel diode pair
without series resistance: v2 = -v1) there are fewer coordinates than ports, and Q is a
sparse matrix of +-1 (`mna._independent_ports`). The kernel's generic helpers
(`_ports`, `_dports`, `_matrix` in `fast.py`) loop over all of Q, zeros included: on the
Ram's Head Big Muff export (three blocks of 16 ports on 12 coordinates: its 1N914 card has
a junction capacitance) building
J = I - K (di/dv) Q that way was 40 % of a sample. Here each is written out over Q's
structural nonzeros (its coefficients still read from the `expand` array at fixed places, as
the generic loop reads them), in the generic loop's order, skipping only terms that are
exactly zero: the same sums, so the same samples to the last bit.

Each block's parameters (`ranges` in `fast.py`): R0, NB its coordinates, P0, NPB its ports,
COLS[y] the ports whose currents depend on port y, QROWS[c] the coordinates port P0 + c reads
(ascending, all blocks' up to the block's last).
"""

from __future__ import annotations

import re

_NJIT = '@numba.njit(cache=CACHE, nogil=True, error_model="numpy")'


def rows(expand_rows, upto: int) -> list[list[int]]:
    """QROWS: for each of a block's ports (rows of Q in the kernel's frame), the coordinates
    below `upto` with a nonzero coefficient."""
    return [[a for a in range(upto) if expand_rows[c, a] != 0] for c in range(len(expand_rows))]


def local_rows(rg: dict) -> tuple | None:
    """QROWS relative to the block's first coordinate, for a block whose ports read only its
    own coordinates (a group's member, on its local arrays); None for the identity."""
    if rg["ID"] or not rg.get("QROWS"):
        return None
    return tuple(tuple(a - rg["R0"] for a in row) for row in rg["QROWS"])


def applies(rg: dict) -> bool:
    """Whether block rg has its port map written out: Q not the identity, a pattern known."""
    return not rg["ID"] and bool(rg.get("QROWS")) and bool(rg["COLS"])


def _sum(terms: list[str], start: str = "0.0") -> str:
    return " + ".join([start] + terms)


def code(k: int, rg: dict) -> str:
    """`_ports_k(expand, q, v)`, `_dports_k(expand, dq, dv)` and `_matrix_k(KN, jac, expand, J)`
    for block k, written out."""
    p0, r0, nb = rg["P0"], rg["R0"], rg["NB"]
    own = [[a - r0 for a in row if r0 <= a < r0 + nb] for row in rg["QROWS"]]
    ports = [_NJIT, f"def _ports_{k}(expand, q, v):"]
    ports += [f"    v[{p0 + c}] = " + _sum([f"expand[{p0 + c}, {a}] * q[{a}]" for a in row])
              for c, row in enumerate(rg["QROWS"])]
    dports = [_NJIT, f"def _dports_{k}(expand, dq, dv):"]
    dports += [f"    dv[{p0 + c}] = " + _sum([f"expand[{p0 + c}, {r0 + b}] * dq[{b}]"
                                              for b in row])
               for c, row in enumerate(own)]
    matrix = [_NJIT, f"def _matrix_{k}(KN, jac, expand, J):"]
    for y, col in enumerate(rg["COLS"]):
        matrix += [f"    g{c}_{y} = jac[{c}, {p0 + y}]" for c in col]
    for c, row in enumerate(own):
        matrix += [f"    e{c}_{b} = expand[{p0 + c}, {r0 + b}]" for b in row]
    matrix += [f"    for a in range({nb}):", f"        r = {r0} + a"]
    # KJ[a, y] = sum over the rows of column y of K[r, c] jac[c, y], as the generic loop
    matrix += [f"        kj{y} = " + _sum([f"KN[r, {c}] * g{c}_{y}" for c in col])
               for y, col in enumerate(rg["COLS"])]
    for b in range(nb):
        terms = "".join(f" - kj{c} * e{c}_{b}" for c, row in enumerate(own) if b in row)
        matrix.append(f"        J[a, {b}] = (1.0 if a == {b} else 0.0){terms}")
    return "\n\n\n".join("\n".join(f) for f in (ports, dports, matrix)) + "\n"


def use(text: str, k: int, rg: dict) -> str:
    """text with block k's generic calls (`_ports`, `_dports`, `_matrix`, their `_c` copies)
    calling its written-out helpers."""
    p0, p1, r0, r1 = rg["P0"], rg["P0"] + rg["NPB"], rg["R0"], rg["R0"] + rg["NB"]
    nb, npb = rg["NB"], rg["NPB"]
    text = re.sub(rf"_ports(?:_c)?\(expand, (\w+), v, {p0}, {p1}, {r0}, {r1}, False\)",
                  rf"_ports_{k}(expand, \1, v)", text)
    text = re.sub(rf"_dports(?:_c)?\(expand, dq, dv, {p0}, {p1}, {r0}, {nb}, False\)",
                  f"_dports_{k}(expand, dq, dv)", text)
    return re.sub(rf"_matrix(?:_c)?\(KN, jac, expand, KJ, (\w+), {r0}, {nb}, {p0}, {npb}, "
                  r"False\)", rf"_matrix_{k}(KN, jac, expand, \1)", text)

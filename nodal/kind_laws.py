"""A large block's device laws as one loop per kind of device.

Written out port by port, a block's laws grow with its devices: every transistor's
Gummel-Poon law is compiled again (~0.4 s of numba per transistor in a chain of direct-coupled
stages). Here a block's ports are split into devices (the groups of ports its laws' Jacobian
couples: a BJT's two junctions, a diode) and each device's laws are printed relative to it:
its ports at `v[PT_KIND_k[d, j]]`, the parameters they read at `theta[TX_KIND_k[d, t]]`.
Devices whose text is the same (every 2N5088 of the block, every 1N914) are one kind, compiled
once, and the block's `_laws_k` loops over its devices of each kind.

What depends on the parameters alone (n Vt, 1 / IKF, IS^(1/NE)...) is not computed at every
evaluation: each device's values of those terms are appended to theta once per run
(`_extended`, where the kernel is entered) and its row of TX_KIND_k points at them (the
written-out laws compute them at every evaluation, once per model). Even so a sample costs
~10 % more than with the written-out laws, which overlap every device's exponentials in one
function; `fast.KIND_LOOP_PORTS` sets the block size from which the compile saved is worth it.
"""

from __future__ import annotations

import sympy as sp

from .law_text import KernelPrinter, assignments

_HEAD = "@numba.njit(cache=CACHE, nogil=True, error_model='numpy')\n"


def _devices(npb: int, nz: list[tuple[int, int]]) -> list[list[int]]:
    """A block's local ports in groups its Jacobian couples (connected components), in order."""
    parent = list(range(npb))

    def root(c: int) -> int:
        while parent[c] != c:
            parent[c] = parent[parent[c]]
            c = parent[c]
        return c

    for c, e in nz:
        parent[root(c)] = root(e)
    groups: dict[int, list[int]] = {}
    for c in range(npb):
        groups.setdefault(root(c), []).append(c)
    return sorted(groups.values())


def _place(element: str) -> tuple[str, list[int]]:
    """"jac[7, 8]" -> ("jac", [7, 8])."""
    name, inside = element[:-1].split("[")
    return name, [int(x) for x in inside.split(",")]


class Kinds:
    """The kinds of device of a circuit's large blocks, collected block by block
    (`block_laws`), then printed (`text`). theta_size: the entries of theta the kernel is
    given (parameters, then the laws' constants); the hoisted terms follow them."""

    def __init__(self, theta_size: int):
        self.size = theta_size              # theta's size once extended
        self.kinds: dict[str, int] = {}     # a device's relative text -> its kind
        self.functions: list[str] = []
        self.rows: list[list[tuple[list[int], list[int]]]] = []     # per kind: (pt, tx) rows

    def block_laws(self, k: int, rg: dict, out: list, voltages: list, params: list) -> str:
        """`_laws_k(v, theta, i, jac)` for block k as loops over its devices of each kind.
        out: its (target, expression) pairs ("i[7]", "jac[7, 8]" at kernel positions);
        voltages, params: (element, symbol) pairs of every port voltage and parameter."""
        p0 = rg["P0"]
        loops = []
        for device in _devices(rg["NPB"], rg["NZ"]):
            ports = [p0 + c for c in device]
            mine = [(t, e) for t, e in out if all(x in ports for x in _place(t)[1])]
            kind, pt, tx = self._device(ports, mine, voltages, params)
            rows = self.rows[kind]
            if loops and loops[-1][0] == kind and loops[-1][2] == len(rows):
                loops[-1][2] += 1
            else:
                loops.append([kind, len(rows), len(rows) + 1])
            rows.append((pt, tx))
        body = "".join(f"    for d in range({lo}, {hi}):\n"
                       f"        _kind_{kind}(v, theta, i, jac, d)\n"
                       for kind, lo, hi in loops)
        return f"{_HEAD}def _laws_{k}(v, theta, i, jac):\n{body}"

    def _device(self, ports: list[int], out: list, voltages: list, params: list):
        """(kind, pt row, tx row) of one device: its ports (kernel positions) and laws."""
        free = set().union(*(sp.sympify(e).free_symbols for _, e in out))
        at = {_place(element)[1][0]: sym for element, sym in voltages}
        # its own port voltages in its own order (alike devices print alike), then any other
        # device's port its laws read, which stays where it is
        inputs = [(f"v[PT_KIND_@KIND@[d, {j}]]", at[port]) for j, port in enumerate(ports)]
        inputs += [(element, sym) for element, sym in voltages
                   if sym in free and _place(element)[1][0] not in ports]
        tx = []
        for element, sym in params:
            if sym in free:
                inputs.append((f"theta[TX_KIND_@KIND@[d, {len(tx)}]]", sym))
                tx.append(int(element[len("theta["):-1]))

        def local(element: str) -> str:
            name, places = _place(element)
            at = ", ".join(f"PT_KIND_@KIND@[d, {ports.index(x)}]" for x in places)
            return f"{name}[{at}]"

        outputs = [(local(t), e) for t, e in out]
        law, derive, hoisted = _print(outputs, inputs, len(tx))
        text = law + "\n" + derive
        kind = self.kinds.get(text)
        if kind is None:
            kind = self.kinds[text] = len(self.kinds)
            self.functions.append(text.replace("@KIND@", str(kind)))
            self.rows.append([])
        tx += list(range(self.size, self.size + hoisted))
        self.size += hoisted
        return kind, ports, tx

    def text(self) -> tuple[str, list[str]]:
        """(the kinds' functions and `_extended`, the header's tables)."""
        header = [f"NTHETA = {self.size}"]
        for kind, rows in enumerate(self.rows):
            header.append(f"PT_KIND_{kind} = np.array({[pt for pt, _ in rows]}, dtype=np.int64)")
            header.append(f"TX_KIND_{kind} = np.array({[tx for _, tx in rows]}, dtype=np.int64)")
        calls = "".join(f"    for d in range(len(TX_KIND_{kind})):\n"
                        f"        _derive_{kind}(out, d)\n"
                        for kind in range(len(self.rows)))
        extended = (f"{_HEAD}def _extended(theta):\n"
                    '    """theta with each device\'s terms of its parameters alone appended\n'
                    '    (the kinds\' tables point at them); theta itself where it has them."""\n'
                    "    if len(theta) >= NTHETA:\n        return theta\n"
                    "    out = np.empty(NTHETA)\n"
                    "    for k in range(len(theta)):    # a loop: a slice compiles for seconds\n"
                    "        out[k] = theta[k]\n"
                    f"{calls}    return out\n")
        return "\n\n".join(self.functions + [extended]), header


def _print(outputs: list, inputs: list, n_params: int) -> tuple[str, str, int]:
    """(`_kind_@KIND@(v, theta, i, jac, pt, tx, d)`, `_derive_@KIND@(theta, tx, d)` writing the
    terms of the parameters alone to theta[tx[d, n_params + h]], how many)."""
    safe = {sym: sp.Symbol(f"_a{k}") for k, (_, sym) in enumerate(inputs)}
    exprs = [sp.sympify(e).xreplace(safe) for _, e in outputs]
    common, reduced = sp.cse(exprs, symbols=sp.numbered_symbols("_c"))
    given = {safe[sym] for element, sym in inputs if element.startswith("theta[")}
    hoisted, fixed = [], set(given)
    for lhs, rhs in common:
        if rhs.free_symbols <= fixed and not isinstance(rhs, sp.logic.boolalg.Boolean):
            hoisted.append((lhs, rhs))
            fixed.add(lhs)
    rest = [(lhs, rhs) for lhs, rhs in common if lhs not in fixed]
    printer = KernelPrinter()
    used = set().union(*(e.free_symbols for e in list(reduced) + [rhs for _, rhs in rest]))
    lines = [f"{safe[sym]} = {src}" for src, sym in inputs if safe[sym] in used]
    at = "theta[TX_KIND_@KIND@[d, {}]]"
    lines += [f"{lhs} = {at.format(n_params + h)}" for h, (lhs, _) in enumerate(hoisted)
              if lhs in used]
    lines += assignments(rest, reduced, [target for target, _ in outputs])
    law = (f"{_HEAD}def _kind_@KIND@(v, theta, i, jac, d):\n"
           + "".join(f"    {line}\n" for line in lines))
    need = set().union(*(rhs.free_symbols for _, rhs in hoisted)) if hoisted else set()
    derive = [f"{safe[sym]} = {src}" for src, sym in inputs if safe[sym] in need]
    derive += [f"{lhs} = {printer.doprint(rhs)}" for lhs, rhs in hoisted]
    derive += [f"{at.format(n_params + h)} = {lhs}" for h, (lhs, _) in enumerate(hoisted)]
    derive_text = (f"{_HEAD}def _derive_@KIND@(theta, d):\n"
                   + "".join(f"    {line}\n" for line in derive or ["pass"]))
    return law, derive_text, len(hoisted)

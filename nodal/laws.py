"""Device laws grouped by kind: each distinct law written once, its Jacobian derived once.

A circuit's nonlinear ports fall into *instances*: the ports whose laws read each other's
voltages (a diode's one port, a BJT's base-emitter and base-collector ports with its charges,
a behavioural source's output and controls). Instances whose laws are the same up to the
names of their port voltages and parameters are one *kind*: the eight 2N5088s of a two-Big-
Muff board are one kind, its eight 1N914s another, whatever their models are called, as long
as the laws have the same form and constants.

A kind keeps its laws in stand-in symbols (`LawKind.voltages`, `LawKind.parameters`), the
Jacobian of those laws (by `mna.port_derivative`, once per kind), and per instance which
ports and which circuit symbols the stand-ins are. From it:

- `mna.derive` writes each instance's Jacobian entries by renaming (`xreplace`, no algebra):
  Sympy differentiates one BJT, not eight;
- `dk.NumericEquations` lambdifies one torch function per kind and evaluates every instance of
  the kind in one call, on [batch, instances] tensors.

Parameters are matched to stand-ins by their name without the model prefix (`q2n5088.is` and
`q2n3904.is` are both `is`), then by full name; two instances whose laws differ in anything
but those names are two kinds, so a wrong match can only cost sharing, never a wrong law.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp


@dataclass
class LawKind:
    """One kind of device law. Per port of an instance (in port order): its law in the
    stand-ins; per instance: the circuit's port index of each stand-in voltage and the index
    into `Equations.symbols` of each stand-in parameter."""

    voltages: list[sp.Symbol]
    parameters: list[sp.Symbol]
    laws: list[sp.Expr]
    jacobian: dict[tuple[int, int], sp.Expr]      # (law a, voltage b) -> d law_a / d v_b
    ports: list[list[int]] = field(default_factory=list)
    arguments: list[list[int]] = field(default_factory=list)

    @property
    def instances(self) -> int:
        return len(self.ports)


class _StandIns:
    """Stand-in symbols, one per (role, position, assumptions), shared by every law of one
    derivation so that equal laws become equal expressions. Dummies: they cannot collide with
    a netlist's own names."""

    def __init__(self):
        self._made: dict[tuple, sp.Dummy] = {}

    def __call__(self, role: str, k: int, like: sp.Symbol) -> sp.Dummy:
        key = (role, k, tuple(sorted(like.assumptions0.items())))
        if key not in self._made:
            self._made[key] = sp.Dummy(f"{role}{k}", **like.assumptions0)
        return self._made[key]


def _instances(currents: list[sp.Expr], voltages: list[sp.Symbol]) -> list[list[int]]:
    """Ports grouped by which voltages their laws read (union-find), each group in port
    order, groups in the order of their first port."""
    column = {v: j for j, v in enumerate(voltages)}
    parent = list(range(len(currents)))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for i, law in enumerate(currents):
        for v in law.free_symbols:
            j = column.get(v)
            if j is not None:
                a, b = find(i), find(j)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    groups: dict[int, list[int]] = {}
    for i in range(len(currents)):
        groups.setdefault(find(i), []).append(i)
    return list(groups.values())


def _parameter_order(symbol: sp.Symbol) -> tuple[str, str]:
    return symbol.name.rsplit(".", 1)[-1], symbol.name


def group(currents: list[sp.Expr], voltages: list[sp.Symbol], symbols: list[sp.Symbol],
          derivative) -> list[LawKind]:
    """The laws' kinds (see the module docstring). symbols: what a law may read besides port
    voltages (`Equations.symbols`); derivative(law, voltage): the Jacobian entry."""
    index = {s: k for k, s in enumerate(symbols)}
    stand_in = _StandIns()
    kinds: dict[tuple, LawKind] = {}
    for ports in _instances(currents, voltages):
        own = {voltages[p] for p in ports}
        rename = {voltages[p]: stand_in("v", k, voltages[p]) for k, p in enumerate(ports)}
        read = set().union(*(currents[p].free_symbols for p in ports)) - own
        stray = [s for s in read if s not in index]
        if stray:
            raise ValueError(f"a device law reads {sorted(map(str, stray))}, which is neither a "
                             "port voltage nor a parameter of the circuit")
        params = sorted(read, key=_parameter_order)
        rename.update({s: stand_in("p", k, s) for k, s in enumerate(params)})
        laws = [currents[p].xreplace(rename) for p in ports]
        key = tuple(laws)
        kind = kinds.get(key)
        if kind is None:
            vs = [rename[voltages[p]] for p in ports]
            jac = {}
            for a, law in enumerate(laws):
                for b, v in enumerate(vs):
                    if v in law.free_symbols:
                        d = derivative(law, v)
                        if d != 0:
                            jac[a, b] = d
            kind = kinds[key] = LawKind(vs, [rename[s] for s in params], laws, jac)
        kind.ports.append(list(ports))
        kind.arguments.append([index[s] for s in params])
    return list(kinds.values())


def jacobian(kinds: list[LawKind], voltages: list[sp.Symbol], symbols: list[sp.Symbol],
             n: int) -> sp.Matrix:
    """d i / d v [n, n] of the circuit: each instance's entries are its kind's, renamed."""
    jac = sp.zeros(n, n)
    for kind in kinds:
        for ports, args in zip(kind.ports, kind.arguments, strict=True):
            back = {s: voltages[p] for s, p in zip(kind.voltages, ports, strict=True)}
            back.update({s: symbols[k] for s, k in zip(kind.parameters, args, strict=True)})
            for (a, b), d in kind.jacobian.items():
                jac[ports[a], ports[b]] = d.xreplace(back)
    return jac

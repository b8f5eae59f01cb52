"""S: a voltage-controlled switch (`.model SW sw(ron roff vt vh)`, and XSPICE's `aswitch`)
whose control does not move: a fixed resistor, chosen as ngspice would at t = 0.

`S1 n+ n- nc+ nc- SMOD [ON|OFF]`: ngspice's switch is on where v(nc+, nc-) > VT + VH, off
where it is below VT - VH, and in between keeps its state (the initial state OFF unless the
card says ON). XSPICE's `A1 nc %gd(n+ n-) ASW` (read into an S element by the reader) has a
resistance that follows the control between CNTL_OFF and CNTL_ON (clamped), linearly or, with
LOG=true (the default), linearly in log r:

    f = clamp((v - cntl_off) / (cntl_on - cntl_off), 0, 1)
    r = r_off + (r_on - r_off) f                    (log=false)
    r = r_off^(1 - f) r_on^f                        (log=true)

The control must be constant: the control nodes tied together, at ground, or held by DC
voltage sources (not the `*@ input`, a `*@ control`, or a source with a waveform) from ground.
A switch whose control moves is a named error: nodalnet does not model a switching event.
"""

from __future__ import annotations


import sympy as sp

from ..netlist.data import GROUND, Element, Netlist
from ..netlist.values import evaluate
from .base import Device, ModelType, Stamp, conductance


def _node_voltage(node: str, el: Element, net: Netlist) -> float:
    """The DC voltage of `node`, held by a DC source from ground; else a named error."""
    if node == GROUND:
        return 0.0
    moving = {net.input, *net.controls}
    for src in net.elements:
        if src.kind != "V" or node not in src.nodes or GROUND not in src.nodes:
            continue
        if src.name in moving or (src.waveform is not None and src.waveform.kind != "dc"):
            raise net.error(f"{el.name.upper()}'s control node {node!r} follows "
                            f"{src.name.upper()}, which moves: nodalnet models a switch only "
                            "with a constant control (a switching event is not modelled)", el)
        sign = 1.0 if src.nodes[0] == node else -1.0
        return sign * evaluate(src.value, net.defaults)
    raise net.error(f"{el.name.upper()}'s control node {node!r} is not held by a DC voltage "
                    "source to ground: nodalnet models a switch only with a constant control "
                    "(tie it to a DC source, or replace the switch by its on or off resistor)",
                    el)


def control_voltage(el: Element, net: Netlist) -> float:
    a, b = el.nodes[2], el.nodes[3]
    if a == b:
        return 0.0
    return _node_voltage(a, el, net) - _node_voltage(b, el, net)


def _number(expr: sp.Expr, net: Netlist) -> float:
    return evaluate(expr, net.defaults)


def resistance(el: Element, net: Netlist) -> sp.Expr:
    """The switch's resistance at t = 0 (a model parameter, or an expression of them)."""
    model = net.models[el.model]
    mp = model.params
    v = control_voltage(el, net)
    if model.type == SW.name:
        vt, vh = _number(mp["vt"], net), _number(mp["vh"], net)
        if v > vt + vh:
            return mp["ron"]
        if v < vt - vh:
            return mp["roff"]
        on = el.value is not None and bool(el.value)
        return mp["ron"] if on else mp["roff"]
    off, on_at = _number(mp["cntl_off"], net), _number(mp["cntl_on"], net)
    if on_at == off:
        raise net.error(f"model {el.model}: CNTL_ON equals CNTL_OFF; the switch has no range",
                        el)
    f = min(max((v - off) / (on_at - off), 0.0), 1.0)
    if _number(mp["log"], net):
        return mp["r_off"] ** (1 - f) * mp["r_on"] ** f
    return mp["r_off"] + (mp["r_on"] - mp["r_off"]) * f


def switch(el: Element, net: Netlist) -> Stamp:
    a, b = el.nodes[0], el.nodes[1]
    return Stamp(matrix=conductance(a, b, 1 / resistance(el, net)))


SW = ModelType("sw", {"ron": 1.0, "roff": 1e12, "vt": 0.0, "vh": 0.0},
               {"ron": "positive", "roff": "positive", "vh": "nonnegative"})
ASWITCH = ModelType("aswitch", {"cntl_off": 0.0, "cntl_on": 1.0, "r_off": 1e12, "r_on": 1.0,
                                "log": 1.0},
                    {"r_off": "positive", "r_on": "positive", "log": "flag"})
DEVICE = Device("S", "voltage-controlled switch", nodes=4, card="model", build=switch,
                models=(SW, ASWITCH), dc_pairs=((0, 1),))



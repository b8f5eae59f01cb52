"""D: ngspice's diode (IS, N, RS): the Shockley law, RS as an internal node; CJO VJ M FC TT
as its junction and diffusion charge (`charges.diode`)."""

from __future__ import annotations

import sympy as sp

from ..netlist.data import Element, Netlist
from ..netlist.values import evaluate
from . import charges
from .base import (Device, ModelType, Port, Stamp, conductance, junction_current,
                   thermal_voltage)


def diode(el: Element, net: Netlist) -> Stamp:
    """D: the Shockley law between anode and cathode; RS > 0 adds an internal node as ngspice."""
    a, k = el.nodes
    mp = net.models[el.model].params
    stamp = Stamp()
    rs_default = evaluate(mp["rs"], net.defaults)
    if rs_default > 0:
        inner = f"{el.name}#a"
        stamp.internal_nodes.append(inner)
        stamp.matrix += conductance(a, inner, 1 / mp["rs"])
        a = inner
    v = sp.Symbol(f"v_{el.name}")
    vt = thermal_voltage(net)           # at the circuit's temperature (`.temp`)
    stamp.ports.append(Port(a, k, junction=(mp["n"] * vt, mp["is"])))
    stamp.voltages.append(v)
    stamp.currents.append(junction_current(v, mp["is"], mp["n"], vt))
    stamp.charges += charges.diode(el, net, a, k, v, stamp.currents[-1])
    return stamp


D = ModelType("d", {"is": 1e-14, "n": 1.0, "rs": 0.0},
              {"is": "positive", "n": "positive", "rs": "nonnegative", **charges.RULES})
DEVICE = Device("D", "diode", nodes=2, card="model", build=diode, models=(D,),
                dc_pairs=((0, 1),))

"""A: XSPICE code-model elements; the one modelled as a circuit element is the potentiometer.

`ARV1 n1 wiper n2 __RV1` with `.model __RV1 potentiometer(r=100k position=0.5)` (KiCad's
potentiometer; XSPICE pin order r_conn1, wiper, r_conn2) is two resistors, as ngspice's code
model computes them (checked against ngspice-39's `potentiometer`):

    linear (log=false, the default):  R(n1, wiper) = r position,   R(wiper, n2) = r - that
    log (log=true):                   R(n1, wiper) = r 10^(-position log_multiplier),
                                      R(wiper, n2) = r - that

`position` (0..1) is a knob named after the element (`rv1_position` for `ARV1`), so `--set
rv1_position=0.7` turns it; its default is the model's `position`. ngspice holds a half that
reaches 0 (a wiper at an end, KiCad's position=1) at 1e-6 ohm; here `END_RESISTANCE` (1e-3 ohm)
is added to both halves at every position, which keeps the equations free of `Max` and finite
at both ends. It is larger than ngspice's because a 1e-6 ohm half next to kilohm parts makes
the MNA matrix too ill-conditioned for `mna.check_solvable` (a KiCad booster with its volume at
position=1 was refused as singular with 1e-5 ohm, accepted with 1e-4); for a potentiometer of
1 kOhm or more it changes a half by less than 1e-6 of the total.

Other A elements are other code models: the reader turns an `aswitch` into an `S` element
(`nodal.devices.switch`), and names any other code model as not modelled.
"""

from __future__ import annotations

import sympy as sp

from ..netlist.data import Element, Netlist
from ..netlist.values import evaluate
from .base import Device, ModelType, Stamp, conductance

#: what each half of a potentiometer has added (ohm): a wiper at an end is 1 mOhm, not 0
END_RESISTANCE = 1e-3


def halves(el: Element, net: Netlist) -> tuple[sp.Expr, sp.Expr]:
    """(R(n1, wiper), R(wiper, n2)) of a potentiometer at its position knob `el.value`."""
    mp = net.models[el.model].params
    total, position = mp["r"], el.value
    if evaluate(mp["log"], net.defaults):
        lower = total * sp.Integer(10) ** (-position * mp["log_multiplier"])
    else:
        lower = total * position
    return lower + END_RESISTANCE, total - lower + END_RESISTANCE


def potentiometer(el: Element, net: Netlist) -> Stamp:
    n1, wiper, n2 = el.nodes
    lower, upper = halves(el, net)
    return Stamp(matrix=conductance(n1, wiper, 1 / lower) + conductance(wiper, n2, 1 / upper))


def code_model(el: Element, net: Netlist) -> Stamp:
    """The A record's builder: the element's `.model` type says which code model it is."""
    mtype = net.models[el.model].type
    if mtype == POTENTIOMETER.name:
        return potentiometer(el, net)
    raise net.error(f"{el.name.upper()} uses the XSPICE code model {mtype!r}, which nodalnet "
                    "does not model (it models potentiometer and aswitch)", el)


POTENTIOMETER = ModelType("potentiometer", {"r": 1000.0, "position": 0.5, "log": 0.0,
                                            "log_multiplier": 1.0},
                          {"r": "positive", "position": "fraction", "log": "flag",
                           "log_multiplier": "positive"})
DEVICE = Device("A", "XSPICE code model (potentiometer)", nodes=3, card="codemodel",
                build=code_model, value=("position", "fraction"), models=(POTENTIOMETER,),
                dc_pairs=((0, 1), (1, 2)))

"""Q: ngspice's Gummel-Poon BJT, with what IS BF BR NF NR VAF VAR give (level 1), and its
junction and diffusion charges (`charges.bjt`)."""

from __future__ import annotations

import math

import sympy as sp

from ..netlist.data import GROUND, Element, Netlist
from . import charges
from .base import (GMIN, THERMAL_VOLTAGE, Device, ModelType, Port, Stamp, check_unsupported,
                   conductance, inverse_early, port_voltage, spice_junction)

_BJT_UNSUPPORTED = ("ikf", "ikr", "ise", "isc", "rb", "rbm", "irb", "re", "rc", "iss")


def bjt(el: Element, net: Netlist) -> Stamp:
    """Q c b e: ngspice's Gummel-Poon BJT with what IS BF BR NF NR VAF VAR give (SI units).

    In the polarity-normalised frame (vbe, vbc multiplied by +1 for NPN, -1 for PNP):

        cbe = J(vbe; IS, NF Vt),  cbc = J(vbc; IS, NR Vt)       (`spice_junction`)
        qb  = 1 / (1 - vbc/VAF - vbe/VAR)                        (Early effect, IKF = IKR = 0)
        Ic  = (cbe - cbc)/qb - cbc/BR - GMIN vbc                 into the collector
        Ib  = cbe/BF + cbc/BR + GMIN (vbe + vbc)                 into the base

    Ports are the two junctions, (b, e) and (b, c) for NPN, (e, b) and (c, b) for PNP, so
    SPICE's pnjlim applies to both exactly as ngspice applies it to vbe and vbc. Their currents
    are Ib + Ic (= -Ie, base to emitter) and -Ic (base to collector). ngspice also puts GMIN
    from the substrate (ground for a 3-terminal Q) to the collector of a vertical NPN and to the
    base of a lateral PNP: a linear conductance here.
    """
    check_unsupported(el, net, _BJT_UNSUPPORTED, "BJT")
    c, b, e = el.nodes
    mp = net.models[el.model].params
    npn = net.models[el.model].type == "npn"
    i_s, bf, br = mp["is"], mp["bf"], mp["br"]
    vtf, vtr = mp["nf"] * THERMAL_VOLTAGE, mp["nr"] * THERMAL_VOLTAGE
    vbe, vbc = port_voltage(f"{el.name}_be"), port_voltage(f"{el.name}_bc")
    cbe = spice_junction(vbe, i_s, vtf)
    cbc = spice_junction(vbc, i_s, vtr)
    qb = 1 / (1 - vbc * inverse_early(mp["vaf"], net) - vbe * inverse_early(mp["var"], net))
    # ngspice's GMIN across both junctions (-GMIN vbc in Ic, GMIN (vbe + vbc) in Ib) is linear:
    # `mna.derive` stamps it for every junction port, so it is not part of the law here.
    i_c = (cbe - cbc) / qb - cbc / br
    i_b = cbe / bf + cbc / br
    if npn:
        ports = [Port(b, e, junction=(vtf, i_s)), Port(b, c, junction=(vtr, i_s))]
        substrate = conductance(c, GROUND, sp.Float(GMIN))
    else:
        ports = [Port(e, b, junction=(vtf, i_s)), Port(c, b, junction=(vtr, i_s))]
        substrate = conductance(b, GROUND, sp.Float(GMIN))
    stamp = Stamp(matrix=substrate, ports=ports, voltages=[vbe, vbc],
                  currents=[i_b + i_c, -i_c])
    stamp.charges += charges.bjt(el, net, ((ports[0].p, ports[0].m), (ports[1].p, ports[1].m)),
                                 vbe, vbc, cbe, cbc, qb, npn, base=b, collector=c)
    return stamp


_DEFAULTS = {"is": 1e-16, "bf": 100.0, "br": 1.0, "nf": 1.0, "nr": 1.0, "vaf": math.inf,
             "var": math.inf}
_RULES = {"is": "positive", "bf": "positive", "br": "positive", "nf": "positive",
          "nr": "positive", "vaf": "early", "var": "early", **charges.RULES}
NPN = ModelType("npn", _DEFAULTS, _RULES)
PNP = ModelType("pnp", _DEFAULTS, _RULES)
DEVICE = Device("Q", "bipolar transistor", nodes=3, card="model", build=bjt, models=(NPN, PNP),
                dc_pairs=((1, 2), (1, 0)))

"""J: ngspice's JFET level 1 (VTO BETA LAMBDA IS, and B PB if given: the Sydney model); CGS
CGD (PB FC) as gate charges (`charges.jfet`)."""

from __future__ import annotations

import sympy as sp

from ..netlist.data import Element, Netlist
from . import charges
from .base import (THERMAL_VOLTAGE, Device, ModelType, Port, Stamp, check_unsupported,
                   port_voltage, spice_junction)

_JFET_UNSUPPORTED = ("rd", "rs")



def jfet_channel(vgs: sp.Expr, vgd: sp.Expr, vto: sp.Expr, beta: sp.Expr, lam: sp.Expr,
                 b: sp.Expr = sp.S.One, pb: sp.Expr = sp.S.One) -> sp.Expr:
    """ngspice's JFET level-1 drain current (Shichman-Hodges with the Sydney B term), d -> s.

    ngspice (jfetload.c), with vds = vgs - vgd, vgst = vgs - VTO, bfac = (1 - B)/(PB - VTO),
    cpart(g, e) = e (e (bfac e - B) + g (2B + 3 bfac (g - e))), for vds >= 0:

        cutoff      vgst <= 0:      0
        linear      vgst >= vds:    BETA (1 + LAMBDA vds) cpart(vgst, vds)
        saturation  otherwise:      BETA (1 + LAMBDA vds) cpart(vgst, vgst)
                                    (= BETA (1 + LAMBDA vds) vgst^2 (B + bfac vgst))

    and for vds < 0 the same with drain and source swapped (vgd for vgs, -vds for vds), negated.
    B = 1 gives the square law BETA vgst^2 (1 + LAMBDA vds). All four cases are one formula:
    with g = max(max(vgs, vgd) - VTO, 0), the gate overdrive at the source-side terminal, and
    e = clamp(vds, -g, g) (saturation clamps |vds| at g, cutoff clamps it to 0),

        Id = BETA (1 + LAMBDA |vds|) sgn(e) cpart(g, |e|)

    which is how it is written here: three flat `Piecewise` (g, e, |e|) rather than nested cases,
    so the Jacobian (sympy.diff) and the compiled kernels stay small. Every Abs has a real
    argument (port voltages only), so its derivative is sign(), never re()/im().
    """
    bfac = (1 - b) / (pb - vto)
    vds = vgs - vgd
    source_side = (vgs + vgd + sp.Abs(vds)) / 2          # max(vgs, vgd)
    g = sp.Piecewise((source_side - vto, source_side > vto), (0, True))
    e = sp.Piecewise((g, vds > g), (-g, vds < -g), (vds, True))
    size = sp.Piecewise((g, sp.Abs(vds) > g), (sp.Abs(vds), True))
    return beta * (1 + lam * sp.Abs(vds)) * e * (
        size * (bfac * size - b) + g * (2 * b + 3 * bfac * (g - size)))


def jfet(el: Element, net: Netlist) -> Stamp:
    """J d g s: ngspice's JFET level 1 (VTO BETA LAMBDA IS, and B PB if given; SI units).

    Gate junctions: cgs = J(vgs; IS, Vt) + GMIN vgs, cgd = J(vgd; IS, Vt) + GMIN vgd (ngspice-39's
    JFET has no emission coefficient: an `N` on the model is ignored, as ngspice warns).
    Channel: `jfet_channel`. Ports are the junctions (g, s) and (g, d) (reversed for PJF), so
    pnjlim limits both as in ngspice; their currents are cgs + Id (gate to source) and
    cgd - Id (gate to drain), Id the channel current from drain to source.
    """
    check_unsupported(el, net, _JFET_UNSUPPORTED, "JFET")
    d, g, s = el.nodes
    mp = net.models[el.model].params
    i_s = mp["is"]
    vgs, vgd = port_voltage(f"{el.name}_gs"), port_voltage(f"{el.name}_gd")
    # + GMIN vgs and + GMIN vgd as ngspice has them: stamped linearly by `mna.derive`.
    cgs = spice_junction(vgs, i_s, THERMAL_VOLTAGE)
    cgd = spice_junction(vgd, i_s, THERMAL_VOLTAGE)
    i_d = jfet_channel(vgs, vgd, mp["vto"], mp["beta"], mp["lambda"],
                       mp.get("b", sp.Integer(1)), mp.get("pb", sp.Integer(1)))
    vt = sp.Float(THERMAL_VOLTAGE)
    if net.models[el.model].type == "njf":
        ports = [Port(g, s, junction=(vt, i_s)), Port(g, d, junction=(vt, i_s))]
    else:
        ports = [Port(s, g, junction=(vt, i_s)), Port(d, g, junction=(vt, i_s))]
    stamp = Stamp(ports=ports, voltages=[vgs, vgd], currents=[cgs + i_d, cgd - i_d])
    stamp.charges += charges.jfet(el, net, ((ports[0].p, ports[0].m), (ports[1].p, ports[1].m)),
                                  vgs, vgd)
    return stamp


_DEFAULTS = {"vto": -2.0, "beta": 1e-4, "lambda": 0.0, "is": 1e-14, "n": 1.0}
_RULES = {"vto": "finite", "beta": "positive", "lambda": "nonnegative", "is": "positive",
          "n": "positive", "b": "positive", "pb": "positive", **charges.RULES}
NJF = ModelType("njf", _DEFAULTS, _RULES)
PJF = ModelType("pjf", _DEFAULTS, _RULES)
DEVICE = Device("J", "junction field-effect transistor", nodes=3, card="model", build=jfet,
                models=(NJF, PJF), dc_pairs=((1, 2), (1, 0)))

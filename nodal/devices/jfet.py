"""J: ngspice's JFET level 1 (VTO BETA LAMBDA IS RD RS, B PB: the Sydney model), static."""

from __future__ import annotations

import math

import sympy as sp

from ..netlist.data import Element, Netlist
from ..netlist.values import evaluate
from . import charges
from .base import (Device, ModelType, Port, Stamp, check_known, check_unsupported, conductance,
                   port_voltage, spice_junction)
from .temperature import temperatures, thermal_voltage_at



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
    """J d g s [area]: ngspice's JFET level 1 (SI units), at the circuit's temperature.

    Gate junctions: cgs = J(vgs; IS(T) area, vt) + GMIN vgs, cgd = J(vgd; IS(T) area, vt) +
    GMIN vgd, IS(T) = IS exp((T/Tnom - 1) EG/vt) (T/Tnom)^XTI (the power only where the card
    gives XTI, as ngspice-39). ngspice-39's JFET has no emission coefficient: an `N` on the
    card is ignored there (with a warning), and noted here. Channel: `jfet_channel` with
    BETA area. RD and RS are conductances area/R to internal nodes d', s'. Ports are the
    junctions (g, s') and (g, d') (reversed for PJF), so pnjlim limits both as in ngspice;
    their currents are cgs + Id (gate to source) and cgd - Id (gate to drain), Id the channel
    current from drain to source.
    """
    model = net.models[el.model]
    check_known(el, net, NJF, "JFET")
    check_unsupported(el, net, _NOT_MODELLED, "JFET")
    mp = model.params
    if "n" in mp and evaluate(mp["n"], net.defaults) != 1:
        note = (f"{net.file}:{model.line}: JFET model {el.model} sets N, which ngspice-39's "
                "JFET ignores (with a warning): nodalnet ignores it too")
        if note not in net.notes:
            net.notes.append(note)
    d, g, s = el.nodes
    area = el.params.get("area", sp.S.One)
    stamp = Stamp()
    for name, node, suffix in (("rd", d, "d"), ("rs", s, "s")):
        value = mp.get(name)
        if value is not None and evaluate(value, net.defaults) != 0:
            inner = f"{el.name}#{suffix}"
            stamp.internal_nodes.append(inner)
            stamp.matrix += conductance(node, inner, area / value)
            if suffix == "d":
                d = inner
            else:
                s = inner
    t, tnom = temperatures(model, net)
    vt = sp.Float(thermal_voltage_at(t))
    factor = sp.S.One
    if t != tnom:
        factor = sp.exp((t / tnom - 1) * mp["eg"] / vt)
        if "xti" in mp:
            factor *= sp.exp(mp["xti"] * math.log(t / tnom))
    i_s = mp["is"] * area * factor
    vgs, vgd = port_voltage(f"{el.name}_gs"), port_voltage(f"{el.name}_gd")
    # + GMIN vgs and + GMIN vgd as ngspice has them: stamped linearly by `mna.derive`.
    cgs = spice_junction(vgs, i_s, vt)
    cgd = spice_junction(vgd, i_s, vt)
    i_d = jfet_channel(vgs, vgd, mp["vto"], mp["beta"] * area, mp["lambda"],
                       mp.get("b", sp.Integer(1)), mp.get("pb", sp.Integer(1)))
    if model.type == "njf":
        stamp.ports += [Port(g, s, junction=(vt, i_s)), Port(g, d, junction=(vt, i_s))]
    else:
        stamp.ports += [Port(s, g, junction=(vt, i_s)), Port(d, g, junction=(vt, i_s))]
    stamp.voltages += [vgs, vgd]
    stamp.currents += [cgs + i_d, cgd - i_d]
    junctions = ((stamp.ports[0].p, stamp.ports[0].m), (stamp.ports[1].p, stamp.ports[1].m))
    stamp.charges += charges.jfet(el, net, junctions, vgs, vgd)     # CGS CGD (PB FC)
    return stamp


_NOT_MODELLED = ("vtotc", "betatce", "bex", "tcv", "nlev", "gdsnoi")
_DEFAULTS = {"vto": -2.0, "beta": 1e-4, "lambda": 0.0, "is": 1e-14, "eg": 1.11,
             "cgs": 0.0, "cgd": 0.0, "fc": 0.5, "m": 0.5}
_RULES = {"vto": "finite", "beta": "positive", "lambda": "nonnegative", "is": "positive",
          "n": "positive", "b": "positive", "pb": "positive", "rd": "nonnegative",
          "rs": "nonnegative", "eg": "nonnegative", "xti": "finite", "tnom": "finite",
          "cgs": "nonnegative", "cgd": "nonnegative", "fc": "below_one", "m": "grading",
          "kf": "nonnegative", "af": "positive", **{p: "finite" for p in _NOT_MODELLED}}
NJF = ModelType("njf", _DEFAULTS, _RULES)
PJF = ModelType("pjf", _DEFAULTS, _RULES)
DEVICE = Device("J", "junction field-effect transistor", nodes=3, card="model", build=jfet,
                models=(NJF, PJF), dc_pairs=((1, 2), (1, 0)), instance=("area",))

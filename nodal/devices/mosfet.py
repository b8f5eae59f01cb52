"""M: ngspice's level-1 MOSFET (Shichman-Hodges), static model, NMOS and PMOS."""

from __future__ import annotations

import sympy as sp

from ..netlist.data import Element, Netlist
from ..netlist.values import evaluate
from .base import Device, ModelType, Port, Stamp, check_known, check_unsupported, conductance
from .base import port_voltage as _port_voltage
from .temperature import (junction_potential, mos_saturation_factor, mos_threshold_shift,
                          temperatures, thermal_voltage_at)

#: Gate and bulk charges (Meyer's gate capacitances from TOX, overlaps, bulk junctions):
#: accepted at zero, a named error otherwise until the solver has device charges.
CHARGES = ("tox", "cgso", "cgdo", "cgbo", "cbd", "cbs", "cj", "cjsw")
CHARGE_REASON = ("which set device charges (gate and bulk-junction capacitances) that "
                 "nodalnet's solver does not have yet; the result would differ from ngspice's")
#: Parameters that would change ngspice's level-1 static result and that nodalnet does not
#: model (process parameters that derive VTO GAMMA PHI KP, sheet resistance).
_NOT_MODELLED = ("nsub", "nss", "nfs", "tpg", "rsh", "xj", "delta", "eta", "theta", "kappa",
                 "vmax", "neff", "ucrit", "uexp", "utra", "xqc")
#: ngspice's default channel length and width (`.options defl defw`), metres
DEFAULT_LENGTH = 100e-6
DEFAULT_WIDTH = 100e-6


def _max(x: sp.Expr, floor: sp.Expr) -> sp.Expr:
    return sp.Piecewise((x, x > floor), (floor, True))


def channel_current(vgs: sp.Expr, vds: sp.Expr, vbs: sp.Expr, beta: sp.Expr, lam: sp.Expr,
                    vbi: sp.Expr, gamma: sp.Expr | None, phi: sp.Expr) -> sp.Expr:
    """ngspice's MOS1 drain current (normalised frame, drain to source), Shichman-Hodges.

    mode = +1 for vds >= 0, else -1 with drain and source swapped (vgd, vbd for vgs, vbs).
    With vb the bulk voltage and vg the gate voltage of the source-side terminal:

        sarg = sqrt(PHI - vb)                           vb <= 0
             = max(0, sqrt(PHI) - vb / (2 sqrt(PHI)))   vb > 0
        von  = vbi + GAMMA sarg      (vbi = VTO - GAMMA sqrt(PHI), normalised)
        vgst = vg - von
        Id   = 0                                          vgst <= 0
             = beta (1 + LAMBDA |vds|) vgst^2 / 2          vgst <= |vds| (saturation)
             = beta (1 + LAMBDA |vds|) |vds| (vgst - |vds|/2)  otherwise (linear)

    times mode.
    """
    forward = vds >= 0
    vds_abs = sp.Abs(vds)                      # a port voltage: real, so sign() is its slope
    vg = sp.Piecewise((vgs, forward), (vgs - vds, True))
    von = vbi
    if gamma is not None:
        vb = sp.Piecewise((vbs, forward), (vbs - vds, True))
        below = sp.Piecewise((vb, vb < 0), (0, True))       # keeps both sqrt branches real
        root = sp.sqrt(phi)
        sarg = sp.Piecewise((sp.sqrt(phi - below), vb <= 0),
                            (_max(root - vb / (2 * root), 0), True))
        von = vbi + gamma * sarg
    vgst = vg - von
    betap = beta * (1 + lam * vds_abs)
    cdrain = sp.Piecewise((0, vgst <= 0), (betap * vgst ** 2 / 2, vgst <= vds_abs),
                          (betap * vds_abs * (vgst - vds_abs / 2), True))
    return sp.Piecewise((cdrain, forward), (-cdrain, True))


def bulk_junction(v: sp.Expr, i_s: sp.Expr, vt: sp.Expr) -> sp.Expr:
    """ngspice's MOS1 bulk diode without GMIN: IS (exp(v/vt) - 1) above -3 vt, -IS below."""
    return sp.Piecewise((i_s * (sp.exp(v / vt) - 1), v > -3 * vt), (-i_s, True))


def _given(mp: dict, name: str, net: Netlist) -> bool:
    return name in mp and evaluate(mp[name], net.defaults) != 0


def mosfet(el: Element, net: Netlist) -> Stamp:
    """M d g s b [L=.. W=.. AD=.. AS=..]: ngspice's level-1 MOSFET, static (SI units).

    In the normalised frame (voltages times +1 for NMOS, -1 for PMOS; the ports are oriented
    so that their voltages are these), at the circuit temperature T:

        beta = KP(T) W / (L - 2 LD),  KP(T) = KP (T/Tnom)^-1.5
        PHI(T), VTO(T): ngspice's band-gap shifts (`temperature.py`)
        Id   = `channel_current`, drain to source
        cbs  = `bulk_junction`(vbs; IS(T)), cbd likewise on vbd = vbs - vds
               (JS AS, JS AD instead of IS where JS, AD and AS are all given)

    RD and RS are conductances to internal nodes d', s'. Ports: (g, s') carries no current
    (the gate's voltage enters Id), (d', s') the channel, (b, s') and (b, d') the bulk
    junctions, which SPICE's pnjlim limits (vt, IS) and across which `mna.derive` stamps
    ngspice's GMIN. Only LEVEL=1 is modelled.
    """
    model = net.models[el.model]
    check_known(el, net, NMOS, "MOSFET")
    mp = model.params
    level = evaluate(mp.get("level", sp.S.One), net.defaults)
    if level != 1:
        raise net.error(f"MOSFET model {el.model} sets LEVEL={level:g}; nodalnet models "
                        "ngspice's level 1 (Shichman-Hodges) only", line=model.line)
    check_unsupported(el, net, CHARGES, "MOSFET", CHARGE_REASON)
    check_unsupported(el, net, _NOT_MODELLED, "MOSFET")
    nmos = model.type == "nmos"
    sign = 1 if nmos else -1
    d, g, s, b = el.nodes
    stamp = Stamp()
    for name, node, suffix in (("rd", d, "d"), ("rs", s, "s")):
        if _given(mp, name, net):
            inner = f"{el.name}#{suffix}"
            stamp.internal_nodes.append(inner)
            stamp.matrix += conductance(node, inner, 1 / mp[name])
            d, s = (inner, s) if suffix == "d" else (d, inner)
    t, tnom = temperatures(model, net)
    vt = sp.Float(thermal_voltage_at(t))
    length = el.params.get("l", sp.Float(DEFAULT_LENGTH))
    width = el.params.get("w", sp.Float(DEFAULT_WIDTH))
    ratio = t / tnom
    kp = mp["kp"] if t == tnom else mp["kp"] / ratio ** 1.5
    beta = kp * width / (length - 2 * mp["ld"])
    phi = junction_potential(t, tnom, mp["phi"])
    gamma = mp["gamma"] if _given(mp, "gamma", net) else None
    vbi = mp["vto"] - sign * (gamma * sp.sqrt(mp["phi"]) if gamma is not None else 0)
    vbi = vbi + mos_threshold_shift(t, tnom) + sign * (phi - mp["phi"]) / 2
    i_s = mp["is"] * mos_saturation_factor(t, tnom)
    i_drain = i_source = i_s
    if _given(mp, "js", net) and "ad" in el.params and "as" in el.params:
        js = mp["js"] * mos_saturation_factor(t, tnom)
        i_drain, i_source = js * el.params["ad"], js * el.params["as"]

    vgs, vds = _port_voltage(f"{el.name}_gs"), _port_voltage(f"{el.name}_ds")
    vbs, vbd = _port_voltage(f"{el.name}_bs"), _port_voltage(f"{el.name}_bd")
    i_d = channel_current(vgs, vds, vbs, beta, mp["lambda"], sign * vbi, gamma, phi)
    pair = (lambda p, m: Port(p, m)) if nmos else (lambda p, m: Port(m, p))
    gate, channel = pair(g, s), pair(d, s)
    bulk_source, bulk_drain = pair(b, s), pair(b, d)
    bulk_source.junction = (vt, i_source)
    bulk_drain.junction = (vt, i_drain)
    stamp.ports += [gate, channel, bulk_source, bulk_drain]
    stamp.voltages += [vgs, vds, vbs, vbd]
    stamp.currents += [sp.S.Zero, i_d, bulk_junction(vbs, i_source, vt),
                       bulk_junction(vbd, i_drain, vt)]
    return stamp


_DEFAULTS = {"vto": 0.0, "kp": 2e-5, "gamma": 0.0, "phi": 0.6, "lambda": 0.0, "rd": 0.0,
             "rs": 0.0, "is": 1e-14, "js": 0.0, "pb": 0.8, "ld": 0.0, "fc": 0.5, "mj": 0.5,
             "mjsw": 0.5, "tox": 0.0, "cgso": 0.0, "cgdo": 0.0, "cgbo": 0.0, "cbd": 0.0,
             "cbs": 0.0, "cj": 0.0, "cjsw": 0.0}
_RULES = {"vto": "finite", "kp": "positive", "gamma": "nonnegative", "phi": "positive",
          "lambda": "nonnegative", "rd": "nonnegative", "rs": "nonnegative", "is": "positive",
          "js": "nonnegative", "pb": "positive", "ld": "nonnegative", "level": "positive",
          "tnom": "finite", "uo": "positive", "u0": "positive", "fc": "fraction",
          "mj": "grading", "mjsw": "grading", "kf": "nonnegative", "af": "positive",
          **{p: "nonnegative" for p in CHARGES}, **{p: "finite" for p in _NOT_MODELLED}}
NMOS = ModelType("nmos", _DEFAULTS, _RULES)
PMOS = ModelType("pmos", _DEFAULTS, _RULES)
DEVICE = Device("M", "MOSFET", nodes=4, card="model", build=mosfet, models=(NMOS, PMOS),
                dc_pairs=((0, 2), (3, 2), (3, 0)), instance=("l", "w", "ad", "as"))

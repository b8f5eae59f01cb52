"""M: ngspice's level-1 MOSFET (Shichman-Hodges), NMOS and PMOS: the static model, the gate
overlap capacitances and the bulk-junction charges."""

from __future__ import annotations

import sympy as sp

from ..netlist.data import Element, Netlist
from ..netlist.values import evaluate
from . import charges as bulk_charges
from .base import (SAMPLE_PERIOD, Device, ModelType, Port, Reactive, Stamp, check_known,
                   check_unsupported, conductance)
from .base import port_voltage as _port_voltage
from .temperature import (junction_potential, mos_saturation_factor, mos_threshold_shift,
                          temperatures, thermal_voltage_at)

#: The gate overlap capacitances (F/m: CGSO CGDO times W, CGBO times L - 2 LD) and the
#: bulk-junction charges (CBD CBS, or CJ CJSW with AD AS PD PS; `charges.mosfet`) are modelled.
CHARGES = ("cgso", "cgdo", "cgbo", "cbd", "cbs", "cj", "cjsw")
#: TOX sets Meyer's intrinsic gate capacitances (cox = 3.9 eps0 / TOX times W (L - 2 LD)) and,
#: without KP, KP itself (UO cox 1e-4). ngspice integrates Meyer's capacitances incrementally
#: (q[n] = q[n-1] + C(average of this and the previous step) dv, not a charge of the voltages);
#: nodalnet's charges are q(v) laws, so it does not model them: a named error where nonzero.
MEYER = ("tox",)
MEYER_REASON = ("which sets Meyer's intrinsic gate capacitances; ngspice integrates them "
                "incrementally (not as a charge of the terminal voltages) and nodalnet does not "
                "model them, so the result would differ from ngspice's. Give the card's gate "
                "capacitance as CGSO/CGDO (F per metre of W) instead, or remove TOX")
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
    """M d g s b [L=.. W=.. AD=.. AS=.. PD=.. PS=..]: ngspice's level-1 MOSFET (SI units).

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
    ngspice's GMIN. Charges: the bulk junctions' depletion charges (`charges.mosfet`) across
    the two bulk ports, and the gate overlaps CGSO W, CGDO W, CGBO (L - 2 LD) as linear
    capacitors from g to s', d', b (`_overlaps`); TOX (Meyer's intrinsic gate capacitances)
    is a named error. Only LEVEL=1 is modelled.
    """
    model = net.models[el.model]
    check_known(el, net, NMOS, "MOSFET")
    mp = model.params
    level = evaluate(mp.get("level", sp.S.One), net.defaults)
    if level != 1:
        raise net.error(f"MOSFET model {el.model} sets LEVEL={level:g}; nodalnet models "
                        "ngspice's level 1 (Shichman-Hodges) only", line=model.line)
    check_unsupported(el, net, MEYER, "MOSFET", MEYER_REASON)
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
    junctions = ((bulk_source.p, bulk_source.m), (bulk_drain.p, bulk_drain.m))
    stamp.charges += bulk_charges.mosfet(el, net, junctions, vbs, vbd)   # CBS CBD CJ CJSW
    _overlaps(stamp, el, net, g, d, s, b, width, length - 2 * mp["ld"])
    return stamp


def _overlaps(stamp: Stamp, el: Element, net: Netlist, g: str, d: str, s: str, b: str,
              width: sp.Expr, length: sp.Expr) -> None:
    """ngspice's gate overlap capacitances, linear: CGSO W from the gate to s', CGDO W to d',
    CGBO (L - 2 LD) to the bulk (the model's values in F/m). Open at DC."""
    mp = net.models[el.model].params
    if stamp.matrix_dc is None:
        stamp.matrix_dc = list(stamp.matrix)
    for name, other, cap in (("cgso", s, mp["cgso"] * width), ("cgdo", d, mp["cgdo"] * width),
                             ("cgbo", b, mp["cgbo"] * length)):
        if _given(mp, name, net) and other != g:
            gc = 2 * cap / SAMPLE_PERIOD
            stamp.matrix += conductance(g, other, gc)
            stamp.reactive.append(Reactive(f"{el.name}.{name}", "C", g, other, gc, cap))


_DEFAULTS = {"vto": 0.0, "kp": 2e-5, "gamma": 0.0, "phi": 0.6, "lambda": 0.0, "rd": 0.0,
             "rs": 0.0, "is": 1e-14, "js": 0.0, "pb": 0.8, "ld": 0.0, "fc": 0.5, "mj": 0.5,
             "mjsw": 0.5, "tox": 0.0, "cgso": 0.0, "cgdo": 0.0, "cgbo": 0.0}
_RULES = {"vto": "finite", "kp": "positive", "gamma": "nonnegative", "phi": "positive",
          "lambda": "nonnegative", "rd": "nonnegative", "rs": "nonnegative", "is": "positive",
          "js": "nonnegative", "pb": "positive", "ld": "nonnegative", "level": "positive",
          "tnom": "finite", "uo": "positive", "u0": "positive", "fc": "fraction",
          "mj": "grading", "mjsw": "grading", "kf": "nonnegative", "af": "positive",
          **{p: "nonnegative" for p in (*CHARGES, *MEYER)},
          **{p: "finite" for p in _NOT_MODELLED}}
NMOS = ModelType("nmos", _DEFAULTS, _RULES)
PMOS = ModelType("pmos", _DEFAULTS, _RULES)
DEVICE = Device("M", "MOSFET", nodes=4, card="model", build=mosfet, models=(NMOS, PMOS),
                dc_pairs=((0, 2), (3, 2), (3, 0)), instance=("l", "w", "ad", "as", "pd", "ps"))

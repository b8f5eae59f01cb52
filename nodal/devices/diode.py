"""D: ngspice's junction diode, static model: IS N RS, breakdown (BV IBV NBV), recombination
(ISR NR), high injection (IKF IKR), the area factor and the circuit's temperature."""

from __future__ import annotations

import math

import sympy as sp

from ..netlist.data import Element, Netlist
from ..netlist.values import evaluate
from . import charges
from .base import (EULER, Device, ModelType, Port, Stamp, check_known, check_unsupported,
                   conductance, port_voltage)
from .temperature import junction_potential, saturation_factor, temperatures, thermal_voltage_at

_NOT_MODELLED = ("jsw", "isw", "cjp", "cjsw", "ns", "jtun", "jtunsw", "trs", "trs2", "trs1",
                 "tm1", "tm2", "ttt1", "ttt2", "tlev", "tlevc", "cta", "ctp", "tpb", "tphp",
                 "rth0", "pj")
#: every name ngspice accepts for one parameter (the first is the one nodalnet uses)
_ALIASES = {"vj": ("vj", "pb"), "m": ("m", "mj"), "ibv": ("ibv", "ib"), "ikf": ("ikf", "ik"),
            "is": ("is", "js")}


def _pick(mp: dict, name: str) -> sp.Expr:
    """`name`'s value, preferring an alias the card wrote over the filled-in default."""
    aliases = _ALIASES.get(name, (name,))
    for alias in aliases[1:]:
        if alias in mp:
            return mp[alias]
    return mp[name]


def _at_least(x: sp.Expr, floor: float) -> sp.Expr:
    """max(x, floor), finite in both torch.where branches (see `bjt._at_least`)."""
    return (x + floor + sp.sqrt((x - floor) ** 2)) / 2


def _given(mp: dict, name: str, net: Netlist) -> bool:
    if not any(a in mp for a in _ALIASES.get(name, (name,))):
        return False
    value = evaluate(_pick(mp, name), net.defaults)
    return value != 0 and math.isfinite(value)


def breakdown_voltage(bv: sp.Expr, ibv: sp.Expr, csat: sp.Expr, vt: float, nbv: sp.Expr,
                      net: Netlist) -> sp.Expr:
    """ngspice's tBrkdwnV: the knee BV moved so that the breakdown current at -BV is IBV.

    With cbv = IBV (level 1: not scaled by the area), raised to IS(T) BV/vt where it is below,
    in which case the knee stays at BV; otherwise xbv solves

        IS (exp((BV - xbv)/(NBV vt)) - 1 + xbv/vt) = cbv

    by ngspice's fixed-point iteration xbv <- BV - NBV vt ln(cbv/IS + 1 - xbv/vt) from
    BV - NBV vt ln(1 + cbv/IS). The map contracts by about NBV IS/cbv per step, so three steps
    reach the fixed point to round-off; they are written out so BV, IBV, IS stay symbols.
    """
    defaults = net.defaults
    if evaluate(ibv, defaults) < evaluate(csat * bv, defaults) / vt:
        return bv
    xbv = bv - nbv * vt * sp.log(1 + ibv / csat)
    for _ in range(3):
        xbv = bv - nbv * vt * sp.log(ibv / csat + 1 - xbv / vt)
    return xbv


def diode_current(v: sp.Expr, net: Netlist, mp: dict, area: sp.Expr, t: float,
                  tnom: float) -> tuple[sp.Expr, sp.Expr, sp.Expr]:
    """(current anode -> cathode without GMIN, n vt, IS(T) area) of an ngspice diode at v.

        v >= -3 n vt:         IS (exp(v/(n vt)) - 1)          (ngspice's dioload.c)
                              + ISR (exp(v/(NR vt)) - 1) ((1 - v/VJ)^2 + 0.005)^(M/2)
        -BV' <= v < -3 n vt:  -IS (1 + (3 n vt / (e v))^3)
        v < -BV':             -IS exp(-(BV' + v)/(NBV vt))     (BV': `breakdown_voltage`)

    then, forward and above 1e-18 A, i / (1 + sqrt(i/IKF)); reverse and below -1e-18 A,
    i / (1 + sqrt(-i/IKR)). IS, ISR, IKF, IKR scale with the area (IBV does not, as ngspice's
    level 1). The terms the card does not set are left out, as ngspice.
    """
    vt = thermal_voltage_at(t)
    n = mp["n"]
    vte = n * vt
    csat = _pick(mp, "is") * area * saturation_factor(t, tnom, mp["eg"], mp["xti"], n)
    forward = csat * (sp.exp(v / vte) - 1)
    if _given(mp, "isr", net):
        nr = mp["nr"]
        # ngspice's recombination temperature law: IS's, with NR for N
        rec_factor = saturation_factor(t, tnom, mp["eg"], mp["xti"], nr)
        vj = junction_potential(t, tnom, _pick(mp, "vj"))
        generation = ((1 - v / vj) ** 2 + sp.Float(0.005)) ** (_pick(mp, "m") / 2)
        forward += mp["isr"] * area * rec_factor * (sp.exp(v / (nr * vt)) - 1) * generation
    knee = -3 * vte
    # min(v, knee) with Abs, not a Piecewise (Sympy would distribute the cube into it and
    # leave 1/v^3 in the branch torch.where discards): knee holds parameters only, so the
    # derivative of the Abs in v is real
    v_tail = (v + knee - sp.Abs(v - knee)) / 2
    reverse = -csat * (1 + (3 * vte / (EULER * v_tail)) ** 3)
    if _given(mp, "ikf", net):
        ikf = _pick(mp, "ikf") * area
        high = _at_least(forward, 1e-18)
        forward = sp.Piecewise((forward / (1 + sp.sqrt(high / ikf)), forward > 1e-18),
                               (forward, True))
    reverse_parts = [reverse]
    if _given(mp, "bv", net):
        nbv = mp["nbv"]                       # ngspice: NBV defaults to N (D's `derived`)
        tcv = mp.get("tcv", sp.S.Zero)
        bv = breakdown_voltage(mp["bv"] - tcv * (t - tnom), _pick(mp, "ibv"), csat, vt, nbv,
                               net)
        reverse_parts.append(-csat * sp.exp(-(bv + v) / (nbv * vt)))
    if _given(mp, "ikr", net):
        ikr = mp["ikr"] * area
        reverse_parts = [_reverse_knee(i, ikr) for i in reverse_parts]
    pieces = [(forward, v >= knee)]
    if len(reverse_parts) == 2:
        pieces.append((reverse_parts[0], v >= -bv))
    pieces.append((reverse_parts[-1], True))
    return sp.Piecewise(*pieces), n * vt, csat


def _reverse_knee(i: sp.Expr, ikr: sp.Expr) -> sp.Expr:
    """ngspice's reverse high-injection knee: i / (1 + sqrt(-i/IKR)) below -1e-18 A."""
    low = _at_least(-i, 1e-18)
    return sp.Piecewise((i / (1 + sp.sqrt(low / ikr)), i < -1e-18), (i, True))


def diode(el: Element, net: Netlist) -> Stamp:
    """D a k [area]: the law `diode_current` between anode and cathode; RS > 0 adds an internal
    node (conductance area/RS), as ngspice. The port limits steps with SPICE's pnjlim (n vt,
    IS(T) area); GMIN across it is stamped by `mna.derive`."""
    model = net.models[el.model]
    check_known(el, net, D, "diode")
    check_unsupported(el, net, _NOT_MODELLED, "diode")
    mp = model.params
    if "level" in mp and evaluate(mp["level"], net.defaults) != 1:
        raise net.error(f"diode model {el.model} sets LEVEL="
                        f"{evaluate(mp['level'], net.defaults):g}; nodalnet models ngspice's "
                        "level 1 diode only", line=model.line)
    a, k = el.nodes
    area = el.params.get("area", sp.S.One)
    stamp = Stamp()
    if _given(mp, "rs", net):
        inner = f"{el.name}#a"
        stamp.internal_nodes.append(inner)
        stamp.matrix += conductance(a, inner, area / mp["rs"])
        a = inner
    t, tnom = temperatures(model, net)
    v = port_voltage(el.name)
    current, vte, csat = diode_current(v, net, mp, area, t, tnom)
    stamp.ports.append(Port(a, k, junction=(vte, csat)))
    stamp.voltages.append(v)
    stamp.currents.append(current)
    stamp.charges += charges.diode(el, net, a, k, v, current)     # CJO VJ M FC, TT i_d
    return stamp


_DEFAULTS = {"is": 1e-14, "n": 1.0, "rs": 0.0, "ibv": 1e-3, "nr": 2.0,
             "eg": 1.11, "xti": 3.0, "cjo": 0.0, "vj": 1.0, "m": 0.5, "fc": 0.5, "tt": 0.0}
_RULES = {"is": "positive", "js": "positive", "n": "positive", "rs": "nonnegative",
          "bv": "positive", "ibv": "positive", "ib": "positive", "nbv": "positive",
          "isr": "nonnegative", "nr": "positive", "ikf": "nonnegative", "ik": "nonnegative",
          "ikr": "nonnegative", "eg": "nonnegative", "xti": "finite", "tnom": "finite",
          "tcv": "finite", "level": "positive", "cjo": "nonnegative", "cj0": "nonnegative",
          "cj": "nonnegative", "vj": "positive", "pb": "positive", "m": "grading",
          "mj": "grading", "fc": "below_one", "tt": "nonnegative", "kf": "nonnegative",
          "af": "positive", **{p: "finite" for p in _NOT_MODELLED}}
D = ModelType("d", _DEFAULTS, _RULES, derived={"nbv": "n"})
DEVICE = Device("D", "diode", nodes=2, card="model", build=diode, models=(D,),
                dc_pairs=((0, 1),), instance=("area",))

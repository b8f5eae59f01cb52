"""Junction and diffusion charges of the semiconductor devices, as ngspice defines them.

Each function returns the `Charge`s (nodal.devices.base) one element adds to its stamp; the
assembler (`mna.derive`) turns each into a nonlinear port whose "current" law is q(v) and a
history state, so that the trapezoidal rule applies to the charge exactly as to a linear
capacitor (`dk.py` explains the state update). Charges are in coulombs, voltages in volts.

Depletion charge of a junction with zero-bias capacitance CJ0, built-in potential VJ, grading
coefficient M and forward-bias coefficient FC (ngspice's dioload.c / bjtload.c / jfetload.c):

    v <  FC VJ:  q = VJ CJ0 (1 - (1 - v/VJ)^(1-M)) / (1 - M)           C = CJ0 (1 - v/VJ)^-M
    v >= FC VJ:  q = CJ0 (F1 + (F3 (v - FC VJ) + M/(2 VJ) (v^2 - (FC VJ)^2)) / F2)
                 F1 = VJ (1 - (1 - FC)^(1-M)) / (1 - M),  F2 = (1 - FC)^(1+M),  F3 = 1 - FC (1+M)

(above FC VJ the capacitance is continued linearly, so it stays finite at and above VJ).
Diffusion charge: TT i_d for a diode; for a BJT's base-emitter side TF times the transport
current cbe, modified for vbe > 0 by XTF, VTF and ITF and divided by the base charge qb; TR cbc
on the base-collector side. Every given, nonzero capacitance or transit time is modelled: a
parameter that is zero contributes nothing, and an element with no charge parameter gets no
charge ports at all (so a circuit without charges runs exactly as before).
"""

from __future__ import annotations

import math

import sympy as sp

from ..netlist.data import GROUND, Element, Netlist
from ..netlist.values import evaluate
from .base import Charge
from .temperature import capacitance_factor, junction_potential, temperatures

#: ngspice's defaults for the charge parameters (SI units), with the aliases ngspice accepts.
DIODE = {"cjo": (0.0, ("cjo", "cj0", "cj")), "vj": (1.0, ("vj", "pb")),
         "m": (0.5, ("m", "mj")), "fc": (0.5, ("fc",)), "tt": (0.0, ("tt",))}
BJT = {"cje": (0.0, ("cje",)), "vje": (0.75, ("vje", "pe")), "mje": (0.33, ("mje", "me")),
       "cjc": (0.0, ("cjc",)), "vjc": (0.75, ("vjc", "pc")), "mjc": (0.33, ("mjc", "mc")),
       "xcjc": (1.0, ("xcjc",)), "cjs": (0.0, ("cjs", "ccs", "csub")),
       "vjs": (0.75, ("vjs", "ps")), "mjs": (0.0, ("mjs", "ms")), "fc": (0.5, ("fc",)),
       "tf": (0.0, ("tf",)), "xtf": (0.0, ("xtf",)), "vtf": (math.inf, ("vtf",)),
       "itf": (0.0, ("itf",)), "tr": (0.0, ("tr",))}
JFET = {"cgs": (0.0, ("cgs",)), "cgd": (0.0, ("cgd",)), "pb": (1.0, ("pb",)),
        "fc": (0.5, ("fc",))}

#: Parameter rules (`netlist.values.RULES`) for the model types that take these parameters.
RULES = {"cjo": "nonnegative", "cj0": "nonnegative", "cj": "nonnegative", "vj": "positive",
         "m": "below_one", "mj": "below_one", "fc": "below_one", "tt": "nonnegative",
         "cje": "nonnegative", "vje": "positive", "pe": "positive", "mje": "below_one",
         "me": "below_one", "cjc": "nonnegative", "vjc": "positive", "pc": "positive",
         "mjc": "below_one", "mc": "below_one", "xcjc": "fraction", "cjs": "nonnegative",
         "ccs": "nonnegative", "csub": "nonnegative", "vjs": "positive", "ps": "positive",
         "mjs": "below_one", "ms": "below_one", "tf": "nonnegative", "xtf": "nonnegative",
         "vtf": "early", "itf": "nonnegative", "tr": "nonnegative", "cgs": "nonnegative",
         "cgd": "nonnegative"}

#: ngspice divides VTF by 1.44 (bjttemp.c: transitTimeVBCFactor = 1 / (1.44 VTF)).
VTF_FACTOR = 1.44


def parameters(el: Element, net: Netlist, table: dict) -> dict[str, sp.Expr]:
    """The charge parameters of `el`'s model by canonical name: the value given on the card
    (under any of ngspice's aliases, as a Sympy expression of the netlist's parameters), else
    ngspice's default as a number."""
    given = net.models[el.model].params
    out = {}
    for name, (default, aliases) in table.items():
        # an alias the card wrote first: the canonical name may hold a filled-in default
        found = next((given[a] for a in (*aliases[1:], aliases[0]) if a in given), None)
        out[name] = found if found is not None else (sp.oo if math.isinf(default)
                                                     else sp.Float(default))
    return out


def _value(expr: sp.Expr, net: Netlist) -> float:
    return math.inf if expr is sp.oo else evaluate(expr, net.defaults)


def _given(expr: sp.Expr, net: Netlist) -> bool:
    """A capacitance or transit time that contributes: nonzero at the netlist's values (a
    parameter at zero adds no charge, as it adds none to ngspice's equations either)."""
    return _value(expr, net) != 0


def minimum(a: sp.Expr, b: sp.Expr) -> sp.Expr:
    """min(a, b) as a Piecewise, so that both branches of the depletion law stay finite and
    their derivatives are never NaN (torch.where differentiates the branch it discards too).
    Not Abs: a port voltage symbol need not be declared real, and Abs of a complex symbol
    differentiates into re() and im()."""
    return sp.Piecewise((a, a < b), (b, True))


def depletion(v: sp.Expr, cj0: sp.Expr, vj: sp.Expr, m: sp.Expr, fc: sp.Expr) -> sp.Expr:
    """SPICE's depletion charge q(v) (module docstring), C1-continuous at v = FC VJ."""
    knee = fc * vj
    below = vj * cj0 * (1 - (1 - minimum(v, knee) / vj) ** (1 - m)) / (1 - m)
    f1 = vj * (1 - (1 - fc) ** (1 - m)) / (1 - m)
    f2 = (1 - fc) ** (1 + m)
    f3 = 1 - fc * (1 + m)
    above = cj0 * (f1 + (f3 * (v - knee) + m / (2 * vj) * (v ** 2 - knee ** 2)) / f2)
    return sp.Piecewise((below, v < knee), (above, True))


def _at_temperature(el: Element, net: Netlist, cj0: sp.Expr, vj: sp.Expr,
                    m: sp.Expr) -> tuple[sp.Expr, sp.Expr]:
    """(CJ0(T), VJ(T)) at the circuit temperature, from the card's values at its nominal one
    (`temperature.capacitance_factor`, `temperature.junction_potential`); unchanged at TNOM."""
    t, tnom = temperatures(net.models[el.model], net)
    return cj0 * capacitance_factor(t, tnom, vj, m), junction_potential(t, tnom, vj)


def _symbol(el: Element, what: str) -> sp.Symbol:
    return sp.Symbol(f"v_{el.name}_{what}", real=True)


def diode(el: Element, net: Netlist, p: str, m: str, v: sp.Symbol,
          current: sp.Expr) -> list[Charge]:
    """D: depletion charge (CJO VJ M FC) plus diffusion charge TT i_d across the junction
    (p, m) (after RS), `current` the junction law i_d(v) without GMIN, as ngspice's cdb.

    The charge is written in the junction port's voltage v (the same node pair, so the same
    value), so that the kernel computes exp(v / (N Vt)) once for the current and the charge."""
    k = parameters(el, net, DIODE)
    q = sp.Integer(0)
    if _given(k["cjo"], net):
        cjo, vj = _at_temperature(el, net, k["cjo"], k["vj"], k["m"])
        q += depletion(v, cjo, vj, k["m"], k["fc"])
    if _given(k["tt"], net):
        q += k["tt"] * current
    return [Charge(f"{el.name}.q", p, m, _symbol(el, "q"), q)] if q != 0 else []


def bjt(el: Element, net: Netlist, ports: tuple[tuple[str, str], tuple[str, str]],
        vbe: sp.Symbol, vbc: sp.Symbol, cbe: sp.Expr, cbc: sp.Expr, qb: sp.Expr, npn: bool,
        base: str, collector: str) -> list[Charge]:
    """Q: ngspice's Gummel-Poon charges (bjtload.c), in the polarity-normalised frame.

    ports: the (b, e) and (b, c) junction ports (as the builder orients them: reversed for
    PNP); vbe, vbc their voltage symbols; cbe, cbc the transport junction currents (no GMIN);
    qb the base charge factor. `base` is the external base node (XCJC puts the fraction
    1 - XCJC of CJC between it and the collector; when it is the internal base, as without RB,
    the two parts are one charge), `collector` the (internal) collector.

        qbe = TF cbe' + depletion(vbe; CJE, VJE, MJE, FC)
              cbe' = cbe (1 + XTF e^(vbc / (1.44 VTF)) (cbe / (cbe + ITF))^2) / qb  for vbe > 0,
                     cbe otherwise
        qbc = TR cbc + depletion(vbc; XCJC CJC, VJC, MJC, FC)
        qbx = depletion(vbx; (1 - XCJC) CJC, VJC, MJC, FC)       external base to collector
        qsub = depletion(vsub; CJS, VJS, MJS, FC = 0)            substrate (ground) to the
              collector of a vertical NPN, to the base of a lateral PNP
    """
    k = parameters(el, net, BJT)
    (be_p, be_m), (bc_p, bc_m) = ports
    out = []
    qbe = sp.Integer(0)
    if _given(k["cje"], net):
        cje, vje = _at_temperature(el, net, k["cje"], k["vje"], k["mje"])
        qbe += depletion(vbe, cje, vje, k["mje"], k["fc"])
    if _given(k["tf"], net):
        qbe += k["tf"] * _transport(net, k, vbe, vbc, cbe, qb)
    if qbe != 0:
        out.append(Charge(f"{el.name}.qbe", be_p, be_m, _symbol(el, "qbe"), qbe))
    internal_base = bc_p if npn else bc_m
    split = internal_base != base and _value(k["xcjc"], net) < 1
    cjc, vjc = _at_temperature(el, net, k["cjc"], k["vjc"], k["mjc"])
    cjc_inner = cjc * k["xcjc"] if split else cjc
    qbc = sp.Integer(0)
    if _given(k["cjc"], net):
        qbc += depletion(vbc, cjc_inner, vjc, k["mjc"], k["fc"])
    if _given(k["tr"], net):
        qbc += k["tr"] * cbc
    if qbc != 0:
        out.append(Charge(f"{el.name}.qbc", bc_p, bc_m, _symbol(el, "qbc"), qbc))
    if split and _given(k["cjc"], net):
        vq = _symbol(el, "qbx")
        pair = (base, collector) if npn else (collector, base)
        out.append(Charge(f"{el.name}.qbx", *pair, vq,
                          depletion(vq, cjc * (1 - k["xcjc"]), vjc, k["mjc"], k["fc"])))
    if _given(k["cjs"], net):
        vq = _symbol(el, "qsub")
        # vsub = type * subs * (V(substrate) - V(substrate-connected node)): +1 for both the
        # vertical NPN (to the collector) and the lateral PNP (to the base)
        pair = (GROUND, collector) if npn else (GROUND, base)
        cjs, vjs = _at_temperature(el, net, k["cjs"], k["vjs"], k["mjs"])
        out.append(Charge(f"{el.name}.qsub", *pair, vq,
                          depletion(vq, cjs, vjs, k["mjs"], sp.Integer(0))))
    return out


def _transport(net: Netlist, k: dict, vbe: sp.Symbol, vbc: sp.Symbol, cbe: sp.Expr,
               qb: sp.Expr) -> sp.Expr:
    """The current TF multiplies: ngspice's modified cbe (see `bjt`)."""
    arg = sp.Integer(0)
    if _given(k["xtf"], net):
        arg = k["xtf"]
        if k["vtf"] is not sp.oo and math.isfinite(_value(k["vtf"], net)) \
                and _value(k["vtf"], net) != 0:
            arg = arg * sp.exp(vbc / (VTF_FACTOR * k["vtf"]))
        if _given(k["itf"], net):
            arg = arg * (cbe / (cbe + k["itf"])) ** 2
    return sp.Piecewise((cbe * (1 + arg) / qb, vbe > 0), (cbe, True))


def jfet(el: Element, net: Netlist, ports: tuple[tuple[str, str], tuple[str, str]],
         vgs: sp.Symbol, vgd: sp.Symbol) -> list[Charge]:
    """J: gate-source and gate-drain depletion charges (CGS, CGD, PB, FC; grading 1/2 as
    ngspice's jfetload.c) across the (g, s) and (g, d) junction ports (reversed for PJF),
    whose polarity-normalised voltages are vgs and vgd."""
    k = parameters(el, net, JFET)
    half = sp.Rational(1, 2)
    out = []
    for name, cap, (p, m), v in (("qgs", k["cgs"], ports[0], vgs),
                                 ("qgd", k["cgd"], ports[1], vgd)):
        if _given(cap, net):
            cap_t, pb = _at_temperature(el, net, cap, k["pb"], half)
            out.append(Charge(f"{el.name}.{name}", p, m, _symbol(el, name),
                              depletion(v, cap_t, pb, half, k["fc"])))
    return out


#: ngspice's MOS1 bulk-junction charge parameters (mos1set.c defaults); CBD CBS CJ CJSW have
#: no default here because ngspice asks whether the card gave them (CBD given wins over CJ AD).
MOSFET = {"pb": (0.8, ("pb",)), "mj": (0.5, ("mj",)), "mjsw": (0.5, ("mjsw",)),
          "fc": (0.5, ("fc",))}


def mosfet(el: Element, net: Netlist, ports: tuple[tuple[str, str], tuple[str, str]],
           vbs: sp.Symbol, vbd: sp.Symbol) -> list[Charge]:
    """M: ngspice's level-1 bulk-junction charges (mos1load.c), across the (b, s') and (b, d')
    junction ports (reversed for PMOS), whose polarity-normalised voltages are vbs and vbd.

    Each side is a bottom and a sidewall depletion charge sharing PB and FC:

        qbs = depletion(vbs; Cbs, PB, MJ, FC) + depletion(vbs; CJSW PS, PB, MJSW, FC)
              Cbs = CBS where the card gives it, else CJ AS (0 without CJ)
        qbd likewise with CBD, AD, PD

    (AS AD PS PD from the instance line, ngspice's default 0), the capacitances and PB at the
    circuit temperature (`temperature.capacitance_factor`, MJ for the bottom, MJSW for the
    sidewall)."""
    mp = net.models[el.model].params
    k = parameters(el, net, MOSFET)
    zero = sp.Float(0.0)
    out = []
    for name, (p, m), v, own, area, perimeter in (
            ("qbs", ports[0], vbs, "cbs", "as", "ps"), ("qbd", ports[1], vbd, "cbd", "ad", "pd")):
        if own in mp:
            bottom = mp[own]
        elif "cj" in mp:
            bottom = mp["cj"] * el.params.get(area, zero)
        else:
            bottom = zero
        side = mp["cjsw"] * el.params.get(perimeter, zero) if "cjsw" in mp else zero
        q = sp.Integer(0)
        for cap, grading in ((bottom, k["mj"]), (side, k["mjsw"])):
            if _given(cap, net):
                cap_t, pb = _at_temperature(el, net, cap, k["pb"], grading)
                q += depletion(v, cap_t, pb, grading, k["fc"])
        if q != 0:
            out.append(Charge(f"{el.name}.{name}", p, m, _symbol(el, name), q))
    return out

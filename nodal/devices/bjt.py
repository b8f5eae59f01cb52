"""Q: ngspice's Gummel-Poon BJT, its static (DC) model in full, at the circuit's temperature."""

from __future__ import annotations

import math

import sympy as sp

from ..netlist.data import GROUND, Element, Netlist
from ..netlist.values import evaluate
from . import charges
from .base import (GMIN, Device, ModelType, Port, Stamp, check_known, check_unsupported,
                   conductance, inverse_early, port_voltage, spice_junction)
from .temperature import beta_factor, saturation_factor, temperatures, thermal_voltage_at

#: The charge parameters: accepted with ngspice's defaults, a named error while nonzero until
#: the solver has device charges.


def _with_aliases(names: tuple[str, ...]) -> tuple[str, ...]:
    return names + tuple(a for a, n in ALIASES.items() if n in names)


def _given(mp: dict, name: str, net: Netlist) -> bool:
    """A parameter the card gives with a nonzero, finite value (ngspice: 0 means none)."""
    if name not in mp:
        return False
    value = evaluate(mp[name], net.defaults)
    return value != 0 and math.isfinite(value)


def _at_least(x: sp.Expr, floor: float) -> sp.Expr:
    """max(x, floor) as (x + floor + sqrt((x - floor)^2)) / 2: finite in every branch (a
    Piecewise would have Sympy distribute the sqrt that follows into it, leaving sqrt of a
    negative in the branch torch.where discards and NaN gradients), and free of the re()/im()
    an Abs of parameter symbols differentiates into."""
    return (x + floor + sp.sqrt((x - floor) ** 2)) / 2


def _internal(stamp: Stamp, el: Element, node: str, suffix: str, g: sp.Expr | None) -> str:
    """A terminal resistance (conductance g) to a new internal node, or the node itself."""
    if g is None:
        return node
    inner = f"{el.name}#{suffix}"
    stamp.internal_nodes.append(inner)
    stamp.matrix += conductance(node, inner, g)
    return inner


def _resistance(mp: dict, name: str, area: sp.Expr, net: Netlist) -> sp.Expr | None:
    """The conductance area/R of a terminal resistance R, or None where R is 0 (none)."""
    return area / mp[name] if _given(mp, name, net) else None


def base_resistance(cb: sp.Expr, qb: sp.Expr, mp: dict, area: sp.Expr,
                    net: Netlist) -> sp.Expr:
    """ngspice's base resistance rbb (ohm) at base current cb and base charge qb.

    rbb = RBM/area + (RB - RBM)/area / qb, or with IRB given (the crowding model)

        z   = (-1 + sqrt(1 + 144/pi^2 x)) / ((24/pi^2) sqrt(x)),  x = max(cb / (IRB area), 1e-9)
        rbb = RBM/area + 3 (RB - RBM)/area (tan z - z) / (z tan^2 z)

    (ngspice writes 144/pi^2 = 14.59025 and 24/pi^2 = 2.4317). RBM defaults to RB.
    """
    rb = mp["rb"] / area
    rbm = mp.get("rbm", mp["rb"]) / area
    if _given(mp, "irb", net):
        x = _at_least(cb / (mp["irb"] * area), 1e-9)
        z = (-1 + sp.sqrt(1 + 14.59025 * x)) / 2.4317 / sp.sqrt(x)
        tz = sp.tan(z)
        return rbm + 3 * (rb - rbm) * (tz - z) / z / tz / tz
    return rbm + (rb - rbm) / qb


def _nonlinear_base(mp: dict, net: Netlist) -> bool:
    """Whether the base resistance varies with the operating point (IRB, or RBM below RB)."""
    if not _given(mp, "rb", net):
        return False
    if _given(mp, "irb", net):
        return True
    return "rbm" in mp and evaluate(mp["rbm"], net.defaults) != evaluate(mp["rb"], net.defaults)


def bjt(el: Element, net: Netlist) -> Stamp:
    """Q c b e [area]: ngspice's Gummel-Poon BJT, static model (SI units).

    In the polarity-normalised frame (vbe, vbc of the internal nodes b' e' c', times +1 for
    NPN, -1 for PNP), with vt = kT/q at the circuit temperature and `temperature.py`'s IS(T),
    BF(T), BR(T), every current scaled by the instance's area:

        cbe  = J(vbe; IS, NF vt)     cben = J(vbe; ISE, NE vt)      (`spice_junction`)
        cbc  = J(vbc; IS, NR vt)     cbcn = J(vbc; ISC, NC vt)
        q1   = 1 / (1 - vbc/VAF - vbe/VAR)
        q2   = cbe/IKF + cbc/IKR
        qb   = q1 (1 + sqrt(1 + 4 q2)) / 2          (1 + 4 q2)^NKF where the card sets NKF
        Ic   = (cbe - cbc)/qb - cbc/BR - cbcn      into the collector
        Ib   = cbe/BF + cben + cbc/BR + cbcn        into the base

    (VAF, VAR, IKF, IKR, ISE, ISC at 0 or not given: no term, as ngspice.) RE and RC are
    conductances area/R to internal nodes e', c'. RB is area/RB to b' where it is constant;
    where it varies (IRB, or RBM below RB: `base_resistance`) the conductance area/RB is
    stamped and a third port (b, b') carries the rest, (V(b) - V(b')) (1/rbb(cb, qb) - area/RB),
    cb = Ib + GMIN (vbe + vbc) as ngspice has it.

    The junction ports are (b', e') and (b', c') (reversed for PNP) so SPICE's pnjlim limits
    both, with vt and IS(T) area as ngspice's BJTload does; their currents are Ib + Ic (base
    to emitter) and -Ic (base to collector). ngspice's GMIN across both junctions is linear
    and stamped by `mna.derive` for every junction port; its GMIN from the substrate (ground
    for a 3-terminal Q) to c' (vertical NPN) or b' (lateral PNP) is stamped here.
    """
    model = net.models[el.model]
    check_known(el, net, NPN if model.type == "npn" else PNP, "BJT", NGSPICE_NAMES)
    check_unsupported(el, net, _with_aliases(("ptf",)), "BJT",
                      "the excess phase of the transit time, which nodalnet does not model")
    check_unsupported(el, net, _with_aliases(_NOT_MODELLED), "BJT")
    c, b, e = el.nodes
    mp = dict(model.params)
    for alias, name in ALIASES.items():          # ngspice's other names for a parameter
        if alias in mp:
            mp[name] = mp[alias]
    npn = model.type == "npn"
    area = el.params.get("area", sp.S.One)
    t, tnom = temperatures(model, net)
    vt = sp.Float(thermal_voltage_at(t))
    factlog = saturation_factor(t, tnom, mp["eg"], mp["xti"])
    bfactor = beta_factor(t, tnom, mp["xtb"])
    csat = mp["is"] * area * factlog
    bf, br = mp["bf"] * bfactor, mp["br"] * bfactor

    stamp = Stamp()
    c = _internal(stamp, el, c, "c", _resistance(mp, "rc", area, net))
    e = _internal(stamp, el, e, "e", _resistance(mp, "re", area, net))
    varying = _nonlinear_base(mp, net)
    b_outer = b
    if _given(mp, "rb", net) and not varying:
        b = _internal(stamp, el, b, "b", area / mp["rb"])
    elif varying:
        b = f"{el.name}#b"
        stamp.internal_nodes.append(b)

    vbe, vbc = port_voltage(f"{el.name}_be"), port_voltage(f"{el.name}_bc")
    cbe = spice_junction(vbe, csat, mp["nf"] * vt)
    cbc = spice_junction(vbc, csat, mp["nr"] * vt)
    cben = cbcn = sp.S.Zero
    if _given(mp, "ise", net):
        c2 = mp["ise"] * area * saturation_factor(t, tnom, mp["eg"], mp["xti"], mp["ne"])
        cben = spice_junction(vbe, c2 / bfactor, mp["ne"] * vt)
    if _given(mp, "isc", net):
        c4 = mp["isc"] * area * saturation_factor(t, tnom, mp["eg"], mp["xti"], mp["nc"])
        cbcn = spice_junction(vbc, c4 / bfactor, mp["nc"] * vt)
    q1 = 1 / (1 - vbc * inverse_early(mp["vaf"], net) - vbe * inverse_early(mp["var"], net))
    qb = q1
    if _given(mp, "ikf", net) or _given(mp, "ikr", net):
        q2 = sp.S.Zero
        if _given(mp, "ikf", net):
            q2 += cbe / (mp["ikf"] * area)
        if _given(mp, "ikr", net):
            q2 += cbc / (mp["ikr"] * area)
        root = (1 + 4 * q2) ** mp["nkf"] if "nkf" in mp else sp.sqrt(1 + 4 * q2)
        qb = q1 * (1 + root) / 2
    i_c = (cbe - cbc) / qb - cbc / br - cbcn
    i_b = cbe / bf + cben + cbc / br + cbcn
    if npn:
        stamp.ports += [Port(b, e, junction=(vt, csat)), Port(b, c, junction=(vt, csat))]
        stamp.matrix += conductance(c, GROUND, sp.Float(GMIN))
    else:
        stamp.ports += [Port(e, b, junction=(vt, csat)), Port(c, b, junction=(vt, csat))]
        stamp.matrix += conductance(b, GROUND, sp.Float(GMIN))
    stamp.voltages += [vbe, vbc]
    stamp.currents += [i_b + i_c, -i_c]
    if varying:
        v_rb = port_voltage(f"{el.name}_rb")
        rbb = base_resistance(i_b + GMIN * (vbe + vbc), qb, mp, area, net)
        # area/RB (rbb at no current) is stamped as a conductance and the port carries the
        # rest: b' is then not a node reached only through laws (K ~ 1/GMIN, ill-conditioned)
        g0 = area / mp["rb"]
        stamp.matrix += conductance(b_outer, b, g0)
        stamp.ports.append(Port(b_outer, b))
        stamp.voltages.append(v_rb)
        stamp.currents.append(v_rb * (1 / rbb - g0))
    junctions = ((stamp.ports[0].p, stamp.ports[0].m), (stamp.ports[1].p, stamp.ports[1].m))
    stamp.charges += charges.bjt(el, net, junctions, vbe, vbc, cbe, cbc, qb, npn,
                                 base=b_outer, collector=c)
    return stamp


#: ngspice's other names for BJT model parameters (bjt.c), and the name used here
ALIASES = {"va": "vaf", "vb": "var", "ik": "ikf", "c2": "ise", "c4": "isc", "nk": "nkf",
           "tref": "tnom", "pe": "vje", "me": "mje", "pc": "vjc", "mc": "mjc", "csub": "cjs",
           "ccs": "cjs", "ps": "vjs", "ms": "mjs", "trb": "trb1", "trc": "trc1", "tre": "tre1"}
#: Parameters with no effect on ngspice's transient result (noise, safe-operating-area
#: limits), accepted as they are.
_INERT = ("kf", "af", "vbe_max", "vbc_max", "vce_max", "pd_max", "ic_max", "ib_max", "te_max")
#: ngspice's other BJT parameters (bjt.c): the charges' temperature coefficients and the rest;
#: nonzero, they are named (`_NOT_MODELLED`)
_NGSPICE_OTHER = ("subs", "titf1", "titf2", "ttf1", "ttf2", "ttr1", "ttr2", "tmje1", "tmje2",
                  "tmjc1", "tmjc2", "tmjs1", "tmjs2", "tns1", "tns2", "tiss1", "tiss2",
                  "quasimod", "vg", "cn", "d", "rth0", "ctc", "cte", "cts", "tvjc", "tvje",
                  "tvjs")

#: ngspice parameters that change the static result and that nodalnet does not model: named
#: (with their value) when the card sets them nonzero.
_NOT_MODELLED = ("iss", "ns", "rco", "vo", "gamma", "qco", "tlev", "tlevc", "ibe", "ibc",
                 "tre1", "tre2", "trb1", "trb2", "trm1", "trm2", "trc1", "trc2", "tbf1", "tbf2",
                 "tbr1", "tbr2", "tikf1", "tikf2", "tikr1", "tikr2", "tis1", "tis2", "tise1",
                 "tise2", "tisc1", "tisc2", "tnf1", "tnf2", "tnr1", "tnr2", "tne1", "tne2",
                 "tnc1", "tnc2", "tvaf1", "tvaf2", "tvar1", "tvar2", "tirb1", "tirb2",
                 *_NGSPICE_OTHER)

_DEFAULTS = {"is": 1e-16, "bf": 100.0, "br": 1.0, "nf": 1.0, "nr": 1.0, "vaf": math.inf,
             "var": math.inf, "ikf": 0.0, "ikr": 0.0, "ise": 0.0, "ne": 1.5, "isc": 0.0,
             "nc": 2.0, "rb": 0.0, "irb": 0.0, "re": 0.0, "rc": 0.0, "eg": 1.11, "xti": 3.0,
             "xtb": 0.0,
             # charges (`charges.bjt`) and their shape parameters, ngspice's defaults
             "cje": 0.0, "vje": 0.75, "mje": 0.33, "tf": 0.0, "xtf": 0.0, "vtf": math.inf,
             "itf": 0.0, "ptf": 0.0, "cjc": 0.0, "vjc": 0.75, "mjc": 0.33, "xcjc": 1.0,
             "tr": 0.0, "cjs": 0.0, "vjs": 0.75, "mjs": 0.0, "fc": 0.5}
_RULES = {"is": "positive", "bf": "positive", "br": "positive", "nf": "positive",
          "nr": "positive", "vaf": "early", "var": "early", "ikf": "nonnegative",
          "ikr": "nonnegative", "ise": "nonnegative", "ne": "positive", "isc": "nonnegative",
          "nc": "positive", "rb": "nonnegative", "rbm": "nonnegative", "irb": "nonnegative",
          "re": "nonnegative", "rc": "nonnegative", "nkf": "positive", "eg": "nonnegative",
          "xti": "finite", "xtb": "finite", "tnom": "finite",
          "cje": "nonnegative", "vje": "positive", "mje": "grading", "tf": "nonnegative",
          "xtf": "nonnegative", "vtf": "early", "itf": "nonnegative", "ptf": "finite",
          "cjc": "nonnegative", "vjc": "positive", "mjc": "grading", "xcjc": "fraction",
          "tr": "nonnegative", "cjs": "nonnegative", "vjs": "positive", "mjs": "grading",
          "fc": "below_one", "kf": "nonnegative", "af": "positive",
          **{p: "finite" for p in _NOT_MODELLED}, **{p: "finite" for p in _INERT}}
_RULES.update({alias: _RULES[name] for alias, name in ALIASES.items()})
NGSPICE_NAMES = frozenset(_RULES)
NPN = ModelType("npn", _DEFAULTS, _RULES, unknown="ignored")
PNP = ModelType("pnp", _DEFAULTS, _RULES, unknown="ignored")
DEVICE = Device("Q", "bipolar transistor", nodes=3, card="model", build=bjt, models=(NPN, PNP),
                dc_pairs=((1, 2), (1, 0)), instance=("area",))

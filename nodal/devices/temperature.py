"""Device temperature as ngspice computes it: thermal voltage, saturation currents, betas and
junction potentials at the circuit temperature from values measured at the nominal one.

Temperatures are kelvin. The circuit's temperature is `Netlist.temperature` (`.temp`, ngspice's
27 C by default); a model's parameters are measured at its `TNOM` (a card parameter in Celsius)
or else at `Netlist.nominal_temperature`. Where the two are equal every factor here is exactly 1
(a Sympy `1`), so a circuit at its nominal temperature has the plain laws.

The formulas are ngspice's (bjttemp.c, diotemp.c, jfettemp.c, mos1temp.c, "tlev 0"):

    vt           = k T / q
    IS(T)        = IS exp((T/Tnom - 1) EG / (n vt) + XTI/n ln(T/Tnom))     (n = 1 for the BJT)
    BF(T), BR(T) = BF, BR (T/Tnom)^XTB
    Eg(T)        = 1.16 - 7.02e-4 T^2 / (T + 1108)                        (silicon, eV)
    pbfact(T)    = -2 vt (1.5 ln(T/Tref) + q (1.1150877/(2 k Tref) - Eg(T)/(2 k T)))
    PB(T)        = (T/Tref) (PB - pbfact(Tnom)) / (Tnom/Tref) + pbfact(T)   (junction potential)
"""

from __future__ import annotations

import math

import sympy as sp

from ..netlist.data import Model, Netlist
from ..netlist.values import evaluate
from .base import BOLTZMANN, CHARGE

#: ngspice's REFTEMP: 27 C in kelvin, where the silicon band-gap fit is anchored.
REFERENCE_TEMPERATURE = 300.15
KELVIN = 273.15


def thermal_voltage_at(temperature: float) -> float:
    """kT/q in volts at `temperature` kelvin, with ngspice's constants."""
    return BOLTZMANN * temperature / CHARGE


def temperatures(model: Model, net: Netlist) -> tuple[float, float]:
    """(device temperature, nominal temperature) in kelvin for a device of `model`.

    The card's TNOM (Celsius) overrides the netlist's nominal temperature."""
    tnom = net.nominal_temperature
    if "tnom" in model.params:
        tnom = evaluate(model.params["tnom"], net.defaults) + KELVIN
    return float(net.temperature), float(tnom)


def saturation_factor(t: float, tnom: float, eg: sp.Expr, xti: sp.Expr,
                      n: sp.Expr = sp.S.One) -> sp.Expr:
    """IS(T)/IS: exp((T/Tnom - 1) EG/(n vt) + XTI/n ln(T/Tnom)); 1 where T == Tnom."""
    if t == tnom:
        return sp.S.One
    vt = thermal_voltage_at(t)
    return sp.exp((t / tnom - 1) * eg / (n * vt) + xti / n * math.log(t / tnom))


def beta_factor(t: float, tnom: float, xtb: sp.Expr) -> sp.Expr:
    """BF(T)/BF = (T/Tnom)^XTB; 1 where T == Tnom."""
    if t == tnom:
        return sp.S.One
    return sp.exp(xtb * math.log(t / tnom))


def band_gap(t: float) -> float:
    """Silicon's band gap (eV) at `t` kelvin, ngspice's fit."""
    return 1.16 - 7.02e-4 * t * t / (t + 1108)


def _pbfact(t: float) -> float:
    vt = thermal_voltage_at(t)
    arg = -band_gap(t) / (2 * BOLTZMANN * t) + 1.1150877 / (BOLTZMANN * 2 * REFERENCE_TEMPERATURE)
    return -2 * vt * (1.5 * math.log(t / REFERENCE_TEMPERATURE) + CHARGE * arg)


def junction_potential(t: float, tnom: float, pb: sp.Expr) -> sp.Expr:
    """A junction's built-in potential (VJ, PB, PHI) at `t` from its value at `tnom`."""
    if t == tnom:
        return pb
    fact1, fact2 = tnom / REFERENCE_TEMPERATURE, t / REFERENCE_TEMPERATURE
    pbo = (pb - _pbfact(tnom)) / fact1
    return fact2 * pbo + _pbfact(t)


def mos_threshold_shift(t: float, tnom: float) -> float:
    """ngspice's MOS1 `.5 (Eg(Tnom) - Eg(T))` term of the built-in voltage (volts)."""
    return 0.0 if t == tnom else 0.5 * (band_gap(tnom) - band_gap(t))


def mos_saturation_factor(t: float, tnom: float) -> float:
    """The MOS1 bulk junctions' IS(T)/IS = exp(-Eg(T)/vt(T) + Eg(Tnom)/vt(Tnom))."""
    if t == tnom:
        return 1.0
    return math.exp(-band_gap(t) / thermal_voltage_at(t)
                    + band_gap(tnom) / thermal_voltage_at(tnom))


def capacitance_factor(t: float, tnom: float, pb: sp.Expr, m: sp.Expr) -> sp.Expr:
    """A depletion capacitance's CJ(T)/CJ for a junction of potential `pb` (at `tnom`) and
    grading `m`, as ngspice's diotemp.c, bjttemp.c, jfettemp.c and mos1temp.c scale CJO, CJE,
    CJC, CJS, CGS, CGD, CBD, CBS, CJ and CJSW (temperature level 0):

        pbo    = (PB - pbfact(Tnom)) / (Tnom/Tref),   gmaold = (PB - pbo) / pbo
        gmanew = (PB(T) - pbo) / pbo                  (PB(T): `junction_potential`)
        CJ(T)  = CJ (1 + m (4e-4 (T - Tref) - gmanew)) / (1 + m (4e-4 (Tnom - Tref) - gmaold))

    1 (a Sympy `1`) where T == Tnom."""
    if t == tnom:
        return sp.S.One
    pbo = (pb - _pbfact(tnom)) / (tnom / REFERENCE_TEMPERATURE)
    gmaold = (pb - pbo) / pbo
    gmanew = (junction_potential(t, tnom, pb) - pbo) / pbo
    return ((1 + m * (4e-4 * (t - REFERENCE_TEMPERATURE) - gmanew))
            / (1 + m * (4e-4 * (tnom - REFERENCE_TEMPERATURE) - gmaold)))

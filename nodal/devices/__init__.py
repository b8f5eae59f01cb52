"""Every element kind as one `Device` record, one module per kind, in one registry.

A record says the SPICE letter, how many nodes the card names, how the rest of the card reads,
what its value is and the rule the value follows, the `.model` types it takes (with ngspice's
defaults and parameter rules), its builder (stamp and Sympy law), and which node pairs conduct
at DC. The reader (`nodal.netlist`) and the assembler (`nodal.mna`) ask the record; adding a
device is one module with a `Device` and its entry in the registration below (and its tests).
"""

from __future__ import annotations

from . import (behavioural, bjt, capacitor, controlled, coupling, diode, inductor, jfet,
               mosfet, potentiometer, resistor, sources, switch)
from .base import (BOLTZMANN, CHARGE, EULER, GMIN, SAMPLE_PERIOD, THERMAL_VOLTAGE, TNOM, Charge,
                   Device, Key, ModelType, Port, Reactive, Stamp, branch_incidence,
                   check_unsupported, conductance, critical_voltage, inverse_early,
                   junction_current, node_key, port_voltage, spice_junction, thermal_voltage)
from .bjt import bjt as bjt_builder
from .capacitor import capacitor as capacitor_builder
from .controlled import cccs, ccvs, vccs, vcvs
from .diode import diode as diode_builder
from .inductor import inductor as inductor_builder
from .jfet import jfet as jfet_builder
from .jfet import jfet_channel
from .resistor import resistor as resistor_builder
from .sources import current_source, voltage_source

DEVICES: dict[str, Device] = {}
MODEL_TYPES: dict[str, tuple[ModelType, Device]] = {}


def register(device: Device) -> Device:
    """Add a device record (its letter must be new, as must its model types)."""
    letter = device.letter.upper()
    if letter in DEVICES:
        raise ValueError(f"a device with letter {letter} is already registered")
    DEVICES[letter] = device
    for mtype in device.models:
        if mtype.name in MODEL_TYPES:
            raise ValueError(f"model type {mtype.name} is already registered")
        MODEL_TYPES[mtype.name] = (mtype, device)
    return device


for _device in (resistor.DEVICE, capacitor.DEVICE, inductor.DEVICE, sources.VOLTAGE,
                sources.CURRENT, controlled.VCVS, controlled.VCCS, controlled.CCCS,
                controlled.CCVS, behavioural.DEVICE, diode.DEVICE, bjt.DEVICE, jfet.DEVICE,
                mosfet.DEVICE, potentiometer.DEVICE, switch.DEVICE, coupling.DEVICE):
    register(_device)


def record(letter: str) -> Device | None:
    """The record of SPICE letter `letter` (any case), or None."""
    return DEVICES.get(letter.upper())


def model_type(name: str) -> ModelType | None:
    entry = MODEL_TYPES.get(name.lower())
    return entry[0] if entry else None


def letters() -> str:
    """The letters the reader knows, for error messages: `R C L V I E G D Q J M`."""
    return " ".join(DEVICES)


class _Builders(dict):
    """`BUILDERS[letter]`: the builder of each registered device (read-only view)."""

    def __getitem__(self, letter):
        return DEVICES[letter].build

    def get(self, letter, default=None):
        return DEVICES[letter].build if letter in DEVICES else default

    def __contains__(self, letter):
        return letter in DEVICES

    def __iter__(self):
        return iter(DEVICES)

    def __len__(self):
        return len(DEVICES)


BUILDERS = _Builders()

__all__ = ["BOLTZMANN", "BUILDERS", "CHARGE", "Charge", "DEVICES", "EULER", "GMIN",
           "MODEL_TYPES", "SAMPLE_PERIOD", "THERMAL_VOLTAGE", "TNOM", "Device", "Key",
           "ModelType", "Port",
           "Reactive", "Stamp", "bjt_builder", "branch_incidence", "capacitor_builder", "cccs",
           "ccvs", "check_unsupported", "conductance", "critical_voltage", "current_source",
           "diode_builder", "inductor_builder", "inverse_early", "jfet_builder", "jfet_channel",
           "junction_current", "letters", "model_type", "node_key", "port_voltage", "record",
           "register", "resistor_builder", "spice_junction", "thermal_voltage", "vccs", "vcvs",
           "voltage_source"]

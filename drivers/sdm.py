"""Eastron SDM120 (single phase) and SDM630 (three phase) energy meters, Modbus RTU.

Register addresses are from Eastron's "SDM120 Modbus protocol" and "SDM630 Modbus
Protocol" input register tables (function 0x04); every quantity is an IEEE-754 float32
in two registers, high word first. The meters ship at 2400 baud 8N1, unit id 1.
Quantities are read in as few requests as the register map allows (two per meter).
"""

from __future__ import annotations

import math
from typing import ClassVar

from drivers.errors import ConfigurationError, OutOfRangeError
from drivers.modbus import MAX_REGISTERS, RtuClient, floats
from drivers.serial_link import SerialPort

DEFAULT_BAUDRATE = 2400

# SDM120 input registers (address -> quantity).
SDM120_REGISTERS: dict[int, str] = {
    0x0000: "voltage_volts",
    0x0006: "current_amperes",
    0x000C: "active_power_watts",
    0x001E: "power_factor",
    0x0046: "frequency_hertz",
    0x0048: "energy_import_kwh",
    0x004A: "energy_export_kwh",
}

# SDM630 input registers.
SDM630_REGISTERS: dict[int, str] = {
    0x0000: "voltage_l1_volts",
    0x0002: "voltage_l2_volts",
    0x0004: "voltage_l3_volts",
    0x0006: "current_l1_amperes",
    0x0008: "current_l2_amperes",
    0x000A: "current_l3_amperes",
    0x000C: "active_power_l1_watts",
    0x000E: "active_power_l2_watts",
    0x0010: "active_power_l3_watts",
    0x001E: "power_factor_l1",
    0x0020: "power_factor_l2",
    0x0022: "power_factor_l3",
    0x0034: "active_power_watts",
    0x003E: "power_factor",
    0x0046: "frequency_hertz",
    0x0048: "energy_import_kwh",
    0x004A: "energy_export_kwh",
}

MAX_GAP_REGISTERS = 24
"""Read across a gap of unused registers rather than send another request below this."""


def plan_requests(registers: dict[int, str]) -> list[tuple[int, int]]:
    """Group float registers into (address, count) requests, as few as sensible."""
    blocks: list[tuple[int, int]] = []
    for address in sorted(registers):
        if blocks:
            start, count = blocks[-1]
            end = start + count
            if address - end <= MAX_GAP_REGISTERS and address + 2 - start <= MAX_REGISTERS:
                blocks[-1] = (start, address + 2 - start)
                continue
        blocks.append((address, 2))
    return blocks


def decode(registers: dict[int, str], start: int, data: bytes) -> dict[str, float]:
    """The quantities of ``registers`` found in a block read from ``start``."""
    values = floats(data) if len(data) % 4 == 0 else []
    out: dict[str, float] = {}
    for address, name in registers.items():
        index = (address - start) // 2
        if start <= address and (address - start) % 2 == 0 and index < len(values):
            out[name] = values[index]
    return out


class _EastronMeter:
    REGISTERS: ClassVar[dict[int, str]] = {}
    CHIP: ClassVar[str] = "meter"

    def __init__(self, port: SerialPort, unit: int = 1, *, baudrate: int | None = None,
                 timeout_s: float = 1.0) -> None:
        if not 1 <= unit <= 247:
            raise ConfigurationError(f"{self.CHIP}: Modbus unit id must be 1..247, not {unit}")
        # The port's speed sets the inter-frame silence; pyserial keeps it as an attribute.
        speed = baudrate or int(getattr(port, "baudrate", DEFAULT_BAUDRATE) or DEFAULT_BAUDRATE)
        self.unit = unit
        self._client = RtuClient(port, baudrate=speed, timeout_s=timeout_s,
                                 chip=f"{self.CHIP} (unit {unit})")
        self._plan = plan_requests(self.REGISTERS)

    def read(self) -> dict[str, float]:
        values: dict[str, float] = {}
        for address, count in self._plan:
            data = self._client.read_input_registers(self.unit, address, count)
            values.update(decode(self.REGISTERS, address, data))
        for name, value in values.items():
            if not math.isfinite(value):
                raise OutOfRangeError(f"{self.CHIP} unit {self.unit}: {name} is {value}")
        return values

    def reset(self) -> None:
        """Nothing to re-initialise: each read is a self-contained request."""

    def close(self) -> None:
        """The port belongs to the caller."""


class SDM120(_EastronMeter):
    """Single-phase meter: voltage, current, power, power factor, frequency, energy."""

    REGISTERS = SDM120_REGISTERS
    CHIP = "SDM120"


class SDM630(_EastronMeter):
    """Three-phase meter: per-phase voltage, current, power, power factor; totals."""

    REGISTERS = SDM630_REGISTERS
    CHIP = "SDM630"

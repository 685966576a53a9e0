"""Eastron SDM120 (single phase) and SDM630 (three phase) energy meters, Modbus RTU.

Sources: Eastron "SDM120Modbus Smart Meter Modbus Protocol Implementation" V2.4 and
"SDM630Modbus Smart Meter Modbus Protocol Implementation" V1.8, input register tables
(function 0x04; register 3xxxx = address xxxx - 1). Every quantity is an IEEE-754 float32
in two registers, high word first, big-endian bytes. Eastron asks for at most 40 values
(80 registers) per request and for whole values (even address and count).

Factory settings: SDM120 2400 baud, SDM630 9600 baud; both 8N1, unit id 1.

Quantities are read in as few requests as the 80-register limit allows, across the
unused registers between them (the SDM630 answers those with 0). A meter that refuses
such a request with exception 2 (illegal data address) is read again with requests
that cover only its documented registers, and keeps that plan.
"""

from __future__ import annotations

import math
from typing import ClassVar

from drivers.errors import (
    ConfigurationError,
    DeviceNotFoundError,
    DriverTimeoutError,
    ModbusExceptionError,
    OutOfRangeError,
)
from drivers.modbus import RtuClient, floats
from drivers.serial_link import SerialPort

EASTRON_MAX_REGISTERS = 80
"""40 float values per request (protocol implementation, section 1)."""
ILLEGAL_DATA_ADDRESS = 2

# SDM120 input registers (address -> quantity), protocol V2.4 table 1.
SDM120_VOLTAGE = 0x0000
SDM120_CURRENT = 0x0006
SDM120_ACTIVE_POWER = 0x000C
SDM120_POWER_FACTOR = 0x001E
SDM120_FREQUENCY = 0x0046
SDM120_IMPORT_ACTIVE_ENERGY = 0x0048
SDM120_EXPORT_ACTIVE_ENERGY = 0x004A

SDM120_REGISTERS: dict[int, str] = {
    SDM120_VOLTAGE: "voltage_volts",
    SDM120_CURRENT: "current_amperes",
    SDM120_ACTIVE_POWER: "active_power_watts",
    SDM120_POWER_FACTOR: "power_factor",
    SDM120_FREQUENCY: "frequency_hertz",
    SDM120_IMPORT_ACTIVE_ENERGY: "energy_import_kwh",
    SDM120_EXPORT_ACTIVE_ENERGY: "energy_export_kwh",
}

# SDM630 input registers, protocol V1.8 section 3: phase values at a stride of 2.
SDM630_PHASE_1_VOLTAGE = 0x0000
SDM630_PHASE_1_CURRENT = 0x0006
SDM630_PHASE_1_POWER = 0x000C
SDM630_PHASE_1_POWER_FACTOR = 0x001E
SDM630_TOTAL_SYSTEM_POWER = 0x0034
SDM630_TOTAL_SYSTEM_POWER_FACTOR = 0x003E
SDM630_FREQUENCY = 0x0046
SDM630_IMPORT_ACTIVE_ENERGY = 0x0048
SDM630_EXPORT_ACTIVE_ENERGY = 0x004A

PHASES = (1, 2, 3)

SDM630_REGISTERS: dict[int, str] = {
    **{SDM630_PHASE_1_VOLTAGE + 2 * i: f"voltage_l{p}_volts" for i, p in enumerate(PHASES)},
    **{SDM630_PHASE_1_CURRENT + 2 * i: f"current_l{p}_amperes" for i, p in enumerate(PHASES)},
    **{SDM630_PHASE_1_POWER + 2 * i: f"active_power_l{p}_watts" for i, p in enumerate(PHASES)},
    **{SDM630_PHASE_1_POWER_FACTOR + 2 * i: f"power_factor_l{p}" for i, p in enumerate(PHASES)},
    SDM630_TOTAL_SYSTEM_POWER: "active_power_watts",
    SDM630_TOTAL_SYSTEM_POWER_FACTOR: "power_factor",
    SDM630_FREQUENCY: "frequency_hertz",
    SDM630_IMPORT_ACTIVE_ENERGY: "energy_import_kwh",
    SDM630_EXPORT_ACTIVE_ENERGY: "energy_export_kwh",
}

POWER_FACTOR_TOLERANCE = 1e-3
"""A power factor beyond 1 by more than float rounding is not a measurement."""


def plan_requests(addresses: list[int] | set[int] | dict[int, str], *,
                  max_registers: int = EASTRON_MAX_REGISTERS,
                  max_gap: int | None = None) -> list[tuple[int, int]]:
    """(address, count) requests covering every float at ``addresses``, as few as fit in
    ``max_registers``. ``max_gap`` bounds the unused registers a request may span
    (None: any that fit; 0: only adjacent values)."""
    blocks: list[tuple[int, int]] = []
    for address in sorted(addresses):
        if blocks:
            start, count = blocks[-1]
            gap = address - (start + count)
            if (max_gap is None or gap <= max_gap) and address + 2 - start <= max_registers:
                blocks[-1] = (start, address + 2 - start)
                continue
        blocks.append((address, 2))
    return blocks


def decode(registers: dict[int, str], start: int, data: bytes) -> dict[str, float]:
    """The quantities of ``registers`` inside a block of register bytes read from ``start``."""
    values = floats(data)
    out: dict[str, float] = {}
    for address, name in registers.items():
        offset = address - start
        if offset >= 0 and offset % 2 == 0 and offset // 2 < len(values):
            out[name] = values[offset // 2]
    return out


def check(chip: str, values: dict[str, float]) -> dict[str, float]:
    """Refuse what no meter measures: NaN or infinity, a negative voltage, current,
    frequency or energy counter, a power factor outside -1..1."""
    for name, value in values.items():
        if not math.isfinite(value):
            raise OutOfRangeError(f"{chip}: {name} is {value}")
        if name.startswith("power_factor"):
            if abs(value) > 1 + POWER_FACTOR_TOLERANCE:
                raise OutOfRangeError(f"{chip}: {name} {value} is outside -1..1")
        elif not name.startswith("active_power") and value < 0:
            raise OutOfRangeError(f"{chip}: {name} {value} is negative")
    return values


class _EastronMeter:
    REGISTERS: ClassVar[dict[int, str]] = {}
    CHIP: ClassVar[str] = "meter"
    DEFAULT_BAUDRATE: ClassVar[int] = 9600

    def __init__(self, port: SerialPort, unit: int = 1, *, timeout_s: float = 1.0,
                 retries: int = 1, max_registers: int = EASTRON_MAX_REGISTERS,
                 probe: bool = True) -> None:
        if isinstance(unit, bool) or not isinstance(unit, int) or not 1 <= unit <= 247:
            raise ConfigurationError(f"{self.CHIP}: Modbus unit id must be 1..247, not {unit!r}")
        if isinstance(max_registers, bool) or not isinstance(max_registers, int) \
                or max_registers % 2 or not 2 <= max_registers <= EASTRON_MAX_REGISTERS:
            raise ConfigurationError(
                f"{self.CHIP}: max_registers must be an even number from 2 to "
                f"{EASTRON_MAX_REGISTERS}, not {max_registers!r}")
        self.unit = unit
        self.chip = f"{self.CHIP} (unit {unit})"
        self.max_registers = max_registers
        self._client = RtuClient(port, timeout_s=timeout_s, retries=retries, chip=self.chip,
                                 default_baudrate=self.DEFAULT_BAUDRATE)
        self.plan = plan_requests(self.REGISTERS, max_registers=max_registers)
        if probe:
            self.reset()

    def reset(self) -> None:
        """Check that the meter answers (one request for the first value).

        The meter has nothing to re-initialise over Modbus; an unanswered probe raises
        ``DeviceNotFoundError`` naming the settings to check.
        """
        first = min(self.REGISTERS)
        try:
            self._client.read_input_registers(self.unit, first, 2)
        except DriverTimeoutError as exc:
            raise DeviceNotFoundError(
                f"{exc}; check the RS-485 wiring (A to A, B to B), the unit id and that the "
                f"port's baud rate and parity match the meter's set-up "
                f"(factory: {self.DEFAULT_BAUDRATE} 8N1)") from exc

    def read(self) -> dict[str, float]:
        """Every quantity of the meter, read fresh; see the class docstring for names."""
        try:
            return self._read_plan(self.plan)
        except ModbusExceptionError as exc:
            tight = plan_requests(self.REGISTERS, max_registers=self.max_registers, max_gap=0)
            if exc.code != ILLEGAL_DATA_ADDRESS or tight == self.plan:
                raise
        values = self._read_plan(tight)
        self.plan = tight
        return values

    def _read_plan(self, plan: list[tuple[int, int]]) -> dict[str, float]:
        values: dict[str, float] = {}
        for address, count in plan:
            data = self._client.read_input_registers(self.unit, address, count)
            values.update(decode(self.REGISTERS, address, data))
        return check(self.chip, values)

    def close(self) -> None:
        """Nothing to stop: the meter measures on its own, and the port is the caller's."""


class SDM120(_EastronMeter):
    """Single-phase meter. ``read()`` gives ``voltage_volts``, ``current_amperes``,
    ``active_power_watts`` (negative when exporting), ``power_factor`` (signed),
    ``frequency_hertz``, ``energy_import_kwh``, ``energy_export_kwh``."""

    REGISTERS = SDM120_REGISTERS
    CHIP = "SDM120"
    DEFAULT_BAUDRATE = 2400


class SDM630(_EastronMeter):
    """Three-phase meter. ``read()`` gives per phase (N = 1, 2, 3) ``voltage_lN_volts``
    (line to neutral), ``current_lN_amperes``, ``active_power_lN_watts``,
    ``power_factor_lN``, and for the system ``active_power_watts``, ``power_factor``,
    ``frequency_hertz``, ``energy_import_kwh``, ``energy_export_kwh``."""

    REGISTERS = SDM630_REGISTERS
    CHIP = "SDM630"
    DEFAULT_BAUDRATE = 9600

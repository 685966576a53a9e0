"""Fake Eastron SDM120 / SDM630 meters: Modbus RTU slaves on a pseudo-terminal.

They parse requests from the byte stream as a real slave does (silence is not visible on a
pty, so a frame is recognised by its length and CRC), ignore frames for other unit ids and
frames with a bad CRC (no answer: the master times out), answer exception 1 for an unknown
function and exception 2 for addresses outside the register map, and integrate energy from
power over monotonic time.
"""

from __future__ import annotations

import struct
import time
from typing import ClassVar

from drivers.fake.serial import FakeSerialDevice
from drivers.modbus import EXCEPTION_FLAG, READ_INPUT_REGISTERS, crc16, with_crc
from drivers.sdm import SDM120_REGISTERS, SDM630_REGISTERS

MAP_END = 0x0180
"""Registers at or beyond this are outside the fake's map: exception 2."""
MAX_COUNT = 80


class _FakeEastron(FakeSerialDevice):
    REGISTERS: ClassVar[dict[int, str]] = {}

    def __init__(self, unit: int = 1) -> None:
        super().__init__()
        self.unit = unit
        self.requests: list[tuple[int, int, int]] = []
        """(function, address, count) of every request addressed to this unit."""
        self._inbox = bytearray()
        self._energy_mono = time.monotonic()
        self._energy: dict[str, float] = {}

    def _power_w(self) -> float:
        return self.value("active_power_watts")

    def _register_value(self, name: str) -> float:
        if name == "energy_import_kwh":
            return self.value(name) + self._energy.get(name, 0.0)
        return self.value(name)

    def _integrate(self) -> None:
        now = time.monotonic()
        if not self.faults.stuck:
            kwh = max(0.0, self._power_w()) * (now - self._energy_mono) / 3.6e6
            self._energy["energy_import_kwh"] = self._energy.get("energy_import_kwh", 0.0) + kwh
        self._energy_mono = now

    def registers(self, address: int, count: int) -> bytes:
        """The bytes of ``count`` registers from ``address``, as the meter holds them."""
        self._integrate()
        words = bytearray()
        for reg in range(address, address + count):
            base = reg - (reg - address) % 2 if (reg - address) % 2 else reg
            if base in self.REGISTERS and reg == base:
                words += struct.pack(">f", self._register_value(self.REGISTERS[base]))
            elif reg == base:
                words += struct.pack(">f", 0.0)
        return bytes(words[: 2 * count])

    def on_bytes(self, data: bytes) -> None:
        self._inbox += data
        while len(self._inbox) >= 8:
            frame = bytes(self._inbox[:8])
            if crc16(frame[:6]) != (frame[6] | frame[7] << 8):
                del self._inbox[0]  # noise or a damaged request: resynchronise, stay quiet
                continue
            del self._inbox[:8]
            unit, function, address, count = struct.unpack(">BBHH", frame[:6])
            if unit != self.unit:
                continue
            self.requests.append((function, address, count))
            self.send(self._answer(function, address, count))

    def _answer(self, function: int, address: int, count: int) -> bytes:
        if function != READ_INPUT_REGISTERS:
            return self._exception(function, 1)
        if not 1 <= count <= MAX_COUNT:
            return self._exception(function, 3)
        if address + count > MAP_END:
            return self._exception(function, 2)
        body = self.registers(address, count)
        reply = with_crc(bytes((self.unit, function, len(body))) + body)
        if self.faults.bad_crc:
            reply = reply[:-1] + bytes((reply[-1] ^ 0x5A,))
        return reply

    def _exception(self, function: int, code: int) -> bytes:
        return with_crc(bytes((self.unit, function | EXCEPTION_FLAG, code)))


class FakeSDM120(_FakeEastron):
    REGISTERS = SDM120_REGISTERS
    QUANTITIES: ClassVar[dict[str, float]] = {
        "voltage_volts": 230.0,
        "current_amperes": 0.0,
        "active_power_watts": 0.0,
        "power_factor": 1.0,
        "frequency_hertz": 50.0,
        "energy_import_kwh": 0.0,
        "energy_export_kwh": 0.0,
    }


class FakeSDM630(_FakeEastron):
    REGISTERS = SDM630_REGISTERS
    QUANTITIES: ClassVar[dict[str, float]] = {
        **{f"voltage_l{p}_volts": 230.0 for p in (1, 2, 3)},
        **{f"current_l{p}_amperes": 0.0 for p in (1, 2, 3)},
        **{f"active_power_l{p}_watts": 0.0 for p in (1, 2, 3)},
        **{f"power_factor_l{p}": 1.0 for p in (1, 2, 3)},
        "active_power_watts": 0.0,
        "power_factor": 1.0,
        "frequency_hertz": 50.0,
        "energy_import_kwh": 0.0,
        "energy_export_kwh": 0.0,
    }

    def _register_value(self, name: str) -> float:
        if name == "active_power_watts":
            return sum(self.value(f"active_power_l{p}_watts") for p in (1, 2, 3))
        return super()._register_value(name)

    def _power_w(self) -> float:
        return sum(self.value(f"active_power_l{p}_watts") for p in (1, 2, 3))

"""Fake Eastron SDM120 / SDM630 meters: Modbus RTU slaves on a pseudo-terminal.

Like a real slave they take requests from the byte stream (a request is complete by its
function's length; a pause in the stream, standing in for the t3.5 silence a pty cannot
carry, ends whatever was incomplete), stay silent for other unit ids, for broadcasts and
for a request with a bad CRC (the master times out, as on a real line), and answer:

- function 0x04 (read input registers) with the registers as float32, high word first;
- exception 1 (illegal function) for any other function code;
- exception 2 (illegal data address) for an odd address or quantity (Eastron values are
  whole float pairs) or a range outside the meter's register map; with
  ``strict_map=True`` also for a range that spans registers the map does not define;
- exception 3 (illegal data value) for a quantity outside 1..80 (Eastron's 40 values).

The meter measures voltage, current, power factor and frequency (``set()`` them); it
derives power (V·I·PF per phase, the sum for the system), apparent and reactive power,
the system power factor (P/S) and the energy counters, which integrate power over the
monotonic clock (import while P > 0, export while P < 0) unless
``accumulate_energy=False``. ``set(energy_import_kwh=...)`` sets a counter as an installer
would find it.
"""

from __future__ import annotations

import math
import struct
import time
from collections.abc import Callable
from functools import partial
from typing import ClassVar, Self

from drivers.fake.base import RecentLog
from drivers.fake.serial import FakeSerialDevice
from drivers.modbus import EXCEPTION_FLAG, READ_INPUT_REGISTERS, crc_ok, with_crc

MAX_COUNT = 80
FRAME_GAP_S = 0.02
"""A pause this long in the request stream ends a frame (t3.5 cannot be seen on a pty)."""
_FIXED_LENGTH_FUNCTIONS = (0x01, 0x02, 0x03, 0x04, 0x05, 0x06)
_WRITE_MULTIPLE_FUNCTIONS = (0x0F, 0x10)

Registers = dict[int, Callable[[], float]]


class _FakeEastron(FakeSerialDevice):
    BLOCKS: ClassVar[tuple[tuple[int, int], ...]] = ()
    """(first, end) register ranges that exist in the meter's map."""

    def __init__(self, *, unit: int = 1, strict_map: bool = False,
                 accumulate_energy: bool = True) -> None:
        super().__init__()
        if not 1 <= unit <= 247:
            raise ValueError(f"unit must be 1..247, not {unit}")
        self.unit = unit
        self.strict_map = strict_map
        self.accumulate_energy = accumulate_energy
        self.requests: RecentLog[tuple[int, int, int]] = RecentLog()
        """(function, address, count) of every valid request addressed to this unit."""
        self._inbox = bytearray()
        self._last_rx = -math.inf
        self._energy_mono = time.monotonic()

    def __enter__(self) -> Self:
        self.start()
        return self

    # -- physics ---------------------------------------------------------------------

    def system_power_w(self) -> float:
        raise NotImplementedError

    def register_map(self) -> Registers:
        raise NotImplementedError

    def _integrate(self) -> None:
        now = time.monotonic()
        dt, self._energy_mono = now - self._energy_mono, now
        if not self.accumulate_energy or self.faults.stuck:
            return
        kwh = self.system_power_w() * dt / 3.6e6
        counter = "energy_import_kwh" if kwh > 0 else "energy_export_kwh"
        with self._lock:
            self._values[counter] += abs(kwh)

    def registers(self, address: int, count: int) -> bytes:
        """The bytes of ``count`` registers from ``address`` as the meter holds them:
        float32 of each quantity, 0.0 in reserved registers."""
        self._integrate()
        values = self.register_map()
        out = bytearray()
        for reg in range(address, address + count, 2):
            source = values.get(reg)
            out += struct.pack(">f", source() if source is not None else 0.0)
        return bytes(out)

    # -- bus side --------------------------------------------------------------------

    def on_bytes(self, data: bytes) -> None:
        now = time.monotonic()
        if now - self._last_rx > FRAME_GAP_S:
            self._inbox.clear()  # the silence ended whatever was incomplete
        self._last_rx = now
        self._inbox += data
        while len(self._inbox) >= 2:
            length = self._request_length()
            if length is None or len(self._inbox) < length:
                return
            frame = bytes(self._inbox[:length])
            del self._inbox[:length]
            if not crc_ok(frame):
                self._inbox.clear()  # a damaged frame is dropped with all that follows it
                return
            if frame[0] == self.unit:
                self._answer(frame)

    def _request_length(self) -> int | None:
        function = self._inbox[1]
        if function in _FIXED_LENGTH_FUNCTIONS:
            return 8
        if function in _WRITE_MULTIPLE_FUNCTIONS:
            return 9 + self._inbox[6] if len(self._inbox) >= 7 else None
        return len(self._inbox)  # unknown layout: the frame is what came in one burst

    def _answer(self, frame: bytes) -> None:
        function = frame[1]
        if function != READ_INPUT_REGISTERS:
            self.send(self._exception(function, 1))
            return
        address, count = struct.unpack(">HH", frame[2:6])
        self.requests.append((function, address, count))
        if not 1 <= count <= MAX_COUNT:
            self.send(self._exception(function, 3))
        elif address % 2 or count % 2 or not self._mapped(address, count):
            self.send(self._exception(function, 2))
        else:
            body = self.registers(address, count)
            reply = with_crc(bytes((self.unit, function, len(body))) + body)
            if self.faults.bad_crc:
                reply = reply[:-1] + bytes((reply[-1] ^ 0x5A,))
            self.send(reply)

    def _mapped(self, address: int, count: int) -> bool:
        end = address + count
        if not any(first <= address and end <= last for first, last in self.BLOCKS):
            return False
        if self.strict_map:
            defined = self.register_map()
            return all(reg in defined for reg in range(address, end, 2))
        return True

    def _exception(self, function: int, code: int) -> bytes:
        reply = with_crc(bytes((self.unit, function | EXCEPTION_FLAG, code)))
        if self.faults.bad_crc:
            reply = reply[:-1] + bytes((reply[-1] ^ 0x5A,))
        return reply


def _phase(voltage: float, current: float, pf: float) -> tuple[float, float, float, float]:
    """Active power, apparent power, reactive power, phase angle (degrees) of one phase."""
    apparent = voltage * current
    active = apparent * pf
    reactive = math.sqrt(max(0.0, apparent * apparent - active * active))
    angle = math.degrees(math.acos(max(-1.0, min(1.0, pf))))
    return active, apparent, reactive, angle


class FakeSDM120(_FakeEastron):
    QUANTITIES: ClassVar[dict[str, float]] = {
        "voltage_volts": 230.0,
        "current_amperes": 0.0,
        "power_factor": 1.0,
        "frequency_hertz": 50.0,
        "energy_import_kwh": 0.0,
        "energy_export_kwh": 0.0,
    }
    BLOCKS = ((0x0000, 0x0050), (0x0156, 0x015A))

    def _phase(self) -> tuple[float, float, float, float]:
        return _phase(self.value("voltage_volts"), self.value("current_amperes"),
                      self.value("power_factor"))

    def system_power_w(self) -> float:
        return self._phase()[0]

    def register_map(self) -> Registers:
        v = self.value
        return {
            0x0000: lambda: v("voltage_volts"),
            0x0006: lambda: v("current_amperes"),
            0x000C: lambda: self._phase()[0],
            0x0012: lambda: self._phase()[1],
            0x0018: lambda: self._phase()[2],
            0x001E: lambda: v("power_factor"),
            0x0024: lambda: self._phase()[3],
            0x0046: lambda: v("frequency_hertz"),
            0x0048: lambda: v("energy_import_kwh"),
            0x004A: lambda: v("energy_export_kwh"),
            0x004C: lambda: 0.0,
            0x004E: lambda: 0.0,
            0x0156: lambda: v("energy_import_kwh") + v("energy_export_kwh"),
            0x0158: lambda: 0.0,
        }


_PHASES = (1, 2, 3)


class FakeSDM630(_FakeEastron):
    QUANTITIES: ClassVar[dict[str, float]] = {
        **{f"voltage_l{p}_volts": 230.0 for p in _PHASES},
        **{f"current_l{p}_amperes": 0.0 for p in _PHASES},
        **{f"power_factor_l{p}": 1.0 for p in _PHASES},
        "frequency_hertz": 50.0,
        "energy_import_kwh": 0.0,
        "energy_export_kwh": 0.0,
    }
    BLOCKS = ((0x0000, 0x0050), (0x0054, 0x0060), (0x00C8, 0x00D0), (0x0156, 0x015A))

    def _phase(self, p: int) -> tuple[float, float, float, float]:
        return _phase(self.value(f"voltage_l{p}_volts"), self.value(f"current_l{p}_amperes"),
                      self.value(f"power_factor_l{p}"))

    def _phase_value(self, p: int, index: int) -> float:
        return self._phase(p)[index]

    def system_power_w(self) -> float:
        return sum(self._phase(p)[0] for p in _PHASES)

    def _system_power_factor(self) -> float:
        apparent = sum(self._phase(p)[1] for p in _PHASES)
        return self.system_power_w() / apparent if apparent > 0 else 1.0

    def register_map(self) -> Registers:
        v = self.value
        regs: Registers = {}
        for i, p in enumerate(_PHASES):
            regs[0x0000 + 2 * i] = partial(v, f"voltage_l{p}_volts")
            regs[0x0006 + 2 * i] = partial(v, f"current_l{p}_amperes")
            regs[0x000C + 2 * i] = partial(self._phase_value, p, 0)
            regs[0x0012 + 2 * i] = partial(self._phase_value, p, 1)
            regs[0x0018 + 2 * i] = partial(self._phase_value, p, 2)
            regs[0x001E + 2 * i] = partial(v, f"power_factor_l{p}")
            regs[0x0024 + 2 * i] = partial(self._phase_value, p, 3)
        regs.update({
            0x002A: lambda: sum(v(f"voltage_l{p}_volts") for p in _PHASES) / 3,
            0x002E: lambda: sum(v(f"current_l{p}_amperes") for p in _PHASES) / 3,
            0x0030: lambda: sum(v(f"current_l{p}_amperes") for p in _PHASES),
            0x0034: self.system_power_w,
            0x0038: lambda: sum(self._phase(p)[1] for p in _PHASES),
            0x003C: lambda: sum(self._phase(p)[2] for p in _PHASES),
            0x003E: self._system_power_factor,
            0x0042: lambda: math.degrees(math.acos(max(-1.0, min(1.0,
                                                                 self._system_power_factor())))),
            0x0046: lambda: v("frequency_hertz"),
            0x0048: lambda: v("energy_import_kwh"),
            0x004A: lambda: v("energy_export_kwh"),
            0x004C: lambda: 0.0,
            0x004E: lambda: 0.0,
            0x0156: lambda: v("energy_import_kwh") + v("energy_export_kwh"),
            0x0158: lambda: 0.0,
        })
        return regs

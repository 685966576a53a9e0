"""A bus-level SCD4x: 16-bit commands, execution times, modes, periodic results, CRCs.

What it emulates (Sensirion SCD4x datasheet v1.3):

- idle and periodic measurement modes; a command the current mode does not allow
  (Table 9, "During meas.") is not acknowledged, nor is an unknown command;
- execution times: the chip does not acknowledge a read header before the command's
  execution time has passed, nor anything during the 500 ms after
  stop_periodic_measurement, the reinit time, or the power-up time after ``power_cycle()``;
- one result per period (5 s, or ``period_s`` for fast tests) on ``time.monotonic``, held
  in a one-deep buffer: get_data_ready_status reports it, read_measurement empties it, and
  read_measurement with an empty buffer is not acknowledged (§3.5.2);
- raw words computed from the physical values by inverting the datasheet's formulas,
  rounded to the chip's 16-bit words, each followed by its CRC-8.

Faults: ``nack`` (nothing acknowledged), ``bad_crc`` (the last word of each answer carries
a wrong CRC), ``stuck`` (results stop following ``set()``), ``delay_s`` (each period takes
that much longer, so results come late), ``wrong_id`` (a chip that does not speak
Sensirion words answers get_serial_number with bytes whose CRCs are all wrong).
"""

from __future__ import annotations

import math
import time
from typing import ClassVar

from drivers.fake.base import RecentLog
from drivers.fake.i2c import FakeI2CDevice, nack
from drivers.scd4x import (
    COMMANDS,
    DEFAULT_ADDRESS,
    GET_DATA_READY_STATUS,
    GET_SERIAL_NUMBER,
    READ_MEASUREMENT,
    REINIT,
    SIGNAL_UPDATE_INTERVAL_S,
    START_PERIODIC_MEASUREMENT,
    STOP_PERIODIC_MEASUREMENT,
    Command,
)
from drivers.sensirion import pack_words

POWER_UP_TIME_S = 1.0
"""§3.1: after power-up the chip needs 1000 ms to reach the idle state."""

DATA_READY = 0x8006
NOT_READY = 0x8000
"""Status words as the chip sends them; only their low 11 bits carry meaning (§3.8)."""

EXAMPLE_SERIAL_NUMBER = 273_325_796_834_238
"""The serial number of the datasheet's get_serial_number example (§3.9)."""


def raw_co2(ppm: float) -> int:
    return max(0, min(0xFFFF, round(ppm)))


def raw_temperature(celsius: float) -> int:
    """Inverse of T = -45 + 175 * word / 65535, clipped to the 16-bit word."""
    return max(0, min(0xFFFF, round((celsius + 45.0) * 65535.0 / 175.0)))


def raw_humidity(percent: float) -> int:
    """Inverse of RH = 100 * word / 65535, clipped to the 16-bit word."""
    return max(0, min(0xFFFF, round(percent * 65535.0 / 100.0)))


class FakeSCD4x(FakeI2CDevice):
    QUANTITIES: ClassVar[dict[str, float]] = {
        "co2_ppm": 420.0,
        "temperature_celsius": 21.0,
        "relative_humidity_percent": 45.0,
    }

    def __init__(
        self,
        address: int = DEFAULT_ADDRESS,
        *,
        period_s: float = SIGNAL_UPDATE_INTERVAL_S,
        stop_time_s: float = STOP_PERIODIC_MEASUREMENT.execution_time_s,
        reinit_time_s: float = REINIT.execution_time_s,
        power_up_time_s: float = POWER_UP_TIME_S,
        serial_number: int = EXAMPLE_SERIAL_NUMBER,
        measuring: bool = False,
    ) -> None:
        """``measuring=True`` starts in periodic mode, as a chip a previous owner left running."""
        super().__init__(address)
        self.period_s = period_s
        self.stop_time_s = stop_time_s
        self.reinit_time_s = reinit_time_s
        self.power_up_time_s = power_up_time_s
        self.serial_number = serial_number
        self.commands: RecentLog[str] = RecentLog()
        """Names of the commands the chip accepted, in order."""
        self.refused: RecentLog[str] = RecentLog()
        """Names (or hex codes) of the commands the chip did not acknowledge."""
        self._periodic = False
        self._busy_until = 0.0
        self._pending: Command | None = None
        self._reply_at = 0.0
        self._buffer: tuple[int, int, int] | None = None
        self._period_start = 0.0
        self._results_taken = 0
        if measuring:
            self._start_periodic(time.monotonic())

    @property
    def periodic(self) -> bool:
        """Whether periodic measurement is running."""
        with self._lock:
            return self._periodic

    def power_cycle(self) -> None:
        """Supply lost and back: idle, nothing buffered, deaf for the power-up time."""
        with self._lock:
            self._periodic = False
            self._buffer = None
            self._pending = None
            self._busy_until = time.monotonic() + self.power_up_time_s

    def set(self, **values: float) -> None:
        # A result completed before this call was measured with the old values, and a
        # stuck element keeps the values it had when it got stuck, not these.
        with self._lock:
            self._advance(time.monotonic())
            if self.faults.stuck:
                self.value("co2_ppm")
            super().set(**values)

    # The bus side.

    def i2c_write(self, data: bytes) -> None:
        with self._lock:
            if self.faults.nack:
                raise nack()
            now = time.monotonic()
            if now < self._busy_until:
                raise nack()
            self._advance(now)
            command = COMMANDS.get(int.from_bytes(data[:2], "big")) if len(data) == 2 else None
            if command is None:
                self.refused.append(data.hex())
                raise nack()
            if self._periodic and not command.allowed_in_periodic:
                self.refused.append(command.name)
                raise nack()
            self.commands.append(command.name)
            self._pending = None
            if command is START_PERIODIC_MEASUREMENT:
                self._start_periodic(now)
            elif command is STOP_PERIODIC_MEASUREMENT:
                self._periodic = False
                self._buffer = None
                self._busy_until = now + self.stop_time_s
            elif command is REINIT:
                self._busy_until = now + self.reinit_time_s
            else:
                self._pending = command
                self._reply_at = now + command.execution_time_s

    def i2c_read(self, length: int) -> bytes:
        with self._lock:
            if self.faults.nack:
                raise nack()
            now = time.monotonic()
            if now < self._busy_until or self._pending is None or now < self._reply_at:
                raise nack()
            self._advance(now)
            command, self._pending = self._pending, None
            reply = self._reply(command)
            if len(reply) < length:
                reply += b"\xff" * (length - len(reply))
            return reply[:length]

    # The chip's insides.

    def _reply(self, command: Command) -> bytes:
        if command is GET_SERIAL_NUMBER:
            if self.faults.wrong_id:
                return b"\xff" * 9
            words = [(self.serial_number >> shift) & 0xFFFF for shift in (32, 16, 0)]
        elif command is GET_DATA_READY_STATUS:
            words = [DATA_READY if self._buffer is not None else NOT_READY]
        elif command is READ_MEASUREMENT:
            if self._buffer is None:
                raise nack()
            words, self._buffer = list(self._buffer), None
        else:  # pragma: no cover - every command with a reply is listed above
            raise nack()
        reply = bytearray(pack_words(words))
        if self.faults.bad_crc:
            reply[-1] ^= 0xFF
        return bytes(reply)

    def _start_periodic(self, now: float) -> None:
        self._periodic = True
        self._buffer = None
        self._period_start = now
        self._results_taken = 0

    def _advance(self, now: float) -> None:
        """Complete the results whose period has ended since the last look."""
        if not self._periodic:
            return
        period = self.period_s + self.faults.delay_s
        completed = math.floor((now - self._period_start) / period)
        if completed > self._results_taken:
            self._results_taken = completed
            self._buffer = (
                raw_co2(self.value("co2_ppm")),
                raw_temperature(self.value("temperature_celsius")),
                raw_humidity(self.value("relative_humidity_percent")),
            )

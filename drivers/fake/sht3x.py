"""Bus-level emulation of a Sensirion SHT3x-DIS (datasheet SHT3x-DIS).

What it does as the chip does: 16-bit commands; single-shot measurements that take the
typical duration (table 4) during which the chip acknowledges nothing; the read header
NACKed when no result is pending (section 4.4) and the result gone once read; raw
values quantised from the physical values by inverting the section 4.13 formulas; a
CRC-8 after every word; the status register (table 18) with its reset, heater and
command-error bits. Clock-stretching commands hold the read until the result is ready.
Periodic and ART modes and the alert limits are not emulated: they answer as an unknown
command (NACK, command-status bit set).

Faults: ``nack`` (nothing acknowledged), ``bad_crc`` (every CRC sent is wrong),
``stuck`` (readings stop following ``set()``), ``delay_s`` (measurements take that much
longer), ``wrong_id`` (another chip: takes writes, never answers a read).
"""

from __future__ import annotations

import time
from typing import ClassVar

from drivers.fake.i2c import FakeI2CDevice, nack
from drivers.sensirion import pack_words

# Typical measurement durations, table 4 (the driver waits the maximum).
_MEASUREMENTS: dict[int, tuple[float, bool]] = {
    0x2400: (0.0125, False),  # high repeatability, no clock stretching
    0x240B: (0.0045, False),  # medium
    0x2416: (0.0025, False),  # low
    0x2C06: (0.0125, True),  # high repeatability, clock stretching
    0x2C0D: (0.0045, True),
    0x2C10: (0.0025, True),
}
_READ_STATUS = 0xF32D
_CLEAR_STATUS = 0x3041
_SOFT_RESET = 0x30A2
_BREAK = 0x3093
_HEATER_ENABLE = 0x306D
_HEATER_DISABLE = 0x3066

_SOFT_RESET_TIME_S = 0.0005  # typical t_SR
_STATUS_AFTER_RESET = 0x8010  # alert pending + system reset detected (table 18 defaults)
_STATUS_ALERT_PENDING = 0x8000
_STATUS_HEATER = 0x2000
_STATUS_RH_ALERT = 0x0800
_STATUS_T_ALERT = 0x0400
_STATUS_RESET_DETECTED = 0x0010
_STATUS_COMMAND_FAILED = 0x0002


def raw_temperature(celsius: float) -> int:
    """Inverse of T = -45 + 175 * S_T / 65535, rounded and clipped as the ADC would."""
    return min(max(round((celsius + 45.0) * 65535 / 175.0), 0), 65535)


def raw_humidity(percent: float) -> int:
    """Inverse of RH = 100 * S_RH / 65535."""
    return min(max(round(percent * 65535 / 100.0), 0), 65535)


class FakeSHT3x(FakeI2CDevice):
    QUANTITIES: ClassVar[dict[str, float]] = {
        "temperature_celsius": 22.0,
        "relative_humidity_percent": 45.0,
    }

    def __init__(self, address: int = 0x44) -> None:
        super().__init__(address)
        self.status = _STATUS_AFTER_RESET
        self._busy_until = 0.0
        self._reply: bytes | None = None
        self._reply_ready_at = 0.0
        self._stretch = False

    # The chip as seen from the bus.

    def i2c_write(self, data: bytes) -> None:
        with self._lock:
            if self.faults.nack or time.monotonic() < self._busy_until:
                raise nack()
            if self.faults.wrong_id:
                return
            if len(data) != 2:
                # Half a command, or a command with data this emulation does not take.
                self.status |= _STATUS_COMMAND_FAILED
                raise nack()
            self._command((data[0] << 8) | data[1])

    def i2c_read(self, length: int) -> bytes:
        with self._lock:
            if self.faults.nack or self.faults.wrong_id or self._reply is None:
                raise nack()
            wait = self._reply_ready_at - time.monotonic()
            if wait > 0:
                if not self._stretch:
                    raise nack()
                time.sleep(wait)
            reply, self._reply = self._reply, None
        if self.faults.bad_crc:
            reply = bytes(b ^ 0xFF if i % 3 == 2 else b for i, b in enumerate(reply))
        # Past the last CRC nobody drives SDA: the master reads the pull-ups.
        return (reply + b"\xff" * length)[:length]

    # Commands.

    def _command(self, code: int) -> None:
        now = time.monotonic()
        self._reply = None
        self.status &= ~_STATUS_COMMAND_FAILED
        if code in _MEASUREMENTS:
            duration, self._stretch = _MEASUREMENTS[code]
            duration += self.faults.delay_s
            self._reply = pack_words(
                (
                    raw_temperature(self.value("temperature_celsius")),
                    raw_humidity(self.value("relative_humidity_percent")),
                )
            )
            self._reply_ready_at = self._busy_until = now + duration
        elif code == _READ_STATUS:
            self._stretch = False
            self._reply = pack_words((self.status,))
            self._reply_ready_at = now
        elif code == _CLEAR_STATUS:
            self.status &= ~(
                _STATUS_ALERT_PENDING | _STATUS_RH_ALERT | _STATUS_T_ALERT | _STATUS_RESET_DETECTED
            )
        elif code == _SOFT_RESET:
            self.power_on_reset()
            self._busy_until = now + _SOFT_RESET_TIME_S
        elif code == _HEATER_ENABLE:
            self.status |= _STATUS_HEATER
        elif code == _HEATER_DISABLE:
            self.status &= ~_STATUS_HEATER
        elif code == _BREAK:
            pass
        else:
            self.status |= _STATUS_COMMAND_FAILED
            raise nack()

    def power_on_reset(self) -> None:
        """What a supply dip does: status back to its defaults, any result lost."""
        with self._lock:
            self.status = _STATUS_AFTER_RESET
            self._reply = None
            self._busy_until = 0.0

    @property
    def measuring(self) -> bool:
        return time.monotonic() < self._busy_until

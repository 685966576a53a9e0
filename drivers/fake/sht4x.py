"""Bus-level emulation of a Sensirion SHT4x (datasheet SHT4x).

As the chip does: one-byte commands; measurements that take the typical duration of the
system timing table, during which nothing is acknowledged (the SHT4x never
clock-stretches); the read header NACKed while no reply is pending, the reply gone once
read; raw values quantised from the physical values by inverting the datasheet's
conversion formulas (RH = -6 + 125 * S / 65535, so 0..100 %RH maps into the middle of
the raw range); a CRC-8 after every word; the serial number; soft reset. Heater
commands heat for their 1 s or 0.1 s and then measure; the heat itself is not modelled.

Faults: ``nack`` (nothing acknowledged), ``bad_crc`` (every CRC sent is wrong),
``stuck`` (readings stop following ``set()``), ``delay_s`` (measurements take that much
longer), ``wrong_id`` (another chip: takes writes, never answers a read).
"""

from __future__ import annotations

import time
from typing import ClassVar

from drivers.fake.i2c import FakeI2CDevice, nack
from drivers.sensirion import pack_words

# Command -> busy time before the reply is ready (typical values).
_MEASUREMENTS: dict[int, float] = {
    0xFD: 0.0069,  # high precision
    0xF6: 0.0037,  # medium precision
    0xE0: 0.0013,  # lowest precision
    0x39: 1.0 + 0.0069,  # heater 200 mW for 1 s, then a high-precision measurement
    0x32: 0.1 + 0.0069,  # 200 mW, 0.1 s
    0x2F: 1.0 + 0.0069,  # 110 mW, 1 s
    0x24: 0.1 + 0.0069,  # 110 mW, 0.1 s
    0x1E: 1.0 + 0.0069,  # 20 mW, 1 s
    0x15: 0.1 + 0.0069,  # 20 mW, 0.1 s
}
_READ_SERIAL_NUMBER = 0x89
_SOFT_RESET = 0x94
_SERIAL_NUMBER_TIME_S = 0.0002
_SOFT_RESET_TIME_S = 0.0005


def raw_temperature(celsius: float) -> int:
    """Inverse of T = -45 + 175 * S_T / 65535, rounded and clipped as the ADC would."""
    return min(max(round((celsius + 45.0) * 65535 / 175.0), 0), 65535)


def raw_humidity(percent: float) -> int:
    """Inverse of RH = -6 + 125 * S_RH / 65535."""
    return min(max(round((percent + 6.0) * 65535 / 125.0), 0), 65535)


class FakeSHT4x(FakeI2CDevice):
    QUANTITIES: ClassVar[dict[str, float]] = {
        "temperature_celsius": 22.0,
        "relative_humidity_percent": 45.0,
    }

    def __init__(self, address: int = 0x44, *, serial_number: int = 0x1B2C3D4E) -> None:
        super().__init__(address)
        self.serial_number = serial_number
        self._busy_until = 0.0
        self._reply: bytes | None = None

    def i2c_write(self, data: bytes) -> None:
        with self._lock:
            if self.faults.nack or time.monotonic() < self._busy_until:
                raise nack()
            if self.faults.wrong_id:
                return
            if len(data) != 1:
                raise nack()
            self._command(data[0])

    def i2c_read(self, length: int) -> bytes:
        with self._lock:
            busy = time.monotonic() < self._busy_until
            if self.faults.nack or self.faults.wrong_id or busy or self._reply is None:
                raise nack()
            reply, self._reply = self._reply, None
        if self.faults.bad_crc:
            reply = bytes(b ^ 0xFF if i % 3 == 2 else b for i, b in enumerate(reply))
        return (reply + b"\xff" * length)[:length]

    def _command(self, code: int) -> None:
        now = time.monotonic()
        self._reply = None
        if code in _MEASUREMENTS:
            self._reply = pack_words(
                (
                    raw_temperature(self.value("temperature_celsius")),
                    raw_humidity(self.value("relative_humidity_percent")),
                )
            )
            self._busy_until = now + _MEASUREMENTS[code] + self.faults.delay_s
        elif code == _READ_SERIAL_NUMBER:
            self._reply = pack_words(
                ((self.serial_number >> 16) & 0xFFFF, self.serial_number & 0xFFFF)
            )
            self._busy_until = now + _SERIAL_NUMBER_TIME_S
        elif code == _SOFT_RESET:
            self._busy_until = now + _SOFT_RESET_TIME_S
        else:
            raise nack()

    def power_on_reset(self) -> None:
        """What a supply dip does: any pending reply is lost."""
        with self._lock:
            self._reply = None
            self._busy_until = 0.0

    @property
    def measuring(self) -> bool:
        return time.monotonic() < self._busy_until

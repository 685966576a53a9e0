"""Sensirion SHT3x-DIS (SHT30/SHT31/SHT35) humidity and temperature sensor on I2C.

Source: Sensirion, Datasheet SHT3x-DIS. Each ``read()`` is one single-shot measurement
with clock stretching disabled (section 4.3, table 9): the Raspberry Pi's I2C
controller mishandles clock stretching, so the driver waits the datasheet's maximum
measurement duration instead and then reads; while the chip is still measuring it
NACKs the read header (section 4.4), and the read is retried until the deadline.
Both words of the reply carry a CRC-8 (section 4.12) and both are checked.
"""

from __future__ import annotations

import time
from typing import Literal

from drivers.errors import (
    BusError,
    ConfigurationError,
    DeviceNotFoundError,
    DriverTimeoutError,
    InvalidFrameError,
    WrongChipError,
)
from drivers.sensirion import unpack_words
from drivers.sensirion_i2c import Command, RdwrBus, SensirionI2C

CHIP = "SHT3x"

Repeatability = Literal["high", "medium", "low"]

# Single shot, clock stretching disabled (table 9), with the maximum measurement
# duration for each repeatability (table 4; 15.5 ms at high repeatability).
MEASURE_SINGLE_SHOT: dict[str, Command] = {
    "high": Command("single shot, high repeatability", b"\x24\x00", 2, 0.0155),
    "medium": Command("single shot, medium repeatability", b"\x24\x0b", 2, 0.0065),
    "low": Command("single shot, low repeatability", b"\x24\x16", 2, 0.0045),
}
READ_STATUS = Command("read out of status register", b"\xf3\x2d", 1)
CLEAR_STATUS = Command("clear status register", b"\x30\x41")
SOFT_RESET = Command("soft reset", b"\x30\xa2", 0, 0.0015)
"""Section 4.9; the chip needs at most 1.5 ms (t_SR, table 4) before it listens again."""

STATUS_RESERVED_ZERO = 0x500C
"""Status bits 14, 12, 3 and 2 read '0' on an SHT3x (table 18); anything else is another chip."""
STATUS_SYSTEM_RESET_DETECTED = 0x0010
STATUS_HEATER_ON = 0x2000

RAW_FULL_SCALE = 65535  # 2^16 - 1, the divisor in section 4.13


def temperature_celsius(raw: int) -> float:
    """Section 4.13: T = -45 + 175 * S_T / (2^16 - 1)."""
    return -45.0 + 175.0 * raw / RAW_FULL_SCALE


def relative_humidity_percent(raw: int) -> float:
    """Section 4.13: RH = 100 * S_RH / (2^16 - 1)."""
    return 100.0 * raw / RAW_FULL_SCALE


def convert(raw_t: int, raw_rh: int) -> dict[str, float]:
    """Physical values at the chip's resolution (table 1 and 2: 0.01 °C, 0.01 %RH); the 16-bit
    conversion's further digits carry no information and cost bytes on the uplink."""
    return {
        "temperature_celsius": round(temperature_celsius(raw_t), 2),
        "relative_humidity_percent": round(relative_humidity_percent(raw_rh), 2),
    }


def decode_measurement(data: bytes) -> dict[str, float]:
    """The 6-byte measurement reply (T word, CRC, RH word, CRC) to physical values.

    Raises ``ChecksumError`` if either CRC is wrong and ``InvalidFrameError`` if the
    reply is not exactly two words.
    """
    words = unpack_words(data, what=f"{CHIP} measurement")
    if len(words) != 2:
        raise InvalidFrameError(f"{CHIP} measurement: expected 2 words, got {len(words)}")
    return convert(*words)


class SHT3x:
    """One SHT3x on an open I2C bus (an ``smbus2.SMBus`` or the fake bus).

    ``timeout_s`` bounds each exchange from the moment its command was sent (at least
    the datasheet's maximum measurement duration for the chosen repeatability).
    Construction checks the chip by reading its status register.
    """

    def __init__(
        self,
        bus: RdwrBus,
        address: int = 0x44,
        *,
        repeatability: Repeatability = "high",
        timeout_s: float = 0.1,
    ) -> None:
        if repeatability not in MEASURE_SINGLE_SHOT:
            raise ConfigurationError(
                f"{CHIP}: repeatability must be one of {', '.join(MEASURE_SINGLE_SHOT)}, "
                f"not {repeatability!r}"
            )
        self._measure = MEASURE_SINGLE_SHOT[repeatability]
        if timeout_s < self._measure.duration_s:
            raise ConfigurationError(
                f"{CHIP}: timeout_s={timeout_s:g} is shorter than the "
                f"{self._measure.duration_s * 1000:g} ms a {repeatability}-repeatability "
                "measurement may take"
            )
        self.address = address
        self.timeout_s = timeout_s
        self._io = SensirionI2C(bus, address, CHIP)
        self.status = self._probe()

    def _probe(self) -> int:
        """Read the status register: a NACK on the command means nothing is there."""
        try:
            self._io.send(READ_STATUS)
        except BusError as exc:
            raise DeviceNotFoundError(f"no {CHIP} answers: {exc}") from exc
        return self._fetch_status()

    def _fetch_status(self) -> int:
        try:
            (status,) = self._io.fetch(READ_STATUS, deadline=self._deadline())
        except DriverTimeoutError as exc:
            raise WrongChipError(
                f"{self._io.where} takes commands but never answers the status read: "
                "not an SHT3x (an SHT4x or another chip at this address?)"
            ) from exc
        if status & STATUS_RESERVED_ZERO:
            raise WrongChipError(
                f"{self._io.where}: status 0x{status:04x} has reserved bits set: not an SHT3x"
            )
        return status

    def _deadline(self) -> float:
        return time.monotonic() + self.timeout_s

    def read(self) -> dict[str, float]:
        """One single-shot measurement: ``temperature_celsius``, ``relative_humidity_percent``."""
        raw_t, raw_rh = self._io.execute(self._measure, timeout_s=self.timeout_s)
        return convert(raw_t, raw_rh)

    def read_status(self) -> int:
        """The status register (table 18), e.g. to see whether the chip was reset."""
        self._io.send(READ_STATUS)
        self.status = self._fetch_status()
        return self.status

    def reset(self) -> None:
        """Soft reset (section 4.9), then check the chip answers again and clear its status.

        Use after the sensor came back (power loss, bus trouble); clearing the status
        lets a later ``read_status()`` tell a new reset (bit 4) from this one.
        """
        self._io.execute(SOFT_RESET, timeout_s=self.timeout_s)
        self._io.send(READ_STATUS)
        self.status = self._fetch_status()
        self._io.execute(CLEAR_STATUS, timeout_s=self.timeout_s)

    def close(self) -> None:
        """Nothing to stop: single-shot mode leaves the chip idle between reads."""

"""Sensirion SHT4x (SHT40/SHT41/SHT43/SHT45) humidity and temperature sensor on I2C.

Source: Sensirion, Datasheet SHT4x. Commands are single bytes ("command overview"). Each
``read()`` sends "measure T & RH" at the chosen precision, waits the datasheet's
maximum duration (system timing table: 8.3 ms at high precision), and reads 6 bytes: T word, CRC,
RH word, CRC. The chip NACKs the read header until it is done, so the read is retried
until the deadline. The chip does not clock-stretch.

Conversion ("conversion of signal output"): T = -45 + 175 * S_T / 65535 and
RH = -6 + 125 * S_RH / 65535, the latter cropped to 0..100 %RH as the datasheet
recommends (the linear formula runs from -6 to 119 %RH over the raw range).
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

CHIP = "SHT4x"

Precision = Literal["high", "medium", "low"]

# "Measure T & RH" without heater, with the maximum durations of the system timing table.
MEASURE: dict[str, Command] = {
    "high": Command("measure T & RH with high precision", b"\xfd", 2, 0.0083),
    "medium": Command("measure T & RH with medium precision", b"\xf6", 2, 0.0045),
    "low": Command("measure T & RH with lowest precision", b"\xe0", 2, 0.002),
}
READ_SERIAL_NUMBER = Command("read serial number", b"\x89", 2, 0.001)
SOFT_RESET = Command("soft reset", b"\x94", 0, 0.001)
"""The chip is ready again after at most 1 ms (system timing table)."""

RAW_FULL_SCALE = 65535  # 2^16 - 1


def temperature_celsius(raw: int) -> float:
    """Conversion of signal output: T = -45 + 175 * S_T / (2^16 - 1)."""
    return -45.0 + 175.0 * raw / RAW_FULL_SCALE


def relative_humidity_percent(raw: int) -> float:
    """Conversion of signal output: RH = -6 + 125 * S_RH / (2^16 - 1), cropped to 0..100 %RH.

    Readings below 0 or above 100 %RH are physically impossible; the datasheet says
    to crop them rather than report them.
    """
    return min(max(-6.0 + 125.0 * raw / RAW_FULL_SCALE, 0.0), 100.0)


def convert(raw_t: int, raw_rh: int) -> dict[str, float]:
    """Physical values at the chip's resolution (0.01 °C and 0.01 %RH at high
    repeatability); the 16-bit conversion's further digits carry no information and cost
    bytes on the uplink."""
    return {
        "temperature_celsius": round(temperature_celsius(raw_t), 2),
        "relative_humidity_percent": round(relative_humidity_percent(raw_rh), 2),
    }


def decode_measurement(data: bytes) -> dict[str, float]:
    """The 6-byte measurement reply to physical values; both CRCs are checked."""
    words = unpack_words(data, what=f"{CHIP} measurement")
    if len(words) != 2:
        raise InvalidFrameError(f"{CHIP} measurement: expected 2 words, got {len(words)}")
    return convert(*words)


def decode_serial_number(words: list[int]) -> int:
    """The two CRC-checked words of the serial number reply, most significant first."""
    if len(words) != 2:
        raise InvalidFrameError(f"{CHIP} serial number: expected 2 words, got {len(words)}")
    return (words[0] << 16) | words[1]


class SHT4x:
    """One SHT4x on an open I2C bus (an ``smbus2.SMBus`` or the fake bus).

    ``timeout_s`` bounds each exchange from the moment its command was sent (at least
    the datasheet's maximum duration for the chosen precision). Construction checks
    the chip by reading its serial number, kept in ``serial_number``.
    """

    def __init__(
        self,
        bus: RdwrBus,
        address: int = 0x44,
        *,
        precision: Precision = "high",
        timeout_s: float = 0.1,
    ) -> None:
        if precision not in MEASURE:
            raise ConfigurationError(
                f"{CHIP}: precision must be one of {', '.join(MEASURE)}, not {precision!r}"
            )
        self._measure = MEASURE[precision]
        if timeout_s < self._measure.duration_s:
            raise ConfigurationError(
                f"{CHIP}: timeout_s={timeout_s:g} is shorter than the "
                f"{self._measure.duration_s * 1000:g} ms a {precision}-precision "
                "measurement may take"
            )
        self.address = address
        self.timeout_s = timeout_s
        self._io = SensirionI2C(bus, address, CHIP)
        self.serial_number = self._probe()

    def _probe(self) -> int:
        """Read the serial number: a NACK on the command means nothing is there."""
        try:
            self._io.send(READ_SERIAL_NUMBER)
        except BusError as exc:
            raise DeviceNotFoundError(f"no {CHIP} answers: {exc}") from exc
        started = time.monotonic()
        time.sleep(READ_SERIAL_NUMBER.duration_s)
        try:
            words = self._io.fetch(READ_SERIAL_NUMBER, deadline=started + self.timeout_s)
        except DriverTimeoutError as exc:
            raise WrongChipError(
                f"{self._io.where} takes commands but never answers the serial-number "
                "read: not an SHT4x (an SHT3x or another chip at this address?)"
            ) from exc
        return decode_serial_number(words)

    def read(self) -> dict[str, float]:
        """One measurement: ``temperature_celsius``, ``relative_humidity_percent``."""
        raw_t, raw_rh = self._io.execute(self._measure, timeout_s=self.timeout_s)
        return convert(raw_t, raw_rh)

    def reset(self) -> None:
        """Soft reset, then re-read the serial number to check it is back."""
        self._io.execute(SOFT_RESET, timeout_s=self.timeout_s)
        self.serial_number = self._probe()

    def close(self) -> None:
        """Nothing to stop: the chip idles between single measurements."""

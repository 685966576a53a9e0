"""Sensirion SCD4x (SCD40/SCD41) photoacoustic CO2 sensor, with temperature and humidity.

Source: Sensirion "SCD4x Datasheet" (version 1.3, September 2022), cited below by section.
The chip speaks 16-bit commands, MSB first, not SMBus registers (§3.2), so every transfer
is a raw ``i2c_rdwr`` write, a wait of the command's execution time, then a raw read
(§3.3). Every word the chip sends is followed by a CRC-8, and every one is checked (§3.11).

The driver runs the chip in periodic measurement mode (one result every 5 s, §3.5.1) and
``read()`` returns the next result the chip has not handed out yet, so a value is never
read twice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

from smbus2 import i2c_msg

from drivers.errors import (
    BusError,
    ChecksumError,
    DeviceNotFoundError,
    DriverError,
    OutOfRangeError,
    WrongChipError,
)
from drivers.sensirion import unpack_words
from drivers.timing import poll_until

DEFAULT_ADDRESS = 0x62
"""§3, Table 8: the SCD4x has one fixed address."""

SIGNAL_UPDATE_INTERVAL_S = 5.0
"""§3.5.1: periodic measurement delivers a new result every 5 s."""

DEFAULT_TIMEOUT_S = 6.0
"""How long ``read()`` waits for a result: one period plus 20 % for the chip's own clock."""

DEFAULT_POLL_INTERVAL_S = 0.1

STOP_WAIT_S = 0.5
"""§3.5.3: the chip answers other commands only 500 ms after stop_periodic_measurement."""

REINIT_WAIT_S = 0.03
"""§3.4, Table 9 gives 20 ms for reinit; 10 ms more keeps clear of a slow part."""

CO2_OUTPUT_RANGE_PPM = 40_000
"""§1: the CO2 output range is 0 - 40'000 ppm; anything above is not a measurement."""

DATA_READY_MASK = 0x07FF
"""§3.8: data is ready when the least significant 11 bits of the status word are not 0."""


@dataclass(frozen=True)
class Command:
    """One SCD4x command as Table 9 (§3.4) lists it."""

    name: str
    code: int
    execution_time_s: float
    """Wait after the write before the chip acknowledges a read header (§3.3)."""
    reply_words: int
    """16-bit words (each followed by a CRC) the chip answers with; 0 = none."""
    allowed_in_periodic: bool
    """Table 9, column "During meas.": may it be sent while periodic measurement runs?"""

    def wire(self) -> bytes:
        return self.code.to_bytes(2, "big")


START_PERIODIC_MEASUREMENT = Command("start_periodic_measurement", 0x21B1, 0.0, 0, False)
READ_MEASUREMENT = Command("read_measurement", 0xEC05, 0.001, 3, True)
STOP_PERIODIC_MEASUREMENT = Command("stop_periodic_measurement", 0x3F86, STOP_WAIT_S, 0, True)
GET_DATA_READY_STATUS = Command("get_data_ready_status", 0xE4B8, 0.001, 1, True)
GET_SERIAL_NUMBER = Command("get_serial_number", 0x3682, 0.001, 3, False)
REINIT = Command("reinit", 0x3646, 0.02, 0, False)

COMMANDS: dict[int, Command] = {
    command.code: command
    for command in (
        START_PERIODIC_MEASUREMENT,
        READ_MEASUREMENT,
        STOP_PERIODIC_MEASUREMENT,
        GET_DATA_READY_STATUS,
        GET_SERIAL_NUMBER,
        REINIT,
    )
}


class RdwrBus(Protocol):
    """The one ``smbus2.SMBus`` method this driver uses."""

    def i2c_rdwr(self, *i2c_msgs: i2c_msg) -> None: ...


# Pure arithmetic (§3.5.2, Table 11).


def temperature_from_raw(raw: int) -> float:
    """T = -45 + 175 * word / (2^16 - 1), in °C."""
    return -45.0 + 175.0 * raw / 65535.0


def humidity_from_raw(raw: int) -> float:
    """RH = 100 * word / (2^16 - 1), in %."""
    return 100.0 * raw / 65535.0


def decode_measurement(words: list[int], where: str = "SCD4x") -> dict[str, float]:
    """The three words of read_measurement as SI values.

    A CO2 word of 0 is what the chip reports for a sample it could not take (its own
    examples skip it as invalid); above 40'000 ppm is beyond the output range. Both are
    ``OutOfRangeError`` rather than a number that looks like air.
    """
    if len(words) != 3:
        raise ValueError(f"read_measurement has 3 words, got {len(words)}")
    co2_raw, temperature_raw, humidity_raw = words
    if co2_raw == 0:
        raise OutOfRangeError(f"{where}: CO2 reads 0 ppm, an invalid sample")
    if co2_raw > CO2_OUTPUT_RANGE_PPM:
        raise OutOfRangeError(
            f"{where}: CO2 reads {co2_raw} ppm, beyond the {CO2_OUTPUT_RANGE_PPM} ppm output range"
        )
    # Temperature and humidity to 0.01, finer than the chip resolves (its accuracy is
    # 0.8 °C and 6 %RH): further digits of the 16-bit conversion are not information.
    return {
        "co2_ppm": float(co2_raw),
        "temperature_celsius": round(temperature_from_raw(temperature_raw), 2),
        "relative_humidity_percent": round(humidity_from_raw(humidity_raw), 2),
    }


def data_ready(status_word: int) -> bool:
    return bool(status_word & DATA_READY_MASK)


def serial_number_from_words(words: list[int]) -> int:
    """§3.9, get_serial_number: word[0] << 32 | word[1] << 16 | word[2]."""
    return (words[0] << 32) | (words[1] << 16) | words[2]


def _message_bytes(message: Any) -> bytes:
    # smbus2's stub types __bytes__ as str; at run time it returns the buffer's bytes.
    return bytes(message)


class SCD4x:
    """An SCD4x in periodic measurement mode.

    Construction stops any measurement a previous owner left running (waiting the 500 ms
    the chip needs), reads the serial number as the presence check, then starts periodic
    measurement. The first result is ready about 5 s later.
    """

    def __init__(
        self,
        bus: RdwrBus,
        address: int = DEFAULT_ADDRESS,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
        stop_wait_s: float = STOP_WAIT_S,
        reinit_wait_s: float = REINIT_WAIT_S,
    ) -> None:
        self._bus = bus
        self.address = address
        self._timeout_s = timeout_s
        self._poll_interval_s = poll_interval_s
        self._stop_wait_s = stop_wait_s
        self._reinit_wait_s = reinit_wait_s
        self._where = f"SCD4x at 0x{address:02x}"
        self._measuring = False

        try:
            self._send(STOP_PERIODIC_MEASUREMENT)
        except BusError as exc:
            raise DeviceNotFoundError(f"{self._where}: no answer ({exc.__cause__})") from exc
        time.sleep(self._stop_wait_s)
        self.serial_number = self._probe_serial_number()
        self._send(START_PERIODIC_MEASUREMENT)
        self._measuring = True

    # Public interface.

    def read(self) -> dict[str, float]:
        """Wait (bounded by ``timeout_s``) for the next periodic result and return it."""
        if not self._measuring:
            raise DriverError(f"{self._where}: closed; call reset() to measure again")
        poll_until(
            self._ready_or_none,
            timeout_s=self._timeout_s,
            interval_s=self._poll_interval_s,
            what=f"{self._where}: get_data_ready_status",
        )
        words = self._read_words(READ_MEASUREMENT)
        return decode_measurement(words, self._where)

    def reset(self) -> None:
        """Stop, reload the settings from EEPROM (reinit), and start measuring again."""
        self._measuring = False
        self._send(STOP_PERIODIC_MEASUREMENT)
        time.sleep(self._stop_wait_s)
        self._send(REINIT)
        time.sleep(self._reinit_wait_s)
        self._send(START_PERIODIC_MEASUREMENT)
        self._measuring = True

    def close(self) -> None:
        """Stop periodic measurement; returns once the chip is idle again (500 ms)."""
        if not self._measuring:
            return
        self._measuring = False
        self._send(STOP_PERIODIC_MEASUREMENT)
        time.sleep(self._stop_wait_s)

    # Transfers (§3.3).

    def _send(self, command: Command) -> None:
        try:
            self._bus.i2c_rdwr(i2c_msg.write(self.address, command.wire()))
        except OSError as exc:
            raise BusError(f"{self._where}: {command.name} not acknowledged: {exc}") from exc

    def _read_raw(self, command: Command) -> bytes:
        self._send(command)
        time.sleep(command.execution_time_s)
        message = i2c_msg.read(self.address, command.reply_words * 3)
        try:
            self._bus.i2c_rdwr(message)
        except OSError as exc:
            raise BusError(f"{self._where}: {command.name} reply not acknowledged: {exc}") from exc
        return _message_bytes(message)

    def _read_words(self, command: Command) -> list[int]:
        return unpack_words(self._read_raw(command), f"{self._where}: {command.name}")

    def _ready_or_none(self) -> bool | None:
        (status,) = self._read_words(GET_DATA_READY_STATUS)
        return True if data_ready(status) else None

    def _probe_serial_number(self) -> int:
        raw = self._read_raw(GET_SERIAL_NUMBER)
        try:
            words = unpack_words(raw, f"{self._where}: get_serial_number")
        except ChecksumError:
            # A single bad CRC is a disturbed transfer; none right at all means the chip
            # at this address does not speak Sensirion's CRC-protected words.
            if all(_word_crc_fails(raw[i : i + 3]) for i in range(0, len(raw), 3)):
                raise WrongChipError(
                    f"{self._where}: the answer to get_serial_number ({raw.hex()}) carries "
                    "no valid CRC: not an SCD4x"
                ) from None
            raise
        return serial_number_from_words(words)


def _word_crc_fails(triple: bytes) -> bool:
    try:
        unpack_words(triple)
    except ChecksumError:
        return True
    return False

"""Plantower PMS5003 laser particle sensor on a UART (9600 8N1).

Source: Plantower "PMS5003 series data manual" V2.3 (2016), appendix I (transport
protocol, active mode) and appendix II (host commands, passive mode).

Frames from the sensor: start characters 0x42 0x4D, frame length (16 bit, big endian, the
number of bytes that follow it), the data words, and a check code = low 16 bits of the sum
of every preceding byte. A measurement has 13 data words (length 2*13+2 = 28, 32 bytes in
all). The sensor acknowledges change-mode and sleep commands with a short frame of length 4
whose two data bytes echo the command and its data (``42 4D 00 04 E1 00 01 74``).

Host commands are 7 bytes: 42 4D CMD DATAH DATAL LRCH LRCL, LRC = sum of the first five.

Reported values are the "atmospheric environment" concentrations (data 4..6), not the
"CF=1" ones (data 1..3): the data manual reserves CF=1 for the factory environment, and
these gateways measure street air. Both are whole µg/m³.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

from drivers.errors import (
    ChecksumError,
    ConfigurationError,
    DeviceNotFoundError,
    DriverError,
    DriverTimeoutError,
    InvalidFrameError,
)
from drivers.serial_link import SerialLink, SerialPort

CHIP = "PMS5003"

START_CHARACTER_1 = 0x42
START_CHARACTER_2 = 0x4D
HEADER = bytes((START_CHARACTER_1, START_CHARACTER_2))

DATA_WORDS = 13
FRAME_LENGTH_DATA = 2 * DATA_WORDS + 2
"""Frame length field of a measurement (appendix I)."""
FRAME_LENGTH_ACK = 4
"""Frame length field of the acknowledgement to a change-mode or sleep command."""
FRAME_LENGTHS = (FRAME_LENGTH_DATA, FRAME_LENGTH_ACK)
PREFIX_SIZE = 4
"""Start characters and frame length field."""
MIN_FRAME_SIZE = PREFIX_SIZE + FRAME_LENGTH_ACK
MAX_FRAME_SIZE = PREFIX_SIZE + FRAME_LENGTH_DATA

# Appendix II: host commands (CMD byte) and their data.
CMD_READ_PASSIVE = 0xE2
CMD_CHANGE_MODE = 0xE1
CMD_SLEEP_SET = 0xE4
MODE_PASSIVE = 0x00
MODE_ACTIVE = 0x01
SLEEP = 0x00
WAKEUP = 0x01

# Data word positions (0-based) of "data 4..6": PM concentrations under atmospheric
# environment, µg/m³.
WORD_PM1_0_ATMOSPHERIC = 3
WORD_PM2_5_ATMOSPHERIC = 4
WORD_PM10_ATMOSPHERIC = 5

Mode = Literal["passive", "active"]
_MODE_DATA: dict[str, int] = {"passive": MODE_PASSIVE, "active": MODE_ACTIVE}


def check_code(data: bytes) -> int:
    """Low 16 bits of the byte sum: the check code of frames and the LRC of commands."""
    return sum(data) & 0xFFFF


def build_command(command: int, data: int = 0) -> bytes:
    """A 7-byte host command: 42 4D CMD DATAH DATAL LRCH LRCL (appendix II)."""
    body = HEADER + bytes((command, (data >> 8) & 0xFF, data & 0xFF))
    return body + check_code(body).to_bytes(2, "big")


@dataclass(frozen=True)
class Pms5003Frame:
    """One frame whose start characters, length and check code were verified."""

    raw: bytes

    @property
    def length(self) -> int:
        return (self.raw[2] << 8) | self.raw[3]

    @property
    def payload(self) -> bytes:
        """The bytes between the frame length field and the check code."""
        return self.raw[PREFIX_SIZE:-2]

    @property
    def is_measurement(self) -> bool:
        return self.length == FRAME_LENGTH_DATA

    @property
    def is_ack(self) -> bool:
        return self.length == FRAME_LENGTH_ACK

    def words(self) -> tuple[int, ...]:
        p = self.payload
        return tuple((p[i] << 8) | p[i + 1] for i in range(0, len(p), 2))

    def acknowledges(self, command: int, data: int) -> bool:
        """True for the acknowledgement of ``command`` with the low data byte ``data``."""
        return self.is_ack and self.payload == bytes((command, data & 0xFF))


def decode_measurement(frame: Pms5003Frame) -> dict[str, float]:
    """The atmospheric-environment PM concentrations of a measurement frame, in µg/m³."""
    if not frame.is_measurement:
        raise InvalidFrameError(
            f"{CHIP}: expected a measurement frame (length {FRAME_LENGTH_DATA}), "
            f"got length {frame.length}"
        )
    words = frame.words()
    return {
        "pm1_0_ugm3": float(words[WORD_PM1_0_ATMOSPHERIC]),
        "pm2_5_ugm3": float(words[WORD_PM2_5_ATMOSPHERIC]),
        "pm10_ugm3": float(words[WORD_PM10_ATMOSPHERIC]),
    }


class Pms5003FrameParser:
    """Bytes in, verified frames out; pure (no I/O), safe to feed any byte sequence.

    ``feed`` never raises. A candidate frame with an unknown length or a wrong check code
    is dropped one byte at a time and the search for start characters resumes, so a valid
    frame that follows garbage (or a false header inside it) is still found; the reason is
    recorded and handed over by ``take_errors``. At most one frame's worth of bytes is
    held between calls.
    """

    MAX_ERRORS = 32

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._errors: deque[DriverError] = deque(maxlen=self.MAX_ERRORS)

    @property
    def pending(self) -> int:
        """Bytes held while waiting for the rest of a frame."""
        return len(self._buffer)

    def reset(self) -> None:
        self._buffer.clear()
        self._errors.clear()

    def take_errors(self) -> list[DriverError]:
        errors = list(self._errors)
        self._errors.clear()
        return errors

    def bytes_wanted(self) -> int:
        buf = self._buffer
        if len(buf) >= PREFIX_SIZE:
            length = (buf[2] << 8) | buf[3]
            return max(1, PREFIX_SIZE + length - len(buf))
        return MIN_FRAME_SIZE - len(buf)

    def feed(self, data: bytes) -> list[Pms5003Frame]:
        self._buffer += data
        frames: list[Pms5003Frame] = []
        while self._align():
            result = self._frame_at(0)
            if isinstance(result, Pms5003Frame):
                frames.append(result)
                del self._buffer[: len(result.raw)]
            elif isinstance(result, DriverError):
                self._errors.append(result)
                del self._buffer[:1]
            else:
                # Incomplete. If a complete valid frame already starts later in the buffer,
                # the candidate here overlaps it and cannot be genuine (e.g. a false header
                # in garbage announcing 32 bytes just before an 8-byte acknowledgement).
                later = self._next_complete_frame()
                if later is None:
                    break
                self._errors.append(InvalidFrameError(f"{CHIP}: frame cut short by another frame"))
                del self._buffer[:later]
        return frames

    def _align(self) -> bool:
        """Move the first start-character pair to the front; False if there is none yet."""
        start = self._buffer.find(HEADER)
        if start < 0:
            # Keep a final 0x42: it may be the first half of the next header.
            keep = 1 if self._buffer[-1:] == HEADER[:1] else 0
            del self._buffer[: len(self._buffer) - keep]
            return False
        del self._buffer[:start]
        return True

    def _frame_at(self, start: int) -> Pms5003Frame | DriverError | None:
        """The verified frame at ``start``, the reason it is not one, or None if incomplete."""
        buf = self._buffer
        if len(buf) - start < PREFIX_SIZE:
            return None
        length = (buf[start + 2] << 8) | buf[start + 3]
        if length not in FRAME_LENGTHS:
            return InvalidFrameError(f"{CHIP}: frame length {length} is not one the sensor sends")
        end = start + PREFIX_SIZE + length
        if len(buf) < end:
            return None
        raw = bytes(buf[start:end])
        received = (raw[-2] << 8) | raw[-1]
        expected = check_code(raw[:-2])
        if received != expected:
            return ChecksumError(f"{CHIP}: check code 0x{received:04x}, expected 0x{expected:04x}")
        return Pms5003Frame(raw)

    def _next_complete_frame(self) -> int | None:
        start = self._buffer.find(HEADER, 1)
        while start >= 0:
            if isinstance(self._frame_at(start), Pms5003Frame):
                return start
            start = self._buffer.find(HEADER, start + 1)
        return None


class PMS5003:
    """PMS5003 on an open serial port (9600 8N1).

    ``mode="passive"`` (default): the sensor measures continuously but only answers
    read-in-passive-mode requests, so every ``read()`` gets a fresh frame on demand.
    ``mode="active"``: the sensor streams frames on its own (every 2.3 s when readings are
    stable, 200..800 ms when they change fast); ``read()`` discards what is buffered and
    returns the next complete frame.

    ``timeout_s`` bounds every wait, on the monotonic clock. ``checksum_retries`` is how
    many frames with a bad check code one ``read()`` tolerates (re-requesting in passive
    mode) before it raises ``ChecksumError``.
    """

    def __init__(
        self,
        port: SerialPort,
        *,
        mode: Mode = "passive",
        timeout_s: float = 3.0,
        checksum_retries: int = 2,
    ) -> None:
        if mode not in _MODE_DATA:
            raise ConfigurationError(f"{CHIP}: mode must be 'passive' or 'active', not {mode!r}")
        if not timeout_s > 0:
            raise ConfigurationError(f"{CHIP}: timeout_s must be positive, not {timeout_s!r}")
        if checksum_retries < 0:
            raise ConfigurationError(f"{CHIP}: checksum_retries must be >= 0")
        self.mode: Mode = mode
        self.timeout_s = timeout_s
        self.checksum_retries = checksum_retries
        self._link = SerialLink(port, Pms5003FrameParser(), chip=CHIP)
        self.reset()

    def reset(self) -> None:
        """Wake the sensor and put it in the configured mode; waits for the acknowledgement.

        Raises ``DeviceNotFoundError`` when nothing acknowledges the change-mode command.
        """
        mode_data = _MODE_DATA[self.mode]
        change_mode = build_command(CMD_CHANGE_MODE, mode_data)
        self._link.discard_input()
        # A sensor left asleep (see close()) ignores everything but the wakeup command,
        # which it does not acknowledge.
        self._link.send(build_command(CMD_SLEEP_SET, WAKEUP))
        self._link.send(change_mode)
        try:
            self._link.wait_for(
                lambda f: f.acknowledges(CMD_CHANGE_MODE, mode_data),
                timeout_s=self.timeout_s,
                what=f"acknowledgement of the change-mode ({self.mode}) command",
                checksum_retries=self.checksum_retries,
                resend=change_mode,
            )
        except DriverTimeoutError as exc:
            raise DeviceNotFoundError(
                f"{exc}; check the wiring (sensor TX to the gateway's RX and back), "
                "the 5 V supply and 9600 baud"
            ) from exc

    def read(self) -> dict[str, float]:
        """One measurement: ``pm1_0_ugm3``, ``pm2_5_ugm3``, ``pm10_ugm3`` (whole µg/m³)."""
        if self.mode == "passive":
            request = build_command(CMD_READ_PASSIVE)
            self._link.request(request)
            what = "answer to the read-in-passive-mode request"
        else:
            request = None
            self._link.discard_input()
            what = "measurement frame"
        frame = self._link.wait_for(
            lambda f: f.is_measurement,
            timeout_s=self.timeout_s,
            what=what,
            checksum_retries=self.checksum_retries,
            resend=request,
        )
        return decode_measurement(frame)

    def sleep(self) -> None:
        """Stop fan and laser (sleep command); waits for the acknowledgement."""
        command = build_command(CMD_SLEEP_SET, SLEEP)
        self._link.request(command)
        self._link.wait_for(
            lambda f: f.acknowledges(CMD_SLEEP_SET, SLEEP),
            timeout_s=self.timeout_s,
            what="acknowledgement of the sleep command",
            checksum_retries=self.checksum_retries,
            resend=command,
        )

    def wake(self) -> None:
        """Start fan and laser again. The sensor sends no acknowledgement; the data manual
        asks for 30 s before readings are stable."""
        self._link.send(build_command(CMD_SLEEP_SET, WAKEUP))

    def close(self) -> None:
        """Put the sensor to sleep (saves fan and laser life); does not wait for the
        acknowledgement, so a stop is never held up by a silent sensor."""
        self._link.send(build_command(CMD_SLEEP_SET, SLEEP))

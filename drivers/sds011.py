"""Nova Fitness SDS011 laser dust sensor on a UART (9600 8N1).

Source: Nova Fitness "Laser Dust Sensor Control Protocol" V1.3 (2015-07-20), sections 1
(protocol configuration) and 3 (commands); measuring range 0.0..999.9 µg/m³ from the
SDS011 specification.

Frames from the sensor are 10 bytes: AA, command id (C0 measurement, C5 reply to a
command), data bytes 1..6, checksum = low 8 bits of the sum of data bytes 1..6, AB. There
is no length field: the command id fixes the layout. A measurement carries PM2.5 and PM10
as little-endian counts of 0.1 µg/m³ followed by the two device-id bytes.

Commands to the sensor are 19 bytes: AA B4, data bytes 1..15 (byte 1 the command, bytes
14..15 the target device id, FF FF = every sensor), checksum = low 8 bits of the sum of
the data bytes, AB.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from drivers.errors import (
    ChecksumError,
    ConfigurationError,
    DeviceNotFoundError,
    DriverError,
    DriverTimeoutError,
    InvalidFrameError,
)
from drivers.serial_link import SerialLink, SerialPort

CHIP = "SDS011"

HEAD = 0xAA
TAIL = 0xAB
COMMAND_ID_COMMAND = 0xB4
"""Command id of frames the host sends."""
COMMAND_ID_REPLY = 0xC5
"""Command id of the sensor's reply to a command."""
COMMAND_ID_DATA = 0xC0
"""Command id of a measurement (active report or answer to the query data command)."""

FRAME_SIZE = 10
COMMAND_SIZE = 19
COMMAND_DATA_BYTES = 15

# Section 3: data byte 1 of a command.
REPORTING_MODE = 0x02
QUERY_DATA = 0x04
SET_DEVICE_ID = 0x05
SLEEP_WORK = 0x06
FIRMWARE_VERSION = 0x07
WORKING_PERIOD = 0x08

# Data byte 2 of the reporting-mode, sleep-work and working-period commands.
ACTION_QUERY = 0x00
ACTION_SET = 0x01
# Data byte 3 of the reporting-mode command.
REPORT_ACTIVE = 0x00
REPORT_QUERY = 0x01
# Data byte 3 of the sleep-work command.
SLEEP = 0x00
WORK = 0x01

ALL_DEVICES = 0xFFFF


def checksum(data: bytes | Sequence[int]) -> int:
    """Low 8 bits of the sum of the data bytes (section 1)."""
    return sum(data) & 0xFF


def build_command(
    command: int, arguments: bytes | Sequence[int] = (), device_id: int = ALL_DEVICES
) -> bytes:
    """A 19-byte command: data byte 1 ``command``, then ``arguments``, zero padding and the
    target device id in data bytes 14..15."""
    args = bytes(arguments)
    if len(args) > COMMAND_DATA_BYTES - 3:
        raise ValueError(f"{CHIP}: at most 12 argument bytes, got {len(args)}")
    data = bytes((command,)) + args.ljust(COMMAND_DATA_BYTES - 3, b"\x00")
    data += device_id.to_bytes(2, "big")
    return bytes((HEAD, COMMAND_ID_COMMAND)) + data + bytes((checksum(data), TAIL))


@dataclass(frozen=True)
class Sds011Frame:
    """One 10-byte frame whose head, command id, checksum and tail were verified."""

    raw: bytes

    @property
    def command_id(self) -> int:
        return self.raw[1]

    @property
    def data(self) -> bytes:
        """Data bytes 1..6."""
        return self.raw[2:8]

    @property
    def device_id(self) -> int:
        return (self.raw[6] << 8) | self.raw[7]

    @property
    def is_measurement(self) -> bool:
        return self.command_id == COMMAND_ID_DATA

    def replies_to(self, command: int, *values: int) -> bool:
        """True for the reply to ``command`` whose data bytes 2.. start with ``values``."""
        if self.command_id != COMMAND_ID_REPLY or self.data[0] != command:
            return False
        return self.data[1 : 1 + len(values)] == bytes(values)


def decode_measurement(frame: Sds011Frame) -> dict[str, float]:
    """PM2.5 and PM10 of a measurement frame, µg/m³ with the sensor's 0.1 resolution."""
    if not frame.is_measurement:
        raise InvalidFrameError(
            f"{CHIP}: expected a measurement (command id 0x{COMMAND_ID_DATA:02x}), "
            f"got 0x{frame.command_id:02x}"
        )
    d = frame.data
    pm2_5 = d[0] | (d[1] << 8)
    pm10 = d[2] | (d[3] << 8)
    # Dividing the integer count keeps 123.6 exact instead of 1236 * 0.1 = 123.60000000000001.
    return {"pm2_5_ugm3": pm2_5 / 10, "pm10_ugm3": pm10 / 10}


class Sds011FrameParser:
    """Bytes in, verified frames out; pure (no I/O), safe to feed any byte sequence.

    ``feed`` never raises. A candidate with an unknown command id, a wrong tail or a wrong
    checksum is dropped one byte at a time and the search for the head byte resumes, so a
    valid frame that follows garbage is still found; the reason is recorded and handed
    over by ``take_errors``. At most one frame's worth of bytes is held between calls.
    """

    MAX_ERRORS = 32
    COMMAND_IDS = (COMMAND_ID_DATA, COMMAND_ID_REPLY)

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._errors: deque[DriverError] = deque(maxlen=self.MAX_ERRORS)

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def reset(self) -> None:
        self._buffer.clear()
        self._errors.clear()

    def take_errors(self) -> list[DriverError]:
        errors = list(self._errors)
        self._errors.clear()
        return errors

    def bytes_wanted(self) -> int:
        return max(1, FRAME_SIZE - len(self._buffer))

    def feed(self, data: bytes) -> list[Sds011Frame]:
        self._buffer += data
        frames: list[Sds011Frame] = []
        while True:
            start = self._buffer.find(HEAD)
            if start < 0:
                self._buffer.clear()
                break
            del self._buffer[:start]
            buf = self._buffer
            if len(buf) >= 2 and buf[1] not in self.COMMAND_IDS:
                # Reject early: waiting for ten bytes would only delay the frame behind it.
                self._errors.append(InvalidFrameError(f"{CHIP}: unknown command id 0x{buf[1]:02x}"))
                del buf[:1]
                continue
            if len(buf) < FRAME_SIZE:
                break
            raw = bytes(buf[:FRAME_SIZE])
            if raw[-1] != TAIL:
                self._errors.append(
                    InvalidFrameError(f"{CHIP}: frame tail 0x{raw[-1]:02x}, expected 0xab")
                )
                del buf[:1]
                continue
            expected = checksum(raw[2:8])
            if raw[8] != expected:
                self._errors.append(
                    ChecksumError(f"{CHIP}: checksum 0x{raw[8]:02x}, expected 0x{expected:02x}")
                )
                del buf[:1]
                continue
            frames.append(Sds011Frame(raw))
            del buf[:FRAME_SIZE]
        return frames


class SDS011:
    """SDS011 on an open serial port (9600 8N1), used in query reporting mode.

    At construction (and on ``reset()``) the sensor is woken and switched to query mode;
    each ``read()`` then sends the query data command and waits for the measurement. The
    protocol recommends querying no more often than every 3 s.

    ``timeout_s`` bounds every wait, on the monotonic clock. ``checksum_retries`` is how
    many replies with a bad checksum one exchange tolerates (re-sending the command)
    before it raises ``ChecksumError``.
    """

    def __init__(
        self,
        port: SerialPort,
        *,
        timeout_s: float = 2.0,
        checksum_retries: int = 2,
        device_id: int = ALL_DEVICES,
    ) -> None:
        if not timeout_s > 0:
            raise ConfigurationError(f"{CHIP}: timeout_s must be positive, not {timeout_s!r}")
        if checksum_retries < 0:
            raise ConfigurationError(f"{CHIP}: checksum_retries must be >= 0")
        if not 0 <= device_id <= 0xFFFF:
            raise ConfigurationError(f"{CHIP}: device_id must fit in 16 bits")
        self.timeout_s = timeout_s
        self.checksum_retries = checksum_retries
        self.device_id = device_id
        self._link = SerialLink(port, Sds011FrameParser(), chip=CHIP)
        self.reset()

    def reset(self) -> None:
        """Wake the sensor and set query reporting mode; waits for both replies.

        Raises ``DeviceNotFoundError`` when nothing replies.
        """
        try:
            self.wake()
        except DriverTimeoutError as exc:
            raise DeviceNotFoundError(
                f"{exc}; check the wiring (sensor TX to the gateway's RX and back), "
                "the 5 V supply and 9600 baud"
            ) from exc
        self._command(
            (REPORTING_MODE, ACTION_SET, REPORT_QUERY),
            what="reply to the set-reporting-mode (query) command",
        )

    def read(self) -> dict[str, float]:
        """One measurement: ``pm2_5_ugm3`` and ``pm10_ugm3`` (0.1 µg/m³ resolution)."""
        command = build_command(QUERY_DATA, device_id=self.device_id)
        self._link.request(command)
        frame = self._link.wait_for(
            self._from_device(lambda f: f.is_measurement),
            timeout_s=self.timeout_s,
            what="answer to the query data command",
            checksum_retries=self.checksum_retries,
            resend=command,
        )
        return decode_measurement(frame)

    def sleep(self) -> None:
        """Stop fan and laser; waits for the reply. A sleeping sensor ignores every
        command but sleep-work."""
        self._command((SLEEP_WORK, ACTION_SET, SLEEP), what="reply to the sleep command")

    def wake(self) -> None:
        """Start fan and laser; waits for the reply. Readings are stable after 30 s."""
        self._command((SLEEP_WORK, ACTION_SET, WORK), what="reply to the work command")

    def close(self) -> None:
        """Put the sensor to sleep (the laser's life is counted in working hours); does not
        wait for the reply, so a stop is never held up by a silent sensor."""
        self._link.send(build_command(SLEEP_WORK, (ACTION_SET, SLEEP), device_id=self.device_id))

    def _command(self, arguments: tuple[int, int, int], *, what: str) -> Sds011Frame:
        command_code, *rest = arguments
        command = build_command(command_code, rest, device_id=self.device_id)
        self._link.request(command)
        return self._link.wait_for(
            self._from_device(lambda f: f.replies_to(command_code, *rest)),
            timeout_s=self.timeout_s,
            what=what,
            checksum_retries=self.checksum_retries,
            resend=command,
        )

    def _from_device(self, accept: Callable[[Sds011Frame], bool]) -> Callable[[Sds011Frame], bool]:
        if self.device_id == ALL_DEVICES:
            return accept
        return lambda f: f.device_id == self.device_id and accept(f)

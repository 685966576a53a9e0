"""A small Modbus RTU master: function 0x04 (read input registers), all the Eastron
meters need.

Written here rather than taken from a Modbus library: it is about 200 lines, needs one
function code, and must fit the drivers' model (a blocking ``read()`` on an injected
pyserial port, bounded on the monotonic clock, typed errors), which the libraries' own
threading/asyncio transports and port handling do not.

Sources: "MODBUS over Serial Line, Specification and Implementation Guide" V1.02
(modbus.org, 2006): section 2.5.1 (RTU frames; at least 3.5 character times of silence
between frames, a fixed 1.75 ms above 19200 baud), section 2.5.1.2 and 6.2.2 (CRC-16:
polynomial 0xA001 reflected, init 0xFFFF, low byte first on the wire; worked example
``02 07`` -> 0x1241, sent ``41 12``). "MODBUS Application Protocol Specification" V1.1b3
(2012): section 6.4 (0x04, 1..125 registers), section 7 (exception replies: function
code + 0x80, one exception code byte).

Request: ``unit 04 addr_hi addr_lo qty_hi qty_lo crc_lo crc_hi``. Reply: ``unit 04
byte_count registers... crc_lo crc_hi`` or ``unit 84 code crc_lo crc_hi``. RTU marks frames
only by silence, which a host behind a UART driver cannot see reliably, so the reply parser
accepts a frame only when unit, function, byte count and CRC all agree with the request,
and otherwise drops one byte and looks again: noise, or the echo of our own request that
some RS-485 adapters return, cannot hide the reply.
"""

from __future__ import annotations

import math
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from drivers.errors import (
    ChecksumError,
    ConfigurationError,
    DriverError,
    DriverTimeoutError,
    InvalidFrameError,
    ModbusExceptionError,
)
from drivers.serial_link import SerialLink, SerialPort

READ_INPUT_REGISTERS = 0x04
EXCEPTION_FLAG = 0x80
MAX_REGISTERS = 125
"""Application protocol, section 6.4: at most 125 registers per request."""
UNIT_MIN, UNIT_MAX = 1, 247
"""Individual slave addresses (serial line, section 2.2); 0 is broadcast, never answered."""

EXCEPTION_NAMES: dict[int, str] = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "slave device failure",
    5: "acknowledge",
    6: "slave device busy",
    7: "negative acknowledge",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}

FIXED_SILENCE_S = 0.00175
"""t3.5 above 19200 baud (serial line, section 2.5.1.1)."""


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    """CRC-16/MODBUS. Check values: ``crc16(b"123456789") == 0x4B37``; the serial-line
    spec's example ``crc16(b"\\x02\\x07") == 0x1241``."""
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ _TABLE[(crc ^ byte) & 0xFF]
    return crc


def with_crc(frame: bytes) -> bytes:
    """``frame`` followed by its CRC, low byte first."""
    return frame + struct.pack("<H", crc16(frame))


def crc_ok(frame: bytes) -> bool:
    return len(frame) >= 4 and crc16(frame[:-2]) == frame[-2] | (frame[-1] << 8)


def exception_name(code: int) -> str:
    return EXCEPTION_NAMES.get(code, "unknown exception")


def read_input_registers_request(unit: int, address: int, count: int) -> bytes:
    """The 8-byte request for ``count`` input registers from ``address``."""
    if not UNIT_MIN <= unit <= UNIT_MAX:
        raise ConfigurationError(f"Modbus unit id must be {UNIT_MIN}..{UNIT_MAX}, not {unit}")
    if not 1 <= count <= MAX_REGISTERS or not 0 <= address <= 0x10000 - count:
        raise ConfigurationError(f"cannot read {count} registers at 0x{address:04x}")
    return with_crc(struct.pack(">BBHH", unit, READ_INPUT_REGISTERS, address, count))


def character_time_s(baudrate: int, bytesize: int = 8, parity: str = "N",
                     stopbits: float = 1) -> float:
    """One character on the line: start bit, data bits, parity bit if any, stop bits."""
    bits = 1 + bytesize + (0 if parity == "N" else 1) + stopbits
    return bits / baudrate


def silence_s(baudrate: int, bytesize: int = 8, parity: str = "N", stopbits: float = 1) -> float:
    """t3.5: 3.5 character times, a fixed 1.75 ms above 19200 baud."""
    if baudrate > 19200:
        return FIXED_SILENCE_S
    return 3.5 * character_time_s(baudrate, bytesize, parity, stopbits)


def port_silence_s(port: object, default_baudrate: int) -> float:
    """t3.5 for the speed and framing ``port`` was opened with (pyserial keeps them as
    attributes; they are only read). A port object without them counts as
    ``default_baudrate`` 8N1."""
    baudrate = getattr(port, "baudrate", None)
    bytesize = getattr(port, "bytesize", 8)
    parity = getattr(port, "parity", "N")
    stopbits = getattr(port, "stopbits", 1)
    return silence_s(
        baudrate if isinstance(baudrate, int) and baudrate > 0 else default_baudrate,
        bytesize if isinstance(bytesize, int) else 8,
        parity if isinstance(parity, str) else "N",
        stopbits if isinstance(stopbits, int | float) else 1,
    )


@dataclass(frozen=True)
class Reply:
    """A frame whose unit, function, byte count and CRC matched the request."""

    unit: int
    function: int
    data: bytes
    """The register bytes, or for an exception reply the one exception code byte."""

    @property
    def is_exception(self) -> bool:
        return bool(self.function & EXCEPTION_FLAG)


class RtuReplyParser:
    """Finds the reply to one request in a byte stream; pure, fed bytes, never raises.

    Bytes that cannot start the awaited reply (another unit, another function) are
    dropped one at a time; a candidate with a wrong byte count or CRC is recorded as an
    ``InvalidFrameError`` / ``ChecksumError`` for ``take_errors`` and skipped the same way.
    """

    MAX_ERRORS = 32

    def __init__(self, unit: int = 1, function: int = READ_INPUT_REGISTERS,
                 count: int = 1) -> None:
        self._buffer = bytearray()
        self._errors: deque[DriverError] = deque(maxlen=self.MAX_ERRORS)
        self.expect(unit, function, count)

    def expect(self, unit: int, function: int, count: int) -> None:
        self.unit, self.function, self.count = unit, function, count
        self.reset()

    def reset(self) -> None:
        self._buffer.clear()
        self._errors.clear()

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def take_errors(self) -> list[DriverError]:
        errors = list(self._errors)
        self._errors.clear()
        return errors

    def _frame_length(self) -> int | DriverError | None:
        """Length of the frame the buffer starts with, at least 5 while its header is
        incomplete; None if no reply starts here, an error if a bad one does."""
        buf = self._buffer
        if buf[0] != self.unit:
            return None
        if len(buf) < 2:
            return 5
        if buf[1] == self.function | EXCEPTION_FLAG:
            return 5
        if buf[1] != self.function:
            return None
        if len(buf) < 3:
            return 5
        if buf[2] != 2 * self.count:
            return InvalidFrameError(
                f"Modbus reply from unit {self.unit}: byte count {buf[2]}, "
                f"expected {2 * self.count}")
        return 5 + buf[2]

    def bytes_wanted(self) -> int:
        if not self._buffer:
            return 5
        length = self._frame_length()
        return max(1, length - len(self._buffer)) if isinstance(length, int) else 1

    def feed(self, data: bytes) -> list[Reply]:
        self._buffer += data
        replies: list[Reply] = []
        buf = self._buffer
        while buf:
            length = self._frame_length()
            if not isinstance(length, int):
                if length is not None:
                    self._errors.append(length)
                del buf[0]
                continue
            if len(buf) < length:
                break
            frame = bytes(buf[:length])
            if not crc_ok(frame):
                got = frame[-2] | (frame[-1] << 8)
                self._errors.append(ChecksumError(
                    f"Modbus reply from unit {self.unit}: CRC 0x{got:04x}, "
                    f"expected 0x{crc16(frame[:-2]):04x}"))
                del buf[0]
                continue
            del buf[:length]
            data_bytes = frame[2:3] if frame[1] & EXCEPTION_FLAG else frame[3:-2]
            replies.append(Reply(frame[0], frame[1], data_bytes))
        return replies


class RtuClient:
    """Function 0x04 over one serial port, shared by every meter (unit id) on the line.

    Before each request the line is left silent for t3.5 after the last byte seen (the
    port's speed and framing give t3.5). The reply must arrive within ``timeout_s`` on
    the monotonic clock, over as many short ``port.read`` calls as it takes. No reply or a
    bad CRC is retried ``retries`` times, each after the silence again; an exception reply
    is the meter's answer and is not retried.
    """

    def __init__(self, port: SerialPort, *, timeout_s: float, chip: str, retries: int = 1,
                 default_baudrate: int = 9600,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) \
                or not 0 < timeout_s < math.inf:
            raise ConfigurationError(f"{chip}: timeout_s must be positive, not {timeout_s!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ConfigurationError(f"{chip}: retries must be an integer >= 0, not {retries!r}")
        self._parser = RtuReplyParser()
        self._link = SerialLink(port, self._parser, chip=chip)
        self.silence_s = port_silence_s(port, default_baudrate)
        self.timeout_s = float(timeout_s)
        self.retries = retries
        self._chip = chip
        self._clock = clock
        self._sleep = sleep
        self._quiet_from = -math.inf
        """Monotonic time from which the line has been silent for t3.5."""

    def read_input_registers(self, unit: int, address: int, count: int) -> bytes:
        """``count`` registers from ``address``, as the 2*count bytes the meter sent."""
        request = read_input_registers_request(unit, address, count)
        what = f"reply to registers 0x{address:04x}+{count}"
        attempt = 0
        while True:
            try:
                reply = self._exchange(request, unit, count, what)
                break
            except (DriverTimeoutError, ChecksumError):
                attempt += 1
                if attempt > self.retries:
                    raise
        if reply.is_exception:
            code = reply.data[0]
            raise ModbusExceptionError(
                f"{self._chip}: exception {code} ({exception_name(code)}) reading "
                f"registers 0x{address:04x}+{count}", code)
        return reply.data

    def _exchange(self, request: bytes, unit: int, count: int, what: str) -> Reply:
        # The silence before a frame is what marks its start for every device on the line.
        wait = self._quiet_from - self._clock()
        if wait > 0:
            self._sleep(wait)
        self._parser.expect(unit, READ_INPUT_REGISTERS, count)
        try:
            self._link.request(request)
            return self._link.wait_for(lambda r: True, timeout_s=self.timeout_s, what=what,
                                       checksum_retries=0)
        finally:
            self._quiet_from = self._clock() + self.silence_s


def shortest_float32(raw: bytes) -> float:
    """The shortest decimal that is the same float32 (4.2, not 4.199999809265137): what
    the meter meant, and fewer bytes on the metered uplink."""
    (value,) = struct.unpack(">f", raw)
    if not math.isfinite(value):
        return float(value)
    for digits in range(6, 10):
        candidate = float(f"{value:.{digits}g}")
        if struct.pack(">f", candidate) == raw:
            return candidate
    return float(value)


def floats(data: bytes) -> list[float]:
    """IEEE-754 float32 values, big-endian, high word first (Eastron's layout)."""
    if len(data) % 4:
        raise InvalidFrameError(f"{len(data)} register bytes are not whole float32 values")
    return [shortest_float32(data[i:i + 4]) for i in range(0, len(data), 4)]

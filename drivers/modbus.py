"""A small Modbus RTU client: function 0x04 (read input registers), which is all the
Eastron meters need.

Written here rather than taken from a Modbus library: it is about 150 lines, needs one
function code, and must fit the drivers' model (a blocking ``read()`` on an injected
pyserial port, bounded on the monotonic clock, typed errors), which the libraries' own
threading/asyncio transports do not. Framing follows "MODBUS over Serial Line
Specification and Implementation Guide V1.02": CRC-16 (polynomial 0xA001 reflected, init
0xFFFF, low byte first on the wire, section 6.2.2) and at least 3.5 character times of
silence before a frame (section 2.5.1.1; a fixed 1.75 ms above 19200 baud).
"""

from __future__ import annotations

import math
import struct
import time
from dataclasses import dataclass

from drivers.errors import (
    ChecksumError,
    ConfigurationError,
    DriverError,
    InvalidFrameError,
    ModbusExceptionError,
)
from drivers.serial_link import SerialLink, SerialPort

READ_INPUT_REGISTERS = 0x04
EXCEPTION_FLAG = 0x80
MAX_REGISTERS = 125
"""Modbus application protocol V1.1b3, section 6.4: at most 125 registers per request."""

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "slave device failure",
    5: "acknowledge",
    6: "slave device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}


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
    """CRC-16/MODBUS. Check value: ``crc16(b"123456789") == 0x4B37``."""
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ _TABLE[(crc ^ byte) & 0xFF]
    return crc


def with_crc(frame: bytes) -> bytes:
    return frame + struct.pack("<H", crc16(frame))


def read_input_registers_request(unit: int, address: int, count: int) -> bytes:
    if not 1 <= unit <= 247:
        raise ConfigurationError(f"Modbus unit id must be 1..247, not {unit}")
    if not 1 <= count <= MAX_REGISTERS or not 0 <= address <= 0xFFFF:
        raise ConfigurationError(f"cannot read {count} registers at 0x{address:04x}")
    return with_crc(struct.pack(">BBHH", unit, READ_INPUT_REGISTERS, address, count))


def silence_s(baudrate: int, bits_per_char: int = 10) -> float:
    """3.5 character times (8N1: 10 bits a character), 1.75 ms above 19200 baud."""
    if baudrate > 19200:
        return 0.00175
    return 3.5 * bits_per_char / baudrate


@dataclass(frozen=True)
class Reply:
    unit: int
    function: int
    data: bytes
    """The register bytes, or for an exception reply the one exception code byte."""

    @property
    def is_exception(self) -> bool:
        return bool(self.function & EXCEPTION_FLAG)


class RtuReplyParser:
    """Finds the reply to one request in a byte stream: fed bytes, never raises.

    It knows the unit, function and register count it waits for, so noise and other
    units' traffic are skipped a byte at a time; a frame whose byte count or CRC is wrong
    is recorded as an error and skipped the same way.
    """

    def __init__(self, unit: int = 1, function: int = READ_INPUT_REGISTERS,
                 count: int = 1) -> None:
        self._buffer = bytearray()
        self._errors: list[DriverError] = []
        self.expect(unit, function, count)

    def expect(self, unit: int, function: int, count: int) -> None:
        self.unit, self.function, self.count = unit, function, count
        self.reset()

    def reset(self) -> None:
        self._buffer.clear()
        self._errors.clear()

    def take_errors(self) -> list[DriverError]:
        errors, self._errors = self._errors, []
        return errors

    def _frame_length(self) -> int | None:
        """Length of the frame starting at the buffer's head; None if it is no frame."""
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
            self._errors.append(InvalidFrameError(
                f"Modbus reply from unit {self.unit}: byte count {buf[2]}, "
                f"expected {2 * self.count}"))
            return None
        return 5 + buf[2]

    def bytes_wanted(self) -> int:
        if not self._buffer:
            return 5
        length = self._frame_length() if self._buffer else None
        return max(1, (length or 5) - len(self._buffer))

    def feed(self, data: bytes) -> list[Reply]:
        self._buffer += data
        replies: list[Reply] = []
        buf = self._buffer
        while buf:
            length = self._frame_length()
            if length is None:
                del buf[0]
                continue
            if len(buf) < length:
                break
            frame = bytes(buf[:length])
            expected = crc16(frame[:-2])
            got = frame[-2] | (frame[-1] << 8)
            if got != expected:
                self._errors.append(ChecksumError(
                    f"Modbus reply from unit {self.unit}: CRC 0x{got:04x}, "
                    f"expected 0x{expected:04x}"))
                del buf[0]
                continue
            del buf[:length]
            data_bytes = frame[2:3] if frame[1] & EXCEPTION_FLAG else frame[3:-2]
            replies.append(Reply(frame[0], frame[1], data_bytes))
        if len(self._errors) > 32:
            del self._errors[:-32]
        return replies


class RtuClient:
    """Function 0x04 over one serial port, shared by the meters on it."""

    def __init__(self, port: SerialPort, *, baudrate: int, timeout_s: float,
                 chip: str, checksum_retries: int = 1) -> None:
        self._parser = RtuReplyParser()
        self._link = SerialLink(port, self._parser, chip=chip)
        self._silence_s = silence_s(baudrate)
        self._timeout_s = timeout_s
        self._retries = checksum_retries
        self._chip = chip
        self._last_activity = 0.0

    def read_input_registers(self, unit: int, address: int, count: int) -> bytes:
        """``count`` registers from ``address``, as the 2*count bytes the meter sent."""
        request = read_input_registers_request(unit, address, count)
        self._parser.expect(unit, READ_INPUT_REGISTERS, count)
        # The silence before a frame is what marks its start for every device on the line.
        wait = self._last_activity + self._silence_s - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        try:
            self._link.request(request)
            reply = self._link.wait_for(lambda r: True, timeout_s=self._timeout_s,
                                        what=f"reply to registers 0x{address:04x}+{count}",
                                        checksum_retries=self._retries, resend=request)
        finally:
            self._last_activity = time.monotonic()
        if reply.is_exception:
            code = reply.data[0]
            name = EXCEPTION_NAMES.get(code, "unknown exception")
            raise ModbusExceptionError(
                f"{self._chip} unit {unit}: exception {code} ({name}) reading "
                f"registers 0x{address:04x}+{count}", code)
        return reply.data


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

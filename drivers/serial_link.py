"""Bounded command/answer exchanges for framed serial sensors (PMS5003, SDS011).

The framing lives in pure parser classes that are fed bytes (``feed(data) -> frames``);
this module does the I/O around them: it writes commands, reads in short slices until a
deadline on the monotonic clock, and turns what the parser rejected into typed errors.

Parser contract (``FrameParser``): ``feed`` never raises. Bytes that do not form a valid
frame are dropped one at a time (so a valid frame that follows garbage is never lost) and
the reason is recorded as a ``DriverError`` (``ChecksumError`` or ``InvalidFrameError``)
that ``take_errors`` hands over.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from drivers.errors import BusError, ChecksumError, DriverError, DriverTimeoutError

FrameT = TypeVar("FrameT")

READ_SLICE_S = 0.05
"""Longest single ``port.read``: keeps the loop responsive even when the parser waits for
more bytes than will come (a false header inside garbage claiming a long frame)."""


class SerialPort(Protocol):
    """The part of ``serial.Serial`` a driver may use (DESIGN.md, Drivers)."""

    timeout: float | None

    def read(self, size: int = 1) -> bytes: ...

    def write(self, data: bytes, /) -> int | None: ...

    def reset_input_buffer(self) -> None: ...

    def flush(self) -> None: ...


class FrameParser(Protocol[FrameT]):
    def feed(self, data: bytes) -> list[FrameT]: ...

    def bytes_wanted(self) -> int:
        """How many more bytes complete the frame in progress (at least 1)."""
        ...

    def reset(self) -> None: ...

    def take_errors(self) -> list[DriverError]: ...


class SerialLink(Generic[FrameT]):
    """A serial port plus the frame parser of the chip on it."""

    def __init__(self, port: SerialPort, parser: FrameParser[FrameT], *, chip: str) -> None:
        self._port = port
        self._parser = parser
        self._chip = chip

    def discard_input(self) -> None:
        """Forget everything received so far, so no stale frame can answer a new request."""
        self._parser.reset()
        try:
            self._port.reset_input_buffer()
        except OSError as exc:
            raise BusError(f"{self._chip}: serial port failed: {exc}") from exc

    def send(self, command: bytes) -> None:
        try:
            self._port.write(command)
            self._port.flush()
        except OSError as exc:
            raise BusError(f"{self._chip}: serial write failed: {exc}") from exc

    def request(self, command: bytes) -> None:
        """Discard pending input, then send ``command``."""
        self.discard_input()
        self.send(command)

    def wait_for(
        self,
        accept: Callable[[FrameT], bool],
        *,
        timeout_s: float,
        what: str,
        checksum_retries: int,
        resend: bytes | None = None,
    ) -> FrameT:
        """The first valid frame ``accept`` takes, within ``timeout_s`` on the monotonic clock.

        Valid frames ``accept`` refuses (e.g. a measurement while waiting for an
        acknowledgement) are skipped. Each frame with a bad checksum uses up one retry; with
        ``resend`` the request is sent again, otherwise the next frame is awaited. When the
        retries are used up, or the deadline passes after a bad checksum, ``ChecksumError``
        is raised; a deadline with no frame at all raises ``DriverTimeoutError``.
        """
        deadline = time.monotonic() + timeout_s
        bad_checksums = 0
        last_checksum_error: ChecksumError | None = None
        received = 0
        rejected = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            chunk = self._read(min(remaining, READ_SLICE_S), self._parser.bytes_wanted())
            if not chunk:
                continue
            received += len(chunk)
            for frame in self._parser.feed(chunk):
                if accept(frame):
                    return frame
            for error in self._parser.take_errors():
                rejected += 1
                if not isinstance(error, ChecksumError):
                    continue  # false headers in line noise: resynchronising is enough
                bad_checksums += 1
                last_checksum_error = error
                if bad_checksums > checksum_retries:
                    raise ChecksumError(
                        f"{error} in the {what} ({bad_checksums} bad frames, "
                        f"{checksum_retries} retries)"
                    ) from error
                if resend is not None:
                    self.request(resend)
                    break  # the parser was reset: its remaining errors are stale
        if last_checksum_error is not None:
            raise ChecksumError(
                f"{last_checksum_error} in the {what}, and no valid frame within {timeout_s:g} s"
            ) from last_checksum_error
        raise DriverTimeoutError(
            f"{self._chip}: no {what} within {timeout_s:g} s "
            f"({received} bytes received, {rejected} rejected as frames)"
        )

    def _read(self, timeout_s: float, size: int) -> bytes:
        try:
            self._port.timeout = timeout_s
            return bytes(self._port.read(max(1, size)))
        except OSError as exc:
            raise BusError(f"{self._chip}: serial read failed: {exc}") from exc

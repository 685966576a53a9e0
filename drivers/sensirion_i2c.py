"""Command/reply I/O shared by Sensirion's I2C humidity sensors (SHT3x, SHT4x).

These chips have no register pointer: the host writes a command (one or two bytes),
waits for the chip to execute it, then reads the reply as a plain I2C read of 16-bit
words, each followed by a CRC-8 (checked in ``drivers.sensirion``). SMBus register
calls would put a register byte on the wire, so every transfer here is a raw
``i2c_rdwr`` message.

While it is still busy the chip does not acknowledge a read header (when clock
stretching is off, which it must be on a Raspberry Pi: the BCM2835 I2C controller
mishandles clock stretching). The read is therefore retried until a deadline on the
monotonic clock, and only then reported as a timeout.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from smbus2 import i2c_msg

from drivers.errors import BusError
from drivers.sensirion import unpack_words
from drivers.timing import poll_until

RETRY_INTERVAL_S = 0.001
"""Pause between read attempts while the chip still refuses its read header."""

_NOT_ACKNOWLEDGED = frozenset({errno.EREMOTEIO, errno.ENXIO})
"""Errnos Linux I2C adapters report for a NACK (bcm2835: EREMOTEIO; others: ENXIO)."""


class RdwrBus(Protocol):
    """The one ``smbus2.SMBus`` method these chips need."""

    def i2c_rdwr(self, *i2c_msgs: Any) -> None: ...


@dataclass(frozen=True)
class Command:
    """One chip command, described as data: what is sent, what comes back, how long it takes."""

    name: str
    """The datasheet's name, used in error messages."""
    code: bytes
    """The bytes written (no register pointer, no CRC: commands carry none)."""
    reply_words: int = 0
    """16-bit words (each with its CRC) the chip answers with; 0 = write only."""
    duration_s: float = 0.0
    """The datasheet's maximum execution time: the wait before reading the reply."""

    def describe(self) -> str:
        return f"{self.name} (0x{self.code.hex().upper()})"


def is_nack(exc: OSError) -> bool:
    return exc.errno in _NOT_ACKNOWLEDGED


class SensirionI2C:
    """Sends commands and fetches CRC-checked replies for one chip at one address."""

    def __init__(
        self,
        bus: RdwrBus,
        address: int,
        chip: str,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.bus = bus
        self.address = address
        self.chip = chip
        self._sleep = sleep

    @property
    def where(self) -> str:
        return f"{self.chip} at I2C address 0x{self.address:02x}"

    def send(self, command: Command) -> None:
        """Write ``command``; a NACK or any other bus failure raises ``BusError``."""
        try:
            self.bus.i2c_rdwr(i2c_msg.write(self.address, command.code))
        except OSError as exc:
            raise BusError(
                f"{self.where}: command {command.describe()} not accepted: {exc}"
            ) from exc

    def fetch(self, command: Command, *, deadline: float) -> list[int]:
        """Read the reply to ``command``, retrying while the chip NACKs, until ``deadline``.

        Raises ``DriverTimeoutError`` if the chip still NACKs at the deadline,
        ``ChecksumError`` if a CRC does not match, ``BusError`` on any other bus failure.
        """
        length = 3 * command.reply_words

        def attempt() -> bytes | None:
            message = i2c_msg.read(self.address, length)
            try:
                self.bus.i2c_rdwr(message)
            except OSError as exc:
                if is_nack(exc):
                    return None
                raise BusError(
                    f"{self.where}: reading the reply to {command.describe()} failed: {exc}"
                ) from exc
            return bytes(message)

        reply = poll_until(
            attempt,
            timeout_s=max(0.0, deadline - time.monotonic()),
            interval_s=RETRY_INTERVAL_S,
            what=f"{self.where}: reply to {command.describe()} (read not acknowledged)",
            sleep=self._sleep,
        )
        return unpack_words(reply, what=f"{self.where}: reply to {command.describe()}")

    def execute(self, command: Command, *, timeout_s: float) -> list[int]:
        """Send ``command``, wait its maximum duration, and fetch its reply.

        ``timeout_s`` bounds the whole exchange from the moment the command was sent; the
        reply is awaited at least once even if the wait itself overran it.
        """
        self.send(command)
        started = time.monotonic()
        if command.duration_s > 0:
            self._sleep(command.duration_s)
        if command.reply_words == 0:
            return []
        return self.fetch(command, deadline=started + timeout_s)

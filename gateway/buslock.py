"""One lock per physical I2C bus, held for each bus transaction.

Some chips wait a long time between transactions (SCD4x: up to 5 s until data is ready).
Holding the bus for a whole read would stall every other chip on it, so each I2C chip
gets its own worker thread and only the transactions themselves are serialised.
Serial devices are different: a request and its answer must not interleave with another
device's on the same port (Modbus meters share one RS-485 line), so a serial port's
devices share one worker thread and a read holds the port throughout.
"""

from __future__ import annotations

import threading
from typing import Any

SMBUS_METHODS = (
    "read_byte", "write_byte", "read_byte_data", "write_byte_data", "read_word_data",
    "write_word_data", "read_i2c_block_data", "write_i2c_block_data", "i2c_rdwr",
)


class LockedSMBus:
    """An ``smbus2.SMBus`` stand-in that takes the bus lock around every transaction.

    Only the methods drivers may call (DESIGN.md) exist, so a driver reaching for
    anything else fails in tests as it should.
    """

    def __init__(self, bus: Any, lock: threading.Lock) -> None:
        self._bus = bus
        self._lock = lock

    def __getattr__(self, name: str) -> Any:
        if name not in SMBUS_METHODS:
            raise AttributeError(f"drivers may not call SMBus.{name}")
        method = getattr(self._bus, name)

        def locked(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return method(*args, **kwargs)

        locked.__name__ = name
        return locked

"""A fake I2C bus with the ``smbus2.SMBus`` methods the drivers may call.

Every SMBus call is turned into the raw I2C transactions it makes on a real bus
(a write of the register pointer, then a read), and those go to the emulated chip.
So the fake chips only implement ``i2c_write``/``i2c_read``, exactly as the silicon
does, and a driver that uses the wrong SMBus call sees what it would see on a Pi.
"""

from __future__ import annotations

import ctypes
import errno
import threading
import time
from collections.abc import Iterable

from smbus2 import i2c_msg

from drivers.fake.base import FakeDevice, RecentLog

I2C_M_RD = 0x0001


def nack() -> OSError:
    return OSError(errno.EREMOTEIO, "Remote I/O error")


class FakeI2CDevice(FakeDevice):
    """A chip on the fake bus. Subclasses implement the two raw transactions."""

    def __init__(self, address: int) -> None:
        super().__init__()
        self.address = address

    def i2c_write(self, data: bytes) -> None:
        """A write transaction: START, address+W, ``data``, STOP (or repeated START)."""
        raise NotImplementedError

    def i2c_read(self, length: int) -> bytes:
        """A read transaction of ``length`` bytes."""
        raise NotImplementedError

    def _check_faults(self) -> None:
        if self.faults.nack:
            raise nack()
        if self.faults.delay_s:
            time.sleep(self.faults.delay_s)


class FakeSMBus:
    """Stands where ``smbus2.SMBus(n)`` would; devices are attached by address."""

    def __init__(self, devices: Iterable[FakeI2CDevice] = (), bus: int = 1) -> None:
        self.bus = bus
        self.devices: dict[int, FakeI2CDevice] = {}
        self.transactions: RecentLog[tuple[int, str, bytes]] = RecentLog()
        """Log of (address, "w"/"r", bytes), for tests that assert the bytes on the wire."""
        self._lock = threading.Lock()
        for device in devices:
            self.attach(device)

    def attach(self, device: FakeI2CDevice) -> None:
        if device.address in self.devices:
            raise ValueError(f"address 0x{device.address:02x} already taken on fake bus")
        self.devices[device.address] = device

    def detach(self, address: int) -> None:
        self.devices.pop(address, None)

    def _device(self, address: int) -> FakeI2CDevice:
        device = self.devices.get(address)
        if device is None:
            raise nack()
        return device

    def _write(self, address: int, data: bytes) -> None:
        with self._lock:
            self.transactions.append((address, "w", bytes(data)))
            del self.transactions[:-1000]
            self._device(address).i2c_write(bytes(data))

    def _read(self, address: int, length: int) -> bytes:
        with self._lock:
            data = self._device(address).i2c_read(length)
            if len(data) != length:
                raise AssertionError(f"fake at 0x{address:02x} returned {len(data)} bytes")
            self.transactions.append((address, "r", data))
            del self.transactions[:-1000]
            return data

    def write_quick(self, i2c_addr: int, force: bool | None = None) -> None:
        """Address-only transaction, as ``i2cdetect`` probes: the chip acknowledges its
        address (or not) and no data moves. Only ``scan`` uses it, never a driver."""
        with self._lock:
            self.transactions.append((i2c_addr, "q", b""))
            device = self._device(i2c_addr)
            if device.faults.nack:
                raise nack()

    # The SMBus methods the drivers may use (see DESIGN.md).

    def read_byte(self, i2c_addr: int, force: bool | None = None) -> int:
        return self._read(i2c_addr, 1)[0]

    def write_byte(self, i2c_addr: int, value: int, force: bool | None = None) -> None:
        self._write(i2c_addr, bytes([value]))

    def read_byte_data(self, i2c_addr: int, register: int, force: bool | None = None) -> int:
        self._write(i2c_addr, bytes([register]))
        return self._read(i2c_addr, 1)[0]

    def write_byte_data(
        self, i2c_addr: int, register: int, value: int, force: bool | None = None
    ) -> None:
        self._write(i2c_addr, bytes([register, value]))

    def read_word_data(self, i2c_addr: int, register: int, force: bool | None = None) -> int:
        self._write(i2c_addr, bytes([register]))
        data = self._read(i2c_addr, 2)
        return data[0] | (data[1] << 8)

    def write_word_data(
        self, i2c_addr: int, register: int, value: int, force: bool | None = None
    ) -> None:
        self._write(i2c_addr, bytes([register, value & 0xFF, (value >> 8) & 0xFF]))

    def read_i2c_block_data(
        self, i2c_addr: int, register: int, length: int, force: bool | None = None
    ) -> list[int]:
        if not 0 < length <= 32:
            raise ValueError("Desired block length over 32 bytes")
        self._write(i2c_addr, bytes([register]))
        return list(self._read(i2c_addr, length))

    def write_i2c_block_data(
        self, i2c_addr: int, register: int, data: list[int], force: bool | None = None
    ) -> None:
        if len(data) > 32:
            raise ValueError("Data length cannot exceed 32 bytes")
        self._write(i2c_addr, bytes([register, *data]))

    def i2c_rdwr(self, *i2c_msgs: i2c_msg) -> None:
        for msg in i2c_msgs:
            if msg.flags & I2C_M_RD:
                data = self._read(msg.addr, msg.len)
                ctypes.memmove(msg.buf, data, msg.len)
            else:
                self._write(msg.addr, bytes(msg))

    def close(self) -> None:
        pass

    def __enter__(self) -> FakeSMBus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

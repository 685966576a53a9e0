"""The one error tree of every driver.

Each error also inherits the builtin it most resembles, so callers that only know
``OSError``/``ValueError``/``TimeoutError`` still catch the right thing.
"""

from __future__ import annotations


class DriverError(Exception):
    """Base of every failure a driver reports. A driver never returns a made-up value."""


class BusError(DriverError, OSError):
    """The bus transaction itself failed (I2C no acknowledge, serial port gone)."""


class DeviceNotFoundError(DriverError, LookupError):
    """Nothing answers at the configured address or port."""


class WrongChipError(DeviceNotFoundError):
    """Something answers, but its chip id or serial number is not the expected chip's."""


class ChecksumError(DriverError, ValueError):
    """A CRC or checksum sent by the device does not match its data."""


class DriverTimeoutError(DriverError, TimeoutError):
    """The device did not finish or answer within its bounded wait."""


class InvalidFrameError(DriverError, ValueError):
    """A frame or reply is malformed: bad header, length, or layout."""


class OutOfRangeError(DriverError, ValueError):
    """The device reported a value outside what it can physically measure."""


class DeviceBusyError(DriverError):
    """The device reports that no new measurement is ready yet."""


class ModbusExceptionError(DriverError):
    """A Modbus slave answered with an exception reply."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class ConfigurationError(DriverError, ValueError):
    """A driver was constructed with arguments the device cannot accept."""

"""ROHM BH1750FVI ambient light sensor.

Source: ROHM "BH1750FVI Technical Note" (Rev. B, 2009), cited below by section name.
The chip has no registers and no chip id: the host sends one-byte opcodes
("Instruction Set Architecture") and reads the 16-bit measurement result, MSB first,
as a plain two-byte read. The driver uses H-resolution mode (1 lx per count at the
default sensitivity), one-time (default) or continuous.

A read before a measurement has finished returns the previous result (or 0 after power-up
or reset), and nothing on the bus tells the two apart, so the driver always waits the
datasheet's maximum measurement time before reading.
"""

from __future__ import annotations

import time
from typing import Any, Literal, Protocol

from smbus2 import i2c_msg

from drivers.errors import BusError, ConfigurationError, DeviceNotFoundError, OutOfRangeError

DEFAULT_ADDRESS = 0x23
"""ADDR pin low; 0x5C with ADDR high."""

# Instruction Set Architecture (opcodes).
POWER_DOWN = 0x00
POWER_ON = 0x01
RESET = 0x07
"""Clears the data register; not accepted in power-down."""
CONTINUOUSLY_H_RESOLUTION_MODE = 0x10
ONE_TIME_H_RESOLUTION_MODE = 0x20
"""Measures once, then the chip powers itself down."""
CHANGE_MEASUREMENT_TIME_HIGH = 0x40
"""01000_MT[7,6,5]: the three high bits of MTreg."""
CHANGE_MEASUREMENT_TIME_LOW = 0x60
"""011_MT[4,3,2,1,0]: the five low bits of MTreg."""

MTREG_DEFAULT = 69
MTREG_MIN = 31
MTREG_MAX = 254
"""'Adjust measurement result for influence of optical window': MTreg range and default."""

H_RESOLUTION_MAX_TIME_S = 0.180
"""Electrical characteristics: H-resolution measurement time, 120 ms typ., 180 ms max.,
at MTreg = 69; the time scales with MTreg."""

COUNTS_PER_LUX = 1.2
"""'Measurement sequence example': lx = count / 1.2 in H-resolution mode at MTreg 69."""

SATURATED = 0xFFFF

Mode = Literal["one_time", "continuous"]


class Bh1750Bus(Protocol):
    """The ``smbus2.SMBus`` methods this driver uses."""

    def write_byte(self, i2c_addr: int, value: int, force: bool | None = None) -> None: ...

    def i2c_rdwr(self, *i2c_msgs: i2c_msg) -> None: ...


# Pure arithmetic.


def lux_from_raw(raw: int, mtreg: int = MTREG_DEFAULT, where: str = "BH1750") -> float:
    """lx = count / 1.2 * (69 / MTreg) in H-resolution mode.

    A saturated count (0xFFFF) is not a measurement: the light may be anything brighter.
    """
    if not 0 <= raw <= 0xFFFF:
        raise ValueError(f"raw count {raw} is not a 16-bit value")
    if raw == SATURATED:
        raise OutOfRangeError(
            f"{where}: saturated (count 0xffff at MTreg {mtreg}): brighter than "
            f"{(SATURATED - 1) / COUNTS_PER_LUX * MTREG_DEFAULT / mtreg:.0f} lx; "
            "a smaller MTreg extends the range"
        )
    return raw / COUNTS_PER_LUX * (MTREG_DEFAULT / mtreg)


def measurement_time_opcodes(mtreg: int) -> tuple[int, int]:
    """The two opcodes that load MTreg: high three bits, then low five bits."""
    return (
        CHANGE_MEASUREMENT_TIME_HIGH | (mtreg >> 5) & 0x07,
        CHANGE_MEASUREMENT_TIME_LOW | mtreg & 0x1F,
    )


def max_measurement_time_s(mtreg: int) -> float:
    return H_RESOLUTION_MAX_TIME_S * mtreg / MTREG_DEFAULT


def _message_bytes(message: Any) -> bytes:
    # smbus2's stub types __bytes__ as str; at run time it returns the buffer's bytes.
    return bytes(message)


class BH1750:
    """A BH1750 in H-resolution mode.

    ``mode="one_time"`` (default) starts a measurement on every ``read()`` and waits for
    it (180 ms at MTreg 69); the chip sleeps in between. ``mode="continuous"`` keeps the
    chip measuring, and ``read()`` only waits when the last read was less than one
    measurement time ago, so that it never hands out the same result twice.
    ``mtreg`` (31..254) trades range for resolution; ``measurement_time_s`` overrides the
    datasheet maximum (tests use it with a fast fake).
    """

    def __init__(
        self,
        bus: Bh1750Bus,
        address: int = DEFAULT_ADDRESS,
        *,
        mode: Mode = "one_time",
        mtreg: int = MTREG_DEFAULT,
        measurement_time_s: float | None = None,
    ) -> None:
        if mode not in ("one_time", "continuous"):
            raise ConfigurationError(
                f"BH1750 mode must be 'one_time' or 'continuous', not {mode!r}"
            )
        if isinstance(mtreg, bool) or not isinstance(mtreg, int):
            raise ConfigurationError(f"BH1750 mtreg must be an integer, not {mtreg!r}")
        if not MTREG_MIN <= mtreg <= MTREG_MAX:
            raise ConfigurationError(
                f"BH1750 mtreg must be within {MTREG_MIN}..{MTREG_MAX}, not {mtreg}"
            )
        self._bus = bus
        self.address = address
        self.mode: Mode = mode
        self.mtreg = mtreg
        self._measurement_time_s = (
            max_measurement_time_s(mtreg) if measurement_time_s is None else measurement_time_s
        )
        self._where = f"BH1750 at 0x{address:02x}"
        self._fresh_at = 0.0
        """Monotonic time from which the data register holds a result not yet handed out."""

        # No chip id: an acknowledged power-on is all the presence check there is.
        try:
            self._command(POWER_ON, "power on")
        except BusError as exc:
            raise DeviceNotFoundError(f"{self._where}: no answer ({exc.__cause__})") from exc
        self._configure()

    def read(self) -> dict[str, float]:
        if self.mode == "one_time":
            self._start(ONE_TIME_H_RESOLUTION_MODE)
            time.sleep(self._measurement_time_s)
            raw = self._read_raw()
        else:
            self._wait_until_fresh()
            raw = self._read_raw()
            if raw == 0:
                # Also what a chip that lost power and sits powered down reads: restart
                # it and measure once more before reporting darkness.
                self._start(CONTINUOUSLY_H_RESOLUTION_MODE)
                self._wait_until_fresh()
                raw = self._read_raw()
            self._fresh_at = time.monotonic() + self._measurement_time_s
        # To 0.1 lx: one count is 0.23 lx at the largest MTreg (254), 1.9 lx at the
        # smallest, so the rounding is below half a count at every setting.
        return {"illuminance_lux": round(lux_from_raw(raw, self.mtreg, self._where), 1)}

    def reset(self) -> None:
        """Power on, clear the data register and, in continuous mode, start measuring."""
        self._command(POWER_ON, "power on")
        self._configure()

    def close(self) -> None:
        """Power the chip down (continuous mode would otherwise keep it measuring)."""
        self._command(POWER_DOWN, "power down")

    # I/O.

    def _configure(self) -> None:
        self._command(RESET, "reset")
        if self.mode == "continuous":
            self._start(CONTINUOUSLY_H_RESOLUTION_MODE)

    def _start(self, mode_opcode: int) -> None:
        # MTreg is sent with every start: a chip that lost power has forgotten it, and
        # counts taken at another MTreg would be converted wrongly without any sign.
        # A measurement opcode also wakes a powered-down chip ("Measurement Procedure":
        # the power-on command may be omitted).
        self._load_mtreg()
        self._command(mode_opcode, f"measurement mode 0x{mode_opcode:02x}")
        self._fresh_at = time.monotonic() + self._measurement_time_s

    def _load_mtreg(self) -> None:
        high, low = measurement_time_opcodes(self.mtreg)
        self._command(high, "change measurement time (high bits)")
        self._command(low, "change measurement time (low bits)")

    def _wait_until_fresh(self) -> None:
        remaining = self._fresh_at - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)

    def _command(self, opcode: int, what: str) -> None:
        try:
            self._bus.write_byte(self.address, opcode)
        except OSError as exc:
            raise BusError(f"{self._where}: {what} not acknowledged: {exc}") from exc

    def _read_raw(self) -> int:
        message = i2c_msg.read(self.address, 2)
        try:
            self._bus.i2c_rdwr(message)
        except OSError as exc:
            raise BusError(f"{self._where}: reading the result failed: {exc}") from exc
        data = _message_bytes(message)
        return (data[0] << 8) | data[1]

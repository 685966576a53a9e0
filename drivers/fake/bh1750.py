"""A bus-level BH1750FVI: one-byte opcodes in, the 16-bit data register out.

What it emulates (ROHM BH1750FVI Technical Note, Rev. B):

- power-down / power-on states; reset clears the data register and is ignored in
  power-down; one-time modes power the chip down once their measurement is done;
- the measurement time on ``time.monotonic``: typically 120 ms (H-resolution) or 16 ms
  (L-resolution) at MTreg 69, scaled by MTreg/69 and by ``time_scale`` (tests shorten
  it); until a measurement completes the data register keeps its previous value, 0 after
  power-up or reset, exactly what a too-early read sees on the chip;
- MTreg loaded by its two opcodes and latched when a measurement starts;
- counts from lux as the chip quantises them: ``floor(lux * 1.2 * MTreg / 69)`` in
  H-resolution (twice that in H-resolution mode 2, multiples of 4 in L-resolution),
  saturating at 0xFFFF.

Unknown opcodes are not acknowledged. Faults: ``nack``, ``stuck`` and ``delay_s`` (each
transaction is that much slower). The chip has no CRC and no id, so ``bad_crc`` and
``wrong_id`` do not apply: nothing on its bus could show them.
"""

from __future__ import annotations

import math
import time
from typing import ClassVar

from drivers.bh1750 import (
    CHANGE_MEASUREMENT_TIME_HIGH,
    CHANGE_MEASUREMENT_TIME_LOW,
    COUNTS_PER_LUX,
    DEFAULT_ADDRESS,
    MTREG_DEFAULT,
    POWER_DOWN,
    POWER_ON,
    RESET,
)
from drivers.fake.base import RecentLog
from drivers.fake.i2c import FakeI2CDevice, nack

H_RESOLUTION_TYPICAL_S = 0.120
L_RESOLUTION_TYPICAL_S = 0.016

# opcode -> (continuous?, resolution)
MEASUREMENT_OPCODES: dict[int, tuple[bool, str]] = {
    0x10: (True, "H"),
    0x11: (True, "H2"),
    0x13: (True, "L"),
    0x20: (False, "H"),
    0x21: (False, "H2"),
    0x23: (False, "L"),
}


def counts_from_lux(lux: float, mtreg: int = MTREG_DEFAULT, resolution: str = "H") -> int:
    """What the chip's converter produces for ``lux``: truncated, saturating at 0xFFFF."""
    exact = max(0.0, lux) * COUNTS_PER_LUX * mtreg / MTREG_DEFAULT
    if resolution == "H2":
        exact *= 2
    # The guard keeps a value exactly on a step (as the driver computes it back) on it.
    counts = min(0xFFFF, math.floor(exact + 1e-9))
    if resolution == "L":
        counts -= counts % 4
    return counts


class FakeBH1750(FakeI2CDevice):
    QUANTITIES: ClassVar[dict[str, float]] = {"illuminance_lux": 250.0}

    def __init__(self, address: int = DEFAULT_ADDRESS, *, time_scale: float = 1.0) -> None:
        super().__init__(address)
        self.time_scale = time_scale
        self.opcodes: RecentLog[int] = RecentLog()
        """Every opcode the chip acknowledged, in order."""
        self._powered = False
        self._mtreg = MTREG_DEFAULT
        self._data = 0
        self._continuous = False
        self._resolution: str | None = None
        """Resolution of the measurement under way, None when not measuring."""
        self._measure_mtreg = MTREG_DEFAULT
        self._measure_start = 0.0
        self._measurements_done = 0

    @property
    def powered(self) -> bool:
        with self._lock:
            self._advance(time.monotonic())
            return self._powered

    @property
    def mtreg(self) -> int:
        return self._mtreg

    def power_cycle(self) -> None:
        """Supply lost and back: powered down, MTreg 69, data register 0."""
        with self._lock:
            self._powered = False
            self._mtreg = MTREG_DEFAULT
            self._data = 0
            self._resolution = None

    def set(self, **values: float) -> None:
        # A measurement that ended before this call integrated the old light level, and a
        # stuck element keeps the value it had when it got stuck.
        with self._lock:
            self._advance(time.monotonic())
            if self.faults.stuck:
                self.value("illuminance_lux")
            super().set(**values)

    def measurement_time_s(self, resolution: str, mtreg: int) -> float:
        typical = L_RESOLUTION_TYPICAL_S if resolution == "L" else H_RESOLUTION_TYPICAL_S
        return typical * mtreg / MTREG_DEFAULT * self.time_scale

    # The bus side.

    def i2c_write(self, data: bytes) -> None:
        with self._lock:
            self._check_faults()
            now = time.monotonic()
            self._advance(now)
            for opcode in data:
                self._execute(opcode, now)

    def i2c_read(self, length: int) -> bytes:
        with self._lock:
            self._check_faults()
            self._advance(time.monotonic())
            register = bytes(((self._data >> 8) & 0xFF, self._data & 0xFF))
            return (register + b"\xff" * length)[:length]

    # The chip's insides.

    def _execute(self, opcode: int, now: float) -> None:
        if opcode == POWER_DOWN:
            self._powered = False
            self._resolution = None
        elif opcode == POWER_ON:
            self._powered = True
        elif opcode == RESET:
            if self._powered:
                self._data = 0
        elif opcode & 0xF8 == CHANGE_MEASUREMENT_TIME_HIGH:
            self._mtreg = (opcode & 0x07) << 5 | self._mtreg & 0x1F
        elif opcode & 0xE0 == CHANGE_MEASUREMENT_TIME_LOW:
            self._mtreg = self._mtreg & 0xE0 | opcode & 0x1F
        elif opcode in MEASUREMENT_OPCODES:
            self._continuous, self._resolution = MEASUREMENT_OPCODES[opcode]
            self._powered = True
            self._measure_mtreg = self._mtreg
            self._measure_start = now
            self._measurements_done = 0
        else:
            raise nack()
        self.opcodes.append(opcode)

    def _advance(self, now: float) -> None:
        """Finish the measurements whose time has passed since the last look."""
        if self._resolution is None:
            return
        duration = self.measurement_time_s(self._resolution, self._measure_mtreg)
        done = math.floor((now - self._measure_start) / duration) if duration > 0 else 1
        if done <= self._measurements_done:
            return
        self._measurements_done = done
        self._data = counts_from_lux(
            self.value("illuminance_lux"), self._measure_mtreg, self._resolution
        )
        if not self._continuous:
            self._powered = False
            self._resolution = None

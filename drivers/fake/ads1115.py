"""A bus-level ADS1115: pointer register, four 16-bit registers, timed conversions.

What it emulates (TI SBAS444):

- the Address Pointer Register: a one-byte write selects the register a following read
  returns; a three-byte write also loads it (MSB first); the Conversion register is
  read-only; Config reads 0x8583 at power-up, Lo_thresh 0x8000, Hi_thresh 0x7FFF;
- single-shot mode: writing OS = 1 while idle starts one conversion of the selected MUX
  input (single-ended or differential) at the selected PGA; OS reads 0 until it ends
  1/DR later, and until then the Conversion register keeps the previous result (0 after
  power-up); continuous mode (MODE = 0) refreshes the result every 1/DR;
- codes computed from the input voltages as the chip does: ``round(V * 32768 / FSR)``,
  clipped to 0x7FFF / 0x8000 at and beyond full scale.

The four inputs are set with ``set(ain0_voltage_volts=...)`` .. ``ain3_voltage_volts``.
``voltage_volts`` (the driver's name when it reads only AIN0) is the same input as
``ain0_voltage_volts``; when both are given at once, ``ain0_voltage_volts`` wins.

Faults: ``nack``, ``stuck``, ``delay_s`` (conversions take that much longer),
``wrong_id`` (the Config register reads 0x60A0, as a TMP102 at the same address would).
There is no CRC on this bus, so ``bad_crc`` does not apply.
"""

from __future__ import annotations

import math
import time
from typing import ClassVar

from drivers.ads1115 import (
    CONFIG_REGISTER,
    CONFIG_RESET,
    CONVERSION_REGISTER,
    DEFAULT_ADDRESS,
    DR_SHIFT,
    FSR_BY_PGA,
    HI_THRESH_REGISTER,
    LO_THRESH_REGISTER,
    MODE,
    MUX_SHIFT,
    OS,
    PGA_SHIFT,
)
from drivers.fake.i2c import FakeI2CDevice, nack

SPS_BY_DR = (8, 16, 32, 64, 128, 250, 475, 860)

# MUX[2:0] -> (positive input, negative input or None for GND)
MUX_INPUTS: dict[int, tuple[int, int | None]] = {
    0b000: (0, 1),
    0b001: (0, 3),
    0b010: (1, 3),
    0b011: (2, 3),
    0b100: (0, None),
    0b101: (1, None),
    0b110: (2, None),
    0b111: (3, None),
}

ANOTHER_CHIPS_CONFIG = 0x60A0
"""What a TMP102 (also at 0x48) answers from its register 1."""


def code_from_volts(volts: float, fsr_volts: float) -> int:
    """The chip's output code for a differential input, clipped at full scale."""
    return max(-0x8000, min(0x7FFF, round(volts * 32768 / fsr_volts)))


class FakeADS1115(FakeI2CDevice):
    QUANTITIES: ClassVar[dict[str, float]] = {
        "voltage_volts": 0.0,
        "ain0_voltage_volts": 0.0,
        "ain1_voltage_volts": 0.0,
        "ain2_voltage_volts": 0.0,
        "ain3_voltage_volts": 0.0,
    }

    def __init__(self, address: int = DEFAULT_ADDRESS) -> None:
        super().__init__(address)
        self.conversions = 0
        """Conversions started, for tests."""
        self._power_on()

    def power_cycle(self) -> None:
        """Supply lost and back: every register to its power-on value."""
        with self._lock:
            self._power_on()

    def set(self, **values: float) -> None:
        if "voltage_volts" in values and "ain0_voltage_volts" not in values:
            values["ain0_voltage_volts"] = values["voltage_volts"]
        if "ain0_voltage_volts" in values:
            values["voltage_volts"] = values["ain0_voltage_volts"]
        with self._lock:
            self._advance(time.monotonic())
            if self.faults.stuck:
                self.value("ain0_voltage_volts")  # freeze the inputs as they are now
            super().set(**values)

    def conversion_time_s(self) -> float:
        return 1.0 / SPS_BY_DR[(self._config >> DR_SHIFT) & 0b111] + self.faults.delay_s

    # The bus side.

    def i2c_write(self, data: bytes) -> None:
        with self._lock:
            self._check_nack()
            now = time.monotonic()
            self._advance(now)
            if len(data) not in (1, 3) or data[0] > HI_THRESH_REGISTER:
                raise nack()
            self._pointer = data[0]
            if len(data) == 3:
                self._write_register(self._pointer, (data[1] << 8) | data[2], now)

    def i2c_read(self, length: int) -> bytes:
        with self._lock:
            self._check_nack()
            self._advance(time.monotonic())
            value = self._read_register(self._pointer)
            register = bytes(((value >> 8) & 0xFF, value & 0xFF))
            # Reading on past the two bytes repeats the register.
            return (register * (length // 2 + 1))[:length]

    # The chip's insides.

    def _power_on(self) -> None:
        self._pointer = CONVERSION_REGISTER
        self._config = CONFIG_RESET
        self._registers = {CONVERSION_REGISTER: 0, LO_THRESH_REGISTER: 0x8000,
                           HI_THRESH_REGISTER: 0x7FFF}
        self._converting_until: float | None = None
        self._pending_code = 0
        self._continuous_start: float | None = None
        self._continuous_done = 0

    def _check_nack(self) -> None:
        if self.faults.nack:
            raise nack()

    def _read_register(self, register: int) -> int:
        if register == CONFIG_REGISTER:
            if self.faults.wrong_id:
                return ANOTHER_CHIPS_CONFIG
            busy = self._converting_until is not None
            return self._config & ~OS | (0 if busy else OS)
        return self._registers[register]

    def _write_register(self, register: int, value: int, now: float) -> None:
        if register == CONVERSION_REGISTER:
            return  # read-only
        if register != CONFIG_REGISTER:
            self._registers[register] = value
            return
        idle = self._converting_until is None
        self._config = value & ~OS
        if not value & MODE:
            self._continuous_start = now
            self._continuous_done = 0
            self._converting_until = None
        elif value & OS and idle:
            # OS can only be written in power-down; during a conversion it has no effect.
            self._continuous_start = None
            self.conversions += 1
            self._pending_code = self._sample()
            self._converting_until = now + self.conversion_time_s()
        else:
            self._continuous_start = None

    def _sample(self) -> int:
        positive, negative = MUX_INPUTS[(self._config >> MUX_SHIFT) & 0b111]
        volts = self.value(f"ain{positive}_voltage_volts")
        if negative is not None:
            volts -= self.value(f"ain{negative}_voltage_volts")
        fsr = FSR_BY_PGA[(self._config >> PGA_SHIFT) & 0b111]
        return code_from_volts(volts, fsr) & 0xFFFF

    def _advance(self, now: float) -> None:
        """Finish the conversions whose time has come since the last look."""
        if self._converting_until is not None and now >= self._converting_until:
            self._registers[CONVERSION_REGISTER] = self._pending_code
            self._converting_until = None
        if self._continuous_start is not None:
            period = self.conversion_time_s()
            done = math.floor((now - self._continuous_start) / period)
            if done > self._continuous_done:
                self._continuous_done = done
                self._registers[CONVERSION_REGISTER] = self._sample()

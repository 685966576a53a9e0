"""Bus-level emulation of a Bosch BME280 (data sheet BST-BME280-DS002).

As the chip does:

- a register file with auto-incrementing reads and (register, value) pair writes
  (section 6.2); chip id 0x60; trimming parameters in 0x88..0xA1 and 0xE1..0xE7 with
  dig_H4/dig_H5 packed as signed 12-bit values across 0xE4..0xE6;
- forced mode: a write to ``ctrl_meas`` with mode 01/10 starts one conversion, sets
  ``status.measuring`` for the typical measurement time of Appendix B (plus
  ``faults.delay_s``), then updates the data registers and returns to sleep mode; data
  read during the conversion are the previous ones; a trigger written during a
  conversion is ignored (the chip would run it afterwards, section 3.3.1);
- ``ctrl_hum`` is latched only by a ``ctrl_meas`` write (section 5.4.3): change it
  without writing ``ctrl_meas`` afterwards and the old humidity setting is used;
- a skipped measurement (oversampling 0) leaves 0x80000 (pressure, temperature) or
  0x8000 (humidity) in its data registers, which are also their reset values;
- raw values: found by bisection over the ADC codes so that the data sheet's
  double-precision compensation (section 8.1) of the code is nearest the physical
  value, with the resolution the oversampling gives (16 + osrs - 1 bits for T and P when
  the IIR filter is off, section 3.4 / 3.5); this is an independent implementation from
  the driver's integer formulas, so the two check each other;
- soft reset (0xB6 to 0xE0): registers back to reset values, no acknowledge during the
  2 ms start-up.

Normal mode and the IIR filter's smoothing are not emulated (the filter setting only
switches T and P to 20-bit resolution). Faults: ``nack``, ``stuck``, ``delay_s``
(conversions take that much longer), ``wrong_id`` (chip id 0x58, a BMP280).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from typing import ClassVar

from drivers.bme280 import (
    CHIP_ID,
    REG_CALIB00,
    REG_CALIB26,
    REG_CONFIG,
    REG_CTRL_HUM,
    REG_CTRL_MEAS,
    REG_ID,
    REG_PRESS_MSB,
    REG_RESET,
    REG_STATUS,
    RESET_WORD,
    SKIPPED_16BIT,
    SKIPPED_20BIT,
    STATUS_MEASURING,
    Calibration,
)
from drivers.fake.i2c import FakeI2CDevice, nack

BMP280_CHIP_ID = 0x58
START_UP_TIME_S = 0.002

TYPICAL_CALIBRATION = Calibration(
    # Temperature and pressure: the BMP280 data sheet's worked example (section 3.12);
    # the BME280 uses the same formulas. Humidity: values of the size real parts carry.
    dig_T1=27504, dig_T2=26435, dig_T3=-1000,
    dig_P1=36477, dig_P2=-10685, dig_P3=3024, dig_P4=2855, dig_P5=140,
    dig_P6=-7, dig_P7=15500, dig_P8=-14600, dig_P9=6000,
    dig_H1=75, dig_H2=362, dig_H3=0, dig_H4=313, dig_H5=50, dig_H6=30,
)  # fmt: skip

NEGATIVE_H4_H5_CALIBRATION = Calibration(
    # The same part with negative 12-bit dig_H4 and dig_H5: a driver that forgets to
    # sign-extend reads them as ~4090 and reports humidity stuck at 0 %RH.
    dig_T1=27504, dig_T2=26435, dig_T3=-1000,
    dig_P1=36477, dig_P2=-10685, dig_P3=3024, dig_P4=2855, dig_P5=140,
    dig_P6=-7, dig_P7=15500, dig_P8=-14600, dig_P9=6000,
    dig_H1=75, dig_H2=362, dig_H3=0, dig_H4=-1, dig_H5=-5, dig_H6=30,
)  # fmt: skip


def calibration_bytes(cal: Calibration) -> tuple[bytes, bytes]:
    """The trimming parameters as the chip stores them: (0x88..0xA1, 0xE1..0xE7)."""
    for name in ("dig_H4", "dig_H5"):
        if not -2048 <= getattr(cal, name) <= 2047:
            raise ValueError(f"{name} must fit in 12 signed bits")
    calib00 = struct.pack(
        "<HhhHhhhhhhhh",
        cal.dig_T1, cal.dig_T2, cal.dig_T3,
        cal.dig_P1, cal.dig_P2, cal.dig_P3, cal.dig_P4, cal.dig_P5,
        cal.dig_P6, cal.dig_P7, cal.dig_P8, cal.dig_P9,
    ) + bytes((0x00, cal.dig_H1))  # fmt: skip
    h4 = cal.dig_H4 & 0xFFF
    h5 = cal.dig_H5 & 0xFFF
    calib26 = (
        struct.pack("<hB", cal.dig_H2, cal.dig_H3)
        + bytes((h4 >> 4, ((h5 & 0x0F) << 4) | (h4 & 0x0F), h5 >> 4))
        + struct.pack("<b", cal.dig_H6)
    )
    return calib00, calib26


# Section 8.1, compensation in double precision.


def temperature_double(adc_T: int, cal: Calibration) -> tuple[float, int]:
    """(temperature in °C, t_fine)."""
    var1 = (adc_T / 16384.0 - cal.dig_T1 / 1024.0) * cal.dig_T2
    var2 = (adc_T / 131072.0 - cal.dig_T1 / 8192.0) ** 2 * cal.dig_T3
    return (var1 + var2) / 5120.0, int(var1 + var2)


def pressure_double(adc_P: int, t_fine: int, cal: Calibration) -> float:
    var1 = t_fine / 2.0 - 64000.0
    var2 = var1 * var1 * cal.dig_P6 / 32768.0
    var2 = var2 + var1 * cal.dig_P5 * 2.0
    var2 = var2 / 4.0 + cal.dig_P4 * 65536.0
    var1 = (cal.dig_P3 * var1 * var1 / 524288.0 + cal.dig_P2 * var1) / 524288.0
    var1 = (1.0 + var1 / 32768.0) * cal.dig_P1
    p = 1048576.0 - adc_P
    p = (p - var2 / 4096.0) * 6250.0 / var1
    var1 = cal.dig_P9 * p * p / 2147483648.0
    var2 = p * cal.dig_P8 / 32768.0
    return p + (var1 + var2 + cal.dig_P7) / 16.0


def humidity_double(adc_H: int, t_fine: int, cal: Calibration) -> float:
    var_h = t_fine - 76800.0
    var_h = (adc_H - (cal.dig_H4 * 64.0 + cal.dig_H5 / 16384.0 * var_h)) * (
        cal.dig_H2
        / 65536.0
        * (1.0 + cal.dig_H6 / 67108864.0 * var_h * (1.0 + cal.dig_H3 / 67108864.0 * var_h))
    )
    var_h = var_h * (1.0 - cal.dig_H1 * var_h / 524288.0)
    return min(max(var_h, 0.0), 100.0)


def nearest_code(
    compensated: Callable[[int], float], target: float, bits: int, step: int, rising: bool
) -> int:
    """The ADC code (a multiple of ``step`` below 2**bits) whose compensated value is
    nearest ``target``, by bisection; ``compensated`` is monotonic in the code."""
    sign = 1.0 if rising else -1.0
    lo, hi = 0, ((1 << bits) - 1) // step
    # Find the first index whose value is at or past the target in the rising direction.
    while lo < hi:
        mid = (lo + hi) // 2
        if sign * compensated(mid * step) >= sign * target:
            hi = mid
        else:
            lo = mid + 1
    best = lo
    if lo > 0 and abs(compensated((lo - 1) * step) - target) < abs(compensated(lo * step) - target):
        best = lo - 1
    return best * step


def _oversampling_factor(code: int) -> int:
    """osrs_x field -> factor; codes 101 and above all mean 16x."""
    return 0 if code == 0 else 1 << (min(code, 5) - 1)


def measurement_time_typ_s(t_os: int, p_os: int, h_os: int) -> float:
    """Appendix B (section 9.1): typical measurement time for the oversampling factors."""
    ms = 1.0 + 2.0 * t_os
    if p_os:
        ms += 2.0 * p_os + 0.5
    if h_os:
        ms += 2.0 * h_os + 0.5
    return ms / 1000.0


class FakeBME280(FakeI2CDevice):
    QUANTITIES: ClassVar[dict[str, float]] = {
        "temperature_celsius": 21.0,
        "relative_humidity_percent": 45.0,
        "pressure_pascals": 101325.0,
    }

    def __init__(
        self, address: int = 0x76, *, calibration: Calibration = TYPICAL_CALIBRATION
    ) -> None:
        super().__init__(address)
        self.calibration = calibration
        self._nvm = calibration_bytes(calibration)
        self._pointer = 0
        self._ready_at = 0.0
        self._conversion_ends = 0.0
        self._pending: tuple[int, int, int] | None = None
        self._reset_registers()

    def power_on_reset(self) -> None:
        """What a supply dip or a soft reset does: reset values, then 2 ms of start-up."""
        with self._lock:
            self._reset_registers()
            self._ready_at = time.monotonic() + START_UP_TIME_S

    def _reset_registers(self) -> None:
        """Registers to their reset values (section 5.3)."""
        with self._lock:
            self.ctrl_hum = 0x00
            self.osrs_h_latched = 0
            """The humidity oversampling in force: ctrl_hum as of the last ctrl_meas write."""
            self.ctrl_meas = 0x00
            self.config = 0x00
            self.adc = (SKIPPED_20BIT, SKIPPED_20BIT, SKIPPED_16BIT)
            """(adc_P, adc_T, adc_H) in the data registers."""
            self._pending = None
            self._conversion_ends = 0.0

    # The chip as seen from the bus.

    def i2c_write(self, data: bytes) -> None:
        with self._lock:
            self._check_bus()
            self._finish_conversion()
            if not data:
                return
            self._pointer = data[0]
            for i in range(0, len(data) - 1, 2):
                self._write_register(data[i], data[i + 1])
                if time.monotonic() < self._ready_at:
                    break  # reset: the rest of the transaction is lost

    def i2c_read(self, length: int) -> bytes:
        with self._lock:
            self._check_bus()
            self._finish_conversion()
            registers = self._snapshot()
            out = bytes(registers[(self._pointer + i) & 0xFF] for i in range(length))
            self._pointer = (self._pointer + length) & 0xFF
            return out

    def _check_bus(self) -> None:
        if self.faults.nack or time.monotonic() < self._ready_at:
            raise nack()

    @property
    def measuring(self) -> bool:
        return time.monotonic() < self._conversion_ends

    def _snapshot(self) -> bytearray:
        registers = bytearray(256)
        calib00, calib26 = self._nvm
        registers[REG_CALIB00 : REG_CALIB00 + len(calib00)] = calib00
        registers[REG_CALIB26 : REG_CALIB26 + len(calib26)] = calib26
        registers[REG_ID] = BMP280_CHIP_ID if self.faults.wrong_id else CHIP_ID
        registers[REG_CTRL_HUM] = self.ctrl_hum
        registers[REG_STATUS] = STATUS_MEASURING if self.measuring else 0x00
        registers[REG_CTRL_MEAS] = self.ctrl_meas
        registers[REG_CONFIG] = self.config
        adc_p, adc_t, adc_h = self.adc
        registers[REG_PRESS_MSB : REG_PRESS_MSB + 8] = bytes(
            (
                adc_p >> 12, (adc_p >> 4) & 0xFF, (adc_p & 0x0F) << 4,
                adc_t >> 12, (adc_t >> 4) & 0xFF, (adc_t & 0x0F) << 4,
                adc_h >> 8, adc_h & 0xFF,
            )
        )  # fmt: skip
        return registers

    def _write_register(self, register: int, value: int) -> None:
        if register == REG_RESET:
            if value == RESET_WORD:
                self.power_on_reset()
        elif register == REG_CTRL_HUM:
            self.ctrl_hum = value & 0x07
        elif register == REG_CONFIG:
            self.config = value & 0xFD
        elif register == REG_CTRL_MEAS:
            self.ctrl_meas = value
            self.osrs_h_latched = self.ctrl_hum
            if value & 0x03 in (0b01, 0b10) and not self.measuring:
                self._start_conversion()
        # Other registers are read-only; the chip ignores writes to them.

    # Conversions.

    def _start_conversion(self) -> None:
        t_os = _oversampling_factor(self.ctrl_meas >> 5)
        p_os = _oversampling_factor((self.ctrl_meas >> 2) & 0x07)
        h_os = _oversampling_factor(self.osrs_h_latched)
        filter_on = bool(self.config & 0x1C)
        cal = self.calibration

        def step(factor: int) -> int:
            # 16 + (osrs - 1) bits without the IIR filter (section 3.4), 20 bits with it;
            # the unused low bits of the 20-bit register read 0.
            bits = 20 if filter_on else 15 + factor.bit_length()
            return 1 << (20 - bits)

        def temperature(code: int) -> float:
            return temperature_double(code, cal)[0]

        # The pressure and humidity elements see the real temperature, measured or not.
        true_adc_t = nearest_code(temperature, self.value("temperature_celsius"), 20, 1, True)
        t_fine = temperature_double(true_adc_t, cal)[1]
        adc_t, adc_p, adc_h = SKIPPED_20BIT, SKIPPED_20BIT, SKIPPED_16BIT
        if t_os:
            adc_t = nearest_code(
                temperature, self.value("temperature_celsius"), 20, step(t_os), True
            )
        if p_os:
            adc_p = nearest_code(
                lambda code: pressure_double(code, t_fine, cal),
                self.value("pressure_pascals"),
                20,
                step(p_os),
                False,
            )
        if h_os:
            adc_h = nearest_code(
                lambda code: humidity_double(code, t_fine, cal),
                self.value("relative_humidity_percent"),
                16,
                1,
                True,
            )
        self._pending = (adc_p, adc_t, adc_h)
        self._conversion_ends = (
            time.monotonic() + measurement_time_typ_s(t_os, p_os, h_os) + self.faults.delay_s
        )

    def _finish_conversion(self) -> None:
        if self._pending is not None and not self.measuring:
            self.adc = self._pending
            self._pending = None
            self.ctrl_meas &= ~0x03  # back to sleep mode

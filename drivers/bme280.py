"""Bosch BME280 humidity, pressure and temperature sensor on I2C.

Source: Bosch Sensortec, BME280 data sheet BST-BME280-DS002. Each ``read()`` is one
measurement in forced mode (section 3.3.3):

1. write ``ctrl_hum`` (0xF2), then ``ctrl_meas`` (0xF4) with mode = forced. The order
   matters: a ``ctrl_hum`` write only takes effect after the next ``ctrl_meas`` write
   (section 5.4.3). It is written before every measurement, so a chip that lost its
   settings (brown-out) measures humidity again at once;
2. wait the maximum measurement time (Appendix B, section 9.1), then poll the
   ``measuring`` bit of ``status`` (0xF3) until a deadline on the monotonic clock;
3. burst-read the data registers 0xF7..0xFE in one transaction (section 4), so the
   three values come from the same conversion;
4. compensate with the datasheet's integer formulas (section 4.2.3), using the trimming
   parameters read once at start-up (section 4.2.2).
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from typing import Protocol

from drivers.errors import (
    BusError,
    ConfigurationError,
    DeviceNotFoundError,
    DriverTimeoutError,
    InvalidFrameError,
    OutOfRangeError,
    WrongChipError,
)
from drivers.timing import poll_until

CHIP = "BME280"

# Memory map, section 5.3.
REG_CALIB00 = 0x88
"""calib00..calib25 (0x88..0xA1): dig_T1..dig_P9, a reserved byte, dig_H1."""
CALIB00_LENGTH = 26
REG_ID = 0xD0
REG_RESET = 0xE0
REG_CALIB26 = 0xE1
"""calib26..calib32 (0xE1..0xE7): dig_H2..dig_H6."""
CALIB26_LENGTH = 7
REG_CTRL_HUM = 0xF2
REG_STATUS = 0xF3
REG_CTRL_MEAS = 0xF4
REG_CONFIG = 0xF5
REG_PRESS_MSB = 0xF7
"""press_msb..hum_lsb (0xF7..0xFE), read as one burst."""
DATA_LENGTH = 8

CHIP_ID = 0x60
RESET_WORD = 0xB6
"""Written to ``reset``: the complete power-on-reset procedure (section 5.4.2)."""
STATUS_MEASURING = 0x08
STATUS_IM_UPDATE = 0x01
MODE_SLEEP = 0b00
MODE_FORCED = 0b01
CONFIG_FILTER_OFF = 0x00
"""config: t_sb unused in forced mode, IIR filter off, 3-wire SPI off (section 5.4.6)."""

OVERSAMPLING_CODES = {1: 0b001, 2: 0b010, 4: 0b011, 8: 0b100, 16: 0b101}
"""Oversampling factor -> osrs_x field value (sections 5.4.3, 5.4.5); 0 (skip) is not offered."""

SKIPPED_20BIT = 0x80000
"""What the pressure and temperature registers hold when that measurement was skipped."""
SKIPPED_16BIT = 0x8000
"""The humidity register's 'skipped' value."""

START_UP_TIME_S = 0.002
"""Table 1: time to first communication after power-on (the soft reset runs it too)."""
NVM_COPY_TIMEOUT_S = 0.01

KNOWN_CHIP_IDS = {
    0x55: "a BMP180/BMP085 (pressure and temperature only)",
    0x56: "a BMP280 sample (pressure and temperature only)",
    0x57: "a BMP280 sample (pressure and temperature only)",
    0x58: "a BMP280 (pressure and temperature only, no humidity)",
    0x61: "a BME680 (different register map)",
}

# Operating range (table 1) widened by a margin: the chip goes on converting a little
# outside it, while garbage (registers read as all zeros or all ones) lands far away.
TEMPERATURE_PLAUSIBLE_CELSIUS = (-40.0 - 10.0, 85.0 + 10.0)
PRESSURE_PLAUSIBLE_PASCALS = (30000.0 - 10000.0, 110000.0 + 10000.0)


class SMBusLike(Protocol):
    def read_byte_data(self, i2c_addr: int, register: int) -> int: ...

    def write_byte_data(self, i2c_addr: int, register: int, value: int) -> None: ...

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int) -> list[int]: ...


@dataclass(frozen=True)
class Calibration:
    """The trimming parameters, named as in table 16 (section 4.2.2)."""

    dig_T1: int
    dig_T2: int
    dig_T3: int
    dig_P1: int
    dig_P2: int
    dig_P3: int
    dig_P4: int
    dig_P5: int
    dig_P6: int
    dig_P7: int
    dig_P8: int
    dig_P9: int
    dig_H1: int
    dig_H2: int
    dig_H3: int
    dig_H4: int
    dig_H5: int
    dig_H6: int


@dataclass(frozen=True)
class RawSample:
    """The uncompensated ADC outputs of one conversion (20, 20 and 16 bits)."""

    adc_P: int
    adc_T: int
    adc_H: int


def sign_extend_12(value: int) -> int:
    return value - 0x1000 if value & 0x800 else value


def parse_calibration(calib00: bytes, calib26: bytes) -> Calibration:
    """Trimming parameters from 0x88..0xA1 (26 bytes) and 0xE1..0xE7 (7 bytes), table 16.

    dig_H4 and dig_H5 are signed 12-bit values sharing 0xE5: dig_H4 = 0xE4[7:0] << 4 |
    0xE5[3:0] and dig_H5 = 0xE6[7:0] << 4 | 0xE5[7:4]; both are sign-extended.
    Raises ``InvalidFrameError`` for a wrong length or blank (all 0x00 / 0xFF) memory.
    """
    if len(calib00) != CALIB00_LENGTH or len(calib26) != CALIB26_LENGTH:
        raise InvalidFrameError(
            f"{CHIP} calibration: expected {CALIB00_LENGTH} + {CALIB26_LENGTH} bytes, "
            f"got {len(calib00)} + {len(calib26)}"
        )
    everything = calib00 + calib26
    if everything in (bytes(len(everything)), b"\xff" * len(everything)):
        raise InvalidFrameError(f"{CHIP} calibration memory reads blank (all 0x{calib00[0]:02x})")
    t1, t2, t3, p1, p2, p3, p4, p5, p6, p7, p8, p9 = struct.unpack_from("<HhhHhhhhhhhh", calib00)
    (h2,) = struct.unpack_from("<h", calib26, 0)
    e4, e5, e6 = calib26[3], calib26[4], calib26[5]
    (h6,) = struct.unpack_from("<b", calib26, 6)
    if t1 == 0 or p1 == 0:
        # dig_P1 divides the pressure; zero means the memory was not read correctly.
        raise InvalidFrameError(f"{CHIP} calibration: dig_T1={t1}, dig_P1={p1} cannot be zero")
    return Calibration(
        dig_T1=t1, dig_T2=t2, dig_T3=t3,
        dig_P1=p1, dig_P2=p2, dig_P3=p3, dig_P4=p4, dig_P5=p5,
        dig_P6=p6, dig_P7=p7, dig_P8=p8, dig_P9=p9,
        dig_H1=calib00[25],
        dig_H2=h2,
        dig_H3=calib26[2],
        dig_H4=sign_extend_12((e4 << 4) | (e5 & 0x0F)),
        dig_H5=sign_extend_12((e6 << 4) | (e5 >> 4)),
        dig_H6=h6,
    )  # fmt: skip


def parse_data(block: bytes) -> RawSample:
    """The burst read of 0xF7..0xFE into the three ADC values (section 5.4.7-5.4.9)."""
    if len(block) != DATA_LENGTH:
        raise InvalidFrameError(f"{CHIP} data: expected {DATA_LENGTH} bytes, got {len(block)}")
    return RawSample(
        adc_P=(block[0] << 12) | (block[1] << 4) | (block[2] >> 4),
        adc_T=(block[3] << 12) | (block[4] << 4) | (block[5] >> 4),
        adc_H=(block[6] << 8) | block[7],
    )


def _div_toward_zero(numerator: int, denominator: int) -> int:
    """C's integer division (the datasheet's code is C; Python's // floors)."""
    quotient = abs(numerator) // abs(denominator)
    return quotient if (numerator >= 0) == (denominator > 0) else -quotient


def compensate_temperature(adc_T: int, cal: Calibration) -> tuple[int, int]:
    """Section 4.2.3, BME280_compensate_T_int32: (t_fine, temperature in 0.01 °C)."""
    var1 = (((adc_T >> 3) - (cal.dig_T1 << 1)) * cal.dig_T2) >> 11
    delta = (adc_T >> 4) - cal.dig_T1
    var2 = (((delta * delta) >> 12) * cal.dig_T3) >> 14
    t_fine = var1 + var2
    return t_fine, (t_fine * 5 + 128) >> 8


def compensate_pressure(adc_P: int, t_fine: int, cal: Calibration) -> int:
    """Section 4.2.3, BME280_compensate_P_int64: pressure in Pa as Q24.8 (1/256 Pa).

    Where the datasheet's code returns 0 to avoid a division by zero, this raises
    ``OutOfRangeError``: 0 Pa is not a reading.
    """
    var1 = t_fine - 128000
    var2 = var1 * var1 * cal.dig_P6
    var2 = var2 + ((var1 * cal.dig_P5) << 17)
    var2 = var2 + (cal.dig_P4 << 35)
    var1 = ((var1 * var1 * cal.dig_P3) >> 8) + ((var1 * cal.dig_P2) << 12)
    var1 = (((1 << 47) + var1) * cal.dig_P1) >> 33
    if var1 == 0:
        raise OutOfRangeError(f"{CHIP}: pressure compensation divides by zero (t_fine={t_fine})")
    p = 1048576 - adc_P
    p = _div_toward_zero(((p << 31) - var2) * 3125, var1)
    var1 = (cal.dig_P9 * (p >> 13) * (p >> 13)) >> 25
    var2 = (cal.dig_P8 * p) >> 19
    return ((p + var1 + var2) >> 8) + (cal.dig_P7 << 4)


def compensate_humidity(adc_H: int, t_fine: int, cal: Calibration) -> int:
    """Section 4.2.3, bme280_compensate_H_int32: humidity in %RH as Q22.10 (1/1024 %RH).

    The datasheet's code clamps the result to 0..100 %RH; so does this.
    """
    v = t_fine - 76800
    # The datasheet's one expression, split at its outer multiplication; each factor is
    # shifted on its own before they are multiplied.
    offset = (((adc_H << 14) - (cal.dig_H4 << 20) - (cal.dig_H5 * v)) + 16384) >> 15
    quadratic = (((v * cal.dig_H6) >> 10) * (((v * cal.dig_H3) >> 11) + 32768)) >> 10
    gain = ((quadratic + 2097152) * cal.dig_H2 + 8192) >> 14
    v = offset * gain
    v = v - (((((v >> 15) * (v >> 15)) >> 7) * cal.dig_H1) >> 4)
    v = min(max(v, 0), 419430400)
    return v >> 12


def compensate(raw: RawSample, cal: Calibration) -> dict[str, float]:
    """Raw ADC values to SI values. A 'skipped' marker or an implausible result raises.

    The chip leaves 0x80000 / 0x8000 in a data register whose measurement did not run
    (skipped oversampling, or a reset in the middle of a conversion). The driver always
    asks for all three, so a marker means the measurement failed; reporting it would be
    a made-up value.
    """
    skipped = [
        name
        for name, value, marker in (
            ("pressure", raw.adc_P, SKIPPED_20BIT),
            ("temperature", raw.adc_T, SKIPPED_20BIT),
            ("humidity", raw.adc_H, SKIPPED_16BIT),
        )
        if value == marker
    ]
    if skipped:
        raise InvalidFrameError(
            f"{CHIP}: {', '.join(skipped)} register holds the 'skipped' value: the chip did "
            "not measure it (reset during the conversion, or settings lost)"
        )
    t_fine, centi_celsius = compensate_temperature(raw.adc_T, cal)
    temperature = centi_celsius / 100.0
    pressure = compensate_pressure(raw.adc_P, t_fine, cal) / 256.0
    humidity = compensate_humidity(raw.adc_H, t_fine, cal) / 1024.0
    low, high = TEMPERATURE_PLAUSIBLE_CELSIUS
    if not low <= temperature <= high:
        raise OutOfRangeError(
            f"{CHIP}: temperature {temperature:.2f} °C (adc_T=0x{raw.adc_T:05x}) is outside "
            "what the chip can measure"
        )
    low, high = PRESSURE_PLAUSIBLE_PASCALS
    if not low <= pressure <= high:
        raise OutOfRangeError(
            f"{CHIP}: pressure {pressure:.0f} Pa (adc_P=0x{raw.adc_P:05x}) is outside "
            "what the chip can measure"
        )
    # Reported at the chip's resolution (table 1: 0.008 %RH, 0.18 Pa; temperature is
    # already in 0.01 °C): the digits of the Q22.10 and Q24.8 fractions beyond it carry
    # no information and cost bytes on the uplink (docs/performance.md).
    return {
        "temperature_celsius": temperature,
        "relative_humidity_percent": round(humidity, 3),
        "pressure_pascals": round(pressure, 1),
    }


def measurement_time_max_s(
    temperature_oversampling: int, pressure_oversampling: int, humidity_oversampling: int
) -> float:
    """Appendix B (section 9.1): t_measure,max in seconds for the given oversampling factors.

    1.25 ms + 2.3 ms * T_os + (2.3 ms * P_os + 0.575 ms) + (2.3 ms * H_os + 0.575 ms), a
    bracket dropped when that measurement is skipped (factor 0).
    """
    ms = 1.25 + 2.3 * temperature_oversampling
    if pressure_oversampling:
        ms += 2.3 * pressure_oversampling + 0.575
    if humidity_oversampling:
        ms += 2.3 * humidity_oversampling + 0.575
    return ms / 1000.0


class BME280:
    """One BME280 on an open I2C bus (an ``smbus2.SMBus`` or the fake bus).

    Oversampling factors are 1, 2, 4, 8 or 16 (the datasheet's weather-monitoring
    setting, section 3.5.1, is 1 for all three). ``timeout_s`` bounds a measurement
    from the moment it was started and must cover the datasheet's maximum measurement
    time for the chosen oversampling (112.8 ms at 16x for all three).

    Construction checks the chip id, soft-resets the chip and reads its calibration.
    """

    def __init__(
        self,
        bus: SMBusLike,
        address: int = 0x76,
        *,
        temperature_oversampling: int = 1,
        pressure_oversampling: int = 1,
        humidity_oversampling: int = 1,
        timeout_s: float = 0.2,
    ) -> None:
        for what, factor in (
            ("temperature_oversampling", temperature_oversampling),
            ("pressure_oversampling", pressure_oversampling),
            ("humidity_oversampling", humidity_oversampling),
        ):
            if factor not in OVERSAMPLING_CODES:
                raise ConfigurationError(
                    f"{CHIP}: {what} must be one of 1, 2, 4, 8, 16, not {factor!r}"
                )
        self.measurement_time_max_s = measurement_time_max_s(
            temperature_oversampling, pressure_oversampling, humidity_oversampling
        )
        if timeout_s < self.measurement_time_max_s:
            raise ConfigurationError(
                f"{CHIP}: timeout_s={timeout_s:g} is shorter than the "
                f"{self.measurement_time_max_s * 1000:.1f} ms this oversampling may take"
            )
        self.bus = bus
        self.address = address
        self.timeout_s = timeout_s
        self.ctrl_hum = OVERSAMPLING_CODES[humidity_oversampling]
        self.ctrl_meas = (
            (OVERSAMPLING_CODES[temperature_oversampling] << 5)
            | (OVERSAMPLING_CODES[pressure_oversampling] << 2)
            | MODE_FORCED
        )
        self.calibration: Calibration | None = None
        self._probe()
        self.reset()

    @property
    def where(self) -> str:
        return f"{CHIP} at I2C address 0x{self.address:02x}"

    def _probe(self) -> None:
        try:
            chip_id = self.bus.read_byte_data(self.address, REG_ID)
        except OSError as exc:
            raise DeviceNotFoundError(f"no {CHIP} answers at 0x{self.address:02x}: {exc}") from exc
        if chip_id != CHIP_ID:
            found = KNOWN_CHIP_IDS.get(chip_id, "an unknown chip")
            raise WrongChipError(
                f"I2C address 0x{self.address:02x}: chip id 0x{chip_id:02x} is {found}, "
                f"not a {CHIP} (id 0x{CHIP_ID:02x})"
            )

    # Bus access, every failure wrapped with the chip and address.

    def _read_byte(self, register: int) -> int:
        try:
            return int(self.bus.read_byte_data(self.address, register))
        except OSError as exc:
            raise BusError(
                f"{self.where}: reading register 0x{register:02x} failed: {exc}"
            ) from exc

    def _read_block(self, register: int, length: int) -> bytes:
        try:
            return bytes(self.bus.read_i2c_block_data(self.address, register, length))
        except OSError as exc:
            raise BusError(
                f"{self.where}: reading {length} bytes from 0x{register:02x} failed: {exc}"
            ) from exc

    def _write_byte(self, register: int, value: int) -> None:
        try:
            self.bus.write_byte_data(self.address, register, value)
        except OSError as exc:
            raise BusError(
                f"{self.where}: writing 0x{value:02x} to register 0x{register:02x} failed: {exc}"
            ) from exc

    # Operations.

    def reset(self) -> None:
        """Soft reset, wait for start-up and the NVM copy, re-read calibration, configure.

        Use after the sensor came back (power loss, bus trouble); the constructor does
        it too, so the chip starts from a known state whatever ran before.
        """
        self._write_byte(REG_RESET, RESET_WORD)
        time.sleep(START_UP_TIME_S)

        def nvm_copied() -> bool | None:
            try:
                status = self.bus.read_byte_data(self.address, REG_STATUS)
            except OSError:
                return None  # still starting up
            return None if status & STATUS_IM_UPDATE else True

        try:
            poll_until(
                nvm_copied,
                timeout_s=NVM_COPY_TIMEOUT_S,
                interval_s=0.001,
                what=f"{self.where}: start-up after soft reset",
            )
        except DriverTimeoutError:
            # Check once more so that a chip that is gone reports as a bus error.
            self._read_byte(REG_STATUS)
            raise
        self.calibration = parse_calibration(
            self._read_block(REG_CALIB00, CALIB00_LENGTH),
            self._read_block(REG_CALIB26, CALIB26_LENGTH),
        )
        # config is only written reliably in sleep mode, which the reset guarantees.
        self._write_byte(REG_CONFIG, CONFIG_FILTER_OFF)

    def read(self) -> dict[str, float]:
        """One forced-mode measurement: temperature, relative humidity and pressure."""
        if self.calibration is None:
            raise ConfigurationError(f"{self.where}: not initialised; call reset()")
        self._write_byte(REG_CTRL_HUM, self.ctrl_hum)
        self._write_byte(REG_CTRL_MEAS, self.ctrl_meas)
        started = time.monotonic()
        time.sleep(self.measurement_time_max_s)

        def done() -> bool | None:
            return None if self._read_byte(REG_STATUS) & STATUS_MEASURING else True

        poll_until(
            done,
            timeout_s=max(0.0, started + self.timeout_s - time.monotonic()),
            interval_s=0.001,
            what=f"{self.where}: measurement",
        )
        raw = parse_data(self._read_block(REG_PRESS_MSB, DATA_LENGTH))
        return compensate(raw, self.calibration)

    def close(self) -> None:
        """Nothing to stop: after a forced measurement the chip is back in sleep mode."""

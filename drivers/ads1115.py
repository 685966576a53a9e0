"""Texas Instruments ADS1115 16-bit delta-sigma ADC, single-ended single-shot conversions.

Source: TI datasheet SBAS444 ("ADS111x Ultra-Small, Low-Power, I2C-Compatible, 860-SPS,
16-Bit ADCs"), cited below by section name. Four registers sit behind a pointer byte
("Address Pointer Register"); each holds 16 bits sent MSB first. SMBus word calls are
little-endian, so the driver reads and writes them as two-byte blocks.

For every channel ``read()`` writes the Config register with OS = 1 (start one conversion),
MUX = AINx against GND, the PGA for ``gain``, MODE = single-shot, the data rate, and the
comparator disabled; polls OS until the conversion is done (bounded on the monotonic
clock); then reads the Conversion register. Output names: ``voltage_volts`` when only AIN0
is read (``channels=(0,)``, the default), otherwise ``ain0_voltage_volts`` ..
``ain3_voltage_volts`` for the channels asked for.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Protocol

from drivers.errors import (
    BusError,
    ConfigurationError,
    DeviceNotFoundError,
    OutOfRangeError,
    WrongChipError,
)
from drivers.timing import poll_until

DEFAULT_ADDRESS = 0x48
"""ADDR pin to GND; 0x49 (VDD), 0x4A (SDA), 0x4B (SCL)."""

# Address Pointer Register.
CONVERSION_REGISTER = 0x00
CONFIG_REGISTER = 0x01
LO_THRESH_REGISTER = 0x02
HI_THRESH_REGISTER = 0x03

# Config Register fields.
CONFIG_RESET = 0x8583
"""Power-on value: idle, AIN0-AIN1, ±2.048 V, single-shot, 128 SPS, comparator off."""
OS = 1 << 15
"""Write 1: start a single conversion. Read 0: a conversion is in progress."""
MUX_SHIFT = 12
PGA_SHIFT = 9
MODE = 1 << 8
"""1 = single-shot (power-down between conversions)."""
DR_SHIFT = 5
COMP_QUE_DISABLE = 0b11
COMP_QUE_MASK = 0b11

MUX_SINGLE_ENDED = {0: 0b100, 1: 0b101, 2: 0b110, 3: 0b111}
"""MUX[2:0] for AINP = AINx, AINN = GND."""

FSR_BY_PGA = {0b000: 6.144, 0b001: 4.096, 0b010: 2.048, 0b011: 1.024, 0b100: 0.512,
              0b101: 0.256, 0b110: 0.256, 0b111: 0.256}
"""PGA[2:0] -> full-scale range in volts (±)."""

PGA_BY_GAIN: dict[float, int] = {2 / 3: 0b000, 1: 0b001, 2: 0b010, 4: 0b011, 8: 0b100, 16: 0b101}
"""The gains commonly used for this chip, as multiples of the ±4.096 V range."""

DR_BY_SPS = {8: 0b000, 16: 0b001, 32: 0b010, 64: 0b011, 128: 0b100, 250: 0b101, 475: 0b110,
             860: 0b111}
"""Data rate in samples per second -> DR[2:0]."""

DEFAULT_DATA_RATE_SPS = 128

CODE_MAX = 0x7FFF
CODE_MIN = -0x8000
"""'Data Format': full-scale codes; an input at or beyond full scale clips to these."""


class Ads1115Bus(Protocol):
    """The ``smbus2.SMBus`` methods this driver uses."""

    def read_i2c_block_data(
        self, i2c_addr: int, register: int, length: int, force: bool | None = None
    ) -> list[int]: ...

    def write_i2c_block_data(
        self, i2c_addr: int, register: int, data: list[int], force: bool | None = None
    ) -> None: ...


# Pure arithmetic and encoding.


def pga_for_gain(gain: float) -> int:
    """PGA[2:0] for ``gain``; anything but 2/3, 1, 2, 4, 8, 16 is a ``ConfigurationError``."""
    if not isinstance(gain, bool) and isinstance(gain, int | float):
        for known, pga in PGA_BY_GAIN.items():
            # 2/3 arrives from a config file as a rounded decimal such as 0.6667.
            if math.isclose(gain, known, rel_tol=1e-3):
                return pga
    raise ConfigurationError(
        f"ADS1115 gain must be one of 2/3, 1, 2, 4, 8, 16, not {gain!r}"
    )


def config_word(channel: int, pga: int, data_rate_sps: int) -> int:
    """The Config word that starts one single-ended conversion of AIN``channel``."""
    return (
        OS
        | MUX_SINGLE_ENDED[channel] << MUX_SHIFT
        | pga << PGA_SHIFT
        | MODE
        | DR_BY_SPS[data_rate_sps] << DR_SHIFT
        | COMP_QUE_DISABLE
    )


def code_from_bytes(data: Iterable[int]) -> int:
    """A register's two bytes (MSB first) as a two's-complement code."""
    msb, lsb = data
    return int.from_bytes(bytes((msb, lsb)), "big", signed=True)


def volts_from_code(code: int, fsr_volts: float, where: str = "ADS1115") -> float:
    """volts = code * FSR / 32768; a clipped code is ``OutOfRangeError``, not a value."""
    if code >= CODE_MAX or code <= CODE_MIN:
        raise OutOfRangeError(
            f"{where}: input at or beyond the ±{fsr_volts:g} V full scale "
            f"(code 0x{code & 0xFFFF:04x}); a lower gain widens the range"
        )
    return code * fsr_volts / 32768


def looks_like_ads1115_config(config: int) -> bool:
    """The probe: the power-on value, or what single-shot use leaves behind.

    A driver (this one after a restart, or another program) leaves the register idle
    (OS = 1), in single-shot mode, with the comparator disabled; other chips that live at
    0x48..0x4B (LM75, TMP102, PCF8591) do not read like that.
    """
    if config == CONFIG_RESET:
        return True
    return config & (OS | MODE | COMP_QUE_MASK) == OS | MODE | COMP_QUE_DISABLE


def quantity_names(channels: tuple[int, ...]) -> dict[int, str]:
    if channels == (0,):
        return {0: "voltage_volts"}
    return {channel: f"ain{channel}_voltage_volts" for channel in channels}


def _validate_channels(channels: Iterable[int]) -> tuple[int, ...]:
    try:
        checked = tuple(channels)
    except TypeError:
        raise ConfigurationError(
            f"ADS1115 channels must be a list of inputs 0..3, not {channels!r}"
        ) from None
    if not checked:
        raise ConfigurationError("ADS1115 channels must name at least one input (0..3)")
    for channel in checked:
        if isinstance(channel, bool) or not isinstance(channel, int) or channel not in range(4):
            raise ConfigurationError(f"ADS1115 has inputs 0..3; {channel!r} is not one")
    if len(set(checked)) != len(checked):
        raise ConfigurationError(f"ADS1115 channels repeat an input: {list(checked)}")
    return checked


class ADS1115:
    """Single-ended voltages of AIN0..AIN3, one single-shot conversion per channel.

    ``gain`` selects the full-scale range (2/3: ±6.144 V, 1: ±4.096 V, 2: ±2.048 V,
    4: ±1.024 V, 8: ±0.512 V, 16: ±0.256 V); an input can never exceed VDD + 0.3 V
    whatever the range. ``data_rate_sps`` (8..860) trades noise for conversion time.
    ``timeout_s`` bounds each conversion (default twice the nominal conversion time plus
    10 ms, covering the oscillator's ±10 %).
    """

    def __init__(
        self,
        bus: Ads1115Bus,
        address: int = DEFAULT_ADDRESS,
        channels: Iterable[int] = (0,),
        gain: float = 1,
        *,
        data_rate_sps: int = DEFAULT_DATA_RATE_SPS,
        timeout_s: float | None = None,
        poll_interval_s: float | None = None,
    ) -> None:
        self.channels = _validate_channels(channels)
        self._pga = pga_for_gain(gain)
        if isinstance(data_rate_sps, bool) or data_rate_sps not in DR_BY_SPS:
            raise ConfigurationError(
                f"ADS1115 data_rate_sps must be one of {', '.join(map(str, DR_BY_SPS))}, "
                f"not {data_rate_sps!r}"
            )
        self._bus = bus
        self.address = address
        self.gain = gain
        self.fsr_volts = FSR_BY_PGA[self._pga]
        self.data_rate_sps = data_rate_sps
        self._conversion_s = 1.0 / data_rate_sps
        self._timeout_s = 2 * self._conversion_s + 0.010 if timeout_s is None else timeout_s
        self._poll_interval_s = (
            self._conversion_s / 10 if poll_interval_s is None else poll_interval_s
        )
        self._names = quantity_names(self.channels)
        self._where = f"ADS1115 at 0x{address:02x}"
        self._probe()

    def read(self) -> dict[str, float]:
        return {self._names[channel]: self._convert(channel) for channel in self.channels}

    def reset(self) -> None:
        """Check the chip is there and is an ADS1115 again.

        There is nothing to restore: every conversion writes the whole Config register.
        (The chip's own reset is an I2C general call, which would reset every chip on the
        bus that answers one, so it is not used.)
        """
        self._probe()

    def close(self) -> None:
        """Nothing to do: in single-shot mode the chip powers down after each conversion."""

    # I/O.

    def _probe(self) -> None:
        try:
            config = self._read_register(CONFIG_REGISTER, "Config")
        except BusError as exc:
            raise DeviceNotFoundError(f"{self._where}: no answer ({exc.__cause__})") from exc
        if not looks_like_ads1115_config(config):
            raise WrongChipError(
                f"{self._where}: Config register reads 0x{config:04x}, not the ADS1115's "
                f"power-on 0x{CONFIG_RESET:04x} nor an idle single-shot setting: "
                "another chip at this address?"
            )

    def _convert(self, channel: int) -> float:
        config = config_word(channel, self._pga, self.data_rate_sps)
        try:
            self._bus.write_i2c_block_data(
                self.address, CONFIG_REGISTER, [config >> 8, config & 0xFF]
            )
        except OSError as exc:
            raise BusError(f"{self._where}: writing Config failed: {exc}") from exc
        started = time.monotonic()
        time.sleep(self._conversion_s)

        def done() -> int | None:
            status = self._read_register(CONFIG_REGISTER, "Config")
            return status if status & OS else None

        status = poll_until(
            done,
            timeout_s=max(0.0, started + self._timeout_s - time.monotonic()),
            interval_s=self._poll_interval_s,
            what=f"{self._where}: AIN{channel} conversion (OS bit)",
        )
        if status & ~OS != config & ~OS:
            # The chip was reset, or something else wrote it, between our write and now.
            raise BusError(
                f"{self._where}: Config reads back 0x{status:04x} after writing "
                f"0x{config:04x}; the conversion is not the one asked for"
            )
        code = self._read_register(CONVERSION_REGISTER, "Conversion", signed=True)
        # To the microvolt: one code is 7.8 µV at the smallest range, and the product's
        # float noise (0.30000000000000004) is not information.
        return round(volts_from_code(code, self.fsr_volts, f"{self._where} AIN{channel}"), 6)

    def _read_register(self, register: int, name: str, *, signed: bool = False) -> int:
        try:
            data = self._bus.read_i2c_block_data(self.address, register, 2)
        except OSError as exc:
            raise BusError(f"{self._where}: reading {name} failed: {exc}") from exc
        if signed:
            return code_from_bytes(data)
        return (data[0] << 8) | data[1]

"""ADS1115 driver against its bus-level fake."""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.ads1115 import (
    ADS1115,
    code_from_bytes,
    config_word,
    pga_for_gain,
    volts_from_code,
)
from drivers.errors import (
    BusError,
    ConfigurationError,
    DeviceNotFoundError,
    DriverError,
    DriverTimeoutError,
    OutOfRangeError,
    WrongChipError,
)
from drivers.fake.ads1115 import FakeADS1115, code_from_volts
from drivers.fake.i2c import FakeSMBus

GAINS_FSR = [(2 / 3, 6.144), (1, 4.096), (2, 2.048), (4, 1.024), (8, 0.512), (16, 0.256)]
FSR_BY_GAIN = [fsr for _, fsr in GAINS_FSR]


def make(*args: Any, **options: Any) -> tuple[FakeADS1115, FakeSMBus, ADS1115]:
    fake = FakeADS1115()
    bus = FakeSMBus([fake])
    return fake, bus, ADS1115(bus, 0x48, *args, **options)


# The datasheet's own numbers.


@pytest.mark.parametrize(
    ("fraction_of_fs", "code"),
    [(1 / 32768, 0x0001), (0.0, 0x0000), (-1 / 32768, 0xFFFF)],
)
def test_ideal_output_codes(fraction_of_fs: float, code: int) -> None:
    # 'Data Format': +FS/2^15 -> 0001h, 0 -> 0000h, -FS/2^15 -> FFFFh.
    for fsr in FSR_BY_GAIN:
        assert code_from_volts(fraction_of_fs * fsr, fsr) & 0xFFFF == code
        signed = code_from_bytes(code.to_bytes(2, "big"))
        assert volts_from_code(signed, fsr) == pytest.approx(fraction_of_fs * fsr)


@pytest.mark.parametrize("volts", [4.096, 5.0, -4.096, -5.0])
def test_full_scale_codes_clip_and_are_out_of_range(volts: float) -> None:
    # 'Data Format': >= +FS -> 7FFFh, <= -FS -> 8000h.
    code = code_from_volts(volts, 4.096)
    assert code in (0x7FFF, -0x8000)
    with pytest.raises(OutOfRangeError, match="full scale"):
        volts_from_code(code, 4.096)


def test_power_on_config_value() -> None:
    fake = FakeADS1115()
    bus = FakeSMBus([fake])
    assert bus.read_i2c_block_data(0x48, 0x01, 2) == [0x85, 0x83]
    assert bus.read_i2c_block_data(0x48, 0x02, 2) == [0x80, 0x00]
    assert bus.read_i2c_block_data(0x48, 0x03, 2) == [0x7F, 0xFF]


@pytest.mark.parametrize(("gain", "fsr"), GAINS_FSR)
def test_gain_maps_to_pga_and_full_scale(gain: float, fsr: float) -> None:
    _fake, _bus, driver = make((0,), gain)
    assert driver.fsr_volts == fsr
    assert (config_word(0, pga_for_gain(gain), 128) >> 9) & 0b111 == GAINS_FSR.index(
        (gain, fsr)
    )


# Bytes on the wire.


def test_single_shot_wire_sequence() -> None:
    fake, bus, driver = make()
    assert bus.transactions == [(0x48, "w", b"\x01"), (0x48, "r", b"\x85\x83")]
    bus.transactions.clear()
    fake.set(voltage_volts=1.0)
    driver.read()
    log = bus.transactions
    # OS=1, MUX=100 (AIN0-GND), PGA=001 (±4.096 V), MODE=1, DR=100 (128 SPS), COMP_QUE=11.
    assert log[0] == (0x48, "w", b"\x01\xc3\x83")
    assert log[1] == (0x48, "w", b"\x01")  # poll Config for OS
    assert log[-2] == (0x48, "w", b"\x00")  # then the Conversion register
    assert log[-1] == (0x48, "r", (8000).to_bytes(2, "big"))  # 1.0 V * 32768 / 4.096


@pytest.mark.parametrize(
    ("channel", "gain", "rate", "word"),
    [(0, 1, 128, 0xC383), (1, 2, 8, 0xD503), (2, 2 / 3, 475, 0xE1C3), (3, 16, 860, 0xFBE3)],
)
def test_config_words(channel: int, gain: float, rate: int, word: int) -> None:
    assert config_word(channel, pga_for_gain(gain), rate) == word


def test_continuous_mode_at_the_bus_level() -> None:
    # The fake also runs continuously: Config 0x8483 = AIN0-AIN1, ±2.048 V, MODE=0.
    fake = FakeADS1115()
    bus = FakeSMBus([fake])
    fake.set(ain0_voltage_volts=1.5, ain1_voltage_volts=0.5)
    bus.write_i2c_block_data(0x48, 0x01, [0x84, 0x83])
    time.sleep(2 / 128)
    assert code_from_bytes(bus.read_i2c_block_data(0x48, 0x00, 2)) == 16000


def test_early_read_gives_the_previous_conversion() -> None:
    fake = FakeADS1115()
    bus = FakeSMBus([fake])
    fake.set(ain2_voltage_volts=2.0)
    bus.write_i2c_block_data(0x48, 0x01, [0xE3, 0x03])  # AIN2, ±4.096 V, 8 SPS, start
    assert bus.read_i2c_block_data(0x48, 0x01, 2)[0] & 0x80 == 0  # OS = 0: converting
    assert bus.read_i2c_block_data(0x48, 0x00, 2) == [0, 0]  # power-up value, not 2 V


# Values across the measuring range.


@pytest.mark.parametrize(("gain", "fsr"), GAINS_FSR)
@pytest.mark.parametrize("fraction", [-0.999, -0.25, 0.0, 0.0001, 0.5, 0.999])
def test_values_read_back_within_half_an_lsb(gain: float, fsr: float, fraction: float) -> None:
    fake, _bus, driver = make((0,), gain, data_rate_sps=860)
    fake.set(voltage_volts=fraction * fsr)
    value = driver.read()["voltage_volts"]
    assert value == pytest.approx(fraction * fsr, abs=fsr / 32768 / 2 + 1e-12)


def test_several_channels_are_named_per_input() -> None:
    fake, _bus, driver = make((0, 1, 2, 3), 1)
    fake.set(ain0_voltage_volts=0.1, ain1_voltage_volts=1.1, ain2_voltage_volts=2.2,
             ain3_voltage_volts=3.3)
    values = driver.read()
    assert list(values) == [f"ain{n}_voltage_volts" for n in range(4)]
    for n, expected in enumerate((0.1, 1.1, 2.2, 3.3)):
        assert values[f"ain{n}_voltage_volts"] == pytest.approx(expected, abs=0.000125)
    assert fake.conversions == 4


def test_single_other_channel_keeps_its_input_name() -> None:
    fake, _bus, driver = make([2])
    fake.set(ain2_voltage_volts=0.75)
    assert driver.read() == {"ain2_voltage_volts": pytest.approx(0.75, abs=0.000125)}


def test_voltage_volts_is_ain0() -> None:
    fake, _bus, driver = make()
    fake.set(ain0_voltage_volts=1.25)
    assert driver.read()["voltage_volts"] == pytest.approx(1.25, abs=0.000125)
    fake.set(voltage_volts=2.5)
    assert fake.value("ain0_voltage_volts") == 2.5


@pytest.mark.parametrize("volts", [4.2, -4.2])
def test_clipped_input_is_out_of_range(volts: float) -> None:
    fake, _bus, driver = make()
    fake.set(voltage_volts=volts)
    with pytest.raises(OutOfRangeError, match="AIN0"):
        driver.read()


# Configuration.


@pytest.mark.parametrize(
    "options",
    [
        {"gain": 3},
        {"gain": 0.5},
        {"gain": True},
        {"channels": (4,)},
        {"channels": ()},
        {"channels": (0, 0)},
        {"channels": "01"},
        {"channels": 1},
        {"data_rate_sps": 100},
    ],
)
def test_bad_options_are_configuration_errors(options: dict[str, Any]) -> None:
    fake = FakeADS1115()
    bus = FakeSMBus([fake])
    with pytest.raises(ConfigurationError):
        ADS1115(bus, **options)
    assert bus.transactions == []


def test_two_thirds_gain_from_a_config_file() -> None:
    _fake, _bus, driver = make((0,), 0.6667)
    assert driver.fsr_volts == 6.144


# Probe and faults.


def test_no_device_is_device_not_found() -> None:
    with pytest.raises(DeviceNotFoundError, match="0x48"):
        ADS1115(FakeSMBus([]))


def test_nack_at_construction_is_device_not_found() -> None:
    fake = FakeADS1115()
    fake.faults.nack = True
    with pytest.raises(DeviceNotFoundError):
        ADS1115(FakeSMBus([fake]))


def test_another_chip_is_wrong_chip() -> None:
    fake = FakeADS1115()
    fake.faults.wrong_id = True
    with pytest.raises(WrongChipError, match="0x60a0"):
        ADS1115(FakeSMBus([fake]))


def test_chip_left_configured_by_a_previous_run_is_accepted() -> None:
    fake, bus, driver = make((1,), 4)
    driver.read()
    assert bus.read_i2c_block_data(0x48, 0x01, 2) != [0x85, 0x83]
    again = ADS1115(bus, channels=(1,), gain=4)
    fake.set(ain1_voltage_volts=0.3)
    assert again.read()["ain1_voltage_volts"] == pytest.approx(0.3, abs=0.0000313)


def test_chip_left_in_continuous_mode_is_not_taken_for_an_ads1115() -> None:
    fake = FakeADS1115()
    bus = FakeSMBus([fake])
    bus.write_i2c_block_data(0x48, 0x01, [0x84, 0x83])
    with pytest.raises(WrongChipError):
        ADS1115(bus)


def test_nack_during_read_is_bus_error() -> None:
    fake, _bus, driver = make()
    fake.faults.nack = True
    with pytest.raises(BusError, match="ADS1115 at 0x48"):
        driver.read()


def test_slow_conversion_is_polled_until_done() -> None:
    fake, _bus, driver = make()
    fake.set(voltage_volts=3.0)
    fake.faults.delay_s = 0.005
    assert driver.read()["voltage_volts"] == pytest.approx(3.0, abs=0.000125)


def test_conversion_that_never_ends_times_out() -> None:
    fake, _bus, driver = make()
    fake.faults.delay_s = 5.0
    with pytest.raises(DriverTimeoutError, match="AIN0 conversion"):
        driver.read()


def test_reset_during_conversion_is_detected() -> None:
    fake = FakeADS1115()

    class GlitchingBus(FakeSMBus):
        def write_i2c_block_data(
            self, i2c_addr: int, register: int, data: list[int], force: bool | None = None
        ) -> None:
            super().write_i2c_block_data(i2c_addr, register, data, force)
            fake.power_cycle()

    driver = ADS1115(GlitchingBus([fake]))
    with pytest.raises(BusError, match="reads back 0x8583"):
        driver.read()


def test_stuck_inputs_keep_their_values() -> None:
    fake, _bus, driver = make()
    fake.set(voltage_volts=1.0)
    fake.faults.stuck = True
    fake.set(voltage_volts=2.0)
    assert driver.read()["voltage_volts"] == pytest.approx(1.0, abs=0.000125)


def test_reset_reprobes() -> None:
    fake, _bus, driver = make()
    driver.reset()
    fake.faults.wrong_id = True
    with pytest.raises(WrongChipError):
        driver.reset()


# Properties.


@given(st.integers(-0x7FFF, 0x7FFE), st.sampled_from(FSR_BY_GAIN))
def test_fake_code_inverts_the_driver_formula(code: int, fsr: float) -> None:
    assert code_from_volts(volts_from_code(code, fsr), fsr) == code


@given(st.binary(min_size=2, max_size=2), st.sampled_from(FSR_BY_GAIN))
def test_any_register_bytes_are_a_voltage_or_a_driver_error(data: bytes, fsr: float) -> None:
    try:
        volts = volts_from_code(code_from_bytes(data), fsr)
    except DriverError:
        return
    assert -fsr < volts < fsr

"""BH1750 driver against its bus-level fake (measurement times scaled down 20x)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from smbus2 import i2c_msg

from drivers.bh1750 import (
    BH1750,
    lux_from_raw,
    max_measurement_time_s,
    measurement_time_opcodes,
)
from drivers.errors import (
    BusError,
    ConfigurationError,
    DeviceNotFoundError,
    DriverError,
    OutOfRangeError,
)
from drivers.fake.bh1750 import FakeBH1750, counts_from_lux
from drivers.fake.i2c import FakeSMBus

SCALE = 0.05


def make(**options: Any) -> tuple[FakeBH1750, FakeSMBus, BH1750]:
    fake = FakeBH1750(time_scale=SCALE)
    bus = FakeSMBus([fake])
    mtreg = options.get("mtreg", 69)
    driver = BH1750(bus, measurement_time_s=max_measurement_time_s(mtreg) * SCALE, **options)
    return fake, bus, driver


def writes(bus: FakeSMBus) -> list[bytes]:
    return [data for _, kind, data in bus.transactions if kind == "w"]


def step_lux(mtreg: int) -> float:
    return 1 / 1.2 * 69 / mtreg


# The datasheet's own examples.


def test_measurement_result_datasheet_example() -> None:
    # "Measurement sequence example": 1000_0011_1001_0000 -> 28067 lx.
    assert lux_from_raw(0b1000_0011_1001_0000) == pytest.approx(28067, abs=0.5)


@pytest.mark.parametrize(
    ("mtreg", "opcodes"), [(69, (0x42, 0x65)), (31, (0x40, 0x7F)), (254, (0x47, 0x7E))]
)
def test_measurement_time_opcodes(mtreg: int, opcodes: tuple[int, int]) -> None:
    # 01000_MT[7,6,5] then 011_MT[4,3,2,1,0].
    assert measurement_time_opcodes(mtreg) == opcodes


# Bytes on the wire.


def test_one_time_mode_wire_sequence() -> None:
    fake, bus, driver = make()
    assert writes(bus) == [b"\x01", b"\x07"]
    bus.transactions.clear()
    driver.read()
    assert bus.transactions == [
        (0x23, "w", b"\x42"),
        (0x23, "w", b"\x65"),
        (0x23, "w", b"\x20"),
        (0x23, "r", bus.transactions[-1][2]),
    ]
    assert len(bus.transactions[-1][2]) == 2
    assert not fake.powered  # one-time mode powers the chip down after measuring


def test_continuous_mode_wire_sequence() -> None:
    fake, bus, driver = make(mode="continuous", mtreg=138)
    assert writes(bus) == [b"\x01", b"\x07", b"\x44", b"\x6a", b"\x10"]
    bus.transactions.clear()
    fake.set(illuminance_lux=500.0)
    driver.read()
    assert writes(bus) == []  # continuous: the data register is simply read
    assert fake.powered


def test_close_powers_down() -> None:
    fake, bus, driver = make(mode="continuous")
    driver.close()
    assert writes(bus)[-1] == b"\x00"
    assert not fake.powered


# Values across the measuring range.


@pytest.mark.parametrize("mtreg", [31, 69, 254])
@pytest.mark.parametrize("fraction", [0.0, 0.00002, 0.013, 0.5, 0.999])
def test_one_time_values_read_back_within_one_count(mtreg: int, fraction: float) -> None:
    fake, _bus, driver = make(mtreg=mtreg)
    top = 0xFFFE * step_lux(mtreg)
    lux = fraction * top
    fake.set(illuminance_lux=lux)
    value = driver.read()["illuminance_lux"]
    # The chip truncates to a count; the driver reports that to 0.1 lx.
    assert lux - step_lux(mtreg) - 0.05 < value <= lux + 0.05 + 1e-9
    assert value == round(value, 1)


def test_continuous_values_follow_the_light() -> None:
    fake, _bus, driver = make(mode="continuous")
    for lux in (10.0, 20000.0, 333.3):
        fake.set(illuminance_lux=lux)
        driver.read()  # may hold a result measured just before set()
        assert driver.read()["illuminance_lux"] == pytest.approx(lux, abs=step_lux(69))


def test_default_timing_against_datasheet_measurement_time() -> None:
    fake = FakeBH1750()
    driver = BH1750(FakeSMBus([fake]))
    fake.set(illuminance_lux=123.0)
    assert driver.read()["illuminance_lux"] == pytest.approx(123.0, abs=step_lux(69))


def test_early_read_returns_the_previous_register_as_the_chip_does() -> None:
    fake = FakeBH1750()  # datasheet timing: 120 ms, so the early read is surely early
    bus = FakeSMBus([fake])
    fake.set(illuminance_lux=1000.0)
    bus.write_byte(0x23, 0x20)
    early = i2c_msg.read(0x23, 2)
    bus.i2c_rdwr(early)
    assert bytes(early) == b"\x00\x00"  # power-up value, not the light
    time.sleep(0.15)
    late = i2c_msg.read(0x23, 2)
    bus.i2c_rdwr(late)
    assert int.from_bytes(bytes(late), "big") == counts_from_lux(1000.0)


def test_saturation_is_out_of_range_not_a_value() -> None:
    fake, _bus, driver = make()
    fake.set(illuminance_lux=60000.0)
    with pytest.raises(OutOfRangeError, match="saturated"):
        driver.read()


def test_smaller_mtreg_extends_the_range() -> None:
    fake, _bus, driver = make(mtreg=31)
    fake.set(illuminance_lux=100000.0)
    assert driver.read()["illuminance_lux"] == pytest.approx(100000.0, abs=step_lux(31))


# Power loss and reset.


def test_one_time_mode_survives_power_cycle_with_custom_mtreg() -> None:
    fake, _bus, driver = make(mtreg=138)
    fake.power_cycle()  # MTreg back to 69 inside the chip
    fake.set(illuminance_lux=400.0)
    assert driver.read()["illuminance_lux"] == pytest.approx(400.0, abs=step_lux(138))
    assert fake.mtreg == 138


def test_continuous_mode_restarts_a_chip_that_lost_power() -> None:
    fake, _bus, driver = make(mode="continuous")
    fake.set(illuminance_lux=750.0)
    driver.read()
    fake.power_cycle()
    assert driver.read()["illuminance_lux"] == pytest.approx(750.0, abs=step_lux(69))
    assert fake.opcodes.count(0x10) == 2


def test_reset_clears_and_reconfigures() -> None:
    _fake, bus, driver = make(mode="continuous")
    bus.transactions.clear()
    driver.reset()
    assert writes(bus) == [b"\x01", b"\x07", b"\x42", b"\x65", b"\x10"]


# Faults end as typed errors.


def test_no_device_is_device_not_found() -> None:
    with pytest.raises(DeviceNotFoundError, match="0x23"):
        BH1750(FakeSMBus([]))


def test_nack_at_construction_is_device_not_found() -> None:
    fake = FakeBH1750(time_scale=SCALE)
    fake.faults.nack = True
    with pytest.raises(DeviceNotFoundError):
        BH1750(FakeSMBus([fake]))


@pytest.mark.parametrize("mode", ["one_time", "continuous"])
def test_nack_during_read_is_bus_error(mode: str) -> None:
    fake, _bus, driver = make(mode=mode)
    fake.faults.nack = True
    with pytest.raises(BusError, match="BH1750 at 0x23"):
        driver.read()


def test_slow_answers_still_give_the_right_value() -> None:
    fake, _bus, driver = make()
    fake.set(illuminance_lux=42.0)
    fake.faults.delay_s = 0.01
    assert driver.read()["illuminance_lux"] == pytest.approx(42.0, abs=step_lux(69))


def test_stuck_sensor_keeps_its_value() -> None:
    fake, _bus, driver = make()
    fake.set(illuminance_lux=80.0)
    fake.faults.stuck = True
    fake.set(illuminance_lux=9000.0)
    assert driver.read()["illuminance_lux"] == pytest.approx(80.0, abs=step_lux(69))


@pytest.mark.parametrize(
    "options", [{"mode": "fast"}, {"mtreg": 30}, {"mtreg": 255}, {"mtreg": True}]
)
def test_bad_options_are_configuration_errors(options: dict[str, Any]) -> None:
    fake = FakeBH1750()
    with pytest.raises(ConfigurationError):
        BH1750(FakeSMBus([fake]), **options)
    assert fake.opcodes == []


# Properties.


@given(st.integers(0, 0xFFFE), st.integers(31, 254))
def test_fake_quantisation_inverts_the_driver_formula(raw: int, mtreg: int) -> None:
    assert counts_from_lux(lux_from_raw(raw, mtreg), mtreg) == raw


@given(st.integers(0, 0xFFFF), st.integers(31, 254))
def test_any_count_is_a_lux_value_or_a_driver_error(raw: int, mtreg: int) -> None:
    try:
        lux = lux_from_raw(raw, mtreg)
    except DriverError:
        assert raw == 0xFFFF
        return
    assert 0.0 <= lux < 122_000

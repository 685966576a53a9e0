"""SCD4x driver against its bus-level fake (periodic cadence shortened to 50 ms)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from smbus2 import i2c_msg

from drivers.errors import (
    BusError,
    ChecksumError,
    DeviceNotFoundError,
    DriverError,
    DriverTimeoutError,
    OutOfRangeError,
    WrongChipError,
)
from drivers.fake.i2c import FakeSMBus
from drivers.fake.scd4x import FakeSCD4x, raw_humidity, raw_temperature
from drivers.scd4x import (
    SCD4x,
    decode_measurement,
    humidity_from_raw,
    temperature_from_raw,
)
from drivers.sensirion import unpack_words

PERIOD_S = 0.05
FAST_FAKE: dict[str, Any] = {"period_s": PERIOD_S, "stop_time_s": 0.01, "reinit_time_s": 0.005}
FAST_DRIVER: dict[str, Any] = {
    "timeout_s": 1.0,
    "poll_interval_s": 0.005,
    "stop_wait_s": 0.012,
    "reinit_wait_s": 0.008,
}
T_STEP = 175 / 65535
RH_STEP = 100 / 65535


def make(**fake_options: Any) -> tuple[FakeSCD4x, FakeSMBus, SCD4x]:
    fake = FakeSCD4x(**{**FAST_FAKE, **fake_options})
    bus = FakeSMBus([fake])
    return fake, bus, SCD4x(bus, **FAST_DRIVER)


def fresh_read(driver: SCD4x) -> dict[str, float]:
    """A result measured after the last ``set()``: the buffer may still hold an older one."""
    driver.read()
    return driver.read()


def writes(bus: FakeSMBus) -> list[bytes]:
    return [data for _, kind, data in bus.transactions if kind == "w"]


# The datasheet's own examples.


def test_serial_number_datasheet_example() -> None:
    _fake, bus, driver = make()
    assert driver.serial_number == 273_325_796_834_238
    replies = [data for _, kind, data in bus.transactions if kind == "r"]
    assert replies[0] == bytes.fromhex("f896 31 9f07 c2 3bbe 89".replace(" ", ""))


def test_read_measurement_datasheet_example() -> None:
    # §3.5.2 example: 500 ppm, 25 °C, 37 % RH.
    words = unpack_words(bytes.fromhex("01f433" "6667a2" "5eb93c"))
    values = decode_measurement(words)
    assert values["co2_ppm"] == 500.0
    assert values["temperature_celsius"] == pytest.approx(25.0, abs=0.01)
    assert values["relative_humidity_percent"] == pytest.approx(37.0, abs=0.01)


# Bytes on the wire.


def test_construction_stops_probes_and_starts() -> None:
    fake, bus, _driver = make()
    assert writes(bus) == [b"\x3f\x86", b"\x36\x82", b"\x21\xb1"]
    assert all(address == 0x62 for address, _, _ in bus.transactions)
    assert fake.periodic


def test_read_polls_data_ready_then_reads_measurement() -> None:
    _fake, bus, driver = make()
    bus.transactions.clear()
    driver.read()
    sent = writes(bus)
    assert set(sent[:-1]) == {b"\xe4\xb8"}
    assert sent[-1] == b"\xec\x05"
    assert [len(data) for _, kind, data in bus.transactions if kind == "r"][-1] == 9


def test_chip_left_measuring_is_stopped_before_the_probe() -> None:
    fake, _bus, _driver = make(measuring=True)
    assert fake.refused == []
    assert fake.commands[:2] == ["stop_periodic_measurement", "get_serial_number"]


def test_chip_refuses_commands_during_stop_time() -> None:
    # A driver that does not wait the stop time sees the chip refuse its probe.
    fake = FakeSCD4x(period_s=PERIOD_S, stop_time_s=0.5)
    with pytest.raises(BusError, match="get_serial_number"):
        SCD4x(FakeSMBus([fake]), stop_wait_s=0.0)


def test_chip_refuses_serial_number_during_periodic_measurement() -> None:
    fake = FakeSCD4x(period_s=PERIOD_S, measuring=True)
    bus = FakeSMBus([fake])
    with pytest.raises(OSError):
        bus.i2c_rdwr(i2c_msg.write(0x62, b"\x36\x82"))
    assert fake.refused == ["get_serial_number"]


def test_data_ready_clears_after_read_and_empty_buffer_is_nacked() -> None:
    _fake, bus, driver = make(period_s=0.3)  # no new result while this test looks
    driver.read()

    def status() -> int:
        bus.i2c_rdwr(i2c_msg.write(0x62, b"\xe4\xb8"))
        fake_wait()
        reply = i2c_msg.read(0x62, 3)
        bus.i2c_rdwr(reply)
        return unpack_words(bytes(reply))[0]

    assert status() & 0x07FF == 0
    bus.i2c_rdwr(i2c_msg.write(0x62, b"\xec\x05"))
    fake_wait()
    with pytest.raises(OSError):
        bus.i2c_rdwr(i2c_msg.read(0x62, 9))


def fake_wait() -> None:
    time.sleep(0.002)  # the 1 ms execution time


# Values across the measuring range.


@pytest.mark.parametrize(
    ("co2", "celsius", "percent"),
    [(400.0, -10.0, 0.0), (1234.0, 21.37, 45.5), (5000.0, 60.0, 100.0), (40000.0, -45.0, 3.3)],
)
def test_values_read_back_within_quantisation(co2: float, celsius: float, percent: float) -> None:
    fake, _bus, driver = make()
    fake.set(co2_ppm=co2, temperature_celsius=celsius, relative_humidity_percent=percent)
    values = fresh_read(driver)
    assert values["co2_ppm"] == co2
    assert values["temperature_celsius"] == pytest.approx(celsius, abs=T_STEP / 2 + 1e-9)
    assert values["relative_humidity_percent"] == pytest.approx(percent, abs=RH_STEP / 2 + 1e-9)


def test_each_read_returns_a_new_result() -> None:
    fake, _bus, driver = make()
    driver.read()
    fake.set(co2_ppm=800.0)
    assert fresh_read(driver)["co2_ppm"] == 800.0
    fake.set(co2_ppm=900.0)
    assert fresh_read(driver)["co2_ppm"] == 900.0
    assert fake.commands.count("read_measurement") == 5


# Faults end as typed errors.


def test_no_device_is_device_not_found() -> None:
    with pytest.raises(DeviceNotFoundError, match="0x62"):
        SCD4x(FakeSMBus([]), **FAST_DRIVER)


def test_nack_at_construction_is_device_not_found() -> None:
    fake = FakeSCD4x(**FAST_FAKE)
    fake.faults.nack = True
    with pytest.raises(DeviceNotFoundError):
        SCD4x(FakeSMBus([fake]), **FAST_DRIVER)


def test_nack_during_read_is_bus_error() -> None:
    fake, _bus, driver = make()
    fake.faults.nack = True
    with pytest.raises(BusError, match="SCD4x at 0x62"):
        driver.read()


def test_bad_crc_is_checksum_error() -> None:
    fake, _bus, driver = make()
    fake.faults.bad_crc = True
    with pytest.raises(ChecksumError):
        driver.read()


def test_bad_crc_at_probe_is_checksum_error() -> None:
    fake = FakeSCD4x(**FAST_FAKE)
    fake.faults.bad_crc = True
    with pytest.raises(ChecksumError):
        SCD4x(FakeSMBus([fake]), **FAST_DRIVER)


def test_wrong_chip_is_wrong_chip_error() -> None:
    fake = FakeSCD4x(**FAST_FAKE)
    fake.faults.wrong_id = True
    with pytest.raises(WrongChipError, match="not an SCD4x"):
        SCD4x(FakeSMBus([fake]), **FAST_DRIVER)


def test_late_results_time_out() -> None:
    fake = FakeSCD4x(**FAST_FAKE)
    fake.faults.delay_s = 10.0
    driver = SCD4x(FakeSMBus([fake]), **{**FAST_DRIVER, "timeout_s": 0.1})
    with pytest.raises(DriverTimeoutError, match="get_data_ready_status"):
        driver.read()


def test_invalid_zero_sample_is_out_of_range() -> None:
    fake, _bus, driver = make()
    fake.set(co2_ppm=0.0)
    with pytest.raises(OutOfRangeError, match="invalid sample"):
        fresh_read(driver)


def test_co2_beyond_output_range_is_out_of_range() -> None:
    fake, _bus, driver = make()
    fake.set(co2_ppm=45000.0)
    with pytest.raises(OutOfRangeError, match="output range"):
        fresh_read(driver)


def test_stuck_sensor_keeps_reporting_the_frozen_values() -> None:
    fake, _bus, driver = make()
    fake.set(co2_ppm=650.0)
    fresh_read(driver)
    fake.faults.stuck = True
    fake.set(co2_ppm=1500.0)
    assert fresh_read(driver)["co2_ppm"] == 650.0
    fake.faults.stuck = False
    assert fresh_read(driver)["co2_ppm"] == 1500.0


# Life cycle.


def test_close_stops_measurement_and_read_after_close_fails() -> None:
    fake, _bus, driver = make()
    driver.close()
    assert not fake.periodic
    assert fake.commands[-1] == "stop_periodic_measurement"
    with pytest.raises(DriverError, match="closed"):
        driver.read()
    driver.close()
    assert fake.commands.count("stop_periodic_measurement") == 2


def test_reset_after_power_cycle_restores_readings() -> None:
    fake, _bus, driver = make(power_up_time_s=0.02)
    driver.read()
    fake.power_cycle()
    with pytest.raises((BusError, DriverTimeoutError)):
        driver.read()
    time.sleep(0.03)
    driver.reset()
    assert fake.commands[-3:] == [
        "stop_periodic_measurement",
        "reinit",
        "start_periodic_measurement",
    ]
    fake.set(co2_ppm=777.0)
    assert fresh_read(driver)["co2_ppm"] == 777.0


# Properties of the arithmetic.


@given(st.integers(0, 0xFFFF))
def test_fake_inverts_the_datasheet_formulas_exactly(word: int) -> None:
    assert raw_temperature(temperature_from_raw(word)) == word
    assert raw_humidity(humidity_from_raw(word)) == word


@given(st.lists(st.integers(0, 0xFFFF), min_size=3, max_size=3))
def test_decode_never_fails_with_anything_but_driver_error(words: list[int]) -> None:
    try:
        values = decode_measurement(words)
    except DriverError:
        return
    assert 1 <= values["co2_ppm"] <= 40000
    assert -45.0 <= values["temperature_celsius"] <= 130.0
    assert 0.0 <= values["relative_humidity_percent"] <= 100.0


@given(st.binary(max_size=12))
def test_measurement_frames_raise_only_driver_errors(data: bytes) -> None:
    try:
        words = unpack_words(data)
        if len(words) == 3:
            decode_measurement(words)
    except DriverError:
        pass

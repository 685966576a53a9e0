"""BME280 driver against its bus-level fake, plus the pure compensation functions."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers import registry
from drivers.bme280 import (
    BME280,
    Calibration,
    compensate,
    compensate_pressure,
    compensate_temperature,
    parse_calibration,
    parse_data,
)
from drivers.errors import (
    BusError,
    ConfigurationError,
    DeviceNotFoundError,
    DriverError,
    DriverTimeoutError,
    InvalidFrameError,
    WrongChipError,
)
from drivers.fake.bme280 import (
    NEGATIVE_H4_H5_CALIBRATION,
    TYPICAL_CALIBRATION,
    FakeBME280,
    calibration_bytes,
)
from drivers.fake.i2c import FakeSMBus

ADDRESS = 0x76

# Read-back tolerances: one quantisation step of the raw value at 1x oversampling
# (16 bit: 0.005 °C, 2.62 Pa; humidity is always 16 bit) plus the output resolution of
# the integer compensation (0.01 °C, 1/256 Pa, 1/1024 %RH).
T_TOL = 0.01
P_TOL = 2.62
H_TOL = 0.01


@pytest.fixture
def fake() -> FakeBME280:
    return FakeBME280()


@pytest.fixture
def bus(fake: FakeBME280) -> FakeSMBus:
    return FakeSMBus([fake])


@pytest.fixture
def sensor(bus: FakeSMBus) -> BME280:
    return BME280(bus)


def writes(bus: FakeSMBus) -> list[bytes]:
    return [data for address, kind, data in bus.transactions if kind == "w" and len(data) > 1]


# Values read back.


def test_reads_back_standard_conditions(fake: FakeBME280, sensor: BME280) -> None:
    fake.set(temperature_celsius=21.5, relative_humidity_percent=45.0, pressure_pascals=101325.0)
    reading = sensor.read()
    assert set(reading) == {"temperature_celsius", "relative_humidity_percent", "pressure_pascals"}
    assert reading["temperature_celsius"] == pytest.approx(21.5, abs=T_TOL)
    assert reading["relative_humidity_percent"] == pytest.approx(45.0, abs=H_TOL)
    assert reading["pressure_pascals"] == pytest.approx(101325.0, abs=P_TOL)


@pytest.mark.parametrize("celsius", [-40.0, -27.3, -10.0, 0.0, 12.25, 37.0, 60.5, 85.0])
def test_temperature_range(fake: FakeBME280, sensor: BME280, celsius: float) -> None:
    fake.set(temperature_celsius=celsius, relative_humidity_percent=50.0, pressure_pascals=95000.0)
    reading = sensor.read()
    assert reading["temperature_celsius"] == pytest.approx(celsius, abs=T_TOL)
    assert reading["relative_humidity_percent"] == pytest.approx(50.0, abs=H_TOL)
    assert reading["pressure_pascals"] == pytest.approx(95000.0, abs=P_TOL)


@pytest.mark.parametrize("celsius", [-40.0, 21.5, 85.0])
@pytest.mark.parametrize("percent", [0.0, 10.0, 33.3, 50.0, 75.0, 99.0, 100.0])
def test_humidity_range(fake: FakeBME280, sensor: BME280, celsius: float, percent: float) -> None:
    fake.set(temperature_celsius=celsius, relative_humidity_percent=percent)
    assert sensor.read()["relative_humidity_percent"] == pytest.approx(percent, abs=H_TOL)


@pytest.mark.parametrize("hpa", [300.0, 400.0, 550.0, 700.0, 900.0, 1013.25, 1100.0])
def test_pressure_range(fake: FakeBME280, sensor: BME280, hpa: float) -> None:
    fake.set(pressure_pascals=hpa * 100, temperature_celsius=5.0)
    assert sensor.read()["pressure_pascals"] == pytest.approx(hpa * 100, abs=P_TOL)


def test_16x_oversampling_gives_20_bit_resolution(bus: FakeSMBus, fake: FakeBME280) -> None:
    sensor = BME280(
        bus, temperature_oversampling=16, pressure_oversampling=16, humidity_oversampling=16
    )
    for celsius, hpa in ((-12.3, 612.34), (31.7, 1021.07)):
        fake.set(temperature_celsius=celsius, pressure_pascals=hpa * 100)
        reading = sensor.read()
        # 20 bit: 0.16 Pa per step (datasheet table 3), far finer than at 1x.
        assert reading["pressure_pascals"] == pytest.approx(hpa * 100, abs=0.3)
        assert reading["temperature_celsius"] == pytest.approx(celsius, abs=T_TOL)


# Calibration, with the dig_H4/dig_H5 packing many drivers get wrong.


def test_negative_h4_h5_are_sign_extended() -> None:
    calib00 = bytes(calibration_bytes(TYPICAL_CALIBRATION)[0])
    # 0xE1..0xE7: dig_H2 = 362, dig_H3 = 0, then 0xE4 = 0xFF, 0xE5 = 0xBF, 0xE6 = 0xFF
    # (dig_H4 = 0xFFF = -1, dig_H5 = 0xFFB = -5), dig_H6 = 30.
    cal = parse_calibration(calib00, bytes((0x6A, 0x01, 0x00, 0xFF, 0xBF, 0xFF, 0x1E)))
    assert (cal.dig_H2, cal.dig_H3, cal.dig_H4, cal.dig_H5, cal.dig_H6) == (362, 0, -1, -5, 30)
    # 12-bit extremes: dig_H4 = 0x801 = -2047 and dig_H5 = 0x7FF = 2047 share 0xE5 = 0xF1.
    cal = parse_calibration(calib00, bytes((0x6A, 0x01, 0x00, 0x80, 0xF1, 0x7F, 0x1E)))
    assert (cal.dig_H4, cal.dig_H5) == (-2047, 2047)
    # The usual positive case: dig_H4 = 0x139 = 313, dig_H5 = 0x032 = 50.
    cal = parse_calibration(calib00, bytes((0x6A, 0x01, 0x00, 0x13, 0x29, 0x03, 0x1E)))
    assert (cal.dig_H4, cal.dig_H5) == (313, 50)


@given(h4=st.integers(-2048, 2047), h5=st.integers(-2048, 2047))
def test_calibration_round_trips_through_the_chips_byte_layout(h4: int, h5: int) -> None:
    values = {**TYPICAL_CALIBRATION.__dict__, "dig_H4": h4, "dig_H5": h5}
    cal = Calibration(**values)
    assert parse_calibration(*calibration_bytes(cal)) == cal


@pytest.mark.parametrize("celsius", [-40.0, 0.0, 25.0, 85.0])
@pytest.mark.parametrize("percent", [5.0, 45.0, 80.0, 100.0])
def test_reads_a_part_with_negative_h4_h5(celsius: float, percent: float) -> None:
    fake = FakeBME280(calibration=NEGATIVE_H4_H5_CALIBRATION)
    sensor = BME280(FakeSMBus([fake]))
    assert sensor.calibration is not None
    assert (sensor.calibration.dig_H4, sensor.calibration.dig_H5) == (-1, -5)
    fake.set(temperature_celsius=celsius, relative_humidity_percent=percent)
    reading = sensor.read()
    assert reading["relative_humidity_percent"] == pytest.approx(percent, abs=H_TOL)
    assert reading["temperature_celsius"] == pytest.approx(celsius, abs=T_TOL)


def test_blank_calibration_memory_is_refused() -> None:
    with pytest.raises(InvalidFrameError, match="blank"):
        parse_calibration(bytes(26), bytes(7))
    with pytest.raises(InvalidFrameError, match="blank"):
        parse_calibration(b"\xff" * 26, b"\xff" * 7)


def test_datasheet_worked_example() -> None:
    """BMP280 data sheet, section 3.12: same T and P formulas and trimming layout.

    adc_T = 519888 -> t_fine = 128422, T = 25.08 °C; adc_P = 415148 -> 100653.27 Pa
    (double precision; the 64-bit integer code lands within 1/32 Pa of it).
    """
    cal = TYPICAL_CALIBRATION  # dig_T1..dig_P9 are the example's values
    assert (cal.dig_T1, cal.dig_T2, cal.dig_T3, cal.dig_P1) == (27504, 26435, -1000, 36477)
    t_fine, centi_celsius = compensate_temperature(519888, cal)
    assert (t_fine, centi_celsius) == (128422, 2508)
    assert compensate_pressure(415148, t_fine, cal) / 256 == pytest.approx(100653.27, abs=0.05)


# The sequence on the wire.


def test_writes_ctrl_hum_before_ctrl_meas_every_read(bus: FakeSMBus) -> None:
    sensor = BME280(bus, temperature_oversampling=2, pressure_oversampling=16,
                    humidity_oversampling=4)  # fmt: skip
    for _ in range(2):
        bus.transactions.clear()
        sensor.read()
        # ctrl_hum: osrs_h = 011 (4x); ctrl_meas: osrs_t = 010, osrs_p = 101, mode = 01.
        assert writes(bus) == [bytes((0xF2, 0b011)), bytes((0xF4, 0b010_101_01))]
        # Then one burst read of the eight data registers from 0xF7.
        assert bus.transactions[-2:-1] == [(ADDRESS, "w", b"\xf7")]
        _, kind, data = bus.transactions[-1]
        assert (kind, len(data)) == ("r", 8)


def test_construction_resets_and_reads_calibration(bus: FakeSMBus) -> None:
    BME280(bus)
    assert writes(bus)[0] == b"\xe0\xb6"
    reads_from = [data[0] for _, kind, data in bus.transactions if kind == "w" and len(data) == 1]
    assert reads_from[0] == 0xD0  # chip id first
    assert {0x88, 0xE1} <= set(reads_from)


def test_fake_latches_ctrl_hum_only_on_ctrl_meas_write(bus: FakeSMBus, fake: FakeBME280) -> None:
    fake.set(relative_humidity_percent=60.0)
    # Wrong order: ctrl_meas (forced) first, ctrl_hum after it.
    bus.write_byte_data(ADDRESS, 0xF4, 0b001_001_01)
    bus.write_byte_data(ADDRESS, 0xF2, 0b001)
    while fake.measuring:
        time.sleep(0.001)
    block = bytes(bus.read_i2c_block_data(ADDRESS, 0xF7, 8))
    assert block[6:8] == b"\x80\x00"  # humidity skipped
    assert bus.read_byte_data(ADDRESS, 0xF2) == 0b001  # although ctrl_hum reads back set
    with pytest.raises(InvalidFrameError, match="humidity"):
        compensate(parse_data(block), TYPICAL_CALIBRATION)
    # A ctrl_meas write makes the setting effective.
    bus.write_byte_data(ADDRESS, 0xF4, 0b001_001_01)
    while fake.measuring:
        time.sleep(0.001)
    block = bytes(bus.read_i2c_block_data(ADDRESS, 0xF7, 8))
    humidity = compensate(parse_data(block), TYPICAL_CALIBRATION)["relative_humidity_percent"]
    assert humidity == pytest.approx(60.0, abs=H_TOL)


def test_waits_for_the_conversion_instead_of_reading_old_data(
    fake: FakeBME280, bus: FakeSMBus
) -> None:
    sensor = BME280(bus, timeout_s=1.0)
    fake.set(temperature_celsius=10.0)
    sensor.read()
    fake.set(temperature_celsius=30.0)
    fake.faults.delay_s = 0.03  # well past the datasheet maximum the driver sleeps first
    assert sensor.read()["temperature_celsius"] == pytest.approx(30.0, abs=T_TOL)


# Faults.


def test_skipped_measurement_is_an_error_not_a_value(bus: FakeSMBus) -> None:
    class BrownOutBME280(FakeBME280):
        """Loses power right after each measurement was started."""

        def i2c_write(self, data: bytes) -> None:
            super().i2c_write(data)
            if data[:1] == b"\xf4":
                self.power_on_reset()

    fake = BrownOutBME280()
    sensor = BME280(FakeSMBus([fake]))
    with pytest.raises(InvalidFrameError, match="skipped"):
        sensor.read()


def test_wrong_chip_is_named(fake: FakeBME280, bus: FakeSMBus) -> None:
    fake.faults.wrong_id = True
    with pytest.raises(WrongChipError, match=r"0x58.*BMP280"):
        BME280(bus)


def test_nothing_at_the_address() -> None:
    with pytest.raises(DeviceNotFoundError, match="0x77"):
        BME280(FakeSMBus([FakeBME280(0x76)]), 0x77)


def test_nack_at_construction_is_device_not_found(fake: FakeBME280, bus: FakeSMBus) -> None:
    fake.faults.nack = True
    with pytest.raises(DeviceNotFoundError, match="BME280"):
        BME280(bus)


def test_nack_during_read_is_a_bus_error(fake: FakeBME280, sensor: BME280) -> None:
    fake.faults.nack = True
    with pytest.raises(BusError, match=r"BME280 at I2C address 0x76") as caught:
        sensor.read()
    assert isinstance(caught.value, OSError)
    assert isinstance(caught.value.__cause__, OSError)


def test_stuck_sensor_reports_what_the_chip_reports(fake: FakeBME280, sensor: BME280) -> None:
    fake.set(temperature_celsius=20.0)
    fake.faults.stuck = True
    sensor.read()
    fake.set(temperature_celsius=30.0)
    # The driver cannot know the element is stuck; it must not invent a value either.
    assert sensor.read()["temperature_celsius"] == pytest.approx(20.0, abs=T_TOL)
    fake.faults.stuck = False
    assert sensor.read()["temperature_celsius"] == pytest.approx(30.0, abs=T_TOL)


def test_slow_conversion_times_out(fake: FakeBME280, bus: FakeSMBus) -> None:
    sensor = BME280(bus, timeout_s=0.03)
    fake.faults.delay_s = 5.0  # far past any deadline, however loaded the machine
    with pytest.raises(DriverTimeoutError, match="measurement"):
        sensor.read()


def test_reset_brings_a_power_cycled_chip_back(fake: FakeBME280, sensor: BME280) -> None:
    fake.power_on_reset()
    time.sleep(0.003)  # the chip's 2 ms start-up: it came back
    bus = sensor.bus
    assert isinstance(bus, FakeSMBus)
    bus.transactions.clear()
    sensor.reset()
    assert writes(bus)[0] == b"\xe0\xb6"
    fake.set(temperature_celsius=-5.0, relative_humidity_percent=80.0)
    reading = sensor.read()
    assert reading["temperature_celsius"] == pytest.approx(-5.0, abs=T_TOL)
    assert reading["relative_humidity_percent"] == pytest.approx(80.0, abs=H_TOL)


@pytest.mark.parametrize(
    "options",
    [
        {"timeout_s": 0.005},
        {"temperature_oversampling": 3},
        {"humidity_oversampling": 0},
        {"pressure_oversampling": 16, "temperature_oversampling": 16,
         "humidity_oversampling": 16, "timeout_s": 0.1},
    ],
)  # fmt: skip
def test_bad_options_are_configuration_errors(bus: FakeSMBus, options: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError):
        BME280(bus, **options)  # type: ignore[arg-type]


# Pure decoding never lets anything but a DriverError out.


@given(st.binary(min_size=8, max_size=8))
def test_any_data_block_decodes_or_raises_driver_error(block: bytes) -> None:
    try:
        reading = compensate(parse_data(block), TYPICAL_CALIBRATION)
    except DriverError:
        return
    assert -50.0 <= reading["temperature_celsius"] <= 95.0
    assert 0.0 <= reading["relative_humidity_percent"] <= 100.0
    assert 20000.0 <= reading["pressure_pascals"] <= 120000.0


@given(st.binary(max_size=40), st.binary(max_size=10))
def test_any_calibration_bytes_parse_or_raise_driver_error(low: bytes, high: bytes) -> None:
    try:
        cal = parse_calibration(low, high)
    except DriverError:
        return
    assert (len(low), len(high)) == (26, 7)
    assert -2048 <= cal.dig_H4 <= 2047 and -2048 <= cal.dig_H5 <= 2047


def test_registry_points_here() -> None:
    spec = registry.get("bme280")
    assert spec.load() is BME280
    assert spec.load_fake() is FakeBME280
    assert FakeBME280().address == spec.default_address == ADDRESS

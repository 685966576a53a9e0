"""SHT3x driver against its bus-level fake, plus the pure decoding functions."""

from __future__ import annotations

import errno
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers import registry
from drivers.errors import (
    BusError,
    ChecksumError,
    ConfigurationError,
    DeviceNotFoundError,
    DriverError,
    DriverTimeoutError,
    WrongChipError,
)
from drivers.fake.i2c import FakeSMBus
from drivers.fake.sht3x import FakeSHT3x
from drivers.sensirion import pack_words
from drivers.sht3x import (
    STATUS_SYSTEM_RESET_DETECTED,
    SHT3x,
    decode_measurement,
    relative_humidity_percent,
    temperature_celsius,
)

ADDRESS = 0x44
# Half a raw step plus margin: 175 / 65535 °C and 100 / 65535 %RH per step.
T_TOL = 0.0015
RH_TOL = 0.001


@pytest.fixture
def fake() -> FakeSHT3x:
    return FakeSHT3x()


@pytest.fixture
def bus(fake: FakeSHT3x) -> FakeSMBus:
    return FakeSMBus([fake])


@pytest.fixture
def sensor(bus: FakeSMBus) -> SHT3x:
    return SHT3x(bus)


# Values read back.


def test_reads_back_set_values(fake: FakeSHT3x, sensor: SHT3x) -> None:
    fake.set(temperature_celsius=21.5, relative_humidity_percent=45.0)
    assert sensor.read() == {
        "temperature_celsius": pytest.approx(21.5, abs=T_TOL),
        "relative_humidity_percent": pytest.approx(45.0, abs=RH_TOL),
    }


@pytest.mark.parametrize("celsius", [-40.0, -12.5, 0.0, 25.0, 60.1, 99.9, 125.0])
@pytest.mark.parametrize("percent", [0.0, 12.3, 50.0, 87.6, 100.0])
def test_measuring_range(fake: FakeSHT3x, sensor: SHT3x, celsius: float, percent: float) -> None:
    fake.set(temperature_celsius=celsius, relative_humidity_percent=percent)
    reading = sensor.read()
    assert reading["temperature_celsius"] == pytest.approx(celsius, abs=T_TOL)
    assert reading["relative_humidity_percent"] == pytest.approx(percent, abs=RH_TOL)


def test_conversion_formula_end_points() -> None:
    assert temperature_celsius(0) == -45.0
    assert temperature_celsius(0xFFFF) == 130.0
    assert relative_humidity_percent(0) == 0.0
    assert relative_humidity_percent(0xFFFF) == 100.0
    assert temperature_celsius(0x6666) == pytest.approx(25.0, abs=0.001)


# The bytes on the wire.


@pytest.mark.parametrize(
    ("repeatability", "command"),
    [("high", b"\x24\x00"), ("medium", b"\x24\x0b"), ("low", b"\x24\x16")],
)
def test_single_shot_without_clock_stretching(
    bus: FakeSMBus, repeatability: str, command: bytes
) -> None:
    sensor = SHT3x(bus, repeatability=repeatability)  # type: ignore[arg-type]
    bus.transactions.clear()
    sensor.read()
    # The command alone (no register byte), then one 6-byte read: T, CRC, RH, CRC.
    assert bus.transactions[0] == (ADDRESS, "w", command)
    assert [t for t in bus.transactions if t[1] == "w"] == [(ADDRESS, "w", command)]
    assert [(kind, len(data)) for _, kind, data in bus.transactions if kind == "r"] == [("r", 6)]


def test_probe_reads_the_status_register(bus: FakeSMBus) -> None:
    sensor = SHT3x(bus)
    assert bus.transactions[0] == (ADDRESS, "w", b"\xf3\x2d")
    assert bus.transactions[1][1:2] == ("r",) and len(bus.transactions[1][2]) == 3
    assert sensor.status & STATUS_SYSTEM_RESET_DETECTED  # set after power-up


def test_fake_nacks_the_read_while_measuring(bus: FakeSMBus, fake: FakeSHT3x) -> None:
    from smbus2 import i2c_msg

    fake.faults.delay_s = 0.1  # so the read below surely comes while it measures
    bus.i2c_rdwr(i2c_msg.write(ADDRESS, [0x24, 0x00]))
    with pytest.raises(OSError) as caught:
        bus.i2c_rdwr(i2c_msg.read(ADDRESS, 6))
    assert caught.value.errno == errno.EREMOTEIO
    while fake.measuring:
        time.sleep(0.001)
    message = i2c_msg.read(ADDRESS, 6)
    bus.i2c_rdwr(message)
    assert decode_measurement(bytes(message))["relative_humidity_percent"] == pytest.approx(
        45.0, abs=RH_TOL
    )
    with pytest.raises(OSError):  # the result is gone once read
        bus.i2c_rdwr(i2c_msg.read(ADDRESS, 6))


def test_retries_the_read_until_the_chip_is_done(fake: FakeSHT3x, bus: FakeSMBus) -> None:
    sensor = SHT3x(bus, timeout_s=1.0)
    fake.set(temperature_celsius=30.0)
    # Done 40 ms after the command: later than the 15.5 ms the driver waits first.
    fake.faults.delay_s = 0.0275
    assert sensor.read()["temperature_celsius"] == pytest.approx(30.0, abs=T_TOL)


# Faults.


def test_slow_measurement_times_out(fake: FakeSHT3x, bus: FakeSMBus) -> None:
    sensor = SHT3x(bus, timeout_s=0.03)
    fake.faults.delay_s = 5.0  # far past any deadline, however loaded the machine
    with pytest.raises(DriverTimeoutError, match="SHT3x at I2C address 0x44"):
        sensor.read()


def test_bad_crc_is_a_checksum_error(fake: FakeSHT3x, sensor: SHT3x) -> None:
    fake.faults.bad_crc = True
    with pytest.raises(ChecksumError, match="CRC"):
        sensor.read()


def test_bad_crc_at_construction(fake: FakeSHT3x, bus: FakeSMBus) -> None:
    fake.faults.bad_crc = True
    with pytest.raises(ChecksumError):
        SHT3x(bus)


def test_both_crcs_are_checked() -> None:
    good = pack_words((0x6666, 0x8000))
    assert decode_measurement(good)["relative_humidity_percent"] == pytest.approx(50.0, abs=0.01)
    for crc_index in (2, 5):
        bad = bytearray(good)
        bad[crc_index] ^= 0x01
        with pytest.raises(ChecksumError, match=f"word {crc_index // 3}"):
            decode_measurement(bytes(bad))


def test_nothing_at_the_address() -> None:
    with pytest.raises(DeviceNotFoundError, match="0x45"):
        SHT3x(FakeSMBus([FakeSHT3x()]), 0x45)


def test_nack_at_construction_is_device_not_found(fake: FakeSHT3x, bus: FakeSMBus) -> None:
    fake.faults.nack = True
    with pytest.raises(DeviceNotFoundError, match="SHT3x"):
        SHT3x(bus)


def test_nack_during_read_is_a_bus_error(fake: FakeSHT3x, sensor: SHT3x) -> None:
    fake.faults.nack = True
    with pytest.raises(BusError, match=r"SHT3x at I2C address 0x44.*0x2400") as caught:
        sensor.read()
    assert isinstance(caught.value.__cause__, OSError)


def test_another_chip_at_the_address(fake: FakeSHT3x, bus: FakeSMBus) -> None:
    fake.faults.wrong_id = True
    with pytest.raises(WrongChipError, match="not an SHT3x"):
        SHT3x(bus, timeout_s=0.02)


def test_status_with_reserved_bits_set_is_another_chip() -> None:
    class NotAnSHT3x(FakeSHT3x):
        def _command(self, code: int) -> None:
            super()._command(code)
            if code == 0xF32D:
                self._reply = pack_words((0xFFFF,))

    with pytest.raises(WrongChipError, match="reserved"):
        SHT3x(FakeSMBus([NotAnSHT3x()]))


def test_stuck_sensor_reports_what_the_chip_reports(fake: FakeSHT3x, sensor: SHT3x) -> None:
    fake.set(temperature_celsius=20.0)
    fake.faults.stuck = True
    sensor.read()
    fake.set(temperature_celsius=30.0)
    assert sensor.read()["temperature_celsius"] == pytest.approx(20.0, abs=T_TOL)
    fake.faults.stuck = False
    assert sensor.read()["temperature_celsius"] == pytest.approx(30.0, abs=T_TOL)


def test_reset_and_status(fake: FakeSHT3x, bus: FakeSMBus, sensor: SHT3x) -> None:
    bus.transactions.clear()
    sensor.reset()
    writes = [data for _, kind, data in bus.transactions if kind == "w"]
    assert writes == [b"\x30\xa2", b"\xf3\x2d", b"\x30\x41"]
    assert sensor.read_status() & STATUS_SYSTEM_RESET_DETECTED == 0  # cleared by reset()
    fake.power_on_reset()  # a supply dip the driver did not cause
    assert sensor.read_status() & STATUS_SYSTEM_RESET_DETECTED
    fake.set(relative_humidity_percent=70.0)
    assert sensor.read()["relative_humidity_percent"] == pytest.approx(70.0, abs=RH_TOL)


@pytest.mark.parametrize("options", [{"timeout_s": 0.01}, {"repeatability": "extreme"}])
def test_bad_options_are_configuration_errors(bus: FakeSMBus, options: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        SHT3x(bus, **options)  # type: ignore[arg-type]


@given(st.binary(max_size=12))
def test_any_reply_decodes_or_raises_driver_error(data: bytes) -> None:
    try:
        reading = decode_measurement(data)
    except DriverError:
        return
    assert len(data) == 6
    assert -45.0 <= reading["temperature_celsius"] <= 130.0
    assert 0.0 <= reading["relative_humidity_percent"] <= 100.0


def test_registry_points_here() -> None:
    spec = registry.get("sht31")
    assert spec.load() is SHT3x
    assert spec.load_fake() is FakeSHT3x
    assert FakeSHT3x().address == spec.default_address == ADDRESS

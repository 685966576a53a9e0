"""SHT4x driver against its bus-level fake, plus the pure decoding functions."""

from __future__ import annotations

import errno
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from smbus2 import i2c_msg

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
from drivers.fake.sht4x import FakeSHT4x
from drivers.sensirion import pack_words
from drivers.sht4x import (
    SHT4x,
    decode_measurement,
    relative_humidity_percent,
    temperature_celsius,
)

ADDRESS = 0x44
# Half a raw step plus margin: 175 / 65535 °C and 125 / 65535 %RH per step.
T_TOL = 0.0015
RH_TOL = 0.0011


@pytest.fixture
def fake() -> FakeSHT4x:
    return FakeSHT4x()


@pytest.fixture
def bus(fake: FakeSHT4x) -> FakeSMBus:
    return FakeSMBus([fake])


@pytest.fixture
def sensor(bus: FakeSMBus) -> SHT4x:
    return SHT4x(bus)


# Values read back.


def test_reads_back_set_values(fake: FakeSHT4x, sensor: SHT4x) -> None:
    fake.set(temperature_celsius=21.5, relative_humidity_percent=45.0)
    assert sensor.read() == {
        "temperature_celsius": pytest.approx(21.5, abs=T_TOL),
        "relative_humidity_percent": pytest.approx(45.0, abs=RH_TOL),
    }


@pytest.mark.parametrize("celsius", [-40.0, -12.5, 0.0, 25.0, 60.1, 99.9, 125.0])
@pytest.mark.parametrize("percent", [0.0, 12.3, 50.0, 87.6, 100.0])
def test_measuring_range(fake: FakeSHT4x, sensor: SHT4x, celsius: float, percent: float) -> None:
    fake.set(temperature_celsius=celsius, relative_humidity_percent=percent)
    reading = sensor.read()
    assert reading["temperature_celsius"] == pytest.approx(celsius, abs=T_TOL)
    assert reading["relative_humidity_percent"] == pytest.approx(percent, abs=RH_TOL)


def test_humidity_formula_and_cropping() -> None:
    assert temperature_celsius(0) == -45.0
    assert temperature_celsius(0xFFFF) == 130.0
    # RH = -6 + 125 * S / 65535 runs from -6 to 119 %RH; the datasheet crops to 0..100.
    assert relative_humidity_percent(0x8000) == pytest.approx(56.5, abs=0.01)
    assert relative_humidity_percent(0) == 0.0
    assert relative_humidity_percent(3145) == 0.0  # -0.0014 %RH before cropping
    assert relative_humidity_percent(0xFFFF) == 100.0
    assert relative_humidity_percent(55573) == pytest.approx(99.9987, abs=0.0001)
    assert relative_humidity_percent(55574) == 100.0  # 100.0006 %RH before cropping


def test_condensation_reads_100_percent_not_more(fake: FakeSHT4x, sensor: SHT4x) -> None:
    fake.set(relative_humidity_percent=110.0)  # the element can report past 100 %RH
    assert sensor.read()["relative_humidity_percent"] == 100.0


# The bytes on the wire.


@pytest.mark.parametrize(
    ("precision", "command"), [("high", 0xFD), ("medium", 0xF6), ("low", 0xE0)]
)
def test_measure_command_then_six_byte_read(bus: FakeSMBus, precision: str, command: int) -> None:
    sensor = SHT4x(bus, precision=precision)  # type: ignore[arg-type]
    bus.transactions.clear()
    sensor.read()
    assert bus.transactions[0] == (ADDRESS, "w", bytes((command,)))
    assert [t for t in bus.transactions if t[1] == "w"] == [(ADDRESS, "w", bytes((command,)))]
    assert [(kind, len(data)) for _, kind, data in bus.transactions if kind == "r"] == [("r", 6)]


def test_probe_reads_the_serial_number(bus: FakeSMBus) -> None:
    sensor = SHT4x(bus)
    assert bus.transactions[0] == (ADDRESS, "w", b"\x89")
    assert sensor.serial_number == 0x1B2C3D4E
    other = FakeSHT4x(0x46, serial_number=0xDEADBEEF)
    assert SHT4x(FakeSMBus([other]), 0x46).serial_number == 0xDEADBEEF


def test_fake_nacks_the_read_while_measuring(bus: FakeSMBus, fake: FakeSHT4x) -> None:
    fake.faults.delay_s = 0.1  # so the read below surely comes while it measures
    bus.i2c_rdwr(i2c_msg.write(ADDRESS, [0xFD]))
    with pytest.raises(OSError) as caught:
        bus.i2c_rdwr(i2c_msg.read(ADDRESS, 6))
    assert caught.value.errno == errno.EREMOTEIO
    while fake.measuring:
        time.sleep(0.001)
    message = i2c_msg.read(ADDRESS, 6)
    bus.i2c_rdwr(message)
    assert decode_measurement(bytes(message))["temperature_celsius"] == pytest.approx(
        22.0, abs=T_TOL
    )


def test_retries_the_read_until_the_chip_is_done(fake: FakeSHT4x, bus: FakeSMBus) -> None:
    sensor = SHT4x(bus, timeout_s=1.0)
    fake.set(temperature_celsius=30.0)
    # Done ~37 ms after the command: later than the 8.3 ms the driver waits first.
    fake.faults.delay_s = 0.03
    assert sensor.read()["temperature_celsius"] == pytest.approx(30.0, abs=T_TOL)


# Faults.


def test_slow_measurement_times_out(fake: FakeSHT4x, bus: FakeSMBus) -> None:
    sensor = SHT4x(bus, timeout_s=0.02)
    fake.faults.delay_s = 5.0  # far past any deadline, however loaded the machine
    with pytest.raises(DriverTimeoutError, match="SHT4x at I2C address 0x44"):
        sensor.read()


def test_bad_crc_is_a_checksum_error(fake: FakeSHT4x, sensor: SHT4x) -> None:
    fake.faults.bad_crc = True
    with pytest.raises(ChecksumError, match="CRC"):
        sensor.read()


def test_bad_crc_at_construction(fake: FakeSHT4x, bus: FakeSMBus) -> None:
    fake.faults.bad_crc = True
    with pytest.raises(ChecksumError, match="serial number"):
        SHT4x(bus)


def test_both_crcs_are_checked() -> None:
    good = pack_words((0x6666, 0x8000))
    assert decode_measurement(good)["temperature_celsius"] == pytest.approx(25.0, abs=0.01)
    for crc_index in (2, 5):
        bad = bytearray(good)
        bad[crc_index] ^= 0x80
        with pytest.raises(ChecksumError, match=f"word {crc_index // 3}"):
            decode_measurement(bytes(bad))


def test_nothing_at_the_address() -> None:
    with pytest.raises(DeviceNotFoundError, match="0x45"):
        SHT4x(FakeSMBus([FakeSHT4x()]), 0x45)


def test_nack_at_construction_is_device_not_found(fake: FakeSHT4x, bus: FakeSMBus) -> None:
    fake.faults.nack = True
    with pytest.raises(DeviceNotFoundError, match="SHT4x"):
        SHT4x(bus)


def test_nack_during_read_is_a_bus_error(fake: FakeSHT4x, sensor: SHT4x) -> None:
    fake.faults.nack = True
    with pytest.raises(BusError, match=r"SHT4x at I2C address 0x44.*0xFD") as caught:
        sensor.read()
    assert isinstance(caught.value.__cause__, OSError)


def test_another_chip_at_the_address(fake: FakeSHT4x, bus: FakeSMBus) -> None:
    fake.faults.wrong_id = True
    with pytest.raises(WrongChipError, match="not an SHT4x"):
        SHT4x(bus, timeout_s=0.02)


def test_stuck_sensor_reports_what_the_chip_reports(fake: FakeSHT4x, sensor: SHT4x) -> None:
    fake.set(relative_humidity_percent=20.0)
    fake.faults.stuck = True
    sensor.read()
    fake.set(relative_humidity_percent=30.0)
    assert sensor.read()["relative_humidity_percent"] == pytest.approx(20.0, abs=RH_TOL)
    fake.faults.stuck = False
    assert sensor.read()["relative_humidity_percent"] == pytest.approx(30.0, abs=RH_TOL)


def test_reset(fake: FakeSHT4x, bus: FakeSMBus, sensor: SHT4x) -> None:
    bus.transactions.clear()
    sensor.reset()
    writes = [data for _, kind, data in bus.transactions if kind == "w"]
    assert writes == [b"\x94", b"\x89"]
    fake.set(temperature_celsius=-20.0)
    assert sensor.read()["temperature_celsius"] == pytest.approx(-20.0, abs=T_TOL)


@pytest.mark.parametrize("options", [{"timeout_s": 0.005}, {"precision": "ultra"}])
def test_bad_options_are_configuration_errors(bus: FakeSMBus, options: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        SHT4x(bus, **options)  # type: ignore[arg-type]


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
    spec = registry.get("sht4x")
    assert spec.load() is SHT4x
    assert spec.load_fake() is FakeSHT4x
    assert FakeSHT4x().address == spec.default_address == ADDRESS

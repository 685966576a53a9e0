"""SDM120 and SDM630 against fake meters on a real pseudo-terminal."""

from __future__ import annotations

import time

import pytest
import serial

from drivers.errors import ChecksumError, DriverTimeoutError, ModbusExceptionError
from drivers.fake.sdm import FakeSDM120, FakeSDM630
from drivers.modbus import RtuClient, read_input_registers_request
from drivers.sdm import SDM120, SDM630


@pytest.fixture
def meter120():
    with FakeSDM120() as fake:
        port = serial.Serial(fake.port, 2400, timeout=0.2)
        yield fake, port
        port.close()


def test_sdm120_reads_every_quantity(meter120) -> None:
    fake, port = meter120
    fake.set(voltage_volts=231.4, current_amperes=4.25, active_power_watts=905.5,
             power_factor=0.93, frequency_hertz=49.98, energy_import_kwh=1234.5)
    values = SDM120(port).read()
    assert values["voltage_volts"] == 231.4
    assert values["current_amperes"] == 4.25
    assert values["active_power_watts"] == 905.5
    assert values["power_factor"] == 0.93
    assert values["frequency_hertz"] == 49.98
    assert values["energy_import_kwh"] == pytest.approx(1234.5, abs=0.01)


def test_sdm120_sends_two_requests_with_exact_bytes(meter120) -> None:
    fake, port = meter120
    SDM120(port).read()
    wire = bytes(fake.received)
    # unit 1, function 4, address, count (big-endian), CRC low byte first
    assert wire[:6] == bytes.fromhex("010400000020") and wire[8:14] == bytes.fromhex(
        "010400460006")
    assert len(wire) == 16
    assert wire == read_input_registers_request(1, 0, 32) + read_input_registers_request(
        1, 0x46, 6)
    assert fake.requests == [(4, 0x0000, 32), (4, 0x0046, 6)]


@pytest.mark.parametrize("volts", [0.0, 110.0, 230.0, 264.9])
def test_sdm120_across_its_range(meter120, volts: float) -> None:
    fake, port = meter120
    fake.set(voltage_volts=volts)
    assert SDM120(port).read()["voltage_volts"] == volts


def test_energy_accumulates_from_power(meter120) -> None:
    fake, port = meter120
    fake.set(active_power_watts=3.6e6)  # 1 kWh per second
    meter = SDM120(port)
    first = meter.read()["energy_import_kwh"]
    time.sleep(0.3)
    assert meter.read()["energy_import_kwh"] > first + 0.2


def test_another_unit_id_is_silence_and_a_timeout(meter120) -> None:
    _fake, port = meter120
    with pytest.raises(DriverTimeoutError, match="unit 7"):
        SDM120(port, unit=7, timeout_s=0.3).read()


def test_exception_reply_is_a_typed_error(meter120) -> None:
    _fake, port = meter120
    client = RtuClient(port, baudrate=2400, timeout_s=0.5, chip="SDM120")
    with pytest.raises(ModbusExceptionError, match="illegal data address") as info:
        client.read_input_registers(1, 0x0170, 0x40)
    assert info.value.code == 2


@pytest.mark.parametrize("fault", ["garbage", "split", "delay_s"])
def test_noise_split_frames_and_slow_answers_still_read(meter120, fault: str) -> None:
    fake, port = meter120
    fake.set(voltage_volts=229.9)
    setattr(fake.faults, fault, 0.05 if fault == "delay_s" else True)
    assert SDM120(port).read()["voltage_volts"] == 229.9


def test_silent_meter_times_out(meter120) -> None:
    fake, port = meter120
    fake.faults.silent = True
    with pytest.raises(DriverTimeoutError):
        SDM120(port, timeout_s=0.3).read()


def test_bad_crc_is_a_checksum_error(meter120) -> None:
    fake, port = meter120
    fake.faults.bad_crc = True
    with pytest.raises(ChecksumError):
        SDM120(port, timeout_s=0.5).read()


def test_stuck_meter_repeats_its_values(meter120) -> None:
    fake, port = meter120
    fake.set(voltage_volts=230.0)
    fake.faults.stuck = True
    meter = SDM120(port)
    meter.read()
    fake.set(voltage_volts=240.0)
    assert meter.read()["voltage_volts"] == 230.0
    fake.faults.stuck = False
    assert meter.read()["voltage_volts"] == 240.0


def test_sdm630_phases_and_totals() -> None:
    with FakeSDM630(unit=3) as fake:
        port = serial.Serial(fake.port, 9600, timeout=0.2)
        fake.set(voltage_l2_volts=228.5, current_l3_amperes=12.5, active_power_l1_watts=1000,
                 active_power_l2_watts=500, power_factor=0.9)
        values = SDM630(port, unit=3).read()
        port.close()
    assert values["voltage_l2_volts"] == 228.5
    assert values["current_l3_amperes"] == 12.5
    assert values["active_power_watts"] == 1500.0
    assert values["power_factor"] == 0.9
    assert fake.requests == [(4, 0x0000, 76)]

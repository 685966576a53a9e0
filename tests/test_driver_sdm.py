"""SDM120 and SDM630 against fake meters on a real pseudo-terminal."""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator

import pytest
import serial

from drivers import registry
from drivers.errors import (
    BusError,
    ChecksumError,
    ConfigurationError,
    DeviceNotFoundError,
    DriverTimeoutError,
    ModbusExceptionError,
    OutOfRangeError,
)
from drivers.fake.sdm import FakeSDM120, FakeSDM630
from drivers.modbus import RtuClient, read_input_registers_request, with_crc
from drivers.sdm import (
    SDM120,
    SDM120_REGISTERS,
    SDM630,
    SDM630_REGISTERS,
    check,
    decode,
    plan_requests,
)
from drivers.timing import poll_until

TIMEOUT_S = 0.3
PROBE = read_input_registers_request(1, 0x0000, 2)
READ_ALL = read_input_registers_request(1, 0x0000, 76)


def f32(value: float) -> float:
    """``value`` as the meter holds it (float32)."""
    return float(struct.unpack(">f", struct.pack(">f", value))[0])


@pytest.fixture
def fake() -> Iterator[FakeSDM120]:
    with FakeSDM120(accumulate_energy=False) as device:
        yield device


@pytest.fixture
def port(fake: FakeSDM120) -> Iterator[serial.Serial]:
    with serial.Serial(fake.port, 2400, timeout=0.1) as p:
        yield p


@pytest.fixture
def meter(port: serial.Serial) -> SDM120:
    return SDM120(port, timeout_s=TIMEOUT_S)


# -- values ---------------------------------------------------------------------------------


def test_sdm120_reads_every_quantity(fake: FakeSDM120, meter: SDM120) -> None:
    fake.set(voltage_volts=231.4, current_amperes=4.25, power_factor=0.93,
             frequency_hertz=49.98, energy_import_kwh=1234.5, energy_export_kwh=0.25)
    assert meter.read() == {
        "voltage_volts": 231.4,
        "current_amperes": 4.25,
        "active_power_watts": pytest.approx(231.4 * 4.25 * 0.93, rel=1e-6),
        "power_factor": 0.93,
        "frequency_hertz": 49.98,
        "energy_import_kwh": 1234.5,
        "energy_export_kwh": 0.25,
    }


@pytest.mark.parametrize("volts", [0.0, 110.0, 176.0, 230.1, 276.0])
def test_sdm120_across_its_range(fake: FakeSDM120, meter: SDM120, volts: float) -> None:
    for amperes, pf in ((0.0, 1.0), (0.001, 0.99), (5.0, 0.5), (45.0, 1.0), (12.3, -0.5),
                        (45.0, -1.0)):
        fake.set(voltage_volts=volts, current_amperes=amperes, power_factor=pf)
        values = meter.read()
        assert values["voltage_volts"] == volts
        assert values["current_amperes"] == amperes
        assert values["power_factor"] == pf
        # the float32 of what the meter computes; negative power is export
        assert values["active_power_watts"] == pytest.approx(f32(volts * amperes * pf),
                                                             rel=1e-7)


def test_every_read_is_fresh(fake: FakeSDM120, meter: SDM120) -> None:
    fake.set(voltage_volts=228.0)
    assert meter.read()["voltage_volts"] == 228.0
    fake.set(voltage_volts=241.5)
    assert meter.read()["voltage_volts"] == 241.5


def test_energy_counters_follow_power() -> None:
    with (FakeSDM120() as fake, serial.Serial(fake.port, 2400, timeout=0.1) as port):
        meter = SDM120(port, timeout_s=TIMEOUT_S)
        fake.set(current_amperes=100.0, power_factor=1.0)  # 23 kW imported
        first = meter.read()
        second = poll_until(
            lambda: v if (v := meter.read())["energy_import_kwh"] > first["energy_import_kwh"]
            else None, timeout_s=2.0, interval_s=0.05, what="import energy rising")
        assert second["energy_export_kwh"] == first["energy_export_kwh"]
        fake.set(power_factor=-1.0)  # now exporting
        third = meter.read()
        poll_until(
            lambda: True if meter.read()["energy_export_kwh"] > third["energy_export_kwh"]
            else None, timeout_s=2.0, interval_s=0.05, what="export energy rising")


def test_sdm630_phases_and_totals() -> None:
    with (FakeSDM630(unit=3, accumulate_energy=False) as fake,
          serial.Serial(fake.port, 9600, timeout=0.1) as port):
        fake.set(voltage_l1_volts=231.0, voltage_l2_volts=228.5, voltage_l3_volts=0.0,
                 current_l1_amperes=10.0, current_l2_amperes=2.0, current_l3_amperes=12.5,
                 power_factor_l1=1.0, power_factor_l2=-0.5, power_factor_l3=0.8,
                 frequency_hertz=50.02, energy_import_kwh=98765.5)
        values = SDM630(port, unit=3, timeout_s=TIMEOUT_S).read()
        assert fake.requests == [(4, 0x0000, 2), (4, 0x0000, 76)]  # probe, then one read
    p1, p2 = 231.0 * 10.0, 228.5 * 2.0 * -0.5
    assert set(values) == set(SDM630_REGISTERS.values())
    assert values["voltage_l2_volts"] == 228.5
    assert values["voltage_l3_volts"] == 0.0  # a phase not connected reads 0
    assert values["current_l3_amperes"] == 12.5
    assert values["active_power_l1_watts"] == p1
    assert values["active_power_l2_watts"] == p2
    assert values["active_power_l3_watts"] == 0.0
    assert values["power_factor_l2"] == -0.5
    assert values["active_power_watts"] == pytest.approx(p1 + p2, rel=1e-6)
    assert values["power_factor"] == pytest.approx((p1 + p2) / (2310.0 + 457.0), rel=1e-6)
    assert values["frequency_hertz"] == 50.02
    assert values["energy_import_kwh"] == 98765.5


# -- bytes on the wire ------------------------------------------------------------------------


def test_probe_then_one_request_for_everything(fake: FakeSDM120, meter: SDM120) -> None:
    meter.read()
    assert bytes(fake.received) == PROBE + READ_ALL
    assert bytes.fromhex("01040000004cf1ff") == READ_ALL
    assert fake.requests == [(4, 0x0000, 2), (4, 0x0000, 76)]


def test_unit_id_is_in_every_request() -> None:
    with (FakeSDM120(unit=17) as fake, serial.Serial(fake.port, 2400, timeout=0.1) as port):
        SDM120(port, unit=17, timeout_s=TIMEOUT_S).read()
        assert bytes(fake.received) == (read_input_registers_request(17, 0, 2)
                                        + read_input_registers_request(17, 0, 76))
        assert bytes(fake.received)[:2] == b"\x11\x04"


def test_smaller_requests_when_asked(fake: FakeSDM120, port: serial.Serial) -> None:
    fake.set(voltage_volts=229.0, frequency_hertz=50.1)
    meter = SDM120(port, timeout_s=TIMEOUT_S, max_registers=20)
    assert meter.plan == [(0x0000, 14), (0x001E, 2), (0x0046, 6)]
    values = meter.read()
    assert values["voltage_volts"] == 229.0 and values["frequency_hertz"] == 50.1
    assert fake.requests[1:] == [(4, 0x0000, 14), (4, 0x001E, 2), (4, 0x0046, 6)]


def test_meter_refusing_reserved_registers_is_read_value_by_value() -> None:
    with (FakeSDM120(strict_map=True, accumulate_energy=False) as fake,
          serial.Serial(fake.port, 2400, timeout=0.1) as port):
        fake.set(voltage_volts=233.3, energy_import_kwh=12.5)
        meter = SDM120(port, timeout_s=TIMEOUT_S)
        values = meter.read()
        assert values["voltage_volts"] == 233.3 and values["energy_import_kwh"] == 12.5
        tight = [(0x0000, 2), (0x0006, 2), (0x000C, 2), (0x001E, 2), (0x0046, 6)]
        assert meter.plan == tight
        assert fake.requests[1:] == [(4, 0x0000, 76), *[(4, a, c) for a, c in tight]]
        fake.requests.clear()
        meter.read()
        assert fake.requests == [(4, a, c) for a, c in tight]  # the plan is kept


# -- the fake as a Modbus slave ---------------------------------------------------------------


def raw_exchange(port: serial.Serial, frame: bytes, size: int) -> bytes:
    port.reset_input_buffer()
    port.write(frame)
    port.timeout = 0.2
    return bytes(port.read(size))


def test_fake_answers_an_unknown_function_with_exception_1(
        fake: FakeSDM120, port: serial.Serial) -> None:
    read_holding = with_crc(bytes.fromhex("010300000002"))
    assert raw_exchange(port, read_holding, 5) == with_crc(bytes.fromhex("018301"))
    write_multiple = with_crc(bytes.fromhex("0110001c00020440000000"))
    assert raw_exchange(port, write_multiple, 5) == with_crc(bytes.fromhex("019001"))


def test_fake_ignores_a_bad_crc_and_other_units(fake: FakeSDM120, port: serial.Serial) -> None:
    assert raw_exchange(port, PROBE[:-1] + b"\x00", 9) == b""
    assert raw_exchange(port, read_input_registers_request(2, 0, 2), 9) == b""
    assert raw_exchange(port, PROBE, 9)[:3] == b"\x01\x04\x04"


@pytest.mark.parametrize(("address", "count", "code"), [
    (0x0170, 2, 2),  # outside the map
    (0x0048, 10, 2),  # runs past the end of the first block
    (0x0001, 2, 2),  # half a value
    (0x0000, 3, 2),
    (0x0000, 82, 3),  # more than 40 values
])
def test_fake_refuses_illegal_ranges(fake: FakeSDM120, port: serial.Serial, address: int,
                                     count: int, code: int) -> None:
    client = RtuClient(port, timeout_s=TIMEOUT_S, chip="SDM120")
    with pytest.raises(ModbusExceptionError) as info:
        client.read_input_registers(1, address, count)
    assert info.value.code == code


def test_fake_serves_the_total_energy_register(fake: FakeSDM120, port: serial.Serial) -> None:
    fake.set(energy_import_kwh=10.0, energy_export_kwh=2.5)
    data = RtuClient(port, timeout_s=TIMEOUT_S, chip="SDM120").read_input_registers(
        1, 0x0156, 2)
    assert struct.unpack(">f", data) == (12.5,)


# -- faults -----------------------------------------------------------------------------------


def test_silent_meter_at_construction_is_not_found(fake: FakeSDM120,
                                                   port: serial.Serial) -> None:
    fake.faults.silent = True
    with pytest.raises(DeviceNotFoundError, match="unit id"):
        SDM120(port, timeout_s=0.1)


def test_another_unit_id_is_silence(fake: FakeSDM120, port: serial.Serial) -> None:
    with pytest.raises(DeviceNotFoundError, match="SDM120 \\(unit 7\\)"):
        SDM120(port, unit=7, timeout_s=0.1)
    meter = SDM120(port, unit=7, timeout_s=0.1, probe=False)
    with pytest.raises(DriverTimeoutError, match="unit 7"):
        meter.read()


def test_silent_meter_times_out_and_reset_finds_it_again(
        fake: FakeSDM120, port: serial.Serial) -> None:
    meter = SDM120(port, timeout_s=0.1)
    fake.faults.silent = True
    with pytest.raises(DriverTimeoutError, match="no reply"):
        meter.read()
    with pytest.raises(DeviceNotFoundError):
        meter.reset()
    fake.faults.silent = False
    meter.reset()
    assert meter.read()["voltage_volts"] == 230.0


@pytest.mark.parametrize("faults", [("garbage",), ("split",), ("garbage", "split")])
def test_noise_and_split_frames_still_read(fake: FakeSDM120, meter: SDM120,
                                           faults: tuple[str, ...]) -> None:
    for name in faults:
        setattr(fake.faults, name, True)
    for volts in (229.9, 231.7, 0.5):
        fake.set(voltage_volts=volts)
        assert meter.read()["voltage_volts"] == volts


def test_slow_answer_within_the_timeout_is_read(fake: FakeSDM120, meter: SDM120) -> None:
    fake.faults.delay_s = 0.1
    fake.set(frequency_hertz=49.9)
    assert meter.read()["frequency_hertz"] == 49.9


def test_answer_later_than_the_timeout_is_a_timeout(fake: FakeSDM120,
                                                    port: serial.Serial) -> None:
    meter = SDM120(port, timeout_s=0.1, retries=0)
    fake.faults.delay_s = 0.3
    with pytest.raises(DriverTimeoutError):
        meter.read()


def test_bad_crc_is_retried_then_a_checksum_error(fake: FakeSDM120, meter: SDM120) -> None:
    fake.faults.bad_crc = True
    fake.requests.clear()
    with pytest.raises(ChecksumError, match="CRC"):
        meter.read()
    assert fake.requests == [(4, 0x0000, 76)] * (1 + meter._client.retries)


def test_stuck_meter_repeats_its_values(fake: FakeSDM120, meter: SDM120) -> None:
    fake.set(voltage_volts=230.0)
    fake.faults.stuck = True
    assert meter.read()["voltage_volts"] == 230.0
    fake.set(voltage_volts=240.0)
    assert meter.read()["voltage_volts"] == 230.0
    fake.faults.stuck = False
    assert meter.read()["voltage_volts"] == 240.0


@pytest.mark.parametrize("quantities", [{"voltage_volts": math.nan},
                                        {"power_factor": 1.5},
                                        {"frequency_hertz": -50.0}])
def test_impossible_values_are_out_of_range(fake: FakeSDM120, meter: SDM120,
                                            quantities: dict[str, float]) -> None:
    fake.set(**quantities)
    with pytest.raises(OutOfRangeError, match="SDM120"):
        meter.read()


def test_closed_port_is_a_bus_error(meter: SDM120, port: serial.Serial) -> None:
    port.close()
    with pytest.raises(BusError, match="SDM120"):
        meter.read()


@pytest.mark.parametrize("kwargs", [{"unit": 0}, {"unit": 248}, {"unit": True},
                                    {"max_registers": 81}, {"max_registers": 7},
                                    {"max_registers": 0}, {"timeout_s": 0}, {"retries": -1}])
def test_bad_options_are_configuration_errors(port: serial.Serial,
                                              kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        SDM120(port, **kwargs)  # type: ignore[arg-type]


def test_registry_names_these_classes_and_factory_baud_rates() -> None:
    for name, driver, fake_class in (("sdm120", SDM120, FakeSDM120),
                                     ("sdm630", SDM630, FakeSDM630)):
        spec = registry.get(name)
        assert spec.load() is driver and spec.load_fake() is fake_class
        assert spec.default_baudrate == driver.DEFAULT_BAUDRATE
    assert SDM120.DEFAULT_BAUDRATE == 2400 and SDM630.DEFAULT_BAUDRATE == 9600


# -- pure parts --------------------------------------------------------------------------------


def test_plans_use_as_few_requests_as_the_limit_allows() -> None:
    assert plan_requests(SDM120_REGISTERS) == [(0x0000, 76)]
    assert plan_requests(SDM630_REGISTERS) == [(0x0000, 76)]
    assert plan_requests(SDM630_REGISTERS, max_registers=40) == [(0x0000, 36), (0x0034, 24)]
    assert plan_requests(SDM630_REGISTERS, max_registers=20) == [
        (0x0000, 18), (0x001E, 6), (0x0034, 20), (0x0048, 4)]
    assert plan_requests(SDM630_REGISTERS, max_gap=0) == [
        (0x0000, 18), (0x001E, 6), (0x0034, 2), (0x003E, 2), (0x0046, 6)]
    assert plan_requests({0x0000, 0x0156}) == [(0x0000, 2), (0x0156, 2)]


def test_decode_takes_each_value_from_its_place_in_the_block() -> None:
    block = b"".join(struct.pack(">f", v) for v in (1.5, 0.0, 0.0, 4.5))
    assert decode({0x0010: "a", 0x0016: "b", 0x0018: "c", 0x000E: "d"}, 0x0010, block) == {
        "a": 1.5, "b": 4.5}


def test_check_allows_export_and_signed_power_factor() -> None:
    ok = {"active_power_watts": -1500.0, "power_factor": -0.8, "voltage_volts": 0.0}
    assert check("SDM120", ok) == ok
    with pytest.raises(OutOfRangeError, match="current_amperes"):
        check("SDM120", {"current_amperes": -0.1})
    with pytest.raises(OutOfRangeError):
        check("SDM120", {"energy_import_kwh": math.inf})


def test_a_simulated_three_phase_cabinet_follows_the_world_per_phase(tmp_path) -> None:
    """`run --simulate` with an SDM630: each phase's voltage, current and power factor come
    from the simulated world (uneven load), not the fake's idle defaults."""
    from gateway.config import parse
    from gateway.hardware import Hardware

    config = parse(f"""
[gateway]
id = "alatau-sdm-0001"
[storage]
path = "{tmp_path / 'buffer.db'}"
[uplink]
url = "http://127.0.0.1:9/v1/batches"
[[sensors]]
name = "mains"
driver = "sdm630"
port = "/dev/ttyUSB0"
baudrate = 9600
unit = 1
interval = 2.0
""")
    hardware = Hardware(config, simulate=True)
    try:
        values = hardware.make_sensor(config.sensor("mains")).read()
    finally:
        hardware.close()
    currents = [values[f"current_l{p}_amperes"] for p in (1, 2, 3)]
    assert all(c > 0 for c in currents) and len(set(currents)) == 3
    assert len({values[f"voltage_l{p}_volts"] for p in (1, 2, 3)}) == 3
    assert all(200 < values[f"voltage_l{p}_volts"] < 260 for p in (1, 2, 3))
    assert all(0.8 < values[f"power_factor_l{p}"] <= 1.0 for p in (1, 2, 3))

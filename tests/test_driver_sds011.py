"""SDS011 driver against its pty fake: values, bytes on the wire, faults, frame parser."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import serial
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers import registry
from drivers.errors import (
    BusError,
    ChecksumError,
    ConfigurationError,
    DeviceNotFoundError,
    DriverError,
    DriverTimeoutError,
    InvalidFrameError,
)
from drivers.fake.sds011 import FakeSDS011
from drivers.sds011 import (
    FRAME_SIZE,
    SDS011,
    Sds011Frame,
    Sds011FrameParser,
    build_command,
    decode_measurement,
)
from drivers.timing import poll_until

# Worked examples of the Laser Dust Sensor Control Protocol V1.3, section 3.
SET_QUERY_MODE_A160 = bytes.fromhex("aa b4 02 01 01 00 00 00 00 00 00 00 00 00 00 a1 60 05 ab")
SET_QUERY_MODE_REPLY_A160 = bytes.fromhex("aa c5 02 01 01 00 a1 60 05 ab")
QUERY_DATA_ALL = bytes.fromhex("aa b4 04 00 00 00 00 00 00 00 00 00 00 00 00 ff ff 02 ab")
QUERY_DATA_REPLY_A160 = bytes.fromhex("aa c0 d4 04 3a 0a a1 60 1d ab")  # 123.6 / 261.8 µg/m³
SLEEP_A160 = bytes.fromhex("aa b4 06 01 00 00 00 00 00 00 00 00 00 00 00 a1 60 08 ab")
WORK_A160 = bytes.fromhex("aa b4 06 01 01 00 00 00 00 00 00 00 00 00 00 a1 60 09 ab")
SLEEP_REPLY_A160 = bytes.fromhex("aa c5 06 01 00 00 a1 60 08 ab")

# The same commands addressed to every sensor (device id FF FF), as the driver sends them.
SET_QUERY_MODE_ALL = bytes.fromhex("aa b4 02 01 01 00 00 00 00 00 00 00 00 00 00 ff ff 02 ab")
WORK_ALL = bytes.fromhex("aa b4 06 01 01 00 00 00 00 00 00 00 00 00 00 ff ff 06 ab")
SLEEP_ALL = bytes.fromhex("aa b4 06 01 00 00 00 00 00 00 00 00 00 00 00 ff ff 05 ab")

TIMEOUT_S = 0.4


def data_frame(pm2_5_raw: int, pm10_raw: int, *, corrupt: bool = False) -> bytes:
    data = pm2_5_raw.to_bytes(2, "little") + pm10_raw.to_bytes(2, "little") + b"\xa1\x60"
    check = (sum(data) + (1 if corrupt else 0)) & 0xFF
    return b"\xaa\xc0" + data + bytes((check, 0xAB))


def wait_until_received(fake: FakeSDS011, expected: bytes) -> None:
    """For writes the driver does not wait on: wait (bounded) until the fake has them."""
    poll_until(
        lambda: True if len(fake.received) >= len(expected) else None,
        timeout_s=1.0,
        interval_s=0.005,
        what="fake receiving the command",
    )
    assert bytes(fake.received) == expected


@pytest.fixture
def fake() -> Iterator[FakeSDS011]:
    # Factory default (active reporting) at a fast pace, so stray frames are on the line.
    with FakeSDS011(report_period_s=0.05) as device:
        yield device


@pytest.fixture
def port(fake: FakeSDS011) -> Iterator[serial.Serial]:
    with serial.Serial(fake.port, 9600, timeout=0.1) as p:
        yield p


@pytest.fixture
def sensor(port: serial.Serial) -> SDS011:
    return SDS011(port, timeout_s=TIMEOUT_S)


# -- the protocol's worked examples -----------------------------------------------------------


def test_commands_match_the_protocol_examples() -> None:
    assert build_command(0x02, (0x01, 0x01), device_id=0xA160) == SET_QUERY_MODE_A160
    assert build_command(0x04) == QUERY_DATA_ALL
    assert build_command(0x06, (0x01, 0x00), device_id=0xA160) == SLEEP_A160
    assert build_command(0x06, (0x01, 0x01), device_id=0xA160) == WORK_A160


def test_measurement_example_decodes() -> None:
    (frame,) = Sds011FrameParser().feed(QUERY_DATA_REPLY_A160)
    assert frame.is_measurement and frame.device_id == 0xA160
    assert decode_measurement(frame) == {"pm2_5_ugm3": 123.6, "pm10_ugm3": 261.8}


def test_reply_example_is_recognised() -> None:
    (frame,) = Sds011FrameParser().feed(SET_QUERY_MODE_REPLY_A160)
    assert frame.replies_to(0x02, 0x01, 0x01)
    assert not frame.replies_to(0x02, 0x01, 0x00)
    assert not frame.replies_to(0x06, 0x01, 0x01)
    with pytest.raises(InvalidFrameError):
        decode_measurement(frame)


def test_fake_answers_exactly_as_in_the_protocol_examples() -> None:
    with (
        FakeSDS011(device_id=0xA160, reporting="query") as fake,
        serial.Serial(fake.port, 9600, timeout=0.5) as port,
    ):
        fake.set(pm2_5_ugm3=123.6, pm10_ugm3=261.8)
        port.write(QUERY_DATA_ALL)
        assert port.read(FRAME_SIZE) == QUERY_DATA_REPLY_A160
        port.write(SET_QUERY_MODE_A160)
        assert port.read(FRAME_SIZE) == SET_QUERY_MODE_REPLY_A160
        port.write(SLEEP_A160)
        assert port.read(FRAME_SIZE) == SLEEP_REPLY_A160


def test_fake_ignores_commands_with_a_bad_checksum(port: serial.Serial) -> None:
    SDS011(port, timeout_s=TIMEOUT_S)  # query mode: nothing arrives unasked
    port.timeout = 0.2
    port.write(QUERY_DATA_ALL[:-2] + b"\x03\xab")
    assert port.read(FRAME_SIZE) == b""
    port.write(QUERY_DATA_ALL)
    assert len(port.read(FRAME_SIZE)) == FRAME_SIZE


def test_fake_ignores_commands_for_another_device(port: serial.Serial) -> None:
    SDS011(port, timeout_s=TIMEOUT_S)
    port.timeout = 0.2
    port.write(build_command(0x04, device_id=0x1234))
    assert port.read(FRAME_SIZE) == b""


# -- driver against the fake ----------------------------------------------------------------


def test_construction_wakes_and_sets_query_mode(fake: FakeSDS011, port: serial.Serial) -> None:
    SDS011(port, timeout_s=TIMEOUT_S)
    assert bytes(fake.received) == WORK_ALL + SET_QUERY_MODE_ALL
    assert fake.reporting == "query"
    assert not fake.asleep


def test_read_sends_one_query_data_command(fake: FakeSDS011, sensor: SDS011) -> None:
    fake.received.clear()
    sensor.read()
    assert bytes(fake.received) == QUERY_DATA_ALL


@pytest.mark.parametrize(
    ("pm2_5", "pm10"),
    [(0.0, 0.0), (0.1, 0.2), (12.34, 25.06), (123.6, 261.8), (500.0, 750.5), (999.9, 999.9)],
)
def test_reads_across_the_measuring_range(
    fake: FakeSDS011, sensor: SDS011, pm2_5: float, pm10: float
) -> None:
    fake.set(pm2_5_ugm3=pm2_5, pm10_ugm3=pm10)
    reading = sensor.read()
    assert reading == {"pm2_5_ugm3": round(pm2_5, 1), "pm10_ugm3": round(pm10, 1)}


def test_values_above_the_range_read_as_its_top(fake: FakeSDS011, sensor: SDS011) -> None:
    fake.set(pm2_5_ugm3=1500.0, pm10_ugm3=2000.0)
    assert sensor.read() == {"pm2_5_ugm3": 999.9, "pm10_ugm3": 999.9}


def test_every_read_is_fresh(fake: FakeSDS011, sensor: SDS011) -> None:
    fake.set(pm2_5_ugm3=4.2)
    assert sensor.read()["pm2_5_ugm3"] == 4.2
    fake.set(pm2_5_ugm3=88.8)
    assert sensor.read()["pm2_5_ugm3"] == 88.8


def test_device_id_addresses_one_sensor(fake: FakeSDS011, port: serial.Serial) -> None:
    sensor = SDS011(port, timeout_s=TIMEOUT_S, device_id=0xA160)
    assert bytes(fake.received)[: len(WORK_A160)] == WORK_A160
    assert sensor.read() == {"pm2_5_ugm3": 8.4, "pm10_ugm3": 14.2}
    with pytest.raises(DeviceNotFoundError):
        SDS011(port, timeout_s=0.2, device_id=0x0001)


def test_sleep_wake_and_close(fake: FakeSDS011, sensor: SDS011) -> None:
    fake.received.clear()
    sensor.sleep()
    assert fake.asleep
    assert bytes(fake.received) == SLEEP_ALL
    with pytest.raises(DriverTimeoutError):
        sensor.read()  # a sleeping sensor ignores all but sleep-work
    sensor.wake()
    assert not fake.asleep
    assert sensor.read()["pm10_ugm3"] == 14.2
    fake.received.clear()
    sensor.close()
    wait_until_received(fake, SLEEP_ALL)
    assert fake.asleep


def test_reset_brings_back_a_sleeping_sensor(fake: FakeSDS011, sensor: SDS011) -> None:
    sensor.sleep()
    sensor.reset()
    assert not fake.asleep and fake.reporting == "query"
    assert sensor.read()["pm2_5_ugm3"] == 8.4


# -- faults -----------------------------------------------------------------------------------


def test_silent_sensor_times_out(fake: FakeSDS011, sensor: SDS011) -> None:
    fake.faults.silent = True
    with pytest.raises(DriverTimeoutError, match="SDS011"):
        sensor.read()


def test_silent_sensor_at_construction_is_not_found(fake: FakeSDS011, port: serial.Serial) -> None:
    fake.faults.silent = True
    with pytest.raises(DeviceNotFoundError, match="work command"):
        SDS011(port, timeout_s=TIMEOUT_S)


@pytest.mark.parametrize("faults", [("garbage",), ("split",), ("garbage", "split")])
def test_garbage_and_split_frames_still_read(
    fake: FakeSDS011, sensor: SDS011, faults: tuple[str, ...]
) -> None:
    for name in faults:
        setattr(fake.faults, name, True)
    for value in (0.3, 77.7, 456.1):
        fake.set(pm10_ugm3=value)
        assert sensor.read()["pm10_ugm3"] == value


def test_construction_through_garbage_and_split_frames(
    fake: FakeSDS011, port: serial.Serial
) -> None:
    fake.faults.garbage = fake.faults.split = True
    sensor = SDS011(port, timeout_s=TIMEOUT_S)
    assert fake.reporting == "query"
    assert sensor.read()["pm2_5_ugm3"] == 8.4


def test_bad_checksum_is_retried_then_raised(fake: FakeSDS011, sensor: SDS011) -> None:
    fake.faults.bad_crc = True
    fake.received.clear()
    with pytest.raises(ChecksumError, match="checksum"):
        sensor.read()
    # one command plus one per tolerated retry, then the error
    assert bytes(fake.received) == QUERY_DATA_ALL * (1 + sensor.checksum_retries)


def test_bad_checksum_with_no_retries(fake: FakeSDS011, port: serial.Serial) -> None:
    sensor = SDS011(port, timeout_s=TIMEOUT_S, checksum_retries=0)
    fake.faults.bad_crc = True
    fake.received.clear()
    with pytest.raises(ChecksumError):
        sensor.read()
    assert bytes(fake.received) == QUERY_DATA_ALL


def test_stuck_sensor_keeps_reporting_its_frozen_value(fake: FakeSDS011, sensor: SDS011) -> None:
    fake.set(pm2_5_ugm3=20.5)
    fake.faults.stuck = True
    assert sensor.read()["pm2_5_ugm3"] == 20.5
    fake.set(pm2_5_ugm3=90.0)
    assert sensor.read()["pm2_5_ugm3"] == 20.5
    fake.faults.stuck = False
    assert sensor.read()["pm2_5_ugm3"] == 90.0


def test_slow_answer_within_the_timeout_is_read(fake: FakeSDS011, sensor: SDS011) -> None:
    fake.faults.delay_s = 0.1
    fake.set(pm10_ugm3=33.3)
    assert sensor.read()["pm10_ugm3"] == 33.3


def test_answer_later_than_the_timeout_is_a_timeout(fake: FakeSDS011, port: serial.Serial) -> None:
    sensor = SDS011(port, timeout_s=0.15)
    fake.faults.delay_s = 0.4
    with pytest.raises(DriverTimeoutError):
        sensor.read()


def test_closed_port_is_a_bus_error(sensor: SDS011, port: serial.Serial) -> None:
    port.close()
    with pytest.raises(BusError, match="SDS011"):
        sensor.read()


@pytest.mark.parametrize(
    "kwargs", [{"timeout_s": -1.0}, {"checksum_retries": -1}, {"device_id": 0x10000}]
)
def test_bad_options_are_configuration_errors(
    port: serial.Serial, kwargs: dict[str, object]
) -> None:
    with pytest.raises(ConfigurationError):
        SDS011(port, **kwargs)


def test_registry_names_these_classes() -> None:
    spec = registry.get("sds011")
    assert spec.load() is SDS011
    assert spec.load_fake() is FakeSDS011


# -- frame parser ------------------------------------------------------------------------------


def test_parser_resynchronises_after_false_heads() -> None:
    good = data_frame(1236, 2618)
    parser = Sds011FrameParser()
    noise = (
        b"\xaa\x00"  # unknown command id
        + b"\xaa\xc0\x01\x02\x03"  # a false head whose ten bytes run into the real frame
    )
    frames = parser.feed(noise + good)
    frames += parser.feed(b"\x00" * 20)  # trailing line noise yields nothing
    assert [f.raw for f in frames] == [good]
    assert all(isinstance(e, DriverError) for e in parser.take_errors())


def test_parser_recovers_after_a_frame_with_a_bad_checksum() -> None:
    parser = Sds011FrameParser()
    frames = parser.feed(data_frame(5, 6, corrupt=True) + data_frame(5, 6))
    assert [f.raw for f in frames] == [data_frame(5, 6)]
    assert [type(e) for e in parser.take_errors()] == [ChecksumError]


def test_parser_rejects_a_wrong_tail() -> None:
    parser = Sds011FrameParser()
    assert parser.feed(data_frame(5, 6)[:-1] + b"\xac") == []
    assert [type(e) for e in parser.take_errors()] == [InvalidFrameError]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=12))
def test_parser_never_raises_and_stays_bounded(chunks: list[bytes]) -> None:
    parser = Sds011FrameParser()
    for chunk in chunks:
        for frame in parser.feed(chunk):
            assert isinstance(frame, Sds011Frame)
            assert len(frame.raw) == FRAME_SIZE
            assert frame.raw[8] == sum(frame.data) & 0xFF
        assert parser.pending < FRAME_SIZE
        assert 1 <= parser.bytes_wanted() <= FRAME_SIZE
        assert all(isinstance(e, DriverError) for e in parser.take_errors())


@settings(max_examples=300, deadline=None)
@given(
    prefix=st.binary(max_size=40),
    suffix=st.binary(max_size=20),
    pm2_5=st.integers(0, 9999),
    pm10=st.integers(0, 9999),
    cuts=st.lists(st.integers(0, 80), max_size=6),
)
def test_parser_finds_a_frame_in_garbage_split_anywhere(
    prefix: bytes, suffix: bytes, pm2_5: int, pm10: int, cuts: list[int]
) -> None:
    frame = data_frame(pm2_5, pm10)
    stream = prefix + frame + suffix
    points = sorted({min(c, len(stream)) for c in cuts})
    pieces = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    parser = Sds011FrameParser()
    found = [f.raw for piece in pieces for f in parser.feed(piece)]
    assert frame in found

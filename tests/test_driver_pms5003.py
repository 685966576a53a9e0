"""PMS5003 driver against its pty fake: values, bytes on the wire, faults, frame parser."""

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
from drivers.fake.pms5003 import FakePMS5003
from drivers.pms5003 import (
    MAX_FRAME_SIZE,
    PMS5003,
    Pms5003Frame,
    Pms5003FrameParser,
    build_command,
    decode_measurement,
)
from drivers.timing import poll_until

# Host commands from the data manual, appendix II, with their LRC.
WAKEUP = bytes.fromhex("42 4d e4 00 01 01 74")
SLEEP = bytes.fromhex("42 4d e4 00 00 01 73")
PASSIVE = bytes.fromhex("42 4d e1 00 00 01 70")
ACTIVE = bytes.fromhex("42 4d e1 00 01 01 71")
READ_PASSIVE = bytes.fromhex("42 4d e2 00 00 01 71")
ACK_PASSIVE = bytes.fromhex("42 4d 00 04 e1 00 01 74")

TIMEOUT_S = 0.4


def wait_until_received(fake: FakePMS5003, expected: bytes) -> None:
    """For commands the sensor does not answer: wait (bounded) until the fake has them."""
    poll_until(
        lambda: True if len(fake.received) >= len(expected) else None,
        timeout_s=1.0,
        interval_s=0.005,
        what="fake receiving the command",
    )
    assert bytes(fake.received) == expected


def measurement(words: list[int], *, corrupt: bool = False) -> bytes:
    body = b"\x42\x4d\x00\x1c" + b"".join(w.to_bytes(2, "big") for w in words)
    check = (sum(body) + (1 if corrupt else 0)) & 0xFFFF
    return body + check.to_bytes(2, "big")


@pytest.fixture
def fake() -> Iterator[FakePMS5003]:
    with FakePMS5003(active_period_s=0.05) as device:
        yield device


@pytest.fixture
def port(fake: FakePMS5003) -> Iterator[serial.Serial]:
    with serial.Serial(fake.port, 9600, timeout=0.1) as p:
        yield p


@pytest.fixture
def sensor(port: serial.Serial) -> PMS5003:
    return PMS5003(port, timeout_s=TIMEOUT_S)


# -- commands and frames from the data manual ---------------------------------------------


def test_host_commands_match_the_data_manual() -> None:
    assert build_command(0xE1, 0x00) == PASSIVE
    assert build_command(0xE1, 0x01) == ACTIVE
    assert build_command(0xE2) == READ_PASSIVE
    assert build_command(0xE4, 0x00) == SLEEP
    assert build_command(0xE4, 0x01) == WAKEUP


def test_acknowledgement_frame_is_parsed_and_tolerated() -> None:
    frames = Pms5003FrameParser().feed(ACK_PASSIVE)
    assert len(frames) == 1
    assert frames[0].is_ack and not frames[0].is_measurement
    assert frames[0].acknowledges(0xE1, 0x00)
    assert not frames[0].acknowledges(0xE1, 0x01)
    with pytest.raises(InvalidFrameError):
        decode_measurement(frames[0])


def test_decode_takes_atmospheric_words_not_cf1() -> None:
    # data 1..3 (CF=1) deliberately differ from data 4..6 (atmospheric environment)
    words = [101, 102, 103, 11, 22, 33, 900, 800, 700, 600, 500, 400, 0]
    (frame,) = Pms5003FrameParser().feed(measurement(words))
    assert decode_measurement(frame) == {"pm1_0_ugm3": 11.0, "pm2_5_ugm3": 22.0, "pm10_ugm3": 33.0}


# -- driver against the fake ----------------------------------------------------------------


def test_construction_wakes_and_sets_passive_mode(fake: FakePMS5003, port: serial.Serial) -> None:
    PMS5003(port, timeout_s=TIMEOUT_S)
    assert bytes(fake.received) == WAKEUP + PASSIVE
    assert fake.mode == "passive"


def test_read_sends_one_passive_read_request(fake: FakePMS5003, sensor: PMS5003) -> None:
    fake.received.clear()
    sensor.read()
    assert bytes(fake.received) == READ_PASSIVE


@pytest.mark.parametrize(
    ("pm1_0", "pm2_5", "pm10"),
    [(0, 0, 0), (1, 2, 3), (12.4, 25.5, 40.6), (35, 150, 300), (250, 499, 500), (600, 900, 1000)],
)
def test_reads_across_the_measuring_range(
    fake: FakePMS5003, sensor: PMS5003, pm1_0: float, pm2_5: float, pm10: float
) -> None:
    fake.set(pm1_0_ugm3=pm1_0, pm2_5_ugm3=pm2_5, pm10_ugm3=pm10)
    reading = sensor.read()
    assert reading == {
        "pm1_0_ugm3": float(round(pm1_0)),
        "pm2_5_ugm3": float(round(pm2_5)),
        "pm10_ugm3": float(round(pm10)),
    }
    assert all(isinstance(v, float) for v in reading.values())


def test_every_read_is_fresh(fake: FakePMS5003, sensor: PMS5003) -> None:
    fake.set(pm2_5_ugm3=10)
    assert sensor.read()["pm2_5_ugm3"] == 10.0
    fake.set(pm2_5_ugm3=70)
    assert sensor.read()["pm2_5_ugm3"] == 70.0


def test_active_mode_takes_streamed_frames_without_requests() -> None:
    with (
        FakePMS5003(mode="passive", active_period_s=0.05) as fake,
        serial.Serial(fake.port, 9600, timeout=0.1) as port,
    ):
        sensor = PMS5003(port, mode="active", timeout_s=TIMEOUT_S)
        assert bytes(fake.received) == WAKEUP + ACTIVE
        assert fake.mode == "active"
        fake.set(pm1_0_ugm3=17, pm2_5_ugm3=42, pm10_ugm3=88)
        assert sensor.read() == {"pm1_0_ugm3": 17.0, "pm2_5_ugm3": 42.0, "pm10_ugm3": 88.0}
        assert bytes(fake.received) == WAKEUP + ACTIVE  # nothing sent to read


def test_sleep_wake_and_close(fake: FakePMS5003, sensor: PMS5003) -> None:
    fake.received.clear()
    sensor.sleep()
    assert fake.asleep
    assert bytes(fake.received) == SLEEP
    with pytest.raises(DriverTimeoutError):
        sensor.read()  # a sleeping sensor ignores requests
    sensor.wake()  # not acknowledged; the request after it finds the sensor awake
    assert sensor.read()["pm10_ugm3"] == 12.0
    assert not fake.asleep
    fake.received.clear()
    sensor.close()
    wait_until_received(fake, SLEEP)
    assert fake.asleep


def test_reset_brings_back_a_sleeping_sensor(fake: FakePMS5003, sensor: PMS5003) -> None:
    sensor.close()
    sensor.reset()
    assert not fake.asleep and fake.mode == "passive"
    assert sensor.read()["pm1_0_ugm3"] == 6.0


def test_fake_ignores_commands_with_a_wrong_lrc(fake: FakePMS5003, port: serial.Serial) -> None:
    PMS5003(port, timeout_s=TIMEOUT_S)
    port.write(READ_PASSIVE[:-1] + b"\x72")
    port.timeout = 0.2
    assert port.read(32) == b""
    port.write(READ_PASSIVE)
    assert len(port.read(32)) == 32


# -- faults -----------------------------------------------------------------------------------


def test_silent_sensor_times_out(fake: FakePMS5003, sensor: PMS5003) -> None:
    fake.faults.silent = True
    with pytest.raises(DriverTimeoutError, match="PMS5003"):
        sensor.read()


def test_silent_sensor_at_construction_is_not_found(fake: FakePMS5003, port: serial.Serial) -> None:
    fake.faults.silent = True
    with pytest.raises(DeviceNotFoundError, match="change-mode"):
        PMS5003(port, timeout_s=TIMEOUT_S)


@pytest.mark.parametrize("faults", [("garbage",), ("split",), ("garbage", "split")])
def test_garbage_and_split_frames_still_read(
    fake: FakePMS5003, sensor: PMS5003, faults: tuple[str, ...]
) -> None:
    for name in faults:
        setattr(fake.faults, name, True)
    for value in (3, 77, 456):
        fake.set(pm2_5_ugm3=value)
        assert sensor.read()["pm2_5_ugm3"] == float(value)


def test_garbage_and_split_in_active_mode() -> None:
    with (
        FakePMS5003(active_period_s=0.05) as fake,
        serial.Serial(fake.port, 9600, timeout=0.1) as port,
    ):
        sensor = PMS5003(port, mode="active", timeout_s=TIMEOUT_S)
        fake.faults.garbage = fake.faults.split = True
        fake.set(pm10_ugm3=321)
        for _ in range(3):
            assert sensor.read()["pm10_ugm3"] == 321.0


def test_bad_checksum_is_retried_then_raised(fake: FakePMS5003, sensor: PMS5003) -> None:
    fake.faults.bad_crc = True
    fake.received.clear()
    with pytest.raises(ChecksumError, match="check code"):
        sensor.read()
    # one request plus one per tolerated retry, then the error
    assert bytes(fake.received) == READ_PASSIVE * (1 + sensor.checksum_retries)


def test_bad_checksum_with_no_retries(fake: FakePMS5003, port: serial.Serial) -> None:
    sensor = PMS5003(port, timeout_s=TIMEOUT_S, checksum_retries=0)
    fake.faults.bad_crc = True
    fake.received.clear()
    with pytest.raises(ChecksumError):
        sensor.read()
    assert bytes(fake.received) == READ_PASSIVE


def test_bad_checksum_in_active_mode() -> None:
    with (
        FakePMS5003(active_period_s=0.02) as fake,
        serial.Serial(fake.port, 9600, timeout=0.1) as port,
    ):
        sensor = PMS5003(port, mode="active", timeout_s=TIMEOUT_S)
        fake.faults.bad_crc = True
        with pytest.raises(ChecksumError):
            sensor.read()


def test_stuck_sensor_keeps_reporting_its_frozen_value(fake: FakePMS5003, sensor: PMS5003) -> None:
    fake.set(pm2_5_ugm3=20)
    fake.faults.stuck = True
    assert sensor.read()["pm2_5_ugm3"] == 20.0
    fake.set(pm2_5_ugm3=90)
    assert sensor.read()["pm2_5_ugm3"] == 20.0
    fake.faults.stuck = False
    assert sensor.read()["pm2_5_ugm3"] == 90.0


def test_slow_answer_within_the_timeout_is_read(fake: FakePMS5003, sensor: PMS5003) -> None:
    fake.faults.delay_s = 0.1
    fake.set(pm1_0_ugm3=5)
    assert sensor.read()["pm1_0_ugm3"] == 5.0


def test_answer_later_than_the_timeout_is_a_timeout(fake: FakePMS5003, port: serial.Serial) -> None:
    sensor = PMS5003(port, timeout_s=0.15)
    fake.faults.delay_s = 0.4
    with pytest.raises(DriverTimeoutError):
        sensor.read()


def test_closed_port_is_a_bus_error(sensor: PMS5003, port: serial.Serial) -> None:
    port.close()
    with pytest.raises(BusError, match="PMS5003"):
        sensor.read()


@pytest.mark.parametrize("kwargs", [{"mode": "burst"}, {"timeout_s": 0}, {"checksum_retries": -1}])
def test_bad_options_are_configuration_errors(
    port: serial.Serial, kwargs: dict[str, object]
) -> None:
    with pytest.raises(ConfigurationError):
        PMS5003(port, **kwargs)


def test_registry_names_these_classes() -> None:
    spec = registry.get("pms5003")
    assert spec.load() is PMS5003
    assert spec.load_fake() is FakePMS5003


# -- frame parser ------------------------------------------------------------------------------

words_strategy = st.lists(st.integers(0, 0xFFFF), min_size=13, max_size=13)


def test_parser_resynchronises_after_false_headers() -> None:
    good = measurement([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0])
    parser = Pms5003FrameParser()
    noise = (
        b"\x42\x4d\x99\x99"  # impossible length
        + b"\x42\x42"  # doubled start character
        + b"\x42\x4d\x00\x1c\x01"  # a false header: its 32 bytes run into the real frame
    )
    frames = parser.feed(noise + good)
    frames += parser.feed(b"\x00" * 40)  # trailing line noise yields nothing
    assert [f.raw for f in frames] == [good]
    errors = parser.take_errors()
    assert any(isinstance(e, InvalidFrameError) for e in errors)
    assert any(isinstance(e, ChecksumError) for e in errors)


def test_parser_finds_an_ack_behind_a_false_long_header() -> None:
    parser = Pms5003FrameParser()
    # A false header announcing 28 bytes would otherwise hold the 8-byte ack back.
    frames = parser.feed(b"\x42\x4d\x00\x1c\x07" + ACK_PASSIVE)
    assert [f.raw for f in frames] == [ACK_PASSIVE]


def test_parser_recovers_after_a_frame_with_a_bad_check_code() -> None:
    words = [9] * 13
    parser = Pms5003FrameParser()
    frames = parser.feed(measurement(words, corrupt=True) + measurement(words))
    assert [f.raw for f in frames] == [measurement(words)]
    assert [type(e) for e in parser.take_errors()] == [ChecksumError]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=12))
def test_parser_never_raises_and_stays_bounded(chunks: list[bytes]) -> None:
    parser = Pms5003FrameParser()
    for chunk in chunks:
        for frame in parser.feed(chunk):
            assert isinstance(frame, Pms5003Frame)
            assert frame.is_measurement or frame.is_ack
            assert sum(frame.raw[:-2]) & 0xFFFF == int.from_bytes(frame.raw[-2:], "big")
        assert parser.pending < MAX_FRAME_SIZE
        assert 1 <= parser.bytes_wanted() <= MAX_FRAME_SIZE
        assert all(isinstance(e, DriverError) for e in parser.take_errors())


@settings(max_examples=300, deadline=None)
@given(
    prefix=st.binary(max_size=64),
    suffix=st.binary(max_size=40),
    frame_words=words_strategy,
    ack=st.booleans(),
    cuts=st.lists(st.integers(0, 200), max_size=6),
)
def test_parser_finds_a_frame_in_garbage_split_anywhere(
    prefix: bytes, suffix: bytes, frame_words: list[int], ack: bool, cuts: list[int]
) -> None:
    frame = ACK_PASSIVE if ack else measurement(frame_words)
    stream = prefix + frame + suffix
    points = sorted({min(c, len(stream)) for c in cuts})
    pieces = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    parser = Pms5003FrameParser()
    found = [f.raw for piece in pieces for f in parser.feed(piece)]
    assert frame in found

"""The Modbus RTU layer: CRC, request bytes, silence, reply parsing, exception replies.

The client is driven through a scripted port (bytes in, bytes out, no timing); the
meters against their pty fakes are in test_driver_sdm.py.
"""

from __future__ import annotations

import math
import struct
import time

import pytest
import serial
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.errors import (
    BusError,
    ChecksumError,
    ConfigurationError,
    DriverError,
    DriverTimeoutError,
    InvalidFrameError,
    ModbusExceptionError,
)
from drivers.modbus import (
    EXCEPTION_NAMES,
    Reply,
    RtuClient,
    RtuReplyParser,
    character_time_s,
    crc16,
    crc_ok,
    floats,
    port_silence_s,
    read_input_registers_request,
    shortest_float32,
    silence_s,
    with_crc,
)


class ScriptedPort:
    """A serial port whose meter answers each request with the next scripted bytes."""

    def __init__(self, replies: list[bytes] | None = None, *, baudrate: int = 9600,
                 parity: str = "N") -> None:
        self.baudrate, self.bytesize, self.parity, self.stopbits = baudrate, 8, parity, 1
        self.timeout: float | None = None
        self.written: list[bytes] = []
        self.replies = list(replies or [])
        self.read_sizes: list[int] = []
        self._rx = bytearray()

    def write(self, data: bytes, /) -> int:
        self.written.append(bytes(data))
        if self.replies:
            self._rx += self.replies.pop(0)
        return len(data)

    def read(self, size: int = 1) -> bytes:
        self.read_sizes.append(size)
        if not self._rx:
            time.sleep(min(self.timeout or 0.0, 0.005))
        chunk = bytes(self._rx[:size])
        del self._rx[:size]
        return chunk

    def reset_input_buffer(self) -> None:
        self._rx.clear()

    def flush(self) -> None:
        pass


def reply(unit: int, values: list[float], function: int = 4) -> bytes:
    body = b"".join(struct.pack(">f", v) for v in values)
    return with_crc(bytes((unit, function, len(body))) + body)


def corrupt(frame: bytes) -> bytes:
    return frame[:-1] + bytes((frame[-1] ^ 0xFF,))


def client(port: ScriptedPort, **kwargs: object) -> RtuClient:
    options: dict[str, object] = {"timeout_s": 0.05, "chip": "meter"}
    options.update(kwargs)
    return RtuClient(port, **options)  # type: ignore[arg-type]


# -- CRC and request bytes ----------------------------------------------------------------


def test_crc16_catalogue_check_value() -> None:
    assert crc16(b"123456789") == 0x4B37


def test_crc16_worked_example_of_the_serial_line_spec() -> None:
    # MODBUS over Serial Line V1.02, CRC generation example: frame 02 07 -> CRC 0x1241,
    # placed in the message low byte first.
    assert crc16(bytes.fromhex("0207")) == 0x1241
    assert with_crc(bytes.fromhex("0207")) == bytes.fromhex("02074112")
    assert crc_ok(bytes.fromhex("02074112"))
    assert not crc_ok(bytes.fromhex("02071241"))


def test_request_bytes_on_the_wire() -> None:
    # Eastron's protocol example: unit 1 reads the voltage (2 registers from 0).
    assert read_input_registers_request(1, 0x0000, 2) == bytes.fromhex("01040000000271cb")
    # Beckhoff's read-input-registers example: unit 11, 2 registers from 0 -> CRC 71 61.
    assert read_input_registers_request(11, 0x0000, 2) == bytes.fromhex("0b0400000002" "7161")
    # The SDM meters' one request: 76 registers from 0 (0x4c).
    assert read_input_registers_request(1, 0x0000, 76) == bytes.fromhex("01040000004cf1ff")
    assert read_input_registers_request(247, 0xFF83, 125)[:6] == bytes.fromhex("f704ff83007d")


@pytest.mark.parametrize(("unit", "address", "count"), [
    (0, 0, 2), (248, 0, 2), (1, 0, 0), (1, 0, 126), (1, 0xFFFF, 2), (1, -1, 2)])
def test_impossible_requests_are_refused(unit: int, address: int, count: int) -> None:
    with pytest.raises(ConfigurationError):
        read_input_registers_request(unit, address, count)


# -- inter-frame silence -------------------------------------------------------------------


def test_silence_is_three_and_a_half_characters_of_the_ports_framing() -> None:
    assert character_time_s(9600) == 10 / 9600
    assert silence_s(9600) == 3.5 * 10 / 9600
    assert silence_s(9600, 8, "E", 1) == 3.5 * 11 / 9600  # parity bit
    assert silence_s(9600, 8, "N", 2) == 3.5 * 11 / 9600  # second stop bit
    assert silence_s(2400) == pytest.approx(0.014583, abs=1e-6)
    assert silence_s(19200) == 3.5 * 10 / 19200  # still computed at 19200
    assert silence_s(38400) == silence_s(115200) == 0.00175  # fixed above 19200


def test_silence_comes_from_the_open_port() -> None:
    port = serial.serial_for_url("loop://", baudrate=2400, parity="E", timeout=0)
    assert port_silence_s(port, 9600) == 3.5 * 11 / 2400
    assert port_silence_s(object(), 2400) == 3.5 * 10 / 2400  # no attributes: the default


def test_line_stays_silent_for_t35_before_each_request() -> None:
    now = [100.0]
    sleeps: list[float] = []

    def sleep(s: float) -> None:
        sleeps.append(s)
        now[0] += s

    port = ScriptedPort([reply(1, [1.0]), reply(1, [2.0])], baudrate=9600)
    c = client(port, clock=lambda: now[0], sleep=sleep)
    c.read_input_registers(1, 0, 2)
    assert sleeps == []  # nothing was on the line before
    c.read_input_registers(1, 0, 2)
    assert sleeps == [pytest.approx(3.5 * 10 / 9600)]
    now[0] += 1.0  # a second of silence already counts
    port.replies.append(reply(1, [3.0]))
    c.read_input_registers(1, 0, 2)
    assert len(sleeps) == 1


# -- client ----------------------------------------------------------------------------------


def test_reads_registers_and_sends_the_request() -> None:
    port = ScriptedPort([reply(1, [230.5, 4.25])])
    data = client(port).read_input_registers(1, 0x0000, 4)
    assert floats(data) == [230.5, 4.25]
    assert port.written == [read_input_registers_request(1, 0, 4)]
    assert port.read_sizes[0] == 5  # a short first read: an exception reply is 5 bytes


@pytest.mark.parametrize("code", sorted(EXCEPTION_NAMES))
def test_each_exception_code_is_a_typed_error_with_its_name(code: int) -> None:
    port = ScriptedPort([with_crc(bytes((1, 0x84, code)))])
    with pytest.raises(ModbusExceptionError) as info:
        client(port).read_input_registers(1, 0x0000, 2)
    assert info.value.code == code
    assert f"exception {code} ({EXCEPTION_NAMES[code]})" in str(info.value)
    assert isinstance(info.value, DriverError)
    assert len(port.written) == 1  # the meter's answer: not retried


def test_exception_names_follow_the_application_protocol() -> None:
    assert EXCEPTION_NAMES[1] == "illegal function"
    assert EXCEPTION_NAMES[2] == "illegal data address"
    assert EXCEPTION_NAMES[3] == "illegal data value"
    assert EXCEPTION_NAMES[4] == "slave device failure"
    assert EXCEPTION_NAMES[6] == "slave device busy"


def test_unknown_exception_code_keeps_its_number() -> None:
    port = ScriptedPort([with_crc(bytes((1, 0x84, 0x42)))])
    with pytest.raises(ModbusExceptionError, match="exception 66") as info:
        client(port).read_input_registers(1, 0, 2)
    assert info.value.code == 0x42


def test_bad_crc_is_retried_then_raised() -> None:
    good = reply(1, [7.5])
    port = ScriptedPort([corrupt(good), good])
    assert floats(client(port, retries=1).read_input_registers(1, 0, 2)) == [7.5]
    assert len(port.written) == 2
    port = ScriptedPort([corrupt(good)] * 3)
    with pytest.raises(ChecksumError, match="CRC"):
        client(port, retries=2).read_input_registers(1, 0, 2)
    assert len(port.written) == 3


def test_no_reply_is_a_timeout_after_the_retries() -> None:
    port = ScriptedPort([])
    with pytest.raises(DriverTimeoutError, match="meter: no reply to registers 0x0000"):
        client(port, retries=1).read_input_registers(1, 0, 2)
    assert len(port.written) == 2


def test_garbage_only_is_a_timeout_that_counts_rejected_bytes() -> None:
    port = ScriptedPort([b"\x55" * 12])
    with pytest.raises(DriverTimeoutError, match="12 bytes received"):
        client(port, retries=0).read_input_registers(1, 0, 2)


def test_echo_of_the_request_and_noise_before_the_reply_are_skipped() -> None:
    request = read_input_registers_request(1, 0, 2)
    port = ScriptedPort([request + b"\x00\xff" + reply(1, [49.98])])
    assert floats(client(port).read_input_registers(1, 0, 2)) == [49.98]


def test_wrong_unit_or_function_is_no_reply() -> None:
    port = ScriptedPort([reply(2, [1.0]), reply(1, [1.0], function=3)])
    with pytest.raises(DriverTimeoutError):
        client(port, retries=1).read_input_registers(1, 0, 2)


def test_port_failure_is_a_bus_error() -> None:
    class BrokenPort(ScriptedPort):
        def write(self, data: bytes, /) -> int:
            raise OSError(5, "Input/output error")

    with pytest.raises(BusError, match="meter: serial write failed"):
        client(BrokenPort()).read_input_registers(1, 0, 2)


@pytest.mark.parametrize("kwargs", [{"timeout_s": 0}, {"timeout_s": math.inf},
                                    {"retries": -1}, {"retries": 1.5}])
def test_bad_client_options(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        client(ScriptedPort(), **kwargs)


# -- reply parser ------------------------------------------------------------------------------


def test_a_reply_split_anywhere_and_after_noise_is_found() -> None:
    frame = reply(1, [230.5, 4.25])
    for cut in range(1, len(frame)):
        parser = RtuReplyParser(1, 4, 4)
        got = parser.feed(b"\x00\xff\x01" + frame[:cut]) + parser.feed(frame[cut:])
        assert [floats(r.data) for r in got] == [[230.5, 4.25]]


def test_bad_crc_and_wrong_byte_count_are_reported_not_accepted() -> None:
    parser = RtuReplyParser(1, 4, 4)
    assert parser.feed(corrupt(reply(1, [1.0, 2.0]))) == []
    assert any(isinstance(e, ChecksumError) for e in parser.take_errors())
    parser = RtuReplyParser(1, 4, 2)  # expects one float, gets two
    assert parser.feed(reply(1, [1.0, 2.0])) == []
    assert any(isinstance(e, InvalidFrameError) for e in parser.take_errors())


def test_other_units_are_skipped() -> None:
    parser = RtuReplyParser(2, 4, 2)
    assert parser.feed(reply(1, [9.0]) + reply(2, [3.0])) == [
        Reply(2, 4, struct.pack(">f", 3.0))]


def test_exception_reply_is_returned_as_a_reply() -> None:
    parser = RtuReplyParser(1, 4, 2)
    (r,) = parser.feed(with_crc(bytes((1, 0x84, 2))))
    assert r.is_exception and r.data == b"\x02"


def test_bytes_wanted_follows_the_frame() -> None:
    parser = RtuReplyParser(1, 4, 38)
    assert parser.bytes_wanted() == 5
    parser.feed(b"\x01\x04\x4c")
    assert parser.bytes_wanted() == 5 + 76 - 3
    parser = RtuReplyParser(1, 4, 38)
    parser.feed(b"\x01\x84")
    assert parser.bytes_wanted() == 3


def test_float32_values_come_out_as_the_meter_meant_them() -> None:
    assert floats(struct.pack(">ffff", 4.2, 0.93, 230.1, -1.0)) == [4.2, 0.93, 230.1, -1.0]
    assert math.isnan(shortest_float32(struct.pack(">f", math.nan)))
    with pytest.raises(InvalidFrameError):
        floats(b"\x00\x00")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(1, 247), st.integers(1, 40),
       st.integers(1, 9))
def test_the_parser_never_raises_and_only_returns_checked_frames(
        data: bytes, unit: int, count: int, step: int) -> None:
    parser = RtuReplyParser(unit, 4, count)
    for i in range(0, len(data), step):
        for r in parser.feed(data[i:i + step]):
            assert r.unit == unit
            assert len(r.data) == (1 if r.is_exception else 2 * count)
        assert 1 <= parser.bytes_wanted() <= 5 + 2 * count
    assert all(isinstance(e, DriverError) for e in parser.take_errors())


@settings(max_examples=200, deadline=None)
@given(prefix=st.binary(max_size=40), values=st.lists(st.floats(width=32), min_size=1,
                                                       max_size=8),
       cuts=st.lists(st.integers(0, 120), max_size=5))
def test_the_reply_is_found_behind_noise_split_anywhere(
        prefix: bytes, values: list[float], cuts: list[int]) -> None:
    frame = reply(1, values)
    stream = prefix + frame
    points = sorted({min(c, len(stream)) for c in cuts})
    pieces = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    parser = RtuReplyParser(1, 4, 2 * len(values))
    found = [r for piece in pieces for r in parser.feed(piece)]
    assert Reply(1, 4, frame[3:-2]) in found


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=60))
def test_the_client_raises_only_driver_errors_on_any_reply(data: bytes) -> None:
    port = ScriptedPort([data])
    try:
        result = client(port, timeout_s=0.01, retries=0).read_input_registers(1, 0, 2)
    except DriverError:
        return
    assert len(result) == 4

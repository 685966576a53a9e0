"""The Modbus RTU layer: CRC, request bytes, reply parsing (fed bytes, never raising)."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.errors import ChecksumError, DriverError, InvalidFrameError
from drivers.modbus import (
    RtuReplyParser,
    crc16,
    floats,
    read_input_registers_request,
    silence_s,
    with_crc,
)


def test_crc16_check_value_and_spec_example() -> None:
    assert crc16(b"123456789") == 0x4B37  # CRC-16/MODBUS catalogue check value
    # Read 2 input registers from 0 at unit 1: the CRC goes low byte first (71 CB).
    assert read_input_registers_request(1, 0x0000, 2) == bytes.fromhex("01040000000271cb")


def test_silence_is_three_and_a_half_characters() -> None:
    assert silence_s(9600) == 3.5 * 10 / 9600
    assert silence_s(2400) > 0.014
    assert silence_s(115200) == 0.00175


def reply(unit: int, values: list[float]) -> bytes:
    body = b"".join(struct.pack(">f", v) for v in values)
    return with_crc(bytes((unit, 4, len(body))) + body)


def test_a_reply_split_anywhere_and_after_noise_is_found() -> None:
    frame = reply(1, [230.5, 4.25])
    for cut in range(1, len(frame)):
        parser = RtuReplyParser(1, 4, 4)
        got = parser.feed(b"\x00\xff\x01" + frame[:cut]) + parser.feed(frame[cut:])
        assert [floats(r.data) for r in got] == [[230.5, 4.25]]


def test_bad_crc_and_wrong_byte_count_are_reported_not_accepted() -> None:
    parser = RtuReplyParser(1, 4, 4)
    frame = bytearray(reply(1, [1.0, 2.0]))
    frame[-1] ^= 0xFF
    assert parser.feed(bytes(frame)) == []
    assert any(isinstance(e, ChecksumError) for e in parser.take_errors())
    parser = RtuReplyParser(1, 4, 2)  # expects one float, gets two
    assert parser.feed(reply(1, [1.0, 2.0])) == []
    assert any(isinstance(e, InvalidFrameError) for e in parser.take_errors())


def test_other_units_are_skipped() -> None:
    parser = RtuReplyParser(2, 4, 2)
    assert parser.feed(reply(1, [9.0]) + reply(2, [3.0]))[0].unit == 2


def test_exception_reply() -> None:
    parser = RtuReplyParser(1, 4, 2)
    (r,) = parser.feed(with_crc(bytes((1, 0x84, 2))))
    assert r.is_exception and r.data == b"\x02"


def test_float32_values_come_out_as_the_meter_meant_them() -> None:
    assert floats(struct.pack(">ff", 4.2, 0.93)) == [4.2, 0.93]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(1, 247), st.integers(1, 40))
def test_the_parser_never_raises(data: bytes, unit: int, count: int) -> None:
    parser = RtuReplyParser(unit, 4, count)
    for i in range(0, len(data), 7):
        parser.feed(data[i:i + 7])
    assert all(isinstance(e, DriverError) for e in parser.take_errors())
    assert parser.bytes_wanted() >= 1

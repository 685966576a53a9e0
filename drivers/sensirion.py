"""What Sensirion's I2C sensors share: 16-bit words each followed by a CRC-8.

CRC-8 as in the SHT3x/SHT4x/SCD4x datasheets: polynomial 0x31 (x^8 + x^5 + x^4 + 1),
initialisation 0xFF, no reflection, no final XOR. Datasheet check value:
``crc8(b"\\xbe\\xef") == 0x92``.
"""

from __future__ import annotations

from collections.abc import Sequence

from drivers.errors import ChecksumError, InvalidFrameError

CRC8_POLYNOMIAL = 0x31
CRC8_INIT = 0xFF


def _build_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = ((crc << 1) ^ CRC8_POLYNOMIAL) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
        table.append(crc)
    return tuple(table)


_TABLE = _build_table()


def crc8(data: bytes | Sequence[int]) -> int:
    crc = CRC8_INIT
    for byte in data:
        crc = _TABLE[crc ^ byte]
    return crc


def pack_words(words: Sequence[int]) -> bytes:
    """16-bit words as the chip sends them: MSB, LSB, CRC for each."""
    out = bytearray()
    for word in words:
        pair = bytes(((word >> 8) & 0xFF, word & 0xFF))
        out += pair + bytes((crc8(pair),))
    return bytes(out)


def unpack_words(data: bytes | Sequence[int], what: str = "reply") -> list[int]:
    """Check every CRC and return the 16-bit words; raise ``ChecksumError`` on a mismatch."""
    raw = bytes(data)
    if len(raw) % 3:
        raise InvalidFrameError(f"{what}: {len(raw)} bytes is not a whole number of words")
    words = []
    for i in range(0, len(raw), 3):
        pair, crc = raw[i : i + 2], raw[i + 2]
        expected = crc8(pair)
        if crc != expected:
            raise ChecksumError(
                f"{what}: CRC mismatch in word {i // 3} "
                f"(got 0x{crc:02x}, expected 0x{expected:02x})"
            )
        words.append((pair[0] << 8) | pair[1])
    return words

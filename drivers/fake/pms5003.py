"""A Plantower PMS5003 on a pseudo-terminal: 32-byte frames, passive/active mode, sleep.

Emulates the sensor's UART side per the PMS5003 data manual V2.3: it powers up in active
mode (a frame every ``active_period_s``), answers 7-byte host commands (change mode,
read in passive mode, sleep/wakeup), acknowledges change-mode and sleep with the short
length-4 frame, ignores commands with a wrong LRC, and ignores everything but wakeup
while asleep.

Frames are built from the physical values set with ``set()``: the atmospheric-environment
words are the concentrations rounded to whole µg/m³, as the sensor reports them. The
CF=1 words and particle counts are rough stand-ins (the sensor derives them internally):
CF=1 equals the atmospheric value up to 30 µg/m³ and grows 1.5 times faster above, so
the two sets differ as they do on real units.
"""

from __future__ import annotations

from typing import ClassVar

from drivers.fake.serial import FakeSerialDevice

_START = b"\x42\x4d"
_COMMAND_SIZE = 7
_CMD_READ_PASSIVE = 0xE2
_CMD_CHANGE_MODE = 0xE1
_CMD_SLEEP_SET = 0xE4


def _sum16(data: bytes) -> int:
    return sum(data) & 0xFFFF


def _word(value: float) -> int:
    """Whole µg/m³ (or counts), clamped to what a 16-bit word can carry."""
    return max(0, min(0xFFFF, round(value)))


class FakePMS5003(FakeSerialDevice):
    QUANTITIES: ClassVar[dict[str, float]] = {
        "pm1_0_ugm3": 6.0,
        "pm2_5_ugm3": 9.0,
        "pm10_ugm3": 12.0,
    }

    def __init__(self, *, mode: str = "active", active_period_s: float = 2.3) -> None:
        super().__init__()
        if mode not in ("active", "passive"):
            raise ValueError(f"mode must be 'active' or 'passive', not {mode!r}")
        self.mode = mode
        """Reporting mode: ``active`` after power-up, as on the real sensor."""
        self.asleep = False
        self.TICK_S = active_period_s
        self._commands = bytearray()

    # -- bus side -----------------------------------------------------------------------

    def on_bytes(self, data: bytes) -> None:
        self._commands += data
        while True:
            start = self._commands.find(_START)
            if start < 0:
                keep = 1 if self._commands[-1:] == _START[:1] else 0
                del self._commands[: len(self._commands) - keep]
                return
            del self._commands[:start]
            if len(self._commands) < _COMMAND_SIZE:
                return
            command = bytes(self._commands[:_COMMAND_SIZE])
            if _sum16(command[:5]) != int.from_bytes(command[5:7], "big"):
                del self._commands[:1]  # a corrupted command is ignored
                continue
            del self._commands[:_COMMAND_SIZE]
            self._execute(command[2], (command[3] << 8) | command[4])

    def tick(self) -> None:
        if self.mode == "active" and not self.asleep:
            self.send(self.measurement_frame())

    def _execute(self, cmd: int, data: int) -> None:
        if self.asleep and not (cmd == _CMD_SLEEP_SET and data == 0x01):
            return
        if cmd == _CMD_CHANGE_MODE and data in (0x00, 0x01):
            self.mode = "passive" if data == 0x00 else "active"
            self.send(self._ack(cmd, data))
        elif cmd == _CMD_READ_PASSIVE:
            if self.mode == "passive":
                self.send(self.measurement_frame())
        elif cmd == _CMD_SLEEP_SET and data == 0x00:
            self.asleep = True
            self.send(self._ack(cmd, data))
        elif cmd == _CMD_SLEEP_SET and data == 0x01:
            self.asleep = False  # wakeup is not acknowledged

    # -- frames ---------------------------------------------------------------------------

    def measurement_frame(self) -> bytes:
        pm1 = _word(self.value("pm1_0_ugm3"))
        pm25 = _word(self.value("pm2_5_ugm3"))
        pm10 = _word(self.value("pm10_ugm3"))
        cf1 = [_word(v if v <= 30 else 30 + (v - 30) * 1.5) for v in (pm1, pm25, pm10)]
        counts = [
            _word(pm1 * 120 + pm25 * 30),  # > 0.3 µm in 0.1 L
            _word(pm1 * 35 + pm25 * 10),  # > 0.5 µm
            _word(pm25 * 6),  # > 1.0 µm
            _word(max(0, pm10 - pm25) * 1.2),  # > 2.5 µm
            _word(max(0, pm10 - pm25) * 0.4),  # > 5.0 µm
            _word(max(0, pm10 - pm25) * 0.1),  # > 10 µm
        ]
        words = [*cf1, pm1, pm25, pm10, *counts, 0x0000]
        return self._frame(b"".join(w.to_bytes(2, "big") for w in words))

    def _ack(self, cmd: int, data: int) -> bytes:
        return self._frame(bytes((cmd, data & 0xFF)))

    def _frame(self, payload: bytes) -> bytes:
        body = _START + (len(payload) + 2).to_bytes(2, "big") + payload
        check = _sum16(body)
        if self.faults.bad_crc:
            check ^= 0x0101
        return body + check.to_bytes(2, "big")

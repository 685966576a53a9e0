"""A Nova Fitness SDS011 on a pseudo-terminal: 10-byte frames, 19-byte commands.

Emulates the sensor's UART side per the Laser Dust Sensor Control Protocol V1.3: active
reporting (a measurement every ``report_period_s``, 1 s on the sensor) or query
reporting, the reporting-mode, query-data, sleep-work, working-period and firmware-version
commands with their AA C5 replies. Like the sensor it ignores commands with a wrong head,
tail or checksum, commands for another device id, and, while asleep, every command but
sleep-work.

Measurements are built from the physical values set with ``set()``, quantised to the
sensor's 0.1 µg/m³ and limited to its 0.0..999.9 µg/m³ range.
"""

from __future__ import annotations

from typing import ClassVar

from drivers.fake.serial import FakeSerialDevice

_HEAD = 0xAA
_TAIL = 0xAB
_COMMAND_ID = 0xB4
_REPLY_ID = 0xC5
_DATA_ID = 0xC0
_COMMAND_SIZE = 19
_ALL_DEVICES = 0xFFFF

_REPORTING_MODE = 0x02
_QUERY_DATA = 0x04
_SLEEP_WORK = 0x06
_FIRMWARE_VERSION = 0x07
_WORKING_PERIOD = 0x08

_MAX_RAW = 9999
"""999.9 µg/m³ in the frame's 0.1 µg/m³ counts: the top of the measuring range."""


def _raw(value_ugm3: float) -> int:
    return max(0, min(_MAX_RAW, round(value_ugm3 * 10)))


class FakeSDS011(FakeSerialDevice):
    QUANTITIES: ClassVar[dict[str, float]] = {"pm2_5_ugm3": 8.4, "pm10_ugm3": 14.2}

    FIRMWARE = (15, 7, 10)
    """Year, month, day of the firmware, as in the protocol's example (15-7-10)."""

    def __init__(
        self,
        *,
        device_id: int = 0xA160,
        reporting: str = "active",
        report_period_s: float = 1.0,
        asleep: bool = False,
    ) -> None:
        super().__init__()
        if reporting not in ("active", "query"):
            raise ValueError(f"reporting must be 'active' or 'query', not {reporting!r}")
        self.device_id = device_id
        self.reporting = reporting
        """``active`` is the factory default; the setting survives power-off on the sensor."""
        self.asleep = asleep
        self.working_period_min = 0
        self.TICK_S = report_period_s
        self._commands = bytearray()

    # -- bus side -----------------------------------------------------------------------

    def on_bytes(self, data: bytes) -> None:
        self._commands += data
        while True:
            start = self._commands.find(_HEAD)
            if start < 0:
                self._commands.clear()
                return
            del self._commands[:start]
            if len(self._commands) < _COMMAND_SIZE:
                return
            frame = bytes(self._commands[:_COMMAND_SIZE])
            data_bytes = frame[2:17]
            if frame[1] != _COMMAND_ID or frame[18] != _TAIL or frame[17] != sum(data_bytes) & 0xFF:
                del self._commands[:1]  # ignored, as by the sensor
                continue
            del self._commands[:_COMMAND_SIZE]
            self._execute(data_bytes)

    def tick(self) -> None:
        if self.reporting == "active" and not self.asleep:
            self.send(self.measurement_frame())

    def _execute(self, data: bytes) -> None:
        command, action, value = data[0], data[1], data[2]
        target = (data[13] << 8) | data[14]
        if target not in (_ALL_DEVICES, self.device_id):
            return
        if self.asleep and command != _SLEEP_WORK:
            return
        if command == _REPORTING_MODE:
            if action == 0x01:
                self.reporting = "query" if value == 0x01 else "active"
            self.send(self._reply(command, action, 1 if self.reporting == "query" else 0))
        elif command == _QUERY_DATA:
            self.send(self.measurement_frame())
        elif command == _SLEEP_WORK:
            if action == 0x01:
                self.asleep = value == 0x00
            self.send(self._reply(command, action, 0 if self.asleep else 1))
        elif command == _WORKING_PERIOD:
            if action == 0x01 and value <= 30:
                self.working_period_min = value
            self.send(self._reply(command, action, self.working_period_min))
        elif command == _FIRMWARE_VERSION:
            self.send(self._frame(_REPLY_ID, bytes((command, *self.FIRMWARE))))

    # -- frames ---------------------------------------------------------------------------

    def measurement_frame(self) -> bytes:
        pm2_5 = _raw(self.value("pm2_5_ugm3"))
        pm10 = _raw(self.value("pm10_ugm3"))
        return self._frame(_DATA_ID, pm2_5.to_bytes(2, "little") + pm10.to_bytes(2, "little"))

    def _reply(self, command: int, action: int, value: int) -> bytes:
        return self._frame(_REPLY_ID, bytes((command, action, value, 0)))

    def _frame(self, command_id: int, first_four: bytes) -> bytes:
        data = first_four + self.device_id.to_bytes(2, "big")
        check = sum(data) & 0xFF
        if self.faults.bad_crc:
            check ^= 0xFF
        return bytes((_HEAD, command_id)) + data + bytes((check, _TAIL))

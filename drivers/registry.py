"""Drivers by the name used in the configuration (``driver = "bme280"``).

One entry per driver. Classes are imported only when asked for, so importing the
registry (for example to validate a config) touches no hardware library.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal

BusKind = Literal["i2c", "serial", "gpio"]


@dataclass(frozen=True)
class DriverSpec:
    name: str
    kind: BusKind
    target: str
    """``module:Class`` of the driver."""
    fake: str
    """``module:Class`` of the bus-level emulator in ``drivers.fake``."""
    default_address: int | None = None
    default_baudrate: int | None = None
    chip_ids: tuple[int, ...] = ()
    """I2C addresses the chip can answer at, for ``scan``."""

    def load(self) -> Any:
        return _load(self.target)

    def load_fake(self) -> Any:
        return _load(self.fake)


def _load(target: str) -> Any:
    module_name, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


_SPECS = (
    DriverSpec("bme280", "i2c", "drivers.bme280:BME280", "drivers.fake.bme280:FakeBME280",
               default_address=0x76, chip_ids=(0x76, 0x77)),
    DriverSpec("sht31", "i2c", "drivers.sht3x:SHT3x", "drivers.fake.sht3x:FakeSHT3x",
               default_address=0x44, chip_ids=(0x44, 0x45)),
    DriverSpec("sht4x", "i2c", "drivers.sht4x:SHT4x", "drivers.fake.sht4x:FakeSHT4x",
               default_address=0x44, chip_ids=(0x44, 0x45, 0x46)),
    DriverSpec("scd4x", "i2c", "drivers.scd4x:SCD4x", "drivers.fake.scd4x:FakeSCD4x",
               default_address=0x62, chip_ids=(0x62,)),
    DriverSpec("bh1750", "i2c", "drivers.bh1750:BH1750", "drivers.fake.bh1750:FakeBH1750",
               default_address=0x23, chip_ids=(0x23, 0x5C)),
    DriverSpec("ads1115", "i2c", "drivers.ads1115:ADS1115", "drivers.fake.ads1115:FakeADS1115",
               default_address=0x48, chip_ids=(0x48, 0x49, 0x4A, 0x4B)),
    DriverSpec("pms5003", "serial", "drivers.pms5003:PMS5003",
               "drivers.fake.pms5003:FakePMS5003", default_baudrate=9600),
    DriverSpec("sds011", "serial", "drivers.sds011:SDS011", "drivers.fake.sds011:FakeSDS011",
               default_baudrate=9600),
    DriverSpec("sdm120", "serial", "drivers.sdm:SDM120", "drivers.fake.sdm:FakeSDM120",
               default_baudrate=2400),
    DriverSpec("sdm630", "serial", "drivers.sdm:SDM630", "drivers.fake.sdm:FakeSDM630",
               default_baudrate=9600),
    DriverSpec("relay", "gpio", "drivers.actuators:Relay", "drivers.fake.gpio:mock_factory"),
    DriverSpec("dimmer", "gpio", "drivers.actuators:Dimmer", "drivers.fake.gpio:mock_factory"),
)

DRIVERS: dict[str, DriverSpec] = {spec.name: spec for spec in _SPECS}


class UnknownDriverError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def get(name: str) -> DriverSpec:
    """The spec for ``name``; an unknown name lists the known ones."""
    try:
        return DRIVERS[name]
    except KeyError:
        known = ", ".join(sorted(DRIVERS))
        raise UnknownDriverError(f"unknown driver {name!r} (known: {known})") from None


def sensor_drivers() -> list[str]:
    return sorted(name for name, spec in DRIVERS.items() if spec.kind != "gpio")


def actuator_drivers() -> list[str]:
    return sorted(name for name, spec in DRIVERS.items() if spec.kind == "gpio")

"""Drivers report values at the chip's resolution, not the float digits of its conversion
arithmetic: those digits carry no information and cost bytes on the metered uplink."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from drivers.fake.scd4x import FakeSCD4x
from gateway.config import parse
from gateway.hardware import Hardware

# Decimals each quantity may carry, by driver: the datasheet resolution, rounded down to
# a power of ten (so rounding stays below half a step).
DECIMALS = {
    "bme280": {"temperature_celsius": 2, "relative_humidity_percent": 3,
               "pressure_pascals": 1},
    "sht31": {"temperature_celsius": 2, "relative_humidity_percent": 2},
    "sht4x": {"temperature_celsius": 2, "relative_humidity_percent": 2},
    "scd4x": {"co2_ppm": 0, "temperature_celsius": 2, "relative_humidity_percent": 2},
    "bh1750": {"illuminance_lux": 1},
    "ads1115": {"voltage_volts": 6},
    "pms5003": {"pm1_0_ugm3": 0, "pm2_5_ugm3": 0, "pm10_ugm3": 0},
    "sds011": {"pm2_5_ugm3": 1, "pm10_ugm3": 1},
}

SENSORS = {
    "bme280": "bus = 1\naddress = 0x76",
    "sht31": "bus = 1\naddress = 0x44",
    "sht4x": "bus = 2\naddress = 0x44",
    "scd4x": "bus = 1\naddress = 0x62",
    "bh1750": "bus = 1\naddress = 0x23",
    "ads1115": "bus = 1\naddress = 0x48",
    "pms5003": 'port = "/dev/ttyAMA0"\nbaudrate = 9600',
    "sds011": 'port = "/dev/ttyUSB0"\nbaudrate = 9600',
}


def decimals(value: float) -> int:
    exponent = Decimal(repr(value)).normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


@pytest.mark.parametrize("driver", sorted(SENSORS))
def test_each_value_carries_no_more_digits_than_the_chip_resolves(
        driver: str, tmp_path: Path) -> None:
    config = parse(f"""
[gateway]
id = "alatau-res-0001"
[storage]
path = "{tmp_path / 'buffer.db'}"
[uplink]
url = "http://127.0.0.1:9/v1/batches"
[[sensors]]
name = "s"
driver = "{driver}"
interval = 1.0
{SENSORS[driver]}
""")
    hardware = Hardware(config, simulate=True)
    if driver == "scd4x":  # the chip's 5 s measurement period, shortened for the test
        hardware.fakes["s"] = FakeSCD4x(0x62, period_s=0.05, stop_time_s=0.01,
                                        reinit_time_s=0.005)
    try:
        sensor = hardware.make_sensor(config.sensor("s"))
        fake = hardware.fakes["s"]
        seen: dict[str, set[float]] = {}
        for _ in range(3):
            world = hardware.world.values()
            fake.set(**{k: v for k, v in world.items() if k in fake.QUANTITIES})
            for name, value in sensor.read().items():
                assert decimals(value) <= DECIMALS[driver][name], (name, value)
                seen.setdefault(name, set()).add(value)
        assert set(seen) == set(DECIMALS[driver])
    finally:
        hardware.close()

"""`read` and `scan` on simulated hardware, through the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.demo import demo_config, demo_config_text

CLI = [sys.executable, "-m", "gateway.cli"]


@pytest.fixture(scope="module")
def demo_toml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("demo")
    path = tmp / "gateway.toml"
    path.write_text(demo_config_text(tmp, "http://127.0.0.1:9/v1/batches"))
    return path


EXPECTED = {
    "bme280": {"temperature_celsius", "relative_humidity_percent", "pressure_pascals"},
    "bh1750": {"illuminance_lux"},
    "scd4x": {"co2_ppm", "temperature_celsius", "relative_humidity_percent"},
    "pms5003": {"pm1_0_ugm3", "pm2_5_ugm3", "pm10_ugm3"},
    "sdm120": {"voltage_volts", "current_amperes", "active_power_watts", "frequency_hertz",
               "power_factor", "energy_import_kwh"},
}


@pytest.mark.parametrize("sensor", [s.name for s in demo_config(Path("/tmp"), "http://x/").sensors])
def test_read_each_demo_sensor_simulated(demo_toml: Path, sensor: str) -> None:
    result = subprocess.run([*CLI, "read", sensor, "--config", str(demo_toml), "--simulate",
                             "--json"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["sensor"] == sensor
    assert set(data["values"]) >= EXPECTED[data["driver"]]
    assert all(isinstance(v, float) for v in data["values"].values())


def test_read_unknown_sensor_names_the_known_ones(demo_toml: Path) -> None:
    result = subprocess.run([*CLI, "read", "nope", "--config", str(demo_toml), "--simulate"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "no sensor named 'nope'" in result.stderr and "cabinet_air" in result.stderr
    assert "Traceback" not in result.stderr


def test_read_without_hardware_fails_with_one_clear_line(tmp_path: Path) -> None:
    config = tmp_path / "g.toml"
    config.write_text('[gateway]\nid = "x"\n[uplink]\nurl = "http://127.0.0.1:9/"\n'
                      '[[sensors]]\nname = "air"\ndriver = "bme280"\nbus = 250\ninterval = 1\n')
    result = subprocess.run([*CLI, "read", "air", "--config", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "/dev/i2c-250" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_scan_names_the_simulated_chips(demo_toml: Path) -> None:
    result = subprocess.run([*CLI, "scan", "--bus", "1", "--config", str(demo_toml),
                             "--simulate"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "3 device(s)" in out
    assert "0x23  bh1750" in out
    assert "0x62  scd4x" in out
    assert "0x76  bme280" in out

"""The power supply: the Pi firmware's under-voltage and throttling bits in health,
metrics and ``status``."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

from gateway.cloud import CloudServer
from gateway.power import decode, read_throttled, warnings
from gateway.service import Gateway
from gateway.status_view import render_status
from tests.helpers import one_sensor_config

UNDER_VOLTAGE_AND_THROTTLED = 0x50005
"""What a Pi on a weak supply reports: under-voltage and throttled, now and since boot."""


def test_the_firmware_bits_are_decoded_now_and_since_boot() -> None:
    power = decode(UNDER_VOLTAGE_AND_THROTTLED)
    assert power == {
        "available": True, "bits": 0x50005,
        "under_voltage": True, "under_voltage_since_boot": True,
        "frequency_capped": False, "frequency_capped_since_boot": False,
        "throttled": True, "throttled_since_boot": True,
        "soft_temp_limit": False, "soft_temp_limit_since_boot": False,
    }
    assert warnings(power) == ["under voltage, throttled now"]
    recovered = decode(0xA0000)  # capped and soft temperature limit, earlier only
    assert not any(recovered[k] for k in ("under_voltage", "throttled", "frequency_capped",
                                           "soft_temp_limit"))
    assert warnings(recovered) == ["frequency capped, soft temp limit since boot"]
    assert warnings(decode(0)) == []
    off_a_pi = decode(None)
    assert off_a_pi["available"] is False and off_a_pi["under_voltage"] is None
    assert warnings(off_a_pi) == []


def test_the_sysfs_file_is_read_as_hex(tmp_path: Path) -> None:
    path = tmp_path / "get_throttled"
    path.write_text("50005\n")  # what the kernel prints: hex, no prefix
    assert read_throttled(path) == 0x50005
    path.write_text("0x50000\n")
    assert read_throttled(path) == 0x50000
    assert read_throttled(tmp_path / "missing") is None


async def fetch(url: str) -> tuple[int, str]:
    def get() -> tuple[int, str]:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
    return await asyncio.get_running_loop().run_in_executor(None, get)


def test_under_voltage_shows_in_health_metrics_and_status(tmp_path: Path) -> None:
    throttled = tmp_path / "get_throttled"
    throttled.write_text("0\n")
    seen: dict[str, Any] = {}

    async def go() -> None:
        cloud = CloudServer(tmp_path / "cloud.db")
        await cloud.start()
        cfg = one_sensor_config(tmp_path / "buffer.db", url=cloud.url(),
                                gateway_id="alatau-power-0001")
        gateway = Gateway(cfg, simulate=True, throttled_path=throttled)
        runner = asyncio.create_task(gateway.run())
        await gateway.ready.wait()
        base = f"http://127.0.0.1:{gateway.health_port}"

        async def health_when(condition: Any) -> dict[str, Any]:
            deadline = time.monotonic() + 10
            while True:
                health: dict[str, Any] = json.loads((await fetch(base + "/healthz"))[1])
                if condition(health):
                    return health
                assert time.monotonic() < deadline, health
                await asyncio.sleep(0.1)

        try:
            seen["good"] = await health_when(
                lambda h: h["status"] == "ok" and h["sensors"]["cabinet_air"]["state"] == "ok"
                and h["uplink"]["state"] == "ok")
            throttled.write_text("50005\n")  # the supply sags
            seen["sagging"] = await health_when(lambda h: h["power"]["under_voltage"])
            seen["metrics"] = (await fetch(base + "/metrics"))[1]
            throttled.write_text("50000\n")  # better now; it did happen since boot
            seen["after"] = await health_when(lambda h: h["power"]["under_voltage"] is False)
        finally:
            gateway.stop()
            await runner
            await cloud.stop()

    asyncio.run(go())
    good, sagging, after = seen["good"], seen["sagging"], seen["after"]
    assert good["power"]["available"] is True and good["power"]["bits"] == 0
    assert "power:    ok" in render_status(good)

    assert sagging["status"] == "degraded"
    assert sagging["power"]["throttled"] is True
    assert sagging["power"]["under_voltage_since_boot"] is True
    text = render_status(sagging)
    assert "power:    WARNING: under voltage, throttled now (get_throttled 0x50005)" in text
    metrics = seen["metrics"]
    assert 'alatau_power_condition{condition="under_voltage",when="now"} 1' in metrics
    assert 'alatau_power_condition{condition="frequency_capped",when="now"} 0' in metrics
    assert "alatau_power_throttled 327685" in metrics

    assert after["status"] == "ok"
    assert after["power"]["under_voltage_since_boot"] is True
    assert "WARNING: under voltage, throttled since boot" in render_status(after)

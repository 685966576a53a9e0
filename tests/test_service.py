"""The service on one loop: schedule, health endpoint, systemd notify protocol, status."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from drivers.errors import DriverTimeoutError
from gateway.cloud import CloudServer
from gateway.config import parse
from gateway.health import metrics_text
from gateway.poller import SensorSlot
from gateway.sdnotify import Notifier
from gateway.service import Gateway


def config_text(tmp_path: Path, url: str, sensors: str = "") -> str:
    return f"""
[gateway]
id = "alatau-svc-0001"
[storage]
path = "{tmp_path / 'buffer.db'}"
commit_interval = 0.1
min_free_bytes = 0
[uplink]
url = "{url}"
flush_interval = 0.2
backoff_initial = 0.05
backoff_max = 0.2
[health]
listen = "127.0.0.1:0"
[[sensors]]
name = "fast"
driver = "bme280"
interval = 0.1
[[sensors]]
name = "broken"
driver = "sht31"
interval = 0.1
{sensors}"""


class Counter:
    """A source that counts: each read returns the next integer."""

    def __init__(self) -> None:
        self.n = 0
        self.read_at: list[float] = []

    def read(self) -> dict[str, float]:
        self.n += 1
        self.read_at.append(time.monotonic())
        return {"count": float(self.n)}


class Broken:
    def read(self) -> dict[str, float]:
        raise DriverTimeoutError("sht31 at 0x44: no answer within 0.1 s")


def make_slots(cfg: Any, counter: Counter) -> list[SensorSlot]:
    return [SensorSlot(cfg.sensor("fast"), lambda: counter, "mem-0"),
            SensorSlot(cfg.sensor("broken"), Broken, "mem-1")]


async def get_json(url: str) -> tuple[int, Any]:
    def fetch() -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
    return await asyncio.get_running_loop().run_in_executor(None, fetch)


def test_readings_flow_and_health_reports_every_part(tmp_path: Path) -> None:
    counter = Counter()

    async def go() -> None:
        cloud = CloudServer(tmp_path / "cloud.db")
        await cloud.start()
        cfg = parse(config_text(tmp_path, cloud.url()))
        gateway = Gateway(cfg, slots=make_slots(cfg, counter))
        runner = asyncio.create_task(gateway.run())
        await gateway.ready.wait()
        deadline = time.monotonic() + 10
        while cloud.store.stats("alatau-svc-0001")["readings"] < 10:
            assert time.monotonic() < deadline, "no readings reached the cloud"
            await asyncio.sleep(0.05)
        base = f"http://127.0.0.1:{gateway.health_port}"
        status, body = await get_json(base + "/healthz")
        health = json.loads(body)
        _, metrics = await get_json(base + "/metrics")
        gateway.stop()
        await runner
        await cloud.stop()

        assert status == 200
        assert health["status"] == "degraded"  # one sensor fails
        assert health["sensors"]["fast"]["state"] == "ok"
        assert health["sensors"]["broken"]["state"] == "failing"
        assert health["sensors"]["broken"]["errors"] >= 1
        assert "no answer" in health["sensors"]["broken"]["last_error"]
        assert set(health["buffer"]) >= {"readings", "bytes", "oldest_age_s", "dead_letters"}
        assert set(health["uplink"]) >= {"state", "last_success_age_s", "last_error"}
        assert health["uplink"]["last_success_age_s"] is not None
        assert "synchronized" in health["clock"]
        text = metrics.decode()
        assert 'alatau_sensor_up{sensor="fast"} 1' in text
        assert 'alatau_sensor_up{sensor="broken"} 0' in text
        assert "# TYPE alatau_buffer_readings gauge" in text

    asyncio.run(go())
    # The cloud holds the counter's values in order: nothing lost, nothing made up.
    from gateway.cloud import CloudStore
    store = CloudStore(tmp_path / "cloud.db")
    values = [r["values"]["count"] for r in store.readings("alatau-svc-0001", 0, 10_000)]
    store.close()
    assert values == [float(i) for i in range(1, len(values) + 1)]


def test_schedule_keeps_its_phase_and_a_failing_sensor_backs_off(tmp_path: Path) -> None:
    counter = Counter()

    async def go() -> Gateway:
        cfg = parse(config_text(tmp_path, "http://127.0.0.1:9/v1/batches"))
        gateway = Gateway(cfg, slots=make_slots(cfg, counter), health=False)
        runner = asyncio.create_task(gateway.run())
        await gateway.ready.wait()
        await asyncio.sleep(1.55)
        gateway.stop()
        await runner
        return gateway

    gateway = asyncio.run(go())
    start = counter.read_at[0]
    # Read k lands near start + k * interval: no drift accumulates over 15 reads.
    offsets = [(t - start) - round((t - start) / 0.1) * 0.1 for t in counter.read_at]
    assert len(counter.read_at) >= 12
    assert max(abs(o) for o in offsets) < 0.05
    broken = gateway.telemetry.sensors["broken"]
    # Backoff: far fewer attempts than the 15 slots it had.
    assert 2 <= broken.errors <= 6


def test_notify_protocol_ready_watchdog_status_stopping(tmp_path: Path) -> None:
    sock_path = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(sock_path)
    listener.settimeout(0.1)
    counter = Counter()

    async def go() -> None:
        cfg = parse(config_text(tmp_path, "http://127.0.0.1:9/v1/batches"))
        notifier = Notifier({"NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "400000"})
        assert notifier.watchdog_interval_s == pytest.approx(0.2)
        gateway = Gateway(cfg, slots=make_slots(cfg, counter), health=False,
                          notifier=notifier)
        runner = asyncio.create_task(gateway.run())
        await asyncio.sleep(0.8)
        gateway.stop()
        await runner

    asyncio.run(go())
    messages = []
    while True:
        try:
            messages.append(listener.recv(4096).decode())
        except TimeoutError:
            break
    listener.close()
    ready = [i for i, m in enumerate(messages) if "READY=1" in m]
    assert len(ready) == 1
    assert "STATUS=" in messages[ready[0]]
    assert sum(1 for m in messages if m == "WATCHDOG=1") >= 3
    stopping = [i for i, m in enumerate(messages) if "STOPPING=1" in m]
    assert stopping and stopping[0] > ready[0]


def test_notifier_is_silent_without_systemd() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.ready("x") is False
    assert notifier.watchdog_interval_s is None


def test_notifier_ignores_a_watchdog_meant_for_another_process() -> None:
    notifier = Notifier({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "1000000",
                         "WATCHDOG_PID": str(os.getpid() + 1)})
    assert notifier.watchdog_interval_s is None


def test_metrics_escape_labels() -> None:
    health = {
        "status": "ok", "sensors": {}, "buffer": {"readings": 0, "bytes": 0,
                                                  "oldest_age_s": None, "dead_letters": 0,
                                                  "dropped": {}},
        "uplink": {"uploads": 0, "readings_sent": 0, "bytes_sent": 0,
                   "failures": {'we"ird': 1}, "last_success_age_s": None},
        "actuators": {}, "clock": {"synchronized": True}, "power": {"throttled": None},
        "produced": 0,
    }
    assert 'alatau_uplink_failures_total{kind="we\\"ird"} 1' in metrics_text(health)


def test_status_command_renders_a_running_service(tmp_path: Path) -> None:
    counter = Counter()

    async def go() -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
        cfg = parse(config_text(tmp_path, "http://127.0.0.1:9/v1/batches"))
        gateway = Gateway(cfg, slots=make_slots(cfg, counter))
        runner = asyncio.create_task(gateway.run())
        await gateway.ready.wait()
        await asyncio.sleep(0.5)
        url = f"http://127.0.0.1:{gateway.health_port}"

        def status(*extra: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "gateway.cli", "status", "--url", url,
                                   *extra], capture_output=True, text=True, timeout=30)
        loop = asyncio.get_running_loop()
        table = await loop.run_in_executor(None, status)
        as_json = await loop.run_in_executor(None, status, "--json")
        gateway.stop()
        await runner
        return table, as_json

    table, as_json = asyncio.run(go())
    assert "fast" in table.stdout and "broken" in table.stdout
    assert "failing" in table.stdout
    assert table.returncode == 1  # not ok: a sensor is failing
    assert json.loads(as_json.stdout)["sensors"]["fast"]["state"] == "ok"


def test_status_without_a_service_says_so(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "gateway.cli", "status", "--url",
                             "http://127.0.0.1:9"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "not answering" in result.stderr
    assert "Traceback" not in result.stderr

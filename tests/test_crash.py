"""The promise under abuse: kill -9 at random moments, outages, a corrupt buffer, SIGTERM.

Each reading carries a token unique over the whole test (see tests/crash_gateway.py), and
the reference cloud gets an extension that compares every copy of a seq it receives with
the first one, so a reused seq shows up as a content mismatch even though the cloud keeps
only the first copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.cloud import CloudServer, CloudStore
from gateway.config import Config, parse
from gateway.poller import SensorSlot
from gateway.service import Gateway
from gateway.store import Reading, Store, read_only_stats
from tests.crash_gateway import make_factory

ROOT = Path(__file__).resolve().parent.parent
GATEWAY = "alatau-crash-0001"
KILLS = 22
SENSORS = 6


def config_text(tmp_path: Path, url: str) -> str:
    sensors = "".join(f'\n[[sensors]]\nname = "counter_{i}"\ndriver = "bme280"\nbus = {i}\n'
                      f"interval = {0.05 + 0.01 * i:g}\n" for i in range(SENSORS))
    return f"""
[gateway]
id = "{GATEWAY}"
[storage]
path = "{tmp_path / 'buffer.db'}"
commit_interval = 0.05
min_free_bytes = 0
[uplink]
url = "{url}"
batch_max_readings = 40
flush_interval = 0.1
timeout = 5.0
backoff_initial = 0.05
backoff_max = 0.3
{sensors}"""


class ContentCheck:
    """Cloud extension: remembers each seq's token and every copy that disagrees."""

    def __init__(self) -> None:
        self.tokens: dict[int, float] = {}
        self.mismatches: list[tuple[int, float, float]] = []
        self.copies = 0

    def on_batch(self, gateway: str, batch: dict[str, Any]) -> dict[str, Any]:
        for reading in batch["readings"]:
            self.copies += 1
            token = reading["values"]["token"]
            first = self.tokens.setdefault(reading["seq"], token)
            if first != token:
                self.mismatches.append((reading["seq"], first, token))
        return {}


@contextlib.contextmanager
def cloud_in_thread(db_path: Path) -> Iterator[tuple[CloudServer, ContentCheck]]:
    """The reference cloud on its own loop, so the test can block on processes."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    box: dict[str, Any] = {}

    def serve() -> None:
        asyncio.set_event_loop(loop)
        server = CloudServer(db_path)
        check = ContentCheck()
        server.extensions.append(check)
        loop.run_until_complete(server.start())
        box.update(server=server, check=check)
        started.set()
        loop.run_forever()
        loop.run_until_complete(server.stop())
        loop.close()

    thread = threading.Thread(target=serve, name="cloud", daemon=True)
    thread.start()
    assert started.wait(10), "the reference cloud did not start"
    try:
        yield box["server"], box["check"]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


class GatewayProcess:
    def __init__(self, tmp_path: Path, run: int, sensors: int = SENSORS) -> None:
        self.log_path = tmp_path / f"run-{run}.log"
        env = dict(os.environ, ALATAU_GATEWAY_CLOCK="synced")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.crash_gateway", str(tmp_path / "gateway.toml"),
                 str(run), str(sensors)],
                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log)
        self._out = b""

    def wait_for(self, text: str, timeout: float = 20.0) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while text.encode() not in self._out:
            left = deadline - time.monotonic()
            assert left > 0, f"no {text!r} from the gateway; log:\n{self.log()}"
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                assert chunk or text.encode() in self._out, (
                    f"gateway exited ({self.proc.poll()}); log:\n{self.log()}")
                self._out += chunk
        return self._out.decode()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def drain(tmp_path: Path, run: int) -> None:
    """A gateway without sensors uploads whatever is left, then stops cleanly."""
    gw = GatewayProcess(tmp_path, run, sensors=0)
    try:
        gw.wait_for("ready")
        deadline = time.monotonic() + 30
        while True:
            stats, _ = read_only_stats(tmp_path / "buffer.db")
            if stats.readings == 0 and stats.pending_drops == 0:
                break
            assert time.monotonic() < deadline, f"buffer not drained: {stats}"
            time.sleep(0.1)
        gw.proc.send_signal(signal.SIGTERM)
        assert gw.proc.wait(10) == 0, gw.log()
        assert "Traceback" not in gw.log()
    finally:
        gw.close()


def assert_cloud_holds_exactly(cloud_db: Path, check: ContentCheck, last_seq: int) -> None:
    cloud = CloudStore(cloud_db)
    try:
        seqs = cloud.seqs(GATEWAY)
        stats = cloud.stats(GATEWAY)
        readings = cloud.readings(GATEWAY, 0, last_seq + 10)
    finally:
        cloud.close()
    missing = sorted(set(range(1, last_seq + 1)) - set(seqs))
    assert not missing, f"committed seqs never delivered: {missing[:20]} ({len(missing)})"
    assert seqs == list(range(1, last_seq + 1)), "the cloud holds seqs never handed out"
    assert stats["dropped_ranges"] == []
    assert check.mismatches == [], f"seqs reused with other content: {check.mismatches[:5]}"
    tokens = [r["values"]["token"] for r in readings]
    assert len(set(tokens)) == len(tokens), "one reading stored under two seqs"
    # Per sensor, seq order is the order of reading: (run, counter) only ever increases.
    last: dict[str, tuple[float, float]] = {}
    for r in readings:
        key = (r["values"]["run"], r["values"]["counter"])
        assert key > last.get(r["sensor"], (0.0, 0.0)), f"seq {r['seq']} out of order"
        last[r["sensor"]] = key


@pytest.mark.slow
def test_kill_9_at_random_moments_loses_no_committed_reading(tmp_path: Path) -> None:
    rng = random.Random(20261128)
    with cloud_in_thread(tmp_path / "cloud.db") as (cloud, check):
        (tmp_path / "gateway.toml").write_text(config_text(tmp_path, cloud.url()))
        for run in range(1, KILLS + 1):
            gw = GatewayProcess(tmp_path, run)
            try:
                if rng.random() < 0.2:
                    time.sleep(rng.uniform(0.0, 0.5))  # while starting, opening the buffer
                else:
                    gw.wait_for("ready")
                    time.sleep(rng.uniform(0.02, 0.7))
                gw.proc.kill()
                assert gw.proc.wait(10) == -signal.SIGKILL
                assert "Traceback" not in gw.log(), gw.log()
            finally:
                gw.close()
        drain(tmp_path, KILLS + 1)
        stats, _ = read_only_stats(tmp_path / "buffer.db")
    assert stats.dropped_by_reason == {}
    assert not list(tmp_path.glob("buffer.db.corrupt-*")), "a kill -9 corrupted the buffer"
    last_seq = stats.next_seq - 1
    assert_cloud_holds_exactly(tmp_path / "cloud.db", check, last_seq)
    assert last_seq > 500, "the gateway hardly ran between kills"


@pytest.mark.slow
def test_sigterm_stops_within_seconds_and_commits_every_reading(tmp_path: Path) -> None:
    with cloud_in_thread(tmp_path / "cloud.db") as (cloud, check):
        (tmp_path / "gateway.toml").write_text(config_text(tmp_path, cloud.url()))
        cloud.faults.down = True  # nothing leaves the buffer: all of it must be on disk
        gw = GatewayProcess(tmp_path, 1)
        try:
            gw.wait_for("ready")
            time.sleep(1.0)
            gw.proc.send_signal(signal.SIGTERM)
            assert gw.proc.wait(10) == 0, gw.log()
            out = gw.wait_for("stopped produced=")
        finally:
            gw.close()
        assert "Traceback" not in gw.log()
        produced = int(out.split("stopped produced=")[1].split()[0])
        assert produced > 50
        stats, _ = read_only_stats(tmp_path / "buffer.db")
        assert stats.next_seq - 1 == produced
        assert stats.readings == produced
        cloud.faults.down = False
        drain(tmp_path, 2)
    assert_cloud_holds_exactly(tmp_path / "cloud.db", check, produced)


# --- in-process: outage and a corrupt buffer ------------------------------------------


def slots_for(cfg: Config, run: int) -> list[SensorSlot]:
    return [SensorSlot(sensor, lambda i=i: make_factory(run, i), f"mem-{i}")
            for i, sensor in enumerate(cfg.sensors)]


async def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def stop_reading_and_drain(gateway: Gateway, runner: asyncio.Task[None]) -> None:
    assert gateway.poller is not None and gateway.store is not None
    assert gateway.uploader is not None
    gateway.poller.stop()
    await gateway.commit()
    gateway.uploader.wake.set()
    store = gateway.store
    await wait_until(lambda: store.readings == 0 and store.stats().pending_drops == 0, 30,
                     "the buffer to drain")
    gateway.stop()
    await runner


def test_an_outage_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    async def go() -> tuple[int, ContentCheck, dict[str, Any]]:
        cloud = CloudServer(tmp_path / "cloud.db")
        check = ContentCheck()
        cloud.extensions.append(check)
        port = await cloud.start()
        cfg = parse(config_text(tmp_path, cloud.url()))
        gateway = Gateway(cfg, slots=slots_for(cfg, 1), health=False)
        runner = asyncio.create_task(gateway.run())
        await gateway.ready.wait()
        assert gateway.store is not None
        store = gateway.store
        await wait_until(lambda: cloud.store.stats(GATEWAY)["readings"] > 50, 10, "uploads")
        # The cloud goes away completely: connections are refused.
        assert cloud._runner is not None
        await cloud._runner.cleanup()
        cloud._runner = None
        await wait_until(lambda: store.readings > 300, 20, "a backlog")
        failures = dict(gateway.telemetry.uplink.failures)
        await cloud.start(port=port)
        await stop_reading_and_drain(gateway, runner)
        last_seq = store.next_seq - 1
        stats = cloud.store.stats(GATEWAY)
        await cloud.stop()
        return last_seq, check, {"failures": failures, **stats}

    last_seq, check, stats = asyncio.run(go())
    assert stats["failures"].get("connection", 0) >= 1
    assert stats["readings"] == last_seq
    assert_cloud_holds_exactly(tmp_path / "cloud.db", check, last_seq)


def test_a_corrupt_buffer_at_start_is_quarantined_and_the_gateway_carries_on(
        tmp_path: Path) -> None:
    old = Store(tmp_path / "buffer.db")
    for n in range(200):
        old.add(Reading("counter_0", 1_764_337_000_000 + n, {"token": -1.0 - n}))
    old.commit()
    handed_out = old.next_seq - 1
    old.close()
    (tmp_path / "buffer.db").write_bytes(os.urandom(32 * 1024))

    async def go() -> tuple[int, list[str], dict[str, Any], list[dict[str, Any]]]:
        cloud = CloudServer(tmp_path / "cloud.db")
        await cloud.start()
        cfg = parse(config_text(tmp_path, cloud.url()))
        gateway = Gateway(cfg, slots=slots_for(cfg, 1), health=False)
        runner = asyncio.create_task(gateway.run())
        await gateway.ready.wait()
        assert gateway.store is not None
        quarantined = gateway.store.stats().quarantined
        await wait_until(lambda: cloud.store.stats(GATEWAY)["readings"] > 100, 10, "uploads")
        await stop_reading_and_drain(gateway, runner)
        stats = cloud.store.stats(GATEWAY)
        readings = cloud.store.readings(GATEWAY, 0, 100_000)
        await cloud.stop()
        return gateway.store.next_seq - 1, quarantined, stats, readings

    last_seq, quarantined, stats, readings = asyncio.run(go())
    assert [Path(q).name for q in quarantined] == [
        p.name for p in tmp_path.glob("buffer.db.corrupt-*") if not p.name.endswith(("-wal",
                                                                                       "-shm"))]
    assert len(quarantined) == 1
    first = readings[0]["seq"]
    assert first > handed_out
    assert [r["seq"] for r in readings] == list(range(first, last_seq + 1))
    assert all(r["values"]["token"] > 0 for r in readings)  # none of the lost buffer's
    assert stats["dropped_ranges"] == [
        {"from_seq": 1, "to_seq": first - 1, "reason": "buffer_corrupt"}]
    assert json.loads(json.dumps(stats))["duplicates"] == 0

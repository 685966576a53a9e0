"""A full disk: the gateway keeps reading and uploading, drops by policy and reports it,
stays inside its cap and the free-space reserve, and recovers by itself.

Runs on a small tmpfs (8 MiB) of its own, so the disk really fills: needs root to mount
it (CI runs as root) and is skipped with the reason otherwise.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gateway.cloud import CloudServer
from gateway.config import parse
from gateway.poller import SensorSlot
from gateway.service import Gateway

GATEWAY = "alatau-disk-0001"
MAX_BYTES = 2 * 1024 * 1024
MIN_FREE = 1024 * 1024
HEADROOM = 384 * 1024
"""Free space above the reserve that the ballast leaves in the first full-disk phase."""
SLACK = 160 * 1024
"""What one commit may write before the next check sees it (WAL frames, a new page)."""


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs (mount -t tmpfs -o size=8m)")
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


CONFIG = """
[gateway]
id = "{gateway}"
[storage]
path = "{path}"
max_bytes = {max_bytes}
min_free_bytes = {min_free}
commit_interval = 0.05
overflow = "drop_oldest"
[uplink]
url = "{url}"
flush_interval = 0.1
batch_max_readings = 2000
backoff_initial = 0.05
backoff_max = 0.3
{sensors}
"""

SENSORS = 8


class Noisy:
    """A sensor with many quantities of noise: readings that do not compress, so the
    buffer grows by about a kilobyte per reading."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.n = 0

    def read(self) -> dict[str, float]:
        self.n += 1
        values = {f"q{i:03d}_volts": self.rng.random() for i in range(100)}
        values["count"] = float(self.n)
        return values


@dataclass
class Samples:
    file_bytes: list[int] = field(default_factory=list)
    free_bytes: list[tuple[str, int]] = field(default_factory=list)


def free_space(path: Path) -> int:
    return shutil.disk_usage(path).free


def buffer_file_bytes(path: Path) -> int:
    return sum(Path(f"{path}{s}").stat().st_size for s in ("", "-wal")
               if Path(f"{path}{s}").exists())


def fill(ballast: Path, leave: int) -> None:
    """Grow ``ballast`` until only ``leave`` bytes are free (0: until ENOSPC)."""
    block = b"\xa5" * 65536
    with open(ballast, "ab") as f:
        while True:
            room = free_space(ballast.parent) - leave
            if room <= 0:
                break
            try:
                f.write(block[:min(len(block), room)])
                f.flush()
            except OSError:
                break


async def wait_for(condition: Any, timeout: float, what: str, runner: asyncio.Task[None]
                   ) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert not runner.done(), f"the gateway stopped while waiting for {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def test_a_full_disk_drops_by_policy_reports_it_and_recovers(small_disk: Path,
                                                             tmp_path: Path) -> None:
    path = small_disk / "buffer.db"
    ballast = small_disk / "ballast"
    samples = Samples()
    phase = {"name": "normal"}

    async def go() -> dict[str, Any]:
        cloud = CloudServer(tmp_path / "cloud.db")
        await cloud.start()
        sensors = "".join(f'[[sensors]]\nname = "noisy_{i}"\ndriver = "bme280"\n'
                          f"address = {0x10 + i}\ninterval = 0.05\n" for i in range(SENSORS))
        cfg = parse(CONFIG.format(gateway=GATEWAY, path=path, max_bytes=MAX_BYTES,
                                  min_free=MIN_FREE, url=cloud.url(), sensors=sensors))
        slots = [SensorSlot(cfg.sensor(f"noisy_{i}"), lambda i=i: Noisy(i), f"mem-{i}")
                 for i in range(SENSORS)]
        gateway = Gateway(cfg, slots=slots, health=False)
        runner = asyncio.create_task(gateway.run())
        await gateway.ready.wait()
        stop_sampling = asyncio.Event()

        async def sample() -> None:
            while not stop_sampling.is_set():
                samples.file_bytes.append(buffer_file_bytes(path))
                samples.free_bytes.append((phase["name"], free_space(small_disk)))
                await asyncio.sleep(0.01)

        sampler = asyncio.create_task(sample())
        try:
            def delivered() -> int:
                return int(cloud.store.stats(GATEWAY)["readings"])

            await wait_for(lambda: delivered() > 200, 15, "the first uploads", runner)

            # An outage, and something else fills the disk up to just above the reserve.
            cloud.faults.down = True
            await asyncio.get_running_loop().run_in_executor(
                None, fill, ballast, MIN_FREE + HEADROOM)
            phase["name"] = "reserve"
            assert gateway.store is not None
            store = gateway.store

            def disk_full_drops() -> int:
                return store.dropped_by_reason.get("disk_full", 0)

            await wait_for(lambda: disk_full_drops() > 0, 30,
                           "drops by policy at the free-space reserve", runner)
            produced = gateway.telemetry.produced
            await asyncio.sleep(1.0)
            assert gateway.telemetry.produced > produced + 50, "reading stopped"

            # Then the disk fills to the last byte.
            phase["name"] = "enospc"
            await asyncio.get_running_loop().run_in_executor(None, fill, ballast, 0)
            produced = gateway.telemetry.produced
            await asyncio.sleep(1.5)
            assert gateway.telemetry.produced > produced + 50, "reading stopped"

            # The cloud is back while the disk is still full: the backlog goes up (an
            # acknowledgement is a write too; with no byte free it waits in memory).
            # New readings wait in memory too when not even a freed page can be reused.
            cloud.faults.down = False
            uploads = gateway.telemetry.uplink.uploads
            await wait_for(lambda: gateway.telemetry.uplink.uploads > uploads + 2, 30,
                           "uploads from a full disk", runner)
            cloud.faults.down = True
            await asyncio.sleep(1.0)
            high_before = store.next_seq - 1

            # Space comes back and the cloud too: everything resumes without help.
            ballast.unlink()
            phase["name"] = "recovered"
            cloud.faults.down = False
            await wait_for(lambda: cloud.store.stats(GATEWAY)["max_seq"] is not None
                           and cloud.store.stats(GATEWAY)["max_seq"] > high_before + 500,
                           30, "new readings to be stored and delivered", runner)
            gateway.poller.stop() if gateway.poller else None
            await gateway.commit()
            await wait_for(lambda: store.readings == 0 and store.stats().pending_drops == 0
                           and not store.pending, 30, "the backlog to drain", runner)
            health = await gateway.health()
        finally:
            stop_sampling.set()
            await sampler
            gateway.stop()
            await runner
            stats = cloud.store.stats(GATEWAY)
            seqs = cloud.store.seqs(GATEWAY)
            await cloud.stop()
        return {"health": health, "stats": stats, "seqs": seqs, "last": store.next_seq - 1,
                "dropped": dict(store.dropped_by_reason)}

    result = asyncio.run(go())

    # Never past its cap; never below the reserve while it could help it.
    assert max(samples.file_bytes) <= MAX_BYTES, max(samples.file_bytes)
    reserve_phase = [free for name, free in samples.free_bytes if name == "reserve"]
    assert reserve_phase and min(reserve_phase) >= MIN_FREE - SLACK, min(reserve_phase)

    # Every seq delivered or reported dropped, once; drops counted by reason.
    stats, seqs = result["stats"], set(result["seqs"])
    dropped: dict[str, set[int]] = {}
    for d in stats["dropped_ranges"]:
        dropped.setdefault(d["reason"], set()).update(range(d["from_seq"], d["to_seq"] + 1))
    every_drop = set().union(*dropped.values()) if dropped else set()
    both = sorted(seqs & every_drop)
    assert not both, f"delivered and also reported dropped: {both[:10]}"
    missing = set(range(1, result["last"] + 1)) - seqs - every_drop
    assert not missing, f"neither delivered nor reported: {sorted(missing)[:10]}"
    assert stats["duplicates"] == 0
    assert dropped.get("disk_full"), "no drop was reported as disk_full"
    for reason, count in result["dropped"].items():
        if reason in dropped:
            assert count == len(dropped[reason]), (reason, count, len(dropped[reason]))
    assert result["health"]["buffer"]["dropped"].get("disk_full") == len(dropped["disk_full"])


def test_a_restart_on_a_full_disk_keeps_the_buffer(small_disk: Path) -> None:
    """A full disk is not a damaged buffer: no quarantine (which would report every
    undelivered reading as buffer_corrupt). SQLite cannot even create its -shm index on
    a disk with no byte free, so opening fails with a clear error until space returns
    (systemd restarts the service), then the readings are all there."""
    from gateway.store import Reading, Store, StoreError

    path = small_disk / "buffer.db"
    store = Store(path, max_bytes=MAX_BYTES, min_free_bytes=MIN_FREE)
    for i in range(300):
        store.add(Reading("noisy", 1_764_337_000_000 + i, {"count": float(i)}))
    seqs = store.commit()
    store.close()
    fill(small_disk / "ballast", 0)
    with pytest.raises(StoreError, match=r"cannot open buffer .*(full|I/O)"):
        Store(path, max_bytes=MAX_BYTES, min_free_bytes=MIN_FREE)
    config = small_disk.parent / "gateway.toml"
    config.write_text(CONFIG.format(gateway=GATEWAY, path=path, max_bytes=MAX_BYTES,
                                    min_free=MIN_FREE, url="http://127.0.0.1:9/v1/batches",
                                    sensors=SENSOR_ONE))
    service = subprocess.run([sys.executable, "-m", "gateway.cli", "run", "--config",
                              str(config), "--simulate"], capture_output=True, text=True,
                             timeout=60, check=False)
    assert service.returncode == 1
    assert "cannot start: cannot open buffer" in service.stderr
    assert "Traceback" not in service.stderr
    assert not [p.name for p in small_disk.iterdir() if ".corrupt-" in p.name]
    (small_disk / "ballast").unlink()
    reopened = Store(path, max_bytes=MAX_BYTES, min_free_bytes=MIN_FREE)
    try:
        assert reopened.stats().quarantined == []
        assert [seq for seq, _ in reopened.iter_lines()] == list(seqs)
        reopened.add(Reading("noisy", 1_764_337_999_500, {"count": 2.0}))
        assert reopened.commit().start == seqs[-1] + 1
    finally:
        reopened.close()


def test_expiry_failing_on_a_full_disk_does_not_stop_the_service(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Housekeeping's expiry is a write like any other; its failure is logged, and the
    service goes on (it is retried at the next expiry round)."""
    import sqlite3

    from gateway.store import Store

    def full(self: Store, now_ms: int) -> int:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(Store, "expire", full)
    cfg = parse(CONFIG.format(gateway=GATEWAY, path=tmp_path / "buffer.db", max_bytes=MAX_BYTES,
                              min_free=0, url="http://127.0.0.1:9/v1/batches",
                              sensors=SENSOR_ONE).replace("[uplink]", "max_age = 3600.0\n[uplink]"))

    async def go() -> int:
        gateway = Gateway(cfg, slots=[SensorSlot(cfg.sensor("noisy_0"), lambda: Noisy(0),
                                                 "mem")], health=False)
        runner = asyncio.create_task(gateway.run())
        await gateway.ready.wait()
        await asyncio.sleep(1.5)
        assert not runner.done(), runner.exception() if runner.done() else None
        gateway.stop()
        await runner
        assert gateway.store is not None
        return gateway.store.next_seq

    assert asyncio.run(go()) > 10


SENSOR_ONE = '[[sensors]]\nname = "noisy_0"\ndriver = "bme280"\ninterval = 0.05\n'



def test_readings_waiting_in_memory_for_room_show_in_health(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While no commit gets through, readings wait in memory: health says how many."""
    import sqlite3

    from gateway.health import metrics_text
    from gateway.store import Store

    def full(self: Store) -> range:
        raise sqlite3.OperationalError("database or disk is full")

    cfg = parse(CONFIG.format(gateway=GATEWAY, path=tmp_path / "buffer.db", max_bytes=MAX_BYTES,
                              min_free=0, url="http://127.0.0.1:9/v1/batches",
                              sensors=SENSOR_ONE))

    async def go() -> dict[str, Any]:
        gateway = Gateway(cfg, slots=[SensorSlot(cfg.sensor("noisy_0"), lambda: Noisy(0),
                                                 "mem")], health=False)
        runner = asyncio.create_task(gateway.run())
        await gateway.ready.wait()
        monkeypatch.setattr(Store, "commit", full)
        await asyncio.sleep(1.0)
        health = await gateway.health()
        monkeypatch.undo()
        gateway.stop()
        await runner
        return health

    health = asyncio.run(go())
    assert health["buffer"]["in_memory"] > 5
    assert health["buffer"]["commit_failures"] > 5
    text = metrics_text(health)
    assert f"alatau_buffer_in_memory {health['buffer']['in_memory']}" in text
    assert "alatau_buffer_commit_failures_total" in text

"""No real-time clock: readings before NTP sync are flagged and repaired after it."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from gateway import poller as poller_mod
from gateway.config import parse
from gateway.poller import SensorSlot
from gateway.service import Gateway
from gateway.store import Reading, Store

BOOT = "0f5c7c1e-boot-a"
OTHER_BOOT = "77aa0c1e-boot-b"


def lines(store: Store) -> list[dict]:
    return [json.loads(line) for _, line in store.iter_lines()]


def test_this_boots_unsynced_readings_are_repaired_others_stay_flagged(tmp_path: Path) -> None:
    store = Store(tmp_path / "b.db")
    wrong_wall = 946684800000  # 2000-01-01: a Pi that booted without RTC
    store.add(Reading("a", wrong_wall, {"x": 1.0}, ("clock_unsynced",), (OTHER_BOOT, 5000)))
    store.add(Reading("a", wrong_wall + 1000, {"x": 2.0}, ("clock_unsynced",), (BOOT, 61000)))
    store.commit()
    store.add(Reading("a", wrong_wall + 2000, {"x": 3.0}, ("clock_unsynced",), (BOOT, 62000)))
    offset = 1764337000000 - 63000  # wall minus monotonic, measured after the sync
    store.correct_clock(BOOT, offset)
    store.add(Reading("a", 1764337001000, {"x": 4.0}))
    store.commit()

    got = lines(store)
    assert [r["values"]["x"] for r in got] == [1.0, 2.0, 3.0, 4.0]
    assert got[0]["ts"] == wrong_wall and got[0]["flags"] == ["clock_unsynced"]
    assert got[0]["boot_id"] == OTHER_BOOT and got[0]["mono_ms"] == 5000
    assert got[1]["ts"] == 61000 + offset and got[1]["flags"] == ["clock_corrected"]
    assert got[2]["ts"] == 62000 + offset and got[2]["flags"] == ["clock_corrected"]
    assert got[3]["flags"] == [] and "boot_id" not in got[3]
    # The repair is on disk, not only in memory.
    store.close()
    reopened = Store(tmp_path / "b.db")
    assert [r["ts"] for r in lines(reopened)] == [r["ts"] for r in got]
    reopened.close()


class Switch:
    def __init__(self) -> None:
        self.synced = False

    def synchronized(self) -> bool:
        return self.synced


class Counter:
    def __init__(self) -> None:
        self.n = 0

    def read(self) -> dict[str, float]:
        self.n += 1
        return {"count": float(self.n)}


CONFIG = """
[gateway]
id = "alatau-clock-0001"
[storage]
path = "{path}"
commit_interval = 0.05
min_free_bytes = 0
[uplink]
url = "http://127.0.0.1:9/v1/batches"
flush_interval = 3600
[[sensors]]
name = "counter"
driver = "bme280"
interval = 0.05
"""


def test_gateway_flags_then_repairs_after_sync_and_a_clock_step_changes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(poller_mod, "CLOCK_CHECK_S", 0.02)
    cfg = parse(CONFIG.format(path=tmp_path / "b.db"))
    clock = Switch()
    counter = Counter()
    wall_offset = {"ms": -10 * 365 * 86400 * 1000}  # ten years behind

    async def go() -> None:
        gateway = Gateway(cfg, slots=[SensorSlot(cfg.sensor("counter"), lambda: counter, "m")],
                          health=False, clock=clock)
        assert gateway.poller is None
        runner = asyncio.create_task(gateway.run())
        await gateway.ready.wait()
        assert gateway.poller is not None
        gateway.poller.wall_ms = lambda: time.time_ns() // 1_000_000 + wall_offset["ms"]
        await asyncio.sleep(0.5)
        clock.synced = True
        wall_offset["ms"] = 0  # NTP stepped the clock
        await asyncio.sleep(0.5)
        wall_offset["ms"] = -3600_000  # and a step back by an hour, while running
        await asyncio.sleep(0.3)
        gateway.stop()
        await runner

    asyncio.run(go())
    store = Store(tmp_path / "b.db")
    got = lines(store)
    store.close()
    flags = [tuple(r["flags"]) for r in got]
    assert ("clock_corrected",) in flags and () in flags
    assert ("clock_unsynced",) not in flags  # every reading of this boot was repaired
    now = time.time() * 1000
    for r in got:
        if r["flags"] == ["clock_corrected"]:
            assert abs(r["ts"] - now) < 60_000  # repaired to the true time, not 10 years ago
    # Order and schedule are untouched by the steps: values count up without gaps.
    assert [r["values"]["count"] for r in got] == [float(i) for i in range(1, len(got) + 1)]
    assert [r["seq"] for r in got] == list(range(1, len(got) + 1))
    assert len(got) >= 15


def test_without_the_timesyncd_flag_the_kernel_is_asked_cheaply(tmp_path: Path,
                                                                 monkeypatch) -> None:
    """Before the first sync (no /run/systemd/timesync/synchronized) the monitor asks the
    kernel (adjtimex) at every housekeeping tick: that must not start a process each time
    (``ctypes.util.find_library`` runs ldconfig in one) and must answer like the kernel."""
    import subprocess

    import gateway.libc
    from gateway import clock

    monkeypatch.delenv("ALATAU_GATEWAY_CLOCK", raising=False)
    spawned: list[object] = []
    real_popen_init = subprocess.Popen.__init__

    def spy(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        spawned.append(args[0] if args else kwargs.get("args"))
        real_popen_init(self, *args, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", spy)
    monkeypatch.setattr(gateway.libc, "_handle", None)  # loaded afresh, as at start
    monitor = clock.ClockMonitor(flag_path=tmp_path / "no-such-flag")
    answers = {monitor.synchronized() for _ in range(20)}
    assert spawned == []
    kernel = clock._kernel_synchronized()
    assert answers == {True if kernel is None else kernel}
    (tmp_path / "no-such-flag").touch()
    assert monitor.synchronized() is True


def test_the_kernel_check_reuses_its_buffer(monkeypatch) -> None:
    """Asked every second until the first sync, the check must not build a new ctypes
    buffer (and with it a new array type, garbage for the collector) each time."""
    import ctypes

    from gateway import clock

    made: list[int] = []
    real = ctypes.create_string_buffer

    def counted(size):  # type: ignore[no-untyped-def]
        made.append(size)
        return real(size)

    monkeypatch.setattr(clock, "_timex", None, raising=False)
    monkeypatch.setattr(ctypes, "create_string_buffer", counted)
    answers = {clock._kernel_synchronized() for _ in range(20)}
    assert len(answers) == 1
    assert made == [512]

"""The gateway service: wires drivers -> poller -> store -> uploader, plus health and
control, and runs them on one asyncio loop until told to stop.

Blocking work never runs on the loop: bus reads run on one thread per bus, every store
call on one store thread (SQLite commits wait for the SD card). The loop itself pings
the systemd watchdog, so a hung loop gets the service restarted.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from gateway import power
from gateway.clock import ClockMonitor
from gateway.config import Config
from gateway.hardware import Hardware
from gateway.health import HealthServer, snapshot
from gateway.memory import fix_mmap_threshold
from gateway.poller import Poller, SensorSlot
from gateway.power import THROTTLED_PATH, read_throttled
from gateway.sdnotify import Notifier
from gateway.store import Store
from gateway.telemetry import Telemetry
from gateway.uplink import Uploader

if TYPE_CHECKING:
    from gateway.simulation import World

log = logging.getLogger(__name__)

T = TypeVar("T")
TEST_HOOKS_ENV = "ALATAU_GATEWAY_TEST_HOOKS"
STOP_UPLOAD_GRACE_S = 2.0


class Controller(Protocol):
    """Actuators, rules and cloud commands (gateway.control)."""

    def start(self) -> None: ...
    def on_reading(self, sensor: str, values: dict[str, float], mono: float) -> None: ...
    def on_reply(self, body: dict[str, Any]) -> None: ...
    def extra_fields(self) -> dict[str, Any]: ...
    def tick(self, now_mono: float) -> None: ...
    def stop(self) -> None: ...


def make_controller(config: Config, telemetry: Telemetry, hardware: Hardware
                    ) -> Controller | None:
    if not config.actuators:
        return None
    from gateway.control import Controller as ControlImpl

    controller: Controller = ControlImpl(config, telemetry, hardware.pin_factory())
    return controller


class Gateway:
    GC_INTERVAL_S = 60.0
    """How often housekeeping runs a full garbage collection. Python starts one only once
    the objects that survived two younger collections reach a quarter of all long-lived
    ones (about 10,000 here), so reference cycles (exceptions with their tracebacks, a
    sensor's failed read) waited up to a quarter of an hour, and their memory grew the
    interpreter's arenas for good. After start-up everything that exists is frozen (moved
    out of the collector's sight, gc.freeze), so each collection looks only at what was
    made since: 0.3 ms against 15 ms for all 44,000 objects (x86-64, simulated run)."""

    def __init__(
        self,
        config: Config,
        *,
        simulate: bool = False,
        world: World | None = None,
        slots: list[SensorSlot] | None = None,
        health: bool = True,
        clock: ClockMonitor | None = None,
        notifier: Notifier | None = None,
        throttled_path: Path = THROTTLED_PATH,
    ) -> None:
        self.config = config
        self.simulate = simulate
        self.telemetry = Telemetry()
        self.hardware = Hardware(config, simulate=simulate, world=world)
        self._slots = slots
        self._health_enabled = health
        self.clock = clock or ClockMonitor()
        self.notifier = notifier or Notifier()
        self.throttled_path = throttled_path
        self._store_thread = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="store")
        self.store: Store | None = None
        self.poller: Poller | None = None
        self.uploader: Uploader | None = None
        self.controller: Controller | None = None
        self.health_server: HealthServer | None = None
        self.health_port: int | None = None
        self.ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._background: set[asyncio.Task[Any]] = set()

    async def call_store(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._store_thread, lambda: fn(*args))

    def stop(self) -> None:
        self._stop.set()

    async def health(self) -> dict[str, Any]:
        assert self.store is not None
        stats = await self.call_store(self.store.stats)
        health = snapshot(self.config, self.telemetry, stats)
        # Read but not yet committed: one interval's worth, or, while commits fail (a
        # full disk), what waits in memory for room.
        health["buffer"]["in_memory"] = self.store.pending
        health["buffer"]["commit_failures"] = self.telemetry.commit_failures
        return health

    # --- start ---------------------------------------------------------------------

    async def start(self) -> None:
        storage = self.config.storage
        self.store = await self.call_store(
            lambda: Store(storage.path, max_bytes=storage.max_bytes, overflow=storage.overflow,
                          min_free_bytes=storage.min_free_bytes, max_age_s=storage.max_age))
        slots = self._slots if self._slots is not None else self.hardware.slots()
        self.poller = Poller(slots, self.store.add, self.telemetry, clock=self.clock)
        self.poller.on_clock_synced.append(self._clock_synced)
        self.controller = make_controller(self.config, self.telemetry, self.hardware)
        if self.controller is not None:
            self.controller.start()
            self.poller.listeners.append(self.controller.on_reading)
        self.uploader = Uploader(
            self.config.uplink, self.config.gateway_id, self.store, self.call_store,
            self.telemetry,
            on_reply=self.controller.on_reply if self.controller else None,
            extra_fields=self.controller.extra_fields if self.controller else None)
        if self._health_enabled:
            self.health_server = HealthServer(self.config.health.listen, self.health)
            self.health_port = await self.health_server.start()
        self._tasks = [
            asyncio.create_task(self.poller.run(), name="poller"),
            asyncio.create_task(self._commit_loop(), name="commit"),
            asyncio.create_task(self.uploader.run(), name="uploader"),
            asyncio.create_task(self._housekeeping(), name="housekeeping"),
        ]
        self.ready.set()
        self.notifier.ready(self._status_line())
        log.info("gateway %s running: %d sensors, %d actuators, buffer %s, uplink %s%s",
                 self.config.gateway_id, len(self.config.sensors), len(self.config.actuators),
                 storage.path, self.config.uplink.url, " (simulated hardware)"
                 if self.simulate else "")
        # Start-up objects live as long as the process: not scanned again. After READY=1,
        # so the 15 ms of this first full collection do not delay it.
        gc.collect()
        gc.freeze()

    async def run(self) -> None:
        """Start, run until ``stop()`` (or SIGTERM/SIGINT), then stop cleanly."""
        fix_mmap_threshold()  # large buffers go back to the kernel: see gateway/memory.py
        loop = asyncio.get_running_loop()
        installed = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._on_signal, sig)
                installed.append(sig)
        if os.environ.get(TEST_HOOKS_ENV) == "1":
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signal.SIGUSR2, self._hang)
                installed.append(signal.SIGUSR2)
        try:
            await self.start()
            stop_wait: asyncio.Task[Any] = asyncio.create_task(self._stop.wait())
            waiting: set[asyncio.Task[Any]] = {stop_wait, *self._tasks}
            while not self._stop.is_set() and waiting:
                done, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task is not stop_wait and not task.cancelled() and task.exception():
                        raise task.exception()  # type: ignore[misc]
            stop_wait.cancel()
        finally:
            await self.shutdown()
            for sig in installed:
                loop.remove_signal_handler(sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        log.info("%s received: stopping", sig.name)
        self.stop()

    def _hang(self) -> None:
        """Fault injection for the watchdog test: block the event loop for good."""
        log.warning("SIGUSR2 with %s=1: blocking the event loop", TEST_HOOKS_ENV)
        while True:
            time.sleep(3600)

    # --- loops -----------------------------------------------------------------------

    async def _commit_loop(self) -> None:
        assert self.store is not None
        interval = self.config.storage.commit_interval
        while True:
            await asyncio.sleep(interval)
            await self.commit()

    async def commit(self) -> None:
        assert self.store is not None
        if not self.store.pending:
            return
        try:
            await self.call_store(self.store.commit)
            self.telemetry.commits += 1
        except Exception as exc:  # e.g. disk full: readings stay queued, retried next time
            self.telemetry.commit_failures += 1
            log.error("buffer commit failed (%s); %d readings kept in memory, retrying",
                      exc, self.store.pending)
            return
        if self.uploader is not None and self.store.readings >= \
                self.config.uplink.batch_max_readings:
            self.uploader.wake.set()

    def _clock_synced(self) -> None:
        offset_ms = time.time_ns() // 1_000_000 - time.monotonic_ns() // 1_000_000
        assert self.poller is not None and self.store is not None
        task = asyncio.create_task(self.call_store(self.store.correct_clock,
                                                   self.poller.boot_id, offset_ms))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _housekeeping(self) -> None:
        """Watchdog pings, status line, expiry, control timers, power supply state, garbage
        collection."""
        assert self.store is not None
        interval = self.notifier.watchdog_interval_s or 5.0
        tick = min(interval, 1.0)
        last_status = 0.0
        last_expire = 0.0
        last_gc = time.monotonic()
        while True:
            now = time.monotonic()
            self.notifier.watchdog()
            if now - last_gc >= self.GC_INTERVAL_S:
                last_gc = now
                gc.collect()
            if self.controller is not None:
                self.controller.tick(now)
            self._check_power()
            if now - last_status >= 10.0:
                last_status = now
                self.notifier.status(self._status_line())
            if self.config.storage.max_age is not None and now - last_expire >= 60.0:
                last_expire = now
                try:
                    await self.call_store(self.store.expire, time.time_ns() // 1_000_000)
                except Exception as exc:  # e.g. disk full: retried next round, nothing lost
                    log.error("buffer expiry failed (%s); retrying in 60 s", exc)
            await asyncio.sleep(tick)

    def _check_power(self) -> None:
        """The supply's state (a sysfs read, no disk I/O); each change is logged once."""
        bits = read_throttled(self.throttled_path)
        before, self.telemetry.throttled = self.telemetry.throttled, bits
        if bits != before and bits is not None:
            said = power.warnings(power.decode(bits))
            if said:
                log.warning("power supply: %s (get_throttled 0x%x)", "; ".join(said), bits)
            elif before:
                log.info("power supply: no under-voltage or throttling now (0x%x)", bits)

    def _status_line(self) -> str:
        t = self.telemetry
        ok = sum(1 for s in t.sensors.values() if s.state == "ok")
        buffered = self.store.readings if self.store is not None else 0
        return (f"{ok}/{len(self.config.sensors)} sensors ok, {buffered} buffered, "
                f"uplink {t.uplink.state}")

    # --- stop ------------------------------------------------------------------------

    async def shutdown(self) -> None:
        """Stop reading, commit what was read, stop uploading, go fail-safe, close."""
        self.notifier.stopping()
        if self.poller is not None:
            self.poller.stop()
        if self.uploader is not None:
            self.uploader.stop()
        for task in self._tasks:
            if task.get_name() in ("poller", "commit", "housekeeping"):
                task.cancel()
        upload_tasks = [t for t in self._tasks if t.get_name() == "uploader"]
        if upload_tasks:
            # An upload in flight may finish; a new one does not start.
            _, pending = await asyncio.wait(upload_tasks, timeout=STOP_UPLOAD_GRACE_S)
            for task in pending:
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.store is not None:
            await self.commit()
        if self.controller is not None:
            with contextlib.suppress(Exception):
                self.controller.stop()
        if self.health_server is not None:
            await self.health_server.stop()
        if self.store is not None:
            await self.call_store(self.store.close)
        self.hardware.close()
        self._store_thread.shutdown(wait=True)
        gc.unfreeze()  # in a process that goes on (tests, the demo), collectable again
        log.info("gateway stopped")

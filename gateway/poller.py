"""Reads every sensor on its own schedule and hands the readings to the store.

One worker thread per physical bus (a bus is one I2C adapter or one serial port), so a
slow or hung device delays only its own bus. Each read runs under a timeout; a sensor
that keeps failing is retried with exponential backoff and reported ``failing``.
Schedules are aligned to the interval on the monotonic clock: read *k* of a sensor is
due at ``start + k * interval``, so readings keep their phase and never drift, and a
step of the wall clock changes nothing but the timestamps.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from drivers.errors import DriverError
from gateway.clock import ClockMonitor, boot_id
from gateway.config import SensorConfig
from gateway.store import CLOCK_UNSYNCED, Reading
from gateway.telemetry import Telemetry

log = logging.getLogger(__name__)

BACKOFF_MAX_S = 300.0
CLOCK_CHECK_S = 5.0
RESET_AFTER_FAILURES = 3
STUCK_AFTER_READS = 30
"""Identical raw readings in a row (every quantity equal) before a sensor is flagged stuck."""


class Sensor(Protocol):
    def read(self) -> dict[str, float]: ...


class PowerSwitch(Protocol):
    """A sensor's supply switched by a GPIO pin (gateway.hardware)."""

    def off(self) -> None: ...
    def on(self) -> None: ...


@dataclass
class SensorSlot:
    """One configured sensor: how to make its driver, and where it runs."""

    config: SensorConfig
    factory: Callable[[], Sensor]
    bus_key: str
    driver: Sensor | None = None
    last_values: dict[str, float] | None = None
    same_count: int = 0
    next_attempt_mono: float = 0.0
    listeners: list[Callable[[str, dict[str, float], float], None]] = field(default_factory=list)
    power: PowerSwitch | None = None
    drivers_made: int = 0


class BusWorkers:
    """One single-thread executor per physical bus: the thread is the bus lock."""

    def __init__(self) -> None:
        self._executors: dict[str, concurrent.futures.ThreadPoolExecutor] = {}

    def get(self, bus_key: str) -> concurrent.futures.ThreadPoolExecutor:
        if bus_key not in self._executors:
            self._executors[bus_key] = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=f"bus-{bus_key}")
        return self._executors[bus_key]

    def shutdown(self) -> None:
        for executor in self._executors.values():
            executor.shutdown(wait=False, cancel_futures=True)


class Poller:
    def __init__(
        self,
        slots: list[SensorSlot],
        add_reading: Callable[[Reading], None],
        telemetry: Telemetry,
        *,
        clock: ClockMonitor | None = None,
        wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self.slots = slots
        self.add_reading = add_reading
        self.telemetry = telemetry
        self.clock = clock or ClockMonitor()
        self.wall_ms = wall_ms
        self.workers = BusWorkers()
        self.listeners: list[Callable[[str, dict[str, float], float], None]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._synchronized = self.clock.synchronized()
        self.telemetry.clock_synchronized = self._synchronized
        self._clock_checked = time.monotonic()
        self.boot_id = boot_id()
        self.on_clock_synced: list[Callable[[], None]] = []

    async def run(self) -> None:
        start = time.monotonic()
        for slot in self.slots:
            self.telemetry.sensor(slot.config.name)
        self._tasks = [asyncio.create_task(self._schedule(slot, start), name=slot.config.name)
                       for slot in self.slots]
        try:
            await asyncio.gather(*self._tasks)
        finally:
            for task in self._tasks:
                task.cancel()
            self.workers.shutdown()

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()

    def clock_synchronized(self) -> bool:
        now = time.monotonic()
        if now - self._clock_checked > CLOCK_CHECK_S:
            self._clock_checked = now
            was = self._synchronized
            self._synchronized = self.clock.synchronized()
            self.telemetry.clock_synchronized = self._synchronized
            if self._synchronized and not was:
                log.info("wall clock synchronised: repairing timestamps of this boot's "
                         "readings")
                for callback in self.on_clock_synced:
                    callback()
        return self._synchronized

    async def _schedule(self, slot: SensorSlot, start: float) -> None:
        interval = slot.config.interval
        k = 0
        while True:
            due = start + k * interval
            now = time.monotonic()
            if due > now:
                await asyncio.sleep(due - now)
            now = time.monotonic()
            state = self.telemetry.sensor(slot.config.name)
            state.lateness_s = max(0.0, now - due)
            state.max_lateness_s = max(state.max_lateness_s, state.lateness_s)
            if now >= slot.next_attempt_mono:
                await self.poll_once(slot)
            # Skip slots missed while a read was slow: keep the phase, never burst.
            k = max(k + 1, math.floor((time.monotonic() - start) / interval) + 1)

    async def poll_once(self, slot: SensorSlot) -> dict[str, float] | None:
        """One read of one sensor, with its timeout, error accounting and backoff."""
        name = slot.config.name
        state = self.telemetry.sensor(name)
        loop = asyncio.get_running_loop()
        executor = self.workers.get(slot.bus_key)
        after = slot.config.power_cycle_after
        if slot.power is not None and state.consecutive_errors \
                and state.consecutive_errors % after == 0:
            await self._power_cycle(slot, executor)
        try:
            # asyncio.timeout, not wait_for: in Python 3.11 wait_for swallows a cancel that
            # arrives as the read completes, and stop() then waited forever.
            async with asyncio.timeout(slot.config.timeout):
                values, ts, mono_ms = await loop.run_in_executor(
                    executor, self._read_blocking, slot)
        except (TimeoutError, DriverError, OSError, ValueError) as exc:
            self._failed(slot, exc)
            return None
        except Exception as exc:  # a driver bug must not stop the other sensors
            log.exception("sensor %s: unexpected driver failure", name)
            self._failed(slot, exc)
            return None
        flags: list[str] = []
        clock: tuple[str, int] | None = None
        if not self.clock_synchronized():
            flags.append(CLOCK_UNSYNCED)
            clock = (self.boot_id, mono_ms)
        self._check_stuck(slot, values)
        if state.stuck:
            flags.append("stuck")
        self.add_reading(Reading(name, ts, values, tuple(flags), clock))
        self.telemetry.produced += 1
        mono = time.monotonic()
        state.state = "ok"
        state.last_reading_mono = mono
        state.consecutive_errors = 0
        state.reads += 1
        slot.next_attempt_mono = 0.0
        for listener in self.listeners + slot.listeners:
            listener(name, values, mono)
        return values

    async def _power_cycle(self, slot: SensorSlot,
                           executor: concurrent.futures.ThreadPoolExecutor) -> None:
        """Switch the sensor's supply off and on again, and make a new driver for it: what
        clears a latched-up chip or a hung microcontroller inside a sensor."""
        assert slot.power is not None
        power = slot.power
        state = self.telemetry.sensor(slot.config.name)
        loop = asyncio.get_running_loop()
        log.warning("sensor %s: %d failures in a row: switching its supply off for %g s",
                    slot.config.name, state.consecutive_errors, slot.config.power_off_s)

        def off() -> None:
            self._discard(slot)
            power.off()

        await loop.run_in_executor(executor, off)
        try:
            await asyncio.sleep(slot.config.power_off_s)
        finally:
            await asyncio.shield(loop.run_in_executor(executor, power.on))
        state.power_cycles += 1

    @staticmethod
    def _discard(slot: SensorSlot) -> None:
        """Drop the driver; the next read makes a new one. Not ``close()``d: for a
        particulate sensor that means sleep; what it holds (a serial port) belongs to
        the hardware wiring, which reopens it for the new driver."""
        slot.driver = None

    def _read_blocking(self, slot: SensorSlot) -> tuple[dict[str, float], int, int]:
        state = self.telemetry.sensor(slot.config.name)
        errors = state.consecutive_errors
        if slot.driver is not None and errors and errors % RESET_AFTER_FAILURES == 0:
            # Every third failure in a row: a soft reset, then next time a new driver (it
            # probes and initialises the chip again, reopens a serial port that a
            # re-plugged USB adapter left dead), alternately.
            reset = getattr(slot.driver, "reset", None)
            if callable(reset) and errors // RESET_AFTER_FAILURES % 2 == 1:
                state.resets += 1
                try:
                    reset()
                except Exception:
                    self._discard(slot)
                    raise
            else:
                self._discard(slot)
        if slot.driver is None:
            slot.driver = slot.factory()
            if slot.drivers_made:
                state.reinits += 1
            slot.drivers_made += 1
        values = slot.driver.read()
        ts = self.wall_ms()
        mono_ms = time.monotonic_ns() // 1_000_000
        for key, value in values.items():
            if not isinstance(value, float | int) or not math.isfinite(value):
                raise ValueError(f"driver returned {key}={value!r}, not a finite number")
        return {k: float(v) for k, v in values.items()}, ts, mono_ms

    def _failed(self, slot: SensorSlot, exc: BaseException) -> None:
        name = slot.config.name
        state = self.telemetry.sensor(name)
        state.errors += 1
        state.consecutive_errors += 1
        state.state = "failing"
        message = str(exc) or type(exc).__name__
        if isinstance(exc, TimeoutError) and not str(exc):
            message = f"no answer within {slot.config.timeout:g} s"
        state.last_error = f"{type(exc).__name__}: {message}"
        delay = min(BACKOFF_MAX_S, slot.config.interval * 2 ** min(state.consecutive_errors - 1,
                                                                   16))
        slot.next_attempt_mono = time.monotonic() + (
            0.0 if state.consecutive_errors == 1 else delay)
        level = logging.WARNING if state.consecutive_errors <= 3 else logging.DEBUG
        log.log(level, "sensor %s: %s (failure %d in a row)", name, state.last_error,
                state.consecutive_errors)

    def _check_stuck(self, slot: SensorSlot, values: dict[str, float]) -> None:
        state = self.telemetry.sensor(slot.config.name)
        if values == slot.last_values:
            slot.same_count += 1
        else:
            slot.same_count = 0
        slot.last_values = values
        stuck = slot.same_count >= STUCK_AFTER_READS
        if stuck and not state.stuck:
            log.warning("sensor %s: the same values %d reads in a row: flagged stuck",
                        slot.config.name, slot.same_count)
        state.stuck = stuck


def stale_after(config: SensorConfig, explicit: float | None) -> float:
    return explicit if explicit is not None else max(3 * config.interval, config.interval + 30)


def describe(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)

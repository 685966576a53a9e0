"""Failing sensors over long runs: stopping mid-read, soft resets, power cycling, stuck
values; what health and metrics say about them."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from drivers.fake.i2c import FakeSMBus
from drivers.fake.scd4x import FakeSCD4x
from drivers.scd4x import SCD4x
from gateway import poller as poller_mod
from gateway.config import Config, ConfigError, parse
from gateway.hardware import Hardware
from gateway.poller import Poller, SensorSlot
from gateway.service import Gateway
from gateway.store import Store
from gateway.telemetry import Telemetry

BASE = """
[gateway]
id = "alatau-sensors-0001"
[uplink]
url = "http://127.0.0.1:9/v1/batches"
"""


def config(sensors: str) -> Config:
    return parse(BASE + sensors)


def test_stopping_while_a_read_completes_ends_the_poller() -> None:
    """The service stops (SIGTERM) at the instant a read returns: the poller must end,
    not keep its schedule running with the stop swallowed (shutdown then hung)."""
    cfg = config('[[sensors]]\nname = "fast"\ndriver = "bme280"\ninterval = 0.05\n')

    async def once() -> bool:
        loop = asyncio.get_running_loop()
        poller: Poller | None = None

        class StopsAsItAnswers:
            def read(self) -> dict[str, float]:
                assert poller is not None
                loop.call_soon_threadsafe(poller.stop)
                return {"count": 1.0}

        poller = Poller([SensorSlot(cfg.sensor("fast"), StopsAsItAnswers, "mem")],
                        lambda reading: None, Telemetry())
        task = asyncio.create_task(poller.run())
        done, _ = await asyncio.wait([task], timeout=2)
        return bool(done)

    ended = [asyncio.run(once()) for _ in range(20)]
    assert all(ended), f"the poller kept running after stop() in {ended.count(False)} of 20"


# --- a sensor that disappears and comes back ---------------------------------------


def fast_scd4x() -> tuple[FakeSMBus, FakeSCD4x]:
    fake = FakeSCD4x(period_s=0.1, stop_time_s=0.02, reinit_time_s=0.01, power_up_time_s=0.05)
    return FakeSMBus([fake]), fake


async def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def test_a_chip_that_loses_power_and_comes_back_is_reinitialised() -> None:
    """An SCD4x whose supply dips: it NACKs for a while, then answers again, idle (its
    periodic measurement stopped). Reading on would time out for ever; the poller's
    reset (or a new driver) starts it again, and the sensor goes failing -> ok."""
    cfg = config('[[sensors]]\nname = "street_co2"\ndriver = "scd4x"\ninterval = 0.05\n'
                 "timeout = 1.0\n")
    bus, fake = fast_scd4x()
    telemetry = Telemetry()
    states: list[str] = []

    def make() -> SCD4x:
        return SCD4x(bus, timeout_s=0.3, poll_interval_s=0.01, stop_wait_s=0.02,
                     reinit_wait_s=0.01)

    async def go() -> None:
        poller = Poller([SensorSlot(cfg.sensor("street_co2"), make, "i2c-1-0x62")],
                        lambda reading: None, telemetry)
        task = asyncio.create_task(poller.run())
        state = telemetry.sensor("street_co2")

        async def watch() -> None:
            while True:
                if not states or states[-1] != state.state:
                    states.append(state.state)
                await asyncio.sleep(0.005)

        watcher = asyncio.create_task(watch())
        try:
            await wait_until(lambda: state.reads >= 3, 10, "first readings")
            fake.faults.nack = True
            fake.power_cycle()
            await wait_until(lambda: state.consecutive_errors >= 3, 10, "failures")
            fake.faults.nack = False
            reads = state.reads
            await wait_until(lambda: state.reads >= reads + 3, 20, "readings again")
        finally:
            watcher.cancel()
            poller.stop()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(go())
    state = telemetry.sensor("street_co2")
    assert states[-3:] == ["ok", "failing", "ok"]
    assert state.resets + state.reinits >= 1
    assert "periodic" in fake.commands[-1] or fake.periodic


class Replugged:
    """A USB serial adapter pulled and plugged back: the port the driver holds is dead
    for good (every call fails, reset() too); a port opened afterwards works."""

    def __init__(self) -> None:
        self.plugged_at = 0
        self.generation = 0
        self.made = 0

    def make(self) -> Any:
        self.made += 1
        port_generation = self.generation
        adapter = self

        class Driver:
            def read(self) -> dict[str, float]:
                if port_generation < adapter.plugged_at:
                    raise OSError(5, "Input/output error")
                return {"count": float(adapter.made)}

            def reset(self) -> None:
                if port_generation < adapter.plugged_at:
                    raise OSError(5, "Input/output error")

        return Driver()

    def pull_and_replug(self) -> None:
        self.generation += 1
        self.plugged_at = self.generation


def test_a_driver_whose_reset_cannot_help_is_made_anew() -> None:
    cfg = config('[[sensors]]\nname = "street_pm"\ndriver = "pms5003"\nport = "/dev/ttyUSB0"\n'
                 "interval = 0.05\n")
    adapter = Replugged()
    telemetry = Telemetry()

    async def go() -> None:
        poller = Poller([SensorSlot(cfg.sensor("street_pm"), adapter.make, "tty-usb0")],
                        lambda reading: None, telemetry)
        task = asyncio.create_task(poller.run())
        state = telemetry.sensor("street_pm")
        try:
            await wait_until(lambda: state.reads >= 2, 5, "first readings")
            adapter.pull_and_replug()
            await wait_until(lambda: state.consecutive_errors >= 1, 5, "the failure")
            reads = state.reads
            await wait_until(lambda: state.reads > reads and state.state == "ok", 20,
                             "readings from a new driver")
        finally:
            poller.stop()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(go())
    assert telemetry.sensor("street_pm").reinits >= 1
    assert adapter.made >= 2


# --- power cycling through a GPIO-switched supply ------------------------------------


POWERED = """
[[sensors]]
name = "cabinet_air"
driver = "bme280"
bus = 1
address = 0x76
interval = 0.05
timeout = 1.0
power_pin = 22
power_cycle_after = 4
power_off = 0.2
"""


def test_a_latched_up_sensor_is_power_cycled_through_its_supply_pin() -> None:
    """The chip NACKs until its supply is cut (a latch-up): soft resets and new drivers
    do not help; after ``power_cycle_after`` failures the pin goes low for ``power_off``
    seconds, then high, and the sensor reads again."""
    cfg = config(POWERED)
    hardware = Hardware(cfg, simulate=True)
    telemetry = Telemetry()

    async def go() -> None:
        poller = Poller(hardware.slots(), lambda reading: None, telemetry)
        task = asyncio.create_task(poller.run())
        state = telemetry.sensor("cabinet_air")
        try:
            await wait_until(lambda: state.reads >= 3, 10, "first readings")
            hardware.fakes["cabinet_air"].faults.nack = True  # latched: only power clears it
            await wait_until(lambda: state.consecutive_errors >= 3, 10, "failures")
            reads = state.reads
            await wait_until(lambda: state.reads > reads + 2, 20, "readings after the cycle")
        finally:
            poller.stop()
            await asyncio.gather(task, return_exceptions=True)

    try:
        asyncio.run(go())
        pin = hardware.pin_factory().pin(22)
        levels = [s.state for s in pin.states]
        assert levels[-3:] == [True, False, True], levels  # on from the start, low, high
        assert pin.states[-1].timestamp >= 0.2  # mock pins time each level from the last
    finally:
        hardware.close()
    state = telemetry.sensor("cabinet_air")
    assert state.power_cycles == 1 and state.state == "ok"


def test_power_keys_are_checked() -> None:
    with pytest.raises(ConfigError) as err:
        config('[[sensors]]\nname = "a"\ndriver = "bme280"\ninterval = 1.0\n'
               "power_off = 2.0\npower_cycle_after = 0\n"
               '[[actuators]]\nname = "fan"\ndriver = "relay"\npin = 22\nfail_safe = 0\n'
               '[[sensors]]\nname = "b"\ndriver = "sht31"\ninterval = 1.0\npower_pin = 22\n')
    text = str(err.value)
    assert "sensors[0].power_off: needs power_pin" in text
    assert "sensors[0].power_cycle_after: must be between 1 and 100000" in text
    assert "sensors[1].power_pin: GPIO 22 is already used by actuator 'fan'" in text
    ok = config(POWERED).sensor("cabinet_air")
    assert (ok.power_pin, ok.power_cycle_after, ok.power_off_s) == (22, 4, 0.2)


# --- a stuck sensor -------------------------------------------------------------------


STUCK_CONFIG = """
[gateway]
id = "alatau-sensors-0001"
[storage]
path = "{path}"
commit_interval = 0.05
min_free_bytes = 0
[uplink]
url = "http://127.0.0.1:9/v1/batches"
flush_interval = 3600
[health]
listen = "127.0.0.1:0"
[[sensors]]
name = "cabinet_air"
driver = "bme280"
interval = 0.05
"""


def test_a_stuck_sensor_is_flagged_in_its_readings_health_and_metrics(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(poller_mod, "STUCK_AFTER_READS", 15)
    monkeypatch.setenv("ALATAU_GATEWAY_CLOCK", "synced")  # only the stuck flag, if any
    cfg = parse(STUCK_CONFIG.format(path=tmp_path / "buffer.db"))
    seen: dict[str, Any] = {}

    async def go() -> None:
        gateway = Gateway(cfg, simulate=True)
        runner = asyncio.create_task(gateway.run())
        await gateway.ready.wait()
        assert gateway.poller is not None
        state = gateway.telemetry.sensor("cabinet_air")
        step = {"n": 0}

        def weather(name: str, values: dict[str, float], mono: float) -> None:
            step["n"] += 1  # the air keeps changing, a little, between reads
            gateway.hardware.fakes[name].set(temperature_celsius=20.0 + step["n"] % 50 / 10)

        gateway.poller.listeners.append(weather)
        base = f"http://127.0.0.1:{gateway.health_port}"
        try:
            await wait_until(lambda: state.reads >= 20, 10, "readings")
            assert not state.stuck
            gateway.hardware.fakes["cabinet_air"].faults.stuck = True
            await wait_until(lambda: state.stuck, 10, "the stuck flag")
            seen["healthz"] = json.loads(await fetch(base + "/healthz"))
            seen["metrics"] = await fetch(base + "/metrics")
            gateway.hardware.fakes["cabinet_air"].faults.stuck = False
            reads = state.reads
            await wait_until(lambda: state.reads > reads + 3 and not state.stuck, 10,
                             "the flag to clear")
        finally:
            gateway.stop()
            await runner

    asyncio.run(go())
    assert seen["healthz"]["sensors"]["cabinet_air"]["stuck"] is True
    assert 'alatau_sensor_stuck{sensor="cabinet_air"} 1' in seen["metrics"]
    store = Store(tmp_path / "buffer.db")
    try:
        flags = [tuple(json.loads(line)["flags"]) for _, line in store.iter_lines()]
    finally:
        store.close()
    first = flags.index(("stuck",))
    assert first >= 15 and set(flags[:first]) == {()}
    last = len(flags) - 1 - flags[::-1].index(("stuck",))
    assert flags[first:last + 1] == [("stuck",)] * (last + 1 - first)
    assert flags[-1] == ()


async def fetch(url: str) -> str:
    def get() -> str:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.read().decode()
    return await asyncio.get_running_loop().run_in_executor(None, get)

"""Failing sensors over long runs: stopping mid-read, soft resets, power cycling, stuck
values; what health and metrics say about them."""

from __future__ import annotations

import asyncio

from gateway.config import Config, parse
from gateway.poller import Poller, SensorSlot
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

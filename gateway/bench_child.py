"""The gateway process of ``scripts/bench``'s steady-state figures.

A module of its own so that the measured process imports what the service imports and
nothing of the bench's own (statistics, decimal, argparse...): its memory is the figure.

    python -m gateway.bench_child CONFIG MODE RATE
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sys
import time


class SyntheticSensor:
    """A sensor that answers at once with slowly changing values (no bus, no waits)."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.reads = 0

    def read(self) -> dict[str, float]:
        self.reads += 1
        step = (self.reads + self.index * 7) % 400
        return {"temperature_celsius": round(18.0 + step * 0.01, 2),
                "relative_humidity_percent": round(45.0 - step * 0.004, 3),
                "pressure_pascals": round(101_300.0 + step * 0.1, 1)}


def steady_child(config_path: str, mode: str, rate: float) -> int:
    """The gateway process of the steady-state figures: the real service (store, commit
    loop, uploader, health endpoint, housekeeping). ``source``: a synthetic source adds
    ``rate`` readings/s straight into the store, ten times a second; ``poller``: the
    configured sensors are polled as usual, their drivers synthetic."""
    from gateway.config import load
    from gateway.poller import SensorSlot
    from gateway.service import Gateway
    from gateway.store import Reading

    config = load(config_path)
    slots = [SensorSlot(config=sensor, factory=functools.partial(SyntheticSensor, i),
                        bus_key="bench")
             for i, sensor in enumerate(config.sensors)] if mode == "poller" else []
    gateway = Gateway(config, slots=slots)

    async def feed() -> None:
        await gateway.ready.wait()
        assert gateway.store is not None
        add = gateway.store.add
        sources = [(sensor.name, SyntheticSensor(i)) for i, sensor in enumerate(config.sensors)]
        due = time.monotonic()
        owed = 0.0
        k = 0
        while True:
            due += 0.1
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            owed += rate * 0.1
            now_ms = time.time_ns() // 1_000_000
            while owed >= 1.0:
                name, sensor = sources[k % len(sources)]
                add(Reading(name, now_ms, sensor.read()))
                gateway.telemetry.produced += 1
                k += 1
                owed -= 1.0

    async def main() -> None:
        tasks = [asyncio.create_task(gateway.run())]
        if mode == "source":
            tasks.append(asyncio.create_task(feed()))
        await tasks[0]
        for task in tasks[1:]:
            task.cancel()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    return 0



if __name__ == "__main__":
    sys.exit(steady_child(sys.argv[1], sys.argv[2], float(sys.argv[3])))

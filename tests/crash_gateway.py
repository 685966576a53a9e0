"""A gateway process for the crash tests: the real service, store and uploader, with
in-memory sensors that count instead of hardware drivers.

    python -m tests.crash_gateway CONFIG RUN [SENSORS]

Every reading carries ``run`` (which start of the process took it), ``counter`` (its
number within that run and sensor) and ``token`` (unique over all runs and sensors), so
the cloud's copy of any seq can be traced to exactly one reading. Prints ``ready`` once
the gateway runs, and ``stopped produced=N`` after a clean stop. ``SENSORS`` 0 runs the
uploader alone, to drain the buffer.
"""

from __future__ import annotations

import asyncio
import sys

from gateway.config import load
from gateway.poller import SensorSlot
from gateway.service import Gateway

TOKEN_RUN = 10_000_000
TOKEN_SENSOR = 1_000_000


class CountingSensor:
    def __init__(self, run: int, index: int) -> None:
        self.run = run
        self.index = index
        self.n = 0

    def read(self) -> dict[str, float]:
        self.n += 1
        return {"run": float(self.run), "counter": float(self.n),
                "token": float(self.run * TOKEN_RUN + self.index * TOKEN_SENSOR + self.n)}


def make_factory(run: int, index: int) -> CountingSensor:
    return CountingSensor(run, index)


async def main(config_path: str, run: int, sensors: int) -> None:
    config = load(config_path)
    slots = [SensorSlot(sensor, lambda i=i: make_factory(run, i), f"mem-{i}")
             for i, sensor in enumerate(config.sensors[:sensors])]
    gateway = Gateway(config, slots=slots, health=False)
    runner = asyncio.create_task(gateway.run())
    ready = asyncio.create_task(gateway.ready.wait())
    await asyncio.wait([runner, ready], return_when=asyncio.FIRST_COMPLETED)
    if ready.done():
        print("ready", flush=True)
    await runner
    print(f"stopped produced={gateway.telemetry.produced}", flush=True)


if __name__ == "__main__":
    sensor_count = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sensor_count))

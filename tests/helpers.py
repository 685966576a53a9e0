"""Shared test helpers: a store + uploader + reference cloud wired on loopback."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from gateway.cloud import CloudServer
from gateway.config import Config, UplinkConfig, parse
from gateway.store import Reading, Store
from gateway.telemetry import Telemetry
from gateway.uplink import Uploader

GATEWAY = "alatau-test-0001"

ONE_SENSOR = """
[gateway]
id = "{gateway_id}"
[storage]
path = "{path}"
commit_interval = 0.1
min_free_bytes = 0
[uplink]
url = "{url}"
flush_interval = 0.2
[health]
listen = "127.0.0.1:0"
[[sensors]]
name = "cabinet_air"
driver = "bme280"
interval = 0.1
"""


def one_sensor_config(buffer: Path, url: str = "http://127.0.0.1:9/v1/batches",
                      gateway_id: str = GATEWAY) -> Config:
    """A gateway with one emulated BME280 read ten times a second, health on a free port,
    the buffer at ``buffer``; the default uplink is a closed port."""
    return parse(ONE_SENSOR.format(gateway_id=gateway_id, path=buffer, url=url))


def fill(store: Store, count: int, sensor: str = "cabinet_air", ts0: int = 1764337000000
         ) -> range:
    for i in range(count):
        store.add(Reading(sensor, ts0 + i * 1000, {"temperature_celsius": 20.0 + i % 50 / 10}))
    return store.commit()


async def direct(fn: Any, *args: Any) -> Any:
    return fn(*args)


@asynccontextmanager
async def uplink(tmp_path: Path, store: Store, **overrides: Any
                 ) -> AsyncIterator[tuple[Uploader, CloudServer]]:
    cloud = CloudServer(tmp_path / "cloud.db", token=overrides.pop("token", None))
    await cloud.start()
    config = UplinkConfig(url=cloud.url(), flush_interval=0.05, timeout=5.0,
                          backoff_initial=0.01, backoff_max=0.05)
    config = dataclasses.replace(config, **overrides)
    uploader = Uploader(config, GATEWAY, store, direct, Telemetry())
    try:
        yield uploader, cloud
    finally:
        uploader.stop()
        await cloud.stop()


async def run_until(uploader: Uploader, condition: Any, timeout: float = 10.0) -> None:
    task = asyncio.create_task(uploader.run())
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while not condition():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("condition not reached in time")
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
    finally:
        uploader.stop()
        await asyncio.wait_for(task, 5)

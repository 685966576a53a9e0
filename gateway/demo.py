"""``alatau-gateway demo``: the whole system on a laptop, with nothing to set up.

A built-in gateway config with emulated chips on a fake I2C bus and fake serial devices
on pseudo-terminals, the reference cloud on a free loopback port, and a live view. An
outage window takes the cloud down; the backlog drains when it returns. The summary
checks the promise: every reading produced is delivered once or reported dropped.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

from gateway.cloud import CloudServer
from gateway.config import Config, parse
from gateway.service import Gateway
from gateway.simulation import World

DEMO_GATEWAY = "alatau-demo-0001"
DRAIN_TIMEOUT_S = 60.0
DUSK_HOUR = 16.0
"""The simulated day starts two hours before dusk: the street light goes on soon after the
start and off again at dawn, within a 30 s demo at the default 40 s day."""


def parse_outage(text: str) -> tuple[float, float]:
    start_text, sep, end_text = text.partition(":")
    if not sep:
        raise ValueError("expected START:END in seconds, e.g. 5:15")
    try:
        start, end = float(start_text), float(end_text)
    except ValueError:
        raise ValueError("START and END must be numbers of seconds") from None
    if start < 0 or end <= start:
        raise ValueError("need 0 <= START < END")
    return start, end


def demo_config_text(state_dir: Path, url: str) -> str:
    control = ""
    try:
        import gateway.control  # noqa: F401
    except ImportError:
        pass
    else:
        control = """
[[actuators]]
name = "street_light"
driver = "relay"
pin = 17
fail_safe = 1          # lights on if anything goes wrong

[[rules]]
name = "lights_at_dusk"
sensor = "street_light_level"
quantity = "illuminance_lux"
actuator = "street_light"
on_below = 20.0
off_above = 40.0
for = 2.0
min_on = 3.0
min_off = 3.0
"""
    return f"""
[gateway]
id = "{DEMO_GATEWAY}"

[storage]
path = "{state_dir / 'buffer.db'}"
max_bytes = 67108864
commit_interval = 0.5
min_free_bytes = 0

[uplink]
url = "{url}"
flush_interval = 2.0
compression = "gzip"
timeout = 5.0
backoff_initial = 0.2
backoff_max = 2.0

[health]
listen = "127.0.0.1:0"

[[sensors]]
name = "cabinet_air"
driver = "bme280"
bus = 1
address = 0x76
interval = 1.0

[[sensors]]
name = "street_light_level"
driver = "bh1750"
bus = 1
address = 0x23
interval = 1.0

[[sensors]]
name = "street_co2"
driver = "scd4x"
bus = 1
address = 0x62
interval = 5.0
timeout = 8.0

[[sensors]]
name = "street_pm"
driver = "pms5003"
port = "/dev/serial0"
baudrate = 9600
interval = 2.0

[[sensors]]
name = "cabinet_energy"
driver = "sdm120"
port = "/dev/ttyUSB0"
baudrate = 2400
unit = 1
interval = 2.0
{control}"""


def demo_config(state_dir: Path, url: str) -> Config:
    return parse(demo_config_text(state_dir, url), "<demo>")


class LiveView:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self._last_print = 0.0
        self._last_produced = 0
        self._last_t = 0.0
        self._light: float | None = None

    def update(self, t: float, gateway: Gateway, cloud_down: bool, final: bool = False) -> None:
        telemetry = gateway.telemetry
        rate = (telemetry.produced - self._last_produced) / max(t - self._last_t, 1e-6)
        if t - self._last_t >= 1.0:
            self._last_produced, self._last_t = telemetry.produced, t
        store = gateway.store
        depth = store.readings if store is not None else 0
        ok = sum(1 for s in telemetry.sensors.values() if s.state == "ok")
        light = telemetry.actuators.get("street_light")
        light_text = ""
        if light is not None:
            on = "ON " if light.value else "off"
            light_text = f" | street light {on} ({light.source})"
            if self._light is not None and light.value != self._light:
                lux = telemetry.sensors.get("street_light_level")
                world = gateway.hardware.world
                hour = f" at simulated {world.hour():05.2f} h" if world is not None else ""
                event = (f"t={t:5.1f}s   street light switched {on.strip()} by its "
                         f"{light.source}{hour}")
                if lux is not None and lux.state != "ok":
                    event += f" (light sensor {lux.state})"
                self.out.write(("\r\x1b[2K" if self.tty else "") + event + "\n")
            self._light = light.value
        error = telemetry.uplink.last_error if telemetry.uplink.state != "ok" else None
        line = (f"t={t:5.1f}s | {telemetry.produced:5d} readings ({rate:4.1f}/s) | "
                f"sensors {ok}/{len(telemetry.sensors)} ok | buffer {depth:4d} | "
                f"cloud {'DOWN' if cloud_down else 'up  '} | uplink {telemetry.uplink.state}"
                f"{light_text}" + (f" | last error: {error[:50]}" if error else ""))
        if self.tty:
            self.out.write("\r\x1b[2K" + line)
            if final:
                self.out.write("\n")
            self.out.flush()
        elif final or t - self._last_print >= 5.0:
            self._last_print = t
            print(line, file=self.out, flush=True)


async def _demo(duration: float, outage: tuple[float, float] | None, live: bool,
                day_length_s: float, state_dir: Path) -> dict[str, Any]:
    cloud = CloudServer(state_dir / "cloud.db")
    await cloud.start()
    config = demo_config(state_dir, cloud.url())
    world = World(day_length_s=day_length_s, start_hour=DUSK_HOUR)
    gateway = Gateway(config, simulate=True, world=world)
    view = LiveView(sys.stdout) if live else None
    if view:
        print(f"demo gateway {DEMO_GATEWAY}: {len(config.sensors)} emulated sensors, "
              f"reference cloud at {cloud.url()}", flush=True)
        if outage:
            print(f"the cloud goes down from t={outage[0]:g}s to t={outage[1]:g}s", flush=True)
    runner = asyncio.create_task(gateway.run())
    ready = asyncio.create_task(gateway.ready.wait())
    await asyncio.wait([runner, ready], return_when=asyncio.FIRST_COMPLETED)
    if runner.done():
        runner.result()
    started = time.monotonic()
    outages = 0
    try:
        while (t := time.monotonic() - started) < duration:
            down = outage is not None and outage[0] <= t < outage[1]
            if down and not cloud.faults.down:
                outages += 1
            cloud.faults.down = down
            if view:
                view.update(t, gateway, down)
            await asyncio.sleep(0.25)
            if runner.done():
                runner.result()
                # SIGINT/SIGTERM stopped the gateway (its shutdown committed what was
                # read): the demo ends here too, instead of running on without it.
                await cloud.stop()
                raise KeyboardInterrupt
        # Stop taking readings, commit them, and let the backlog drain.
        cloud.faults.down = False
        assert gateway.poller is not None and gateway.uploader is not None
        assert gateway.store is not None
        gateway.poller.stop()
        await gateway.commit()
        gateway.uploader.wake.set()
        drain_started = time.monotonic()
        while time.monotonic() - drain_started < DRAIN_TIMEOUT_S:
            stats = await gateway.call_store(gateway.store.stats)
            if stats.readings == 0 and stats.pending_drops == 0:
                break
            gateway.uploader.wake.set()
            if view:
                view.update(time.monotonic() - started, gateway, False)
            await asyncio.sleep(0.2)
        if view:
            view.update(time.monotonic() - started, gateway, False, final=True)
        produced = gateway.store.next_seq - 1
        telemetry = gateway.telemetry
    finally:
        gateway.stop()
        await runner
    cloud_stats = cloud.store.stats(DEMO_GATEWAY)
    await cloud.stop()
    delivered = int(cloud_stats["readings"])
    dropped = int(cloud_stats["dropped"])
    summary = {
        "gateway": DEMO_GATEWAY,
        "duration_s": duration,
        "outage": list(outage) if outage else None,
        "outages": outages,
        "produced": produced,
        "delivered": delivered,
        "duplicates_received": int(cloud_stats["duplicates"]),
        "dropped": dropped,
        "lost": produced - delivered - dropped,
        "batches": int(cloud_stats["batches"]),
        "sensor_errors": {n: s.errors for n, s in telemetry.sensors.items()},
        "uplink_failures": dict(telemetry.uplink.failures),
        "actuators": {n: {"state": a.value, "source": a.source}
                      for n, a in telemetry.actuators.items()},
    }
    if view:
        print(f"produced {produced}, delivered {delivered}, dropped {dropped}, "
              f"duplicates received {summary['duplicates_received']}, "
              f"lost {summary['lost']}", flush=True)
    return summary


def run_demo(duration: float, outage: tuple[float, float] | None = None, live: bool = True,
             day_length_s: float = 40.0) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="alatau-demo-") as tmp:
        return asyncio.run(_demo(duration, outage, live, day_length_s, Path(tmp)))

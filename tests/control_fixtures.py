"""Shared set-up for the control tests: a config with a street light under a rule, a fan
and a dimmer under cloud commands only, a signing key, injected clocks, MockFactory pins."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drivers.fake.gpio import mock_factory
from gateway.config import Config, parse
from gateway.control import Controller
from gateway.control.signing import canonical_bytes, public_key_text, sign
from gateway.telemetry import Telemetry

GATEWAY = "alatau-test-0001"
LIGHT_PIN, FAN_PIN, DIMMER_PIN = 17, 22, 18
WALL0_MS = 1_764_337_000_000
"""A wall-clock 'now' for the tests (2025-11-28)."""
SIGNING_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))


def config_text(state_dir: Path, *, control: str | None = None, url: str | None = None,
                rule: str = "") -> str:
    if control is None:
        control = f'public_key = "{public_key_text(SIGNING_KEY.public_key())}"\n' \
                  "command_hold = 600.0\nunreachable_fail_safe_after = 900.0\n"
    return f"""
[gateway]
id = "{GATEWAY}"

[storage]
path = "{state_dir / 'buffer.db'}"
min_free_bytes = 0

[uplink]
url = "{url or 'http://127.0.0.1:9/v1/batches'}"
flush_interval = 0.05
backoff_initial = 0.01
backoff_max = 0.1

[health]
listen = "127.0.0.1:0"

[[sensors]]
name = "street_light_level"
driver = "bh1750"
interval = 10.0

[[actuators]]
name = "street_light"
driver = "relay"
pin = {LIGHT_PIN}
fail_safe = 1

[[actuators]]
name = "fan"
driver = "relay"
pin = {FAN_PIN}
fail_safe = 0

[[actuators]]
name = "lamp_dimmer"
driver = "dimmer"
pin = {DIMMER_PIN}
fail_safe = 0
min = 0.2
max = 0.9

[[rules]]
name = "lights_at_dusk"
sensor = "street_light_level"
quantity = "illuminance_lux"
actuator = "street_light"
on_below = 20.0
off_above = 40.0
for = 60.0
min_on = 300.0
min_off = 300.0
{rule}
[control]
{control}
"""


def make_config(state_dir: Path, **kwargs: Any) -> Config:
    return parse(config_text(state_dir, **kwargs), "<test>")


@dataclass
class Clock:
    mono: float = 1000.0
    wall: int = WALL0_MS

    def monotonic(self) -> float:
        return self.mono

    def wall_ms(self) -> int:
        return self.wall

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += round(seconds * 1000)


@dataclass
class Rig:
    config: Config
    controller: Controller
    telemetry: Telemetry
    factory: Any
    clock: Clock
    sent: list[dict[str, Any]] = field(default_factory=list)

    def pin(self, number: int) -> float:
        return float(self.factory.pin(number).state)

    def history(self, number: int) -> list[float]:
        return [float(s.state) for s in self.factory.pin(number).states]

    def reply(self, *commands: Any) -> list[dict[str, Any]]:
        """As the uploader does: encode a batch, then hand over its reply carrying
        ``commands``. Returns the results that reply produced."""
        self.controller.extra_fields()
        self.controller.on_reply({"stored": 1, "commands": list(commands)})
        return self.results()

    def results(self) -> list[dict[str, Any]]:
        """What the next batch would carry (without acknowledging anything)."""
        fields = self.controller.extra_fields()
        return list(fields.get("command_results", []))

    def light_reading(self, lux: float) -> None:
        self.telemetry.sensor("street_light_level").state = "ok"
        self.controller.on_reading("street_light_level", {"illuminance_lux": lux},
                                   self.clock.mono)

    def tick(self, seconds: float = 0.0) -> None:
        self.clock.advance(seconds)
        self.controller.tick(self.clock.mono)


def make_rig(state_dir: Path, *, clock: Clock | None = None, factory: Any = None,
             **kwargs: Any) -> Rig:
    config = make_config(state_dir, **kwargs)
    telemetry = Telemetry()
    clock = clock or Clock()
    factory = factory or mock_factory()
    controller = Controller(config, telemetry, factory, monotonic=clock.monotonic,
                            wall_ms=clock.wall_ms, serve_manual=False)
    controller.start()
    return Rig(config, controller, telemetry, factory, clock)


def signed(command_id: str, actuator: str, value: float, not_after: int = WALL0_MS + 60_000,
           *, key: Ed25519PrivateKey = SIGNING_KEY, gateway: str = GATEWAY) -> dict[str, Any]:
    message = canonical_bytes(gateway, command_id, actuator, value, not_after)
    return {"id": command_id, "actuator": actuator, "value": value, "not_after": not_after,
            "signature": sign(key, message)}


def forged_signature() -> str:
    return base64.b64encode(bytes(64)).decode()

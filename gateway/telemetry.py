"""Counters and states every stage reports into; the health endpoint reads them.

Stages only write here; nothing here imports a stage, so the one-way data flow holds.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field


@dataclass
class SensorState:
    state: str = "starting"
    """``ok``, ``failing`` or ``stale`` (``starting`` until the first attempt)."""
    last_reading_mono: float | None = None
    errors: int = 0
    consecutive_errors: int = 0
    last_error: str | None = None
    reads: int = 0
    lateness_s: float = 0.0
    max_lateness_s: float = 0.0
    resets: int = 0
    """Soft resets (the driver's ``reset()``) after failures in a row."""
    reinits: int = 0
    """Drivers made anew after failures in a row (the chip probed and set up again)."""
    power_cycles: int = 0
    """Supply switched off and on (``power_pin``) after failures in a row."""
    stuck: bool = False


@dataclass
class UplinkState:
    state: str = "idle"
    last_success_mono: float | None = None
    last_attempt_mono: float | None = None
    last_error: str | None = None
    uploads: int = 0
    readings_sent: int = 0
    bytes_sent: int = 0
    failures: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    retry_at_mono: float | None = None


@dataclass
class ActuatorState:
    value: float | None = None
    source: str = "fail_safe"
    changed_mono: float | None = None
    last_command: str | None = None


@dataclass
class Telemetry:
    started_mono: float = field(default_factory=time.monotonic)
    sensors: dict[str, SensorState] = field(default_factory=dict)
    uplink: UplinkState = field(default_factory=UplinkState)
    actuators: dict[str, ActuatorState] = field(default_factory=dict)
    produced: int = 0
    clock_synchronized: bool = True
    throttled: int | None = None
    commits: int = 0
    commit_failures: int = 0

    def sensor(self, name: str) -> SensorState:
        return self.sensors.setdefault(name, SensorState())

    def actuator(self, name: str) -> ActuatorState:
        return self.actuators.setdefault(name, ActuatorState())

"""One configured actuator: its driver on a GPIO pin, its bounds and its current value.

The driver class comes from the registry by name; the pin factory is injected (gpiozero's
``MockFactory`` in simulation and tests, None for gpiozero's default on a device).
"""

from __future__ import annotations

import logging
from typing import Any

from drivers import registry
from gateway.config import ActuatorConfig

log = logging.getLogger(__name__)


class ActuatorFault(Exception):
    """The actuator's driver failed to open or to change the output."""


def open_driver(config: ActuatorConfig, pin_factory: Any, initial: float) -> Any:
    try:
        cls = registry.get(config.driver).load()
        if config.driver == "relay":
            return cls(config.pin, active_high=config.active_high, pin_factory=pin_factory,
                       initial=bool(initial))
        return cls(config.pin, frequency=int(config.frequency), pin_factory=pin_factory,
                   initial=initial)
    except Exception as exc:  # gpiozero raises its own tree (pin in use, no factory)
        raise ActuatorFault(f"actuator {config.name} ({config.driver} on GPIO {config.pin}): "
                            f"{type(exc).__name__}: {exc}") from None


class Output:
    def __init__(self, config: ActuatorConfig, driver: Any, value: float, now: float) -> None:
        self.config = config
        self.driver = driver
        self.value = value
        self.changed_mono = now
        self.fault: str | None = None
        """The last failure to drive it, until a drive succeeds."""

    @property
    def name(self) -> str:
        return self.config.name

    def set(self, value: float, now: float) -> bool:
        """Drive the output; True if it changed."""
        if value == self.value:
            return False
        try:
            self.driver.set(value)
        except Exception as exc:  # the pin is gone or refuses: callers report it
            raise ActuatorFault(f"actuator {self.name}: cannot set {value:g}: "
                                f"{type(exc).__name__}: {exc}") from None
        self.value = value
        self.changed_mono = now
        return True

    def close(self) -> None:
        try:
            self.driver.close()
        except Exception as exc:  # closing at shutdown must not stop the other outputs
            log.warning("actuator %s: close failed: %s", self.name, exc)

"""GPIO actuators on gpiozero: street-light contactors (relays) and PWM dimmers.

Both take a BCM pin number and an optional gpiozero pin factory (``MockFactory`` in tests
and ``--simulate``); neither touches a pin at import. The output is driven to ``initial``
from the first instant the pin is claimed, so a fail-safe state never has a gap.
"""

from __future__ import annotations

import math
from typing import Any

from drivers.errors import ConfigurationError, DriverError


class ActuatorError(DriverError, ValueError):
    """A value the actuator cannot take (not 0/1 for a relay, outside 0..1 for a dimmer)."""


def _relay_state(value: float | bool) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    raise ActuatorError(f"a relay is on (1) or off (0), not {value!r}")


def _duty(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ActuatorError(f"a dimmer takes a duty cycle from 0.0 to 1.0, not {value!r}")
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ActuatorError(f"a dimmer takes a duty cycle from 0.0 to 1.0, not {value!r}")
    return float(value)


class Relay:
    """A contactor or relay on one GPIO, via ``gpiozero.DigitalOutputDevice``.

    ``active_high=False`` is for the common relay boards whose input is active low: the
    logical state (on/off) stays the same, the electrical level is inverted.
    """

    def __init__(self, pin: int, *, active_high: bool = True, pin_factory: Any = None,
                 initial: bool = False) -> None:
        from gpiozero import DigitalOutputDevice

        self.pin = pin
        self._device = DigitalOutputDevice(pin, active_high=active_high,
                                           initial_value=_relay_state(initial),
                                           pin_factory=pin_factory)

    def set(self, value: float | bool) -> None:
        if _relay_state(value):
            self._device.on()
        else:
            self._device.off()

    @property
    def value(self) -> float:
        return float(bool(self._device.value))

    def close(self) -> None:
        self._device.close()

    def __repr__(self) -> str:
        return f"<Relay GPIO{self.pin} {'on' if self.value else 'off'}>"


class Dimmer:
    """A PWM output (LED driver dimming input, fan) via ``gpiozero.PWMOutputDevice``."""

    def __init__(self, pin: int, *, frequency: int = 1000, pin_factory: Any = None,
                 initial: float = 0.0) -> None:
        from gpiozero import PWMOutputDevice

        if isinstance(frequency, bool) or not isinstance(frequency, int | float) \
                or not 0 < frequency <= 100_000:
            raise ConfigurationError(f"dimmer frequency must be 1..100000 Hz, not {frequency!r}")
        self.pin = pin
        self._device = PWMOutputDevice(pin, frequency=int(frequency),
                                       initial_value=_duty(initial), pin_factory=pin_factory)

    def set(self, duty: float) -> None:
        self._device.value = _duty(duty)

    @property
    def value(self) -> float:
        return float(self._device.value)

    @property
    def frequency(self) -> float:
        return float(self._device.frequency)

    def close(self) -> None:
        self._device.close()

    def __repr__(self) -> str:
        return f"<Dimmer GPIO{self.pin} duty {self.value:.3f}>"

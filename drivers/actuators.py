"""GPIO actuators on gpiozero: street-light contactors (relays) and PWM dimmers.

Both take a BCM pin number and an optional gpiozero pin factory (``MockFactory`` in tests
and ``--simulate``); neither touches a pin at import. The pin is claimed as an output
already at ``initial`` (gpiozero's ``output_with_state``), so the fail-safe state holds
from the first instant with no glitch through the other level. gpiozero's own errors
come out as ``drivers.errors`` types naming the pin.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

from drivers.errors import BusError, ConfigurationError, DriverError

T = TypeVar("T")

MAX_PWM_FREQUENCY_HZ = 100_000
"""Far above what a software-timed GPIO or an LED driver's dim input can follow; a guard
against typos (10e5), not a hardware limit."""


class ActuatorError(DriverError, ValueError):
    """A value the actuator cannot take (not 0/1 for a relay, outside 0..1 for a dimmer)."""


def relay_state(value: object) -> bool:
    """0/1 (or False/True) as a relay state; anything else raises ``ActuatorError``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    raise ActuatorError(f"a relay is on (1) or off (0), not {value!r}")


def duty_cycle(value: object) -> float:
    """A duty cycle 0.0..1.0; NaN, infinities, booleans and other types raise ``ActuatorError``."""
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ActuatorError(f"a dimmer takes a duty cycle from 0.0 to 1.0, not {value!r}")
    return float(value)


def _gpio_call(what: str, call: Callable[[], T]) -> T:
    """Run a gpiozero call; its errors become typed driver errors naming ``what``."""
    from gpiozero.exc import (
        BadPinFactory,
        DeviceClosed,
        GPIOPinInUse,
        GPIOZeroError,
        PinInvalidPin,
        PinPWMUnsupported,
    )

    try:
        return call()
    except (PinInvalidPin, GPIOPinInUse, PinPWMUnsupported, BadPinFactory) as exc:
        raise ConfigurationError(f"{what}: {exc}") from exc
    except DeviceClosed as exc:
        raise BusError(f"{what} is closed") from exc
    except (GPIOZeroError, OSError) as exc:
        raise BusError(f"{what}: {type(exc).__name__}: {exc}") from exc


class Relay:
    """A contactor or relay on one GPIO, via ``gpiozero.DigitalOutputDevice``.

    ``active_high=False`` is for the common relay boards whose input is active low: the
    logical state (on/off) stays the same, the electrical level is inverted.
    """

    def __init__(self, pin: int, *, active_high: bool = True, pin_factory: Any = None,
                 initial: bool | float = False) -> None:
        if not isinstance(active_high, bool):
            raise ConfigurationError(f"relay on GPIO {pin}: active_high must be true or false")
        state = relay_state(initial)
        self.pin = pin
        self._what = f"relay on GPIO {pin}"

        def claim() -> Any:
            from gpiozero import DigitalOutputDevice

            return DigitalOutputDevice(pin, active_high=active_high, initial_value=state,
                                       pin_factory=pin_factory)

        self._device = _gpio_call(self._what, claim)

    def set(self, value: float | bool) -> None:
        """Switch on (1/True) or off (0/False); anything else raises ``ActuatorError``."""
        on = relay_state(value)
        _gpio_call(self._what, self._device.on if on else self._device.off)

    @property
    def value(self) -> float:
        """1.0 when on, 0.0 when off (logical state, whatever the electrical level)."""
        return float(bool(_gpio_call(self._what, lambda: self._device.value)))

    def close(self) -> None:
        """Release the pin (gpiozero makes it an input again). Idempotent."""
        _gpio_call(self._what, self._device.close)

    def __repr__(self) -> str:
        if self._device.closed:
            return f"<Relay GPIO{self.pin} closed>"
        return f"<Relay GPIO{self.pin} {'on' if self.value else 'off'}>"


class Dimmer:
    """A PWM output (LED driver dim input, fan) via ``gpiozero.PWMOutputDevice``.

    ``active_high=False`` inverts the waveform (for an opto-isolator that pulls the dim
    line low when lit): the duty cycle set stays the logical one.
    """

    def __init__(self, pin: int, *, frequency: int = 1000, pin_factory: Any = None,
                 initial: float = 0.0, active_high: bool = True) -> None:
        if isinstance(frequency, bool) or not isinstance(frequency, int | float) \
                or not 1 <= frequency <= MAX_PWM_FREQUENCY_HZ:
            raise ConfigurationError(
                f"dimmer on GPIO {pin}: frequency must be 1..{MAX_PWM_FREQUENCY_HZ} Hz, "
                f"not {frequency!r}")
        if not isinstance(active_high, bool):
            raise ConfigurationError(f"dimmer on GPIO {pin}: active_high must be true or false")
        duty = duty_cycle(initial)
        self.pin = pin
        self._what = f"dimmer on GPIO {pin}"

        def claim() -> Any:
            from gpiozero import PWMOutputDevice

            return PWMOutputDevice(pin, active_high=active_high, initial_value=duty,
                                   frequency=int(frequency), pin_factory=pin_factory)

        self._device = _gpio_call(self._what, claim)

    def set(self, duty: float) -> None:
        """Duty cycle 0.0 (off) .. 1.0 (full); anything else raises ``ActuatorError``."""
        value = duty_cycle(duty)

        def write() -> None:
            self._device.value = value

        _gpio_call(self._what, write)

    @property
    def value(self) -> float:
        return float(_gpio_call(self._what, lambda: self._device.value))

    @property
    def frequency(self) -> float:
        return float(_gpio_call(self._what, lambda: self._device.frequency))

    def close(self) -> None:
        """Stop the PWM and release the pin (gpiozero makes it an input again). Idempotent."""
        _gpio_call(self._what, self._device.close)

    def __repr__(self) -> str:
        if self._device.closed:
            return f"<Dimmer GPIO{self.pin} closed>"
        return f"<Dimmer GPIO{self.pin} duty {self.value:.3f} at {self.frequency:g} Hz>"

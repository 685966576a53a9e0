"""Relays and dimmers against gpiozero's MockFactory: the mock pin's state is what we assert."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from drivers import registry
from drivers.actuators import ActuatorError, Dimmer, Relay
from drivers.errors import BusError, ConfigurationError, DriverError
from drivers.fake.gpio import mock_factory


@pytest.fixture
def factory() -> Iterator[Any]:
    f = mock_factory()
    yield f
    f.close()


def levels(factory: Any, pin: int) -> list[float]:
    """Every electrical level the mock pin has had (it records changes only, starting with
    the low level an unclaimed pin idles at)."""
    return [float(s.state) for s in factory.pin(pin).states]


# -- relay ---------------------------------------------------------------------------------


def test_relay_drives_the_pin(factory: Any) -> None:
    relay = Relay(17, pin_factory=factory)
    pin = factory.pin(17)
    assert pin.function == "output"
    assert pin.state == 0 and relay.value == 0.0
    relay.set(1)
    assert pin.state == 1 and relay.value == 1.0
    relay.set(False)
    assert pin.state == 0 and relay.value == 0.0
    relay.set(True)
    relay.set(1.0)
    assert pin.state == 1
    assert repr(relay) == "<Relay GPIO17 on>"


def test_active_low_relay_inverts_the_level_not_the_state(factory: Any) -> None:
    relay = Relay(27, active_high=False, pin_factory=factory)
    pin = factory.pin(27)
    assert pin.state == 1 and relay.value == 0.0  # off = high on an active-low board
    relay.set(1)
    assert pin.state == 0 and relay.value == 1.0
    relay.set(0)
    assert pin.state == 1


@pytest.mark.parametrize(("active_high", "initial", "level"), [
    (True, False, 0.0), (True, True, 1.0), (False, False, 1.0), (False, True, 0.0),
    (True, 1, 1.0), (False, 0.0, 1.0)])
def test_relay_initial_state_holds_from_the_first_instant(
        factory: Any, active_high: bool, initial: bool | float, level: float) -> None:
    relay = Relay(5, active_high=active_high, initial=initial, pin_factory=factory)
    # The pin went from idle straight to the initial level: never through the other one.
    assert factory.pin(5).state == level
    assert 1.0 - level not in levels(factory, 5)[1:]
    assert relay.value == float(bool(initial))


@pytest.mark.parametrize("bad", [0.5, 2, -1, "on", "1", None, math.nan, math.inf, [1]])
def test_relay_refuses_anything_but_on_or_off(factory: Any, bad: object) -> None:
    relay = Relay(17, pin_factory=factory, initial=True)
    with pytest.raises(ActuatorError, match="relay is on \\(1\\) or off \\(0\\)"):
        relay.set(bad)  # type: ignore[arg-type]
    assert factory.pin(17).state == 1  # left as it was
    assert levels(factory, 17) == [0.0, 1.0]


@pytest.mark.parametrize("bad", [0.5, "off", None])
def test_relay_refuses_a_bad_initial_state_before_claiming_the_pin(
        factory: Any, bad: object) -> None:
    with pytest.raises(ActuatorError):
        Relay(17, pin_factory=factory, initial=bad)  # type: ignore[arg-type]
    assert factory.pin(17).function == "input"  # never claimed


def test_actuator_error_is_a_driver_error_and_a_value_error() -> None:
    assert issubclass(ActuatorError, DriverError) and issubclass(ActuatorError, ValueError)


# -- dimmer --------------------------------------------------------------------------------


def test_dimmer_sets_duty_and_frequency(factory: Any) -> None:
    dimmer = Dimmer(18, frequency=250, pin_factory=factory)
    pin = factory.pin(18)
    assert pin.frequency == 250 and dimmer.frequency == 250.0
    assert pin.state == 0.0 and dimmer.value == 0.0
    dimmer.set(0.25)
    assert pin.state == pytest.approx(0.25) and dimmer.value == pytest.approx(0.25)
    dimmer.set(1)
    assert pin.state == 1.0
    dimmer.set(0.0)
    assert pin.state == 0.0
    assert repr(dimmer) == "<Dimmer GPIO18 duty 0.000 at 250 Hz>"


def test_dimmer_default_frequency_is_1_khz(factory: Any) -> None:
    dimmer = Dimmer(13, pin_factory=factory)
    assert factory.pin(13).frequency == 1000 and dimmer.frequency == 1000.0


def test_dimmer_initial_duty_from_the_first_instant(factory: Any) -> None:
    dimmer = Dimmer(12, pin_factory=factory, initial=0.4)
    assert levels(factory, 12) == [0.0, pytest.approx(0.4)]
    assert dimmer.value == pytest.approx(0.4)


def test_inverted_dimmer_inverts_the_waveform(factory: Any) -> None:
    dimmer = Dimmer(19, active_high=False, pin_factory=factory)
    pin = factory.pin(19)
    assert pin.state == 1.0  # 0 % duty: the line held high
    dimmer.set(0.25)
    assert pin.state == pytest.approx(0.75) and dimmer.value == pytest.approx(0.25)


@pytest.mark.parametrize("bad", [-0.01, 1.01, math.nan, math.inf, -math.inf, True, "0.5",
                                 None])
def test_dimmer_refuses_out_of_range(factory: Any, bad: object) -> None:
    dimmer = Dimmer(18, pin_factory=factory)
    dimmer.set(0.3)
    with pytest.raises(ActuatorError, match=r"duty cycle from 0\.0 to 1\.0"):
        dimmer.set(bad)  # type: ignore[arg-type]
    assert factory.pin(18).state == pytest.approx(0.3)


@pytest.mark.parametrize("frequency", [0, -50, 0.5, 200_000, True, "1000", math.nan])
def test_dimmer_refuses_a_bad_frequency(factory: Any, frequency: object) -> None:
    with pytest.raises(ConfigurationError, match="frequency"):
        Dimmer(18, frequency=frequency, pin_factory=factory)  # type: ignore[arg-type]


def test_dimmer_refuses_a_bad_initial_duty(factory: Any) -> None:
    with pytest.raises(ActuatorError):
        Dimmer(18, initial=1.5, pin_factory=factory)


# -- pins, closing, errors ------------------------------------------------------------------


@pytest.mark.parametrize("make", [
    lambda f: Relay(17, pin_factory=f),
    lambda f: Dimmer(17, pin_factory=f, initial=0.5),
])
def test_close_releases_the_pin(factory: Any, make: Any) -> None:
    actuator = make(factory)
    actuator.close()
    pin = factory.pin(17)
    assert pin.function == "input" and pin.state == 0
    actuator.close()  # idempotent
    again = Relay(17, pin_factory=factory)  # would be "pin in use" if not released
    again.set(1)
    assert pin.state == 1


def test_using_a_closed_actuator_is_a_bus_error(factory: Any) -> None:
    relay = Relay(17, pin_factory=factory)
    relay.close()
    with pytest.raises(BusError, match="relay on GPIO 17 is closed"):
        relay.set(1)
    assert repr(relay) == "<Relay GPIO17 closed>"
    dimmer = Dimmer(18, pin_factory=factory)
    dimmer.close()
    with pytest.raises(BusError, match="dimmer on GPIO 18 is closed"):
        dimmer.set(0.5)


def test_pin_in_use_is_a_configuration_error(factory: Any) -> None:
    holder = Relay(17, pin_factory=factory)  # keep it referenced: gpiozero frees a dropped one
    with pytest.raises(ConfigurationError, match=r"relay on GPIO 17: .*in use"):
        Relay(17, pin_factory=factory)
    with pytest.raises(ConfigurationError, match="dimmer on GPIO 17"):
        Dimmer(17, pin_factory=factory)
    assert holder.value == 0.0


def test_invalid_pin_is_a_configuration_error(factory: Any) -> None:
    with pytest.raises(ConfigurationError, match="GPIO 99"):
        Relay(99, pin_factory=factory)


def test_pin_without_pwm_is_a_configuration_error() -> None:
    plain = MockFactory()  # MockPin: no PWM
    try:
        with pytest.raises(ConfigurationError, match="dimmer on GPIO 18"):
            Dimmer(18, pin_factory=plain)
    finally:
        plain.close()


def test_bad_active_high_is_a_configuration_error(factory: Any) -> None:
    with pytest.raises(ConfigurationError):
        Relay(17, active_high="yes", pin_factory=factory)  # type: ignore[arg-type]


def test_registry_names_these_classes() -> None:
    assert registry.get("relay").load() is Relay
    assert registry.get("dimmer").load() is Dimmer
    assert registry.get("dimmer").load_fake() is mock_factory

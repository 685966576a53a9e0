"""Relays and dimmers against gpiozero's MockFactory: the pin's state is what we assert."""

from __future__ import annotations

import math

import pytest

from drivers.actuators import ActuatorError, Dimmer, Relay
from drivers.errors import ConfigurationError, DriverError
from drivers.fake.gpio import mock_factory


@pytest.fixture
def factory():
    f = mock_factory()
    yield f
    f.close()


def test_relay_drives_the_pin(factory) -> None:
    relay = Relay(17, pin_factory=factory)
    pin = factory.pin(17)
    assert pin.state == 0 and relay.value == 0.0
    relay.set(1)
    assert pin.state == 1 and relay.value == 1.0
    relay.set(False)
    assert pin.state == 0


def test_active_low_relay_inverts_the_level_not_the_state(factory) -> None:
    relay = Relay(27, active_high=False, pin_factory=factory)
    pin = factory.pin(27)
    assert pin.state == 1  # off = high on an active-low board
    relay.set(1)
    assert pin.state == 0 and relay.value == 1.0


def test_initial_state_holds_from_the_first_instant(factory) -> None:
    relay = Relay(5, pin_factory=factory, initial=True)
    # The pin's history holds no low level after it was claimed: on from the start.
    assert [s.state for s in factory.pin(5).states] in ([0, 1], [1])
    dimmer = Dimmer(12, pin_factory=factory, initial=0.4)
    assert factory.pin(12).state == pytest.approx(0.4)
    assert relay.value == 1.0 and dimmer.value == pytest.approx(0.4)


@pytest.mark.parametrize("bad", [0.5, 2, -1, "on", None, math.nan])
def test_relay_refuses_anything_but_on_or_off(factory, bad) -> None:
    relay = Relay(17, pin_factory=factory)
    with pytest.raises(ActuatorError, match="relay is on"):
        relay.set(bad)
    assert factory.pin(17).state == 0
    assert isinstance(ActuatorError("x"), DriverError)


def test_dimmer_sets_duty_and_frequency(factory) -> None:
    dimmer = Dimmer(18, frequency=250, pin_factory=factory)
    pin = factory.pin(18)
    assert pin.frequency == 250
    dimmer.set(0.25)
    assert pin.state == pytest.approx(0.25) and dimmer.value == pytest.approx(0.25)
    dimmer.set(1.0)
    assert pin.state == 1.0


@pytest.mark.parametrize("bad", [-0.01, 1.01, math.nan, math.inf, True, "0.5"])
def test_dimmer_refuses_out_of_range(factory, bad) -> None:
    dimmer = Dimmer(18, pin_factory=factory)
    dimmer.set(0.3)
    with pytest.raises(ActuatorError, match="duty cycle"):
        dimmer.set(bad)
    assert factory.pin(18).state == pytest.approx(0.3)


def test_dimmer_refuses_a_bad_frequency(factory) -> None:
    with pytest.raises(ConfigurationError, match="frequency"):
        Dimmer(18, frequency=0, pin_factory=factory)


def test_close_releases_the_pin(factory) -> None:
    relay = Relay(17, pin_factory=factory)
    relay.close()
    again = Relay(17, pin_factory=factory)  # would raise GPIOPinInUse if not released
    again.set(1)
    assert factory.pin(17).state == 1

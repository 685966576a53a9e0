"""GPIO is emulated by gpiozero's own ``MockFactory``, with PWM-capable mock pins."""

from __future__ import annotations

from typing import Any


def mock_factory() -> Any:
    """A gpiozero pin factory whose pins record their state and accept PWM."""
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    return MockFactory(pin_class=MockPWMPin)

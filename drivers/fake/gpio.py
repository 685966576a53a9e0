"""GPIO is emulated by gpiozero's own ``MockFactory``, with PWM-capable mock pins."""

from __future__ import annotations

import collections
from typing import Any

SIMULATION_PIN_HISTORY = 256
"""State changes a simulated gateway's mock pin remembers. gpiozero's mock pins keep every
change for tests to assert on; a ``run --simulate`` that dims a light for days must not."""


def mock_factory(history: int | None = None) -> Any:
    """A gpiozero pin factory whose pins record their state and accept PWM: every state
    change, or with ``history`` the last that many."""
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    if history is None:
        return MockFactory(pin_class=MockPWMPin)

    class RecentStatesPin(MockPWMPin):  # type: ignore[misc]
        def clear_states(self) -> None:
            super().clear_states()
            self.states = collections.deque(
                self.states, maxlen=history)  # type: ignore[has-type]

    return MockFactory(pin_class=RecentStatesPin)

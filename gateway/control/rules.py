"""Local rules: a threshold with hysteresis on one sensor quantity, run on the gateway.

A rule only ever decides from fresh readings. It wants ``on`` once its on-condition has
held on every reading for ``for`` seconds, ``off`` likewise, and otherwise keeps what it
wanted (the band between the thresholds is the hysteresis). Minimum on and off times are
not the rule's business: they protect the contactor, so the controller enforces them on
the output, whoever asked for the change. Time is passed in (monotonic seconds), so
tests drive a rule through hours in microseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config import RuleConfig


@dataclass
class RuleState:
    wants_on: bool | None = None
    """None until a condition has held long enough (after start, or after the sensor
    was lost)."""
    on_since: float | None = None
    """Monotonic time of the first reading of the current run meeting the on-condition."""
    off_since: float | None = None
    last_value: float | None = None
    last_reading_mono: float | None = None


class Rule:
    def __init__(self, config: RuleConfig) -> None:
        self.config = config
        self.state = RuleState()
        self.falling = config.on_below is not None

    @property
    def name(self) -> str:
        return self.config.name

    def _conditions(self, value: float) -> tuple[bool, bool]:
        c = self.config
        if self.falling:
            assert c.on_below is not None and c.off_above is not None
            return value < c.on_below, value > c.off_above
        assert c.on_above is not None and c.off_below is not None
        return value > c.on_above, value < c.off_below

    def observe(self, value: float, mono: float) -> None:
        """A fresh reading of the rule's quantity, taken at ``mono``."""
        s = self.state
        on, off = self._conditions(value)
        s.on_since = (s.on_since if s.on_since is not None else mono) if on else None
        s.off_since = (s.off_since if s.off_since is not None else mono) if off else None
        s.last_value = value
        s.last_reading_mono = mono
        self.advance(mono)

    def advance(self, now: float) -> None:
        """Let a condition that has held for ``for`` seconds take effect."""
        s = self.state
        hold = self.config.for_s
        if s.on_since is not None and now - s.on_since >= hold:
            s.wants_on = True
        elif s.off_since is not None and now - s.off_since >= hold:
            s.wants_on = False

    def lose(self) -> None:
        """The sensor is failing or stale: forget everything, start over when it returns."""
        self.state = RuleState()

    def target(self) -> float | None:
        """The output value the rule wants, or None while undecided."""
        if self.state.wants_on is None:
            return None
        return self.config.on_value if self.state.wants_on else self.config.off_value

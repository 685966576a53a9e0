"""What every fake device shares: physical values and switchable faults."""

from __future__ import annotations

import threading
from dataclasses import dataclass, fields
from typing import ClassVar, TypeVar

T = TypeVar("T")


class RecentLog(list[T]):
    """What a fake was sent, for tests to inspect: a list that keeps the last ``limit``
    entries (between ``limit`` and twice that), so a fake in a long ``run --simulate``
    does not grow without end."""

    def __init__(self, limit: int = 256) -> None:
        super().__init__()
        self.limit = limit

    def append(self, item: T) -> None:
        super().append(item)
        if len(self) > 2 * self.limit:
            del self[: len(self) - self.limit]


@dataclass
class Faults:
    """Faults a fake can inject. Each fake honours those that make sense for its bus."""

    nack: bool = False
    """I2C: every transaction fails with ``OSError(121)`` (no acknowledge)."""
    bad_crc: bool = False
    """The next answers carry a wrong CRC or checksum."""
    stuck: bool = False
    """The sensing element is stuck: raw values no longer follow ``set()``."""
    delay_s: float = 0.0
    """Answers (or conversions) take this much longer than the datasheet says."""
    silent: bool = False
    """Serial: the device never answers."""
    garbage: bool = False
    """Serial: random bytes are sent before each frame."""
    split: bool = False
    """Serial: frames are sent in several pieces with pauses between them."""
    wrong_id: bool = False
    """The chip answers with another chip's identity."""

    def clear(self) -> None:
        for f in fields(self):
            setattr(self, f.name, f.default)


class FakeDevice:
    """Physical values in, bus bytes out.

    Subclasses list the quantities they sense in ``QUANTITIES`` (driver output names,
    e.g. ``temperature_celsius``) with their power-on values.
    """

    QUANTITIES: ClassVar[dict[str, float]] = {}

    def __init__(self) -> None:
        self.faults = Faults()
        self._values = dict(self.QUANTITIES)
        self._stuck_values: dict[str, float] | None = None
        self._lock = threading.RLock()

    def set(self, **values: float) -> None:
        """Set the physical values the device senses. Unknown quantities are an error."""
        unknown = set(values) - set(self.QUANTITIES)
        if unknown:
            raise TypeError(
                f"{type(self).__name__} senses no {', '.join(sorted(unknown))} "
                f"(it senses {', '.join(sorted(self.QUANTITIES))})"
            )
        with self._lock:
            self._values.update({k: float(v) for k, v in values.items()})

    def value(self, quantity: str) -> float:
        """The value the sensing element currently sees (frozen while ``faults.stuck``)."""
        with self._lock:
            if self.faults.stuck:
                if self._stuck_values is None:
                    self._stuck_values = dict(self._values)
                return self._stuck_values[quantity]
            self._stuck_values = None
            return self._values[quantity]

    @property
    def values(self) -> dict[str, float]:
        with self._lock:
            return dict(self._values)

"""Bounded waits on the monotonic clock (wall time may jump on a gateway without RTC)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from drivers.errors import DriverTimeoutError

T = TypeVar("T")


def poll_until(
    attempt: Callable[[], T | None],
    *,
    timeout_s: float,
    interval_s: float,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``attempt`` until it returns something other than ``None``, at most ``timeout_s``.

    Raises ``DriverTimeoutError`` naming ``what`` when the deadline passes.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        result = attempt()
        if result is not None:
            return result
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DriverTimeoutError(f"{what}: no answer within {timeout_s:g} s")
        sleep(min(interval_s, remaining))

"""Is the wall clock trustworthy? A gateway has no RTC and boots with a wrong time."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from gateway.libc import libc

TIMESYNC_FLAG = Path("/run/systemd/timesync/synchronized")
TIME_ERROR = 5
"""adjtimex(2) return value: the kernel clock is not synchronised."""


_timex: Any = None
"""One struct timex (modes = 0: read only), kept: ctypes holds only a weak reference to
the array type ``create_string_buffer`` makes, so a buffer made at every housekeeping tick
made and collected a new type every second until the first sync."""


def _kernel_synchronized() -> bool | None:
    global _timex
    try:
        if _timex is None:
            import ctypes

            _timex = ctypes.create_string_buffer(512)
        state = libc().adjtimex(_timex)
    except (OSError, AttributeError, ImportError):
        return None
    if state < 0:
        return None
    return bool(state != TIME_ERROR)


class ClockMonitor:
    """Reports whether the wall clock is synchronised.

    ``ALATAU_GATEWAY_CLOCK=synced|unsynced`` overrides the detection (tests, simulation).
    """

    def __init__(self, flag_path: Path = TIMESYNC_FLAG) -> None:
        self.flag_path = flag_path

    def synchronized(self) -> bool:
        override = os.environ.get("ALATAU_GATEWAY_CLOCK")
        if override in ("synced", "unsynced"):
            return override == "synced"
        if self.flag_path.exists():
            return True
        kernel = _kernel_synchronized()
        return True if kernel is None else kernel


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"

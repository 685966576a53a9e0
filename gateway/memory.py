"""How the process's C heap hands memory back: a fixed mmap threshold for glibc's malloc.

glibc serves an allocation of 128 KiB or more with its own mmap and unmaps it when it is
freed, but it then raises that threshold to the size just freed (up to 32 MiB), so the
next allocation of that size comes from the heap. The gateway's large, short-lived
buffers (a batch of 500 readings as JSON, its gzip output, the rows read for it) then
land in the heap between small long-lived objects and leave holes the heap keeps: in a
simulated run of six sensors the heap grew by about 1 MiB over the first six minutes in
steps of 0.4-0.6 MiB while the memory in use stayed within 0.1 MiB, and kept rising
slowly after. Setting the threshold with mallopt(M_MMAP_THRESHOLD) fixes it and turns the
adjustment off (mallopt(3)): every allocation of 64 KiB or more is mapped and returned to
the kernel when freed, at the cost of a map and an unmap per large buffer, a few per
upload.

Only on glibc (Raspberry Pi OS, Debian); elsewhere nothing is changed. The environment
variable MALLOC_MMAP_THRESHOLD_ (glibc's own tunable), when set, is left to win.
"""

from __future__ import annotations

import os

from gateway.libc import libc

M_MMAP_THRESHOLD = -3
"""mallopt's parameter number for the mmap threshold (glibc's malloc.h)."""

MMAP_THRESHOLD_BYTES = 64 * 1024

_done: bool | None = None


def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Set glibc's malloc mmap threshold once per process. True if it is set (now or by
    an earlier call, or by MALLOC_MMAP_THRESHOLD_), False where there is no glibc."""
    global _done
    if _done is not None:
        return _done
    if os.environ.get("MALLOC_MMAP_THRESHOLD_"):
        _done = True
        return _done
    try:
        mallopt = libc().mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt), or no libc
        _done = False
        return _done
    import ctypes

    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    _done = mallopt(M_MMAP_THRESHOLD, threshold) == 1
    return _done

"""The process's C library, loaded once for the modules that call into it (the clock's
adjtimex, the heap's mallopt)."""

from __future__ import annotations

from typing import Any

_handle: Any = None


def libc() -> Any:
    """A ctypes handle on the symbols already in the process, the C library's among them:
    no ``ctypes.util.find_library``, which runs ldconfig in a subprocess on every call.
    ``errno`` is kept for ``ctypes.get_errno``. Raises OSError where it cannot be opened."""
    global _handle
    if _handle is None:
        import ctypes  # only when first needed

        _handle = ctypes.CDLL(None, use_errno=True)
    return _handle

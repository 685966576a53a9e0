"""Serial fakes served on a real pseudo-terminal.

The driver opens ``fake.port`` (``/dev/pts/N``) with pyserial exactly as it would open
``/dev/serial0`` on a gateway; the fake sits on the master side, reads the bytes the
driver writes and answers with frames. Baud rate does not exist on a pty, so the fake
paces its own writes where timing matters (split frames, slow answers).
"""

from __future__ import annotations

import contextlib
import os
import random
import select
import termios
import threading
import time
import tty

from drivers.fake.base import FakeDevice


class FakeSerialDevice(FakeDevice):
    """Subclasses implement ``on_bytes`` (requests in) and optionally ``tick`` (periodic)."""

    TICK_S: float | None = None
    """Call ``tick()`` this often (for devices that send on their own, e.g. active mode)."""

    def __init__(self) -> None:
        super().__init__()
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        attrs = termios.tcgetattr(self._slave)
        attrs[3] &= ~termios.ECHO
        termios.tcsetattr(self._slave, termios.TCSANOW, attrs)
        self.port = os.ttyname(self._slave)
        self.received = bytearray()
        """Every byte the driver sent, for tests that assert the bytes on the wire."""
        self._stop = threading.Event()
        self._write_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._rng = random.Random(0x5EED)

    def start(self) -> FakeSerialDevice:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._serve, name=f"fake-{type(self).__name__}", daemon=True
            )
            self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> FakeSerialDevice:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def on_bytes(self, data: bytes) -> None:
        """Bytes the driver wrote. Answer with ``self.send``."""
        raise NotImplementedError

    def tick(self) -> None:
        """Called every ``TICK_S`` seconds while serving."""

    def send(self, frame: bytes) -> None:
        """Send a frame to the driver, applying the configured faults."""
        faults = self.faults
        if faults.silent:
            return
        if faults.delay_s:
            time.sleep(faults.delay_s)
        data = frame
        if faults.garbage:
            noise = bytes(self._rng.randrange(256) for _ in range(self._rng.randrange(1, 12)))
            data = noise + frame
        with self._write_lock:
            if faults.split and len(data) > 2:
                cut = self._rng.randrange(1, len(data))
                self._write_all(data[:cut])
                time.sleep(0.02)
                self._write_all(data[cut:])
            else:
                self._write_all(data)

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view and not self._stop.is_set():
            try:
                written = os.write(self._master, view)
            except BlockingIOError:
                time.sleep(0.001)
                continue
            except OSError:
                return
            view = view[written:]

    def _serve(self) -> None:
        next_tick = time.monotonic() + (self.TICK_S or 0.0)
        while not self._stop.is_set():
            timeout = 0.05
            if self.TICK_S is not None:
                timeout = max(0.0, min(timeout, next_tick - time.monotonic()))
            try:
                ready, _, _ = select.select([self._master], [], [], timeout)
            except (OSError, ValueError):
                return
            if ready:
                try:
                    data = os.read(self._master, 4096)
                except OSError:
                    return
                if data:
                    self.received += data
                    self.on_bytes(data)
            if self.TICK_S is not None and time.monotonic() >= next_tick:
                next_tick += self.TICK_S
                self.tick()

"""Large short-lived buffers go back to the kernel (gateway/memory.py).

The pattern that grew the simulated gateway's heap: buffers of 100-300 KiB (batch bodies)
made and freed again and again while small objects that live on are made in between.
Without the fixed mmap threshold glibc serves them from the heap after the first one is
freed, and the heap keeps the space; with it, each is mapped and unmapped.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import platform
import subprocess
import sys
import time
import weakref
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from gateway import memory
from gateway.service import Gateway
from tests.helpers import one_sensor_config

T = TypeVar("T")

CHURN = r"""
import ctypes, json, sys
fixed = sys.argv[1] == "fixed"
if fixed:
    from gateway.memory import fix_mmap_threshold
    assert fix_mmap_threshold()

class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
        "uordblks", "fordblks", "keepcost")]

from gateway.libc import libc
mallinfo2 = libc().mallinfo2
mallinfo2.restype = Mallinfo2

def anon_kib():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1])

keep, mapped, heap_peak = [], 0, 0
start, heap_start = anon_kib(), mallinfo2().arena
for i in range(400):
    mapped_before = mallinfo2().hblkhd
    body = bytearray(100_000 + (i * 7919) % 200_000)   # a batch body, 100-300 KB
    body[::4096] = b"x" * len(body[::4096])            # touched, as a real one is
    info = mallinfo2()
    mapped += info.hblkhd - mapped_before >= len(body)
    heap_peak = max(heap_peak, info.arena - heap_start)
    keep.append(bytes(600 + i % 1000))                 # something that lives on
    del body
print(json.dumps({"grown_kib": anon_kib() - start, "mapped": mapped,
                  "heap_kib": heap_peak // 1024}))
"""


def churn(mode: str) -> dict[str, int]:
    env = dict(os.environ)
    env.pop("MALLOC_MMAP_THRESHOLD_", None)
    out = subprocess.run([sys.executable, "-c", CHURN, mode], capture_output=True,
                         text=True, env=env, check=True, timeout=60)
    return {key: int(value) for key, value in json.loads(out.stdout).items()}


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="the threshold is glibc's")
def test_large_freed_buffers_do_not_stay_in_the_heap() -> None:
    fixed, default = churn("fixed"), churn("default")
    # With the threshold fixed every buffer is mapped on its own and unmapped when freed
    # (a few may be missed in the count when another mapping is freed in between); with
    # glibc's default only the first ones are, the rest come from the heap, which grows
    # to hold them (on Debian 12's glibc 2.36: 397 of 400 mapped and a 264 KiB heap,
    # against 21 and 716 KiB).
    assert fixed["mapped"] >= 380, fixed
    assert default["mapped"] < 200, default
    assert fixed["heap_kib"] < default["heap_kib"], (fixed, default)
    # What the process keeps is the small objects that live on, about 450 KB: nothing of
    # the buffers (356-404 KiB measured on two machines).
    assert fixed["grown_kib"] < 600, f"the process kept {fixed['grown_kib']} KiB"


def test_the_environment_variable_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    """With MALLOC_MMAP_THRESHOLD_ set glibc has applied it at start: mallopt must not
    overwrite it."""
    def no_libc() -> None:
        raise AssertionError("mallopt was reached despite MALLOC_MMAP_THRESHOLD_")

    monkeypatch.setattr(memory, "_done", None)
    monkeypatch.setattr(memory, "libc", no_libc)
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert memory.fix_mmap_threshold() is True


async def run_briefly(gateway: Gateway, during: Callable[[], Awaitable[T]]) -> T:
    runner = asyncio.create_task(gateway.run())
    await gateway.ready.wait()
    try:
        return await during()
    finally:
        gateway.stop()
        await runner


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the threshold is glibc's")
def test_the_service_sets_the_threshold(tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = memory.fix_mmap_threshold
    monkeypatch.setattr(memory, "_done", None)
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)

    def counted(threshold: int = memory.MMAP_THRESHOLD_BYTES) -> bool:
        calls.append(threshold)
        return real(threshold)

    monkeypatch.setattr("gateway.service.fix_mmap_threshold", counted)

    async def nothing() -> None:
        return None

    asyncio.run(run_briefly(Gateway(one_sensor_config(tmp_path / "buffer.db"),
                                    simulate=True), nothing))
    assert calls == [memory.MMAP_THRESHOLD_BYTES]
    assert memory._done is True  # mallopt accepted it


def test_housekeeping_collects_reference_cycles(tmp_path: Path) -> None:
    """With the interpreter's own collections off, a cycle made while the gateway runs is
    freed by housekeeping's collection, not left for a full collection that may come a
    quarter of an hour later."""
    class Cycle:
        def __init__(self) -> None:
            self.me = self

    async def cycle_freed() -> bool:
        cycle = Cycle()
        gone = weakref.ref(cycle)
        del cycle
        deadline = time.monotonic() + 5
        while gone() is not None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return gone() is None

    gateway = Gateway(one_sensor_config(tmp_path / "buffer.db"), simulate=True)
    gateway.GC_INTERVAL_S = 0.2

    was_enabled = gc.isenabled()
    gc.disable()
    try:
        assert asyncio.run(run_briefly(gateway, cycle_freed)), \
            "the cycle was still alive 5 s later"
    finally:
        if was_enabled:
            gc.enable()


def test_the_store_makes_no_paths_at_steady_state(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Each Path made interns its parts; one that dies frees its interned name again, and
    that churn (a reserve path made at every acknowledgement) grew the interpreter's table
    of interned strings by 0.5 MiB a few minutes into a soak. Commits, batches,
    acknowledgements and stats reuse the paths the store made when it opened."""
    from gateway.store import Reading, Store

    store = Store(tmp_path / "buffer.db", max_bytes=64 * 1024 * 1024,
                  min_free_bytes=1024)  # the reserve check sizes the WAL at every commit
    interned: list[str] = []
    real_intern = sys.intern

    def counted(text: str) -> str:
        interned.append(text)
        return real_intern(text)

    monkeypatch.setattr(sys, "intern", counted)
    try:
        for n in range(50):
            store.add(Reading("cabinet_air", 1_700_000_000_000 + n, {"t": 20.0 + n}))
            store.commit()
            batch = store.next_batch(500, 1024 * 1024)
            assert batch is not None
            store.ack(batch)
            store.stats()
    finally:
        store.close()
    assert interned == [], f"paths made at steady state: {sorted(set(interned))}"


def test_a_simulated_pin_keeps_a_bounded_history(tmp_path: Path) -> None:
    """gpiozero's mock pins remember every state change (tests assert on them); in
    ``run --simulate`` a dimmer or a power switch changes for days, so only the last
    changes are kept there."""
    from drivers.fake.gpio import SIMULATION_PIN_HISTORY
    from gateway.hardware import Hardware

    hardware = Hardware(one_sensor_config(tmp_path / "buffer.db"), simulate=True)
    pin = hardware.pin_factory().pin(17)
    pin.function = "output"
    for n in range(3 * SIMULATION_PIN_HISTORY):
        pin.state = n % 2
    assert len(pin.states) == SIMULATION_PIN_HISTORY
    assert [s.state for s in list(pin.states)[-2:]] == [0, 1]  # the latest, in order

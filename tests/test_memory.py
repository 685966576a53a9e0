"""Large short-lived buffers go back to the kernel (gateway/memory.py).

The pattern that grew the simulated gateway's heap: buffers of 100-300 KiB (batch bodies)
made and freed again and again while small objects that live on are made in between.
Without the fixed mmap threshold glibc serves them from the heap after the first one is
freed, and the heap keeps the space; with it, each is mapped and unmapped.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

CHURN = r"""
import json, sys
fixed = sys.argv[1] == "fixed"
if fixed:
    from gateway.memory import fix_mmap_threshold
    assert fix_mmap_threshold()

def anon_kib():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1])

keep = []
start = anon_kib()
for i in range(400):
    body = bytearray(100_000 + (i * 7919) % 200_000)   # a batch body, 100-300 KB
    body[::4096] = b"x" * len(body[::4096])            # touched, as a real one is
    keep.append(bytes(600 + i % 1000))                 # something that lives on
    del body
print(json.dumps({"grown_kib": anon_kib() - start}))
"""


def churn(mode: str) -> int:
    env = dict(os.environ)
    env.pop("MALLOC_MMAP_THRESHOLD_", None)
    out = subprocess.run([sys.executable, "-c", CHURN, mode], capture_output=True,
                         text=True, env=env, check=True, timeout=60)
    return int(json.loads(out.stdout)["grown_kib"])


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="the threshold is glibc's")
def test_large_freed_buffers_do_not_stay_in_the_heap() -> None:
    fixed, default = churn("fixed"), churn("default")
    # 400 buffers of 100-300 KB went through; what lives on is the small objects, about
    # 450 KB. With the threshold fixed nothing of the buffers stays; with glibc's default
    # the heap keeps room for them (856 KiB against 404 on Debian 12's glibc 2.36).
    assert fixed < 550, f"the process kept {fixed} KiB after freeing its large buffers"
    assert default > fixed + 300, (fixed, default)


def test_the_environment_variable_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway import memory

    monkeypatch.setattr(memory, "_done", None)
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert memory.fix_mmap_threshold() is True

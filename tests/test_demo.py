"""``alatau-gateway demo`` end to end, as a user runs it: emulated hardware on every bus,
the reference cloud on loopback, an outage, and the summary's promise."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEMO_SENSORS = {"cabinet_air", "street_light_level", "street_co2", "street_pm",
                "cabinet_energy"}


def demo(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "gateway.cli", "demo", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_demo_with_an_outage_delivers_everything_once() -> None:
    proc = demo("--duration", "8", "--outage", "2:5", "--json")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    summary = json.loads(out)  # the whole of stdout is one JSON object
    for key in ("produced", "delivered", "duplicates_received", "dropped", "lost"):
        assert isinstance(summary[key], int), key
    assert summary["lost"] == 0
    assert summary["delivered"] == summary["produced"] - summary["dropped"]
    assert summary["produced"] >= 15  # five sensors at 0.2 to 1 reading per second
    assert summary["dropped"] == 0  # a 64 MiB buffer does not fill in seconds
    assert summary["outage"] == [2.0, 5.0] and summary["outages"] == 1
    assert sum(summary["uplink_failures"].values()) >= 1  # the outage was felt
    assert set(summary["sensor_errors"]) == DEMO_SENSORS


@pytest.mark.slow
def test_sigterm_ends_the_demo_promptly_without_a_traceback() -> None:
    proc = demo("--duration", "120")
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready, "the demo printed nothing"
        first = proc.stdout.readline()
        assert first.startswith("demo gateway alatau-demo-0001: 5 emulated sensors")
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130
    assert "Traceback" not in err

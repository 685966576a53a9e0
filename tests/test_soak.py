"""The soak script, briefly, and the reference cloud's check that makes its
`duplicates` meaningful (a seq received again with another reading)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from gateway.cloud import CloudStore

SOAK = Path(__file__).resolve().parent.parent / "scripts" / "soak"
KEYS = {"lost", "duplicates", "kills", "outages", "sensor_faults", "rss_start_mb",
        "rss_end_mb", "rss_growth_mb", "memory_flat"}


def soak_module() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("soak_script", str(SOAK))
    spec = importlib.util.spec_from_loader("soak_script", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["soak_script"] = module  # its dataclasses look themselves up there
    loader.exec_module(module)
    return module


def run_of(minutes: float, mb: Callable[[float], float]) -> list[tuple[float, float]]:
    """A last run sampled once a second from 300 s into the soak; ``mb(t)`` gives MiB at
    t seconds into the run."""
    return [(300.0 + t, mb(t)) for t in range(int(minutes * 60))]


def test_memory_is_judged_after_the_warm_up_and_by_medians() -> None:
    soak = soak_module()
    # Rises for three minutes after the restart, then stays: flat, even with a batch
    # buffer (0.5 MiB) mapped at the very last sample.
    settling = run_of(5, lambda t: 43.0 + 0.6 * min(t, 170) / 170)
    settling[-1] = (settling[-1][0], settling[-1][1] + 0.5)
    verdict = soak.memory_verdict(settling)
    assert verdict["memory_flat"] is True, verdict
    assert verdict["rss_end_mb"] == 43.6 and 43.5 < verdict["rss_start_mb"] <= 43.6
    # 250 bytes per reading at six readings a second keeps rising: not flat.
    leaking = run_of(5, lambda t: 43.0 + t * 6 * 250 / 2**20)
    verdict = soak.memory_verdict(leaking)
    assert verdict["memory_flat"] is False and verdict["rss_growth_mb"] > 0.1, verdict
    # A last run of a minute says nothing either way.
    assert soak.memory_verdict(run_of(1, lambda t: 43.0 + t))["memory_flat"] is None
    assert soak.memory_verdict([])["memory_flat"] is None


def test_growing_memory_fails_the_soak_as_a_lost_reading_does() -> None:
    soak = soak_module()
    clean = {"lost": 0, "duplicates": 0, "memory_flat": True}
    assert soak.passed(clean)
    assert soak.passed({**clean, "memory_flat": None})  # too short to say: not a failure
    assert not soak.passed({**clean, "memory_flat": False})
    assert not soak.passed({**clean, "lost": 1})
    assert not soak.passed({**clean, "duplicates": 1})


def test_a_short_soak_loses_nothing_and_reuses_no_seq() -> None:
    started = time.monotonic()
    env = dict(os.environ, ALATAU_PYTHON=sys.executable)  # the one with the gateway
    done = subprocess.run([str(SOAK), "--minutes", "0.3", "--json"], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert set(result) >= KEYS
    assert result["lost"] == 0 and result["duplicates"] == 0
    assert result["kills"] >= 1 and result["outages"] >= 1 and result["sensor_faults"] >= 1
    assert result["produced"] > 50
    assert result["produced"] == (result["delivered"] + sum(result["dropped"].values())
                                  + result["still_buffered"])
    assert result["rss_start_mb"] > 0 and result["rss_end_mb"] > 0
    assert elapsed < 60


def reading(seq: int, value: float, ts: int = 1764337000000, **extra: object) -> dict:
    return {"seq": seq, "sensor": "cabinet_air", "ts": ts,
            "values": {"temperature_celsius": value}, "flags": [], **extra}


def test_the_cloud_tells_a_reused_seq_from_a_resend(tmp_path: Path) -> None:
    cloud = CloudStore(tmp_path / "cloud.db")
    try:
        cloud.ingest("gw", "gw:1-2", [reading(1, 21.0), reading(2, 21.5)], [])
        cloud.ingest("gw", "gw:1-2", [reading(1, 21.0), reading(2, 21.5)], [])  # a resend
        assert cloud.stats("gw")["duplicates"] == 2 and cloud.stats("gw")["conflicts"] == 0
        early = reading(3, 20.0, ts=946684800000, boot_id="b", mono_ms=5000,
                        flags=["clock_unsynced"])
        cloud.ingest("gw", "gw:3-3", [early], [])
        repaired = dict(early, ts=1764337005000, flags=["clock_corrected"])
        cloud.ingest("gw", "gw:3-3", [repaired], [])  # same reading, ts repaired
        assert cloud.stats("gw")["conflicts"] == 0
        cloud.ingest("gw", "gw:2-2", [reading(2, 19.0, ts=1764337999000)], [])  # reused
        assert cloud.stats("gw")["conflicts"] == 1
    finally:
        cloud.close()

"""The soak script, briefly, and the reference cloud's check that makes its
`duplicates` meaningful (a seq received again with another reading)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from gateway.cloud import CloudStore

SOAK = Path(__file__).resolve().parent.parent / "scripts" / "soak"
KEYS = {"lost", "duplicates", "kills", "outages", "sensor_faults", "rss_start_mb",
        "rss_end_mb"}


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

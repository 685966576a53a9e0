"""The benchmark script runs and reports well-formed figures. No timing is asserted:
the figures depend on the machine and its load (docs/performance.md has them)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "scripts" / "bench"
FIGURES = {
    "ingest_readings_per_s", "ingest_naive_readings_per_s", "drain_readings_per_s",
    "drain_naive_readings_per_s", "drain_gateway_cpu_s", "drain_cloud_cpu_s",
    "wire_bytes_per_reading_gzip", "wire_bytes_per_reading_raw",
    "wire_bytes_per_reading_naive", "steady_cpu_percent", "steady_cpu_s_per_1000_readings",
    "steady_peak_rss_mb", "storage_bytes_per_reading", "storage_bytes_per_reading_long_run",
    "startup_to_ready_s",
}


def test_quick_bench_reports_every_figure_as_a_positive_finite_number() -> None:
    done = subprocess.run([sys.executable, str(BENCH), "--quick", "--json"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    missing = FIGURES - set(result)
    assert not missing, f"missing figures: {sorted(missing)}"
    for key in FIGURES:
        value = result[key]
        assert isinstance(value, int | float) and not isinstance(value, bool), key
        assert math.isfinite(value) and value > 0, f"{key} = {value!r}"
    assert set(result["targets_met"]) <= set(result)
    assert result["quick"] is True


def test_the_table_shows_every_figure_that_has_a_target() -> None:
    from gateway.bench import ROWS, TARGETS

    assert set(TARGETS) <= {key for _, key, _, _ in ROWS}

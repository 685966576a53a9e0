"""Benchmarks of the hot paths, side by side with naive baselines (``scripts/bench``).

Everything runs in one invocation on one machine, so the figures compare like with like:

1. durable ingest: readings/s into the store with the production commit policy
   (``commit_interval`` groups; a reading counts once its group is committed), against
   one JSON row per reading in a WAL table, ``synchronous=FULL``, 1000-row transactions;
2. drain: readings/s from a backlog through the real ``Uploader`` (gzip on) into the
   reference cloud in its own process on loopback, with both processes' CPU seconds,
   against the naive table's read-and-delete rate;
3. wire bytes per reading for the demo's sensor mix (signals from ``World``, quantised
   like the chips), gzip on and off, against one JSON object per reading;
4. steady state: a gateway process fed 100 readings/s by synthetic sensors, uploading
   every 10 s: its CPU (from ``/proc``) and peak RSS;
5. storage bytes written per reading by that process (``/proc/<pid>/io``, WAL and
   checkpoints included), and the same write pattern run through enough WAL
   checkpoints to show their share;
6. start-up: spawn of ``alatau-gateway run --simulate`` to ``READY=1`` on a notify socket.

Timed figures are medians of repeated runs: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import json
import os
import random
import resource
import signal
import socket
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.store import Reading, Store

GATEWAY_ID = "alatau-bench-0001"
TS0 = 1_764_337_000_000
CLK_TCK = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024

TARGETS: dict[str, tuple[str, float]] = {
    "ingest_readings_per_s": (">=", 500_000),
    "ingest_vs_naive": (">=", 4.0),
    "drain_readings_per_s": (">=", 100_000),
    "wire_bytes_per_reading_gzip": ("<=", 12.0),
    "steady_peak_rss_mb": ("<=", 40.0),
    "steady_cpu_percent": ("<=", 1.0),
    "storage_bytes_per_reading": ("<=", 150.0),
    "storage_bytes_per_reading_long_run": ("<=", 150.0),
    "startup_to_ready_s": ("<=", 1.0),
}

DEMO_SENSORS: tuple[tuple[str, str, float], ...] = (
    ("cabinet_air", "bme280", 1.0),
    ("street_light_level", "bh1750", 1.0),
    ("street_co2", "scd4x", 5.0),
    ("street_pm", "pms5003", 2.0),
    ("cabinet_energy", "sdm120", 2.0),
)
"""The demo's sensor mix (gateway/demo.py): name, driver, interval in seconds."""


@dataclass(frozen=True)
class Plan:
    """How much of everything one run measures."""

    repeats: int
    ingest_readings: int
    naive_readings: int
    drain_readings: int
    wire_readings: int
    steady_seconds: float
    steady_rate: float
    steady_sensors: int
    long_run_commits: int
    startup_repeats: int


FULL = Plan(repeats=3, ingest_readings=1_000_000, naive_readings=200_000,
            drain_readings=1_000_000, wire_readings=50_000, steady_seconds=60.0,
            steady_rate=100.0, steady_sensors=20, long_run_commits=2400, startup_repeats=5)
QUICK = Plan(repeats=1, ingest_readings=60_000, naive_readings=20_000,
             drain_readings=40_000, wire_readings=6_000, steady_seconds=4.0,
             steady_rate=100.0, steady_sensors=20, long_run_commits=150, startup_repeats=1)


# --- realistic signals ---------------------------------------------------------------


def _float32(value: float) -> float:
    """What an Eastron meter's float32 register holds, as the SDM driver returns it."""
    from drivers.modbus import shortest_float32

    return shortest_float32(struct.pack(">f", value))


def chip_values(driver: str, world: dict[str, float], energy_kwh: float,
                at_resolution: bool) -> dict[str, float]:
    """One reading as the chip quantises it and its driver reports it: the raw register
    steps, then the driver's arithmetic rounded to the datasheet resolution as the
    drivers do (``at_resolution=False``: every digit of the float, e.g. ``count / 1.2``,
    as the drivers once reported them). A meter quantises its float32 registers itself
    (0.1 V, 1 mA, ...): its driver returns their shortest decimal, rounding nothing."""
    def res(value: float, digits: int) -> float:
        return round(value, digits) if at_resolution else value

    t, h = world["temperature_celsius"], world["relative_humidity_percent"]
    if driver == "bme280":
        # Compensated outputs (datasheet 4.2.3): 0.01 degC, Q22.10 %RH, Q24.8 Pa.
        # Resolution (table 1-3): 0.01 degC, 0.008 %RH, 0.18 Pa.
        return {"temperature_celsius": round(t, 2),
                "relative_humidity_percent": res(round(h * 1024) / 1024, 3),
                "pressure_pascals": res(round(world["pressure_pascals"] * 256) / 256, 1)}
    if driver == "bh1750":
        count = min(0xFFFE, round(world["illuminance_lux"] * 1.2))
        return {"illuminance_lux": res(count / 1.2, 1)}
    if driver == "scd4x":
        t_raw = round((t + 0.6 + 45.0) * 65535 / 175.0)
        h_raw = round((h - 1.5) * 65535 / 100.0)
        return {"co2_ppm": float(round(world["co2_ppm"])),
                "temperature_celsius": res(-45.0 + 175.0 * t_raw / 65535.0, 2),
                "relative_humidity_percent": res(100.0 * h_raw / 65535.0, 2)}
    if driver == "pms5003":
        return {name: float(round(world[name]))
                for name in ("pm1_0_ugm3", "pm2_5_ugm3", "pm10_ugm3")}
    if driver == "sdm120":
        raw = {"voltage_volts": (world["voltage_volts"], 1),
               "current_amperes": (world["current_amperes"], 3),
               "active_power_watts": (world["active_power_watts"], 1),
               "power_factor": (world["power_factor"], 3),
               "frequency_hertz": (world["frequency_hertz"], 2),
               "energy_import_kwh": (energy_kwh, 3),
               "energy_export_kwh": (0.0, 3)}
        return {name: _float32(round(value, digits)) for name, (value, digits) in raw.items()}
    raise ValueError(f"no chip model for {driver}")


def demo_stream(count: int, *, at_resolution: bool = True, seed: int = 1) -> list[Reading]:
    """``count`` readings of the demo's sensor mix in seq order, as a gateway takes them:
    each sensor on its own schedule, a few milliseconds of read time, values from a
    simulated street (``World``) quantised like the chips."""
    from gateway.simulation import World
    from gateway.store import Reading

    rng = random.Random(seed)
    origin = time.monotonic()
    world = World(day_length_s=86400.0, start_hour=7.0, seed=seed)
    per_second = sum(1.0 / interval for _, _, interval in DEMO_SENSORS)
    horizon = count / per_second + 10.0
    events: list[tuple[float, str, str]] = []
    for index, (name, driver, interval) in enumerate(DEMO_SENSORS):
        read_s = (0.004, 0.001, 0.002, 0.0, 0.012)[index]
        k = 0
        while k * interval < horizon:
            events.append((k * interval + read_s + rng.random() * 0.002, name, driver))
            k += 1
    events.sort()
    out: list[Reading] = []
    energy = 1234.5678
    last_t = 0.0
    for t, name, driver in events[:count]:
        values = world.values(origin + t)
        energy += values["active_power_watts"] * (t - last_t) / 3.6e6
        last_t = t
        out.append(Reading(name, TS0 + round(t * 1000), chip_values(
            driver, values, energy, at_resolution)))
    return out


# --- measuring helpers ---------------------------------------------------------------


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc/<pid>/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_write_bytes(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    raise RuntimeError("no write_bytes in /proc/<pid>/io")


def proc_peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/<pid>/status")


def self_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def python_for_children() -> str:
    return sys.executable


def compile_packages() -> None:
    """Byte-compile ``gateway`` and ``drivers`` as ``scripts/install.sh`` does on a device,
    so the measured processes load byte code instead of compiling the sources (which,
    from a source tree with ``PYTHONDONTWRITEBYTECODE`` set, costs every start-up about
    0.1 s and the process 2-3 MB of memory it keeps)."""
    import drivers
    import gateway

    roots = [str(Path(package.__file__).parent) for package in (gateway, drivers)
             if package.__file__ is not None]
    subprocess.run([sys.executable, "-m", "compileall", "-q", *roots],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a measured gateway process: this one's, byte code read."""
    env = dict(os.environ, **extra)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def gateway_command() -> list[str]:
    """How to start ``alatau-gateway``: the console script beside this interpreter."""
    script = Path(sys.executable).with_name("alatau-gateway")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "gateway.cli"]


@contextlib.contextmanager
def cloud_process(state_dir: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """The reference cloud as ``alatau-gateway cloud`` on a free loopback port."""
    db = state_dir / f"cloud-{time.monotonic_ns()}.db"
    proc = subprocess.Popen(
        [*gateway_command(), "cloud", "--listen", "127.0.0.1:0", "--db", str(db)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "POST " not in line:
            raise RuntimeError(f"the reference cloud did not start: {line!r}")
        url = line.split("POST ", 1)[1].split()[0]
        yield proc, url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- 1. ingest -----------------------------------------------------------------------


def open_store(path: Path) -> Store:
    from gateway.store import Store

    return Store(path, max_bytes=4096 * MIB)


def ingest(path: Path, pool: list[Reading], total: int, commit_interval_s: float
           ) -> tuple[float, Store]:
    """Readings/s into the store as the service feeds it: readings added on one thread
    (the poller's, on the event loop), ``commit()`` every ``commit_interval_s`` on
    another (the store thread); a reading counts once committed. Returns the rate and
    the store (the drain's backlog)."""
    store = open_store(path)
    add = store.add
    size = len(pool)
    committed: list[int] = []
    added_all = threading.Event()

    def commit_loop() -> None:
        while not added_all.wait(commit_interval_s):
            committed.append(len(store.commit()))
        committed.append(len(store.commit()))  # the last group: no need to wait for it

    started = time.perf_counter()
    committer = threading.Thread(target=commit_loop, name="store")
    committer.start()
    done = 0
    while done < total:
        offset = done % size
        step = min(4096, size - offset, total - done)
        for reading in pool[offset:offset + step]:
            add(reading)
        done += step
    added_all.set()
    committer.join()
    elapsed = time.perf_counter() - started
    return sum(committed) / elapsed, store


def naive_row(seq: int, reading: Reading) -> str:
    return json.dumps({"seq": seq, "sensor": reading.sensor, "ts": reading.ts,
                       "values": dict(reading.values), "flags": list(reading.flags)})


def naive_open(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE IF NOT EXISTS readings "
               "(seq INTEGER PRIMARY KEY, reading TEXT NOT NULL)")
    return db


def naive_ingest(path: Path, pool: list[Reading], total: int) -> float:
    """The baseline: one JSON row per reading, 1000-row transactions."""
    db = naive_open(path)
    size = len(pool)
    started = time.perf_counter()
    seq = 1
    while seq <= total:
        rows = [(s, naive_row(s, pool[(s - 1) % size])) for s in range(seq, min(seq + 1000,
                                                                                total + 1))]
        db.execute("BEGIN")
        db.executemany("INSERT INTO readings VALUES (?, ?)", rows)
        db.execute("COMMIT")
        seq += len(rows)
    elapsed = time.perf_counter() - started
    db.close()
    return total / elapsed


def naive_drain(path: Path, batch: int = 5000) -> float:
    """The baseline's read-and-delete rate: batches of rows read in seq order, deleted."""
    db = naive_open(path)
    drained = 0
    started = time.perf_counter()
    while True:
        rows = db.execute("SELECT seq, reading FROM readings ORDER BY seq LIMIT ?",
                          (batch,)).fetchall()
        if not rows:
            break
        db.execute("BEGIN")
        db.execute("DELETE FROM readings WHERE seq <= ?", (rows[-1][0],))
        db.execute("COMMIT")
        drained += len(rows)
    elapsed = time.perf_counter() - started
    db.close()
    return drained / elapsed


# --- 2. drain ------------------------------------------------------------------------


def uplink_config(url: str, **overrides: Any) -> Any:
    from gateway.config import UplinkConfig

    return UplinkConfig(url=url, **overrides)


async def _drain(store: Store, url: str) -> float:
    from gateway.telemetry import Telemetry
    from gateway.uplink import Uploader

    loop = asyncio.get_running_loop()
    store_thread = concurrent.futures.ThreadPoolExecutor(max_workers=1)

    async def run_store(fn: Callable[..., Any], *args: Any) -> Any:
        return await loop.run_in_executor(store_thread, lambda: fn(*args))

    uploader = Uploader(uplink_config(url), GATEWAY_ID, store, run_store, Telemetry())
    started = time.perf_counter()
    task = asyncio.create_task(uploader.run())
    try:
        while store.readings:
            if task.done():
                task.result()
                raise RuntimeError("the uploader stopped before the backlog drained")
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - started
    finally:
        uploader.stop()
        await task
        store_thread.shutdown()
    if uploader.telemetry.uplink.failures:
        raise RuntimeError(f"upload failures while draining: "
                           f"{dict(uploader.telemetry.uplink.failures)}")
    return elapsed


def drain(store: Store, state_dir: Path) -> dict[str, float]:
    """Readings/s through the real uploader into the reference cloud (another process)."""
    readings = store.readings
    with cloud_process(state_dir) as (cloud, url):
        cloud_cpu0 = proc_cpu_s(cloud.pid)
        cpu0 = self_cpu_s()
        elapsed = asyncio.run(_drain(store, url))
        gateway_cpu = self_cpu_s() - cpu0
        cloud_cpu = proc_cpu_s(cloud.pid) - cloud_cpu0
    return {"rate": readings / elapsed, "gateway_cpu_s": gateway_cpu, "cloud_cpu_s": cloud_cpu,
            "readings": float(readings)}


# --- 3. wire bytes -------------------------------------------------------------------


def wire_bytes(readings: list[Reading], state_dir: Path, batch_readings: int
               ) -> dict[str, float]:
    """Request body bytes per reading as the uploader sends them, in batches of
    ``batch_readings``: gzip on (the default) and off."""
    from gateway.telemetry import Telemetry
    from gateway.uplink import Uploader, compress_body

    path = state_dir / f"wire-{time.monotonic_ns()}.db"
    store = open_store(path)
    try:
        for reading in readings:
            store.add(reading)
        store.commit()
        uploader = Uploader(uplink_config("http://127.0.0.1:9/v1/batches"), GATEWAY_ID,
                            store, lambda *a: asyncio.sleep(0), Telemetry())
        raw = gz = count = 0
        while (batch := store.next_batch(batch_readings, 64 * MIB)) is not None:
            body = uploader.encode(batch)
            raw += len(body)
            gz += len(compress_body(body))
            count += len(batch.lines)
            store.ack(batch)
    finally:
        store.close()
    return {"gzip": gz / count, "raw": raw / count}


def naive_wire(readings: list[Reading]) -> float:
    """One JSON object per reading (one request each), uncompressed, as ``json.dumps``
    writes it by default."""
    total = 0
    for seq, reading in enumerate(readings, 1):
        total += len(json.dumps({"gateway": GATEWAY_ID, "seq": seq, "sensor": reading.sensor,
                                 "ts": reading.ts, "values": dict(reading.values),
                                 "flags": list(reading.flags)}).encode())
    return total / len(readings)


# --- 4./5. steady state --------------------------------------------------------------


STEADY_CONFIG = """
[gateway]
id = "{gateway}"

[storage]
path = "{path}"

[uplink]
url = "{url}"
flush_interval = {flush}

[health]
listen = "127.0.0.1:0"
"""


def steady_config_text(state_dir: Path, url: str, sensors: int, interval: float) -> str:
    text = STEADY_CONFIG.format(gateway=GATEWAY_ID, path=state_dir / "buffer.db", url=url,
                                flush=10.0)
    for i in range(sensors):
        # Distinct (bus, address) pairs only to pass validation: every synthetic sensor
        # is read on one worker thread, as sensors sharing one I2C bus are.
        text += (f'\n[[sensors]]\nname = "synthetic_{i:02d}"\ndriver = "bme280"\n'
                 f"bus = {i // 2 + 1}\naddress = {0x76 + i % 2}\ninterval = {interval}\n")
    return text


def _notify_socket(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    return sock


def _wait_ready(sock: socket.socket, proc: subprocess.Popen[Any], timeout_s: float) -> float:
    """Monotonic time at which ``READY=1`` arrived."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None:
            raise RuntimeError("the gateway did not report READY=1")
        sock.settimeout(min(left, 0.5))
        try:
            message = sock.recv(4096)
        except TimeoutError:
            continue
        if b"READY=1" in message.split(b"\n"):
            return time.monotonic()


def _drain_socket(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.settimeout(None)
        while sock.recv(4096):
            pass


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def steady(state_dir: Path, plan: Plan, mode: str = "source", seconds: float | None = None
           ) -> dict[str, float]:
    """The gateway in its own process at ``plan.steady_rate`` readings/s (see
    ``gateway.bench_child`` for ``mode``), uploading every 10 s to the reference cloud (another
    process): its CPU, peak RSS and bytes written, over ``seconds`` after a warm-up."""
    from gateway.store import read_only_stats

    state_dir = state_dir / f"steady-{mode}"
    state_dir.mkdir()
    interval = plan.steady_sensors / plan.steady_rate
    results: dict[str, float] = {}
    with cloud_process(state_dir) as (_, url):
        config = state_dir / "steady.toml"
        config.write_text(steady_config_text(state_dir, url, plan.steady_sensors, interval))
        notify = state_dir / "steady.notify"
        sock = _notify_socket(notify)
        env = child_env(NOTIFY_SOCKET=str(notify), ALATAU_GATEWAY_CLOCK="synced")
        proc = subprocess.Popen(
            [python_for_children(), "-m", "gateway.bench_child", str(config), mode,
             str(plan.steady_rate)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_ready(sock, proc, 30.0)
            # Read what the service sends (WATCHDOG=1 every second) as systemd does: a
            # full socket queue would block its event loop.
            threading.Thread(target=_drain_socket, args=(sock,), daemon=True).start()
            time.sleep(2.0)  # warm-up: first reads, first commit, first (empty) upload
            buffer = state_dir / "buffer.db"
            t0, cpu0, io0 = time.monotonic(), proc_cpu_s(proc.pid), proc_write_bytes(proc.pid)
            seq0 = read_only_stats(buffer)[0].next_seq
            time.sleep(plan.steady_seconds if seconds is None else seconds)
            t1, cpu1, io1 = time.monotonic(), proc_cpu_s(proc.pid), proc_write_bytes(proc.pid)
            seq1 = read_only_stats(buffer)[0].next_seq
            results["steady_peak_rss_mb"] = proc_peak_rss_mb(proc.pid)
        finally:
            _stop(proc)
            sock.close()
    readings = seq1 - seq0
    if readings <= 0:
        raise RuntimeError("the steady-state gateway stored nothing")
    cpu = cpu1 - cpu0
    results.update({
        "steady_seconds": t1 - t0,
        "steady_readings": float(readings),
        "steady_readings_per_s": readings / (t1 - t0),
        "steady_cpu_s": cpu,
        "steady_cpu_percent": max(cpu, 1 / CLK_TCK) / (t1 - t0) * 100,
        "steady_cpu_s_per_1000_readings": max(cpu, 1 / CLK_TCK) / readings * 1000,
        "storage_bytes_per_reading": max(io1 - io0, 1) / readings,
    })
    return results


def storage_long_run(state_dir: Path, commits: int, per_commit: int = 100,
                     ack_every: int = 10) -> dict[str, float]:
    """The steady state's write pattern (a commit of ``per_commit`` readings each
    interval, the backlog acknowledged every ``ack_every`` commits) run back to back for
    ``commits`` commits, long enough for WAL checkpoints to happen: bytes written per
    reading with their share included."""
    stream = demo_stream(per_commit * 50)
    store = open_store(state_dir / f"long-{time.monotonic_ns()}.db")
    path = store.path
    try:
        before = proc_write_bytes()
        written = 0
        for i in range(commits):
            for j in range(per_commit):
                store.add(stream[(i * per_commit + j) % len(stream)])
            written += len(store.commit())
            if (i + 1) % ack_every == 0:
                while (batch := store.next_batch(5000, MIB)) is not None:
                    store.ack(batch)
        after = proc_write_bytes()
        wal = Path(f"{path}-wal")
        wal_bytes = wal.stat().st_size if wal.exists() else 0
    finally:
        store.close()
    return {"storage_bytes_per_reading_long_run": (after - before) / written,
            "storage_long_run_readings": float(written),
            "storage_wal_file_bytes": float(wal_bytes)}


# --- 6. start-up ---------------------------------------------------------------------


def startup(state_dir: Path) -> float:
    """Seconds from spawning ``alatau-gateway run --config X --simulate`` (the demo's
    sensors and actuator) to its ``READY=1``."""
    from gateway.demo import demo_config_text

    run_dir = state_dir / f"startup-{time.monotonic_ns()}"
    run_dir.mkdir()
    config = run_dir / "gateway.toml"
    config.write_text(demo_config_text(run_dir, "http://127.0.0.1:9/v1/batches"))
    notify = run_dir / "notify"
    sock = _notify_socket(notify)
    env = child_env(NOTIFY_SOCKET=str(notify))
    try:
        started = time.monotonic()
        proc = subprocess.Popen([*gateway_command(), "run", "--config", str(config),
                                 "--simulate"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            ready = _wait_ready(sock, proc, 30.0)
        finally:
            _stop(proc)
    finally:
        sock.close()
    return ready - started


# --- the run -------------------------------------------------------------------------


def run(plan: Plan, log: Callable[[str], None]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="alatau-bench-", dir=bench_dir()) as tmp:
        state = Path(tmp)
        compile_packages()
        log("signals: the demo's sensor mix")
        wire_stream = demo_stream(plan.wire_readings)
        pool = wire_stream[: min(len(wire_stream), 50_000)]
        commit_interval = 1.0  # the configuration's default

        ingest_rates: list[float] = []
        naive_rates: list[float] = []
        drains: list[dict[str, float]] = []
        naive_drains: list[float] = []
        for i in range(plan.repeats):
            log(f"ingest and drain, run {i + 1}/{plan.repeats}")
            rate, store = ingest(state / f"ingest-{i}.db", pool, plan.ingest_readings,
                                 commit_interval)
            ingest_rates.append(rate)
            try:
                if store.readings > plan.drain_readings:
                    # Drain only the last drain_readings: acknowledge the rest first.
                    first = store.next_batch(store.readings - plan.drain_readings, 1 << 40)
                    assert first is not None
                    store.ack(first)
                drains.append(drain(store, state))
            finally:
                store.close()
            naive_path = state / f"naive-{i}.db"
            naive_rates.append(naive_ingest(naive_path, pool, plan.naive_readings))
            naive_drains.append(naive_drain(naive_path))
        out["ingest_readings_per_s"] = median(ingest_rates)
        out["ingest_naive_readings_per_s"] = median(naive_rates)
        out["ingest_vs_naive"] = out["ingest_readings_per_s"] / out["ingest_naive_readings_per_s"]
        out["drain_readings_per_s"] = median([d["rate"] for d in drains])
        out["drain_gateway_cpu_s"] = median([d["gateway_cpu_s"] for d in drains])
        out["drain_cloud_cpu_s"] = median([d["cloud_cpu_s"] for d in drains])
        out["drain_backlog_readings"] = drains[0]["readings"]
        out["drain_cpu_us_per_reading"] = (out["drain_gateway_cpu_s"] + out["drain_cloud_cpu_s"]
                                           ) / out["drain_backlog_readings"] * 1e6
        out["drain_naive_readings_per_s"] = median(naive_drains)

        log("wire bytes")
        full = wire_bytes(wire_stream, state, 5000)
        steady_batch = round(10.0 * sum(1 / s[2] for s in DEMO_SENSORS))
        small = wire_bytes(wire_stream[:steady_batch * 40], state, steady_batch)
        floats = wire_bytes(demo_stream(plan.wire_readings, at_resolution=False), state, 5000)
        out["wire_bytes_per_reading_gzip"] = full["gzip"]
        out["wire_bytes_per_reading_raw"] = full["raw"]
        out["wire_bytes_per_reading_naive"] = naive_wire(wire_stream)
        out["wire_bytes_per_reading_gzip_10s_batches"] = small["gzip"]
        out["wire_readings_per_10s_batch"] = float(steady_batch)
        out["wire_bytes_per_reading_gzip_unrounded"] = floats["gzip"]
        out["wire_bytes_per_reading_raw_unrounded"] = floats["raw"]

        log(f"steady state: {plan.steady_rate:g} readings/s for {plan.steady_seconds:g} s")
        out.update(steady(state, plan))
        log(f"steady state through the poller: {plan.steady_sensors} synthetic sensors")
        polled = steady(state, plan, "poller", plan.steady_seconds / 2)
        out["steady_poller_cpu_percent"] = polled["steady_cpu_percent"]
        out["steady_poller_cpu_s_per_1000_readings"] = polled["steady_cpu_s_per_1000_readings"]
        out["steady_poller_peak_rss_mb"] = polled["steady_peak_rss_mb"]
        log("storage writes with WAL checkpoints")
        out.update(storage_long_run(state, plan.long_run_commits))

        log("start-up to READY")
        out["startup_to_ready_s"] = median([startup(state)
                                            for _ in range(plan.startup_repeats)])
        out["repeats"] = plan.repeats
        out["startup_repeats"] = plan.startup_repeats
    out["targets_met"] = {key: _met(out[key], *target) for key, target in TARGETS.items()}
    return out


def bench_dir() -> str | None:
    """Where the benchmark's files go: ``$ALATAU_BENCH_DIR``, else the system's temp dir
    (it must be a real disk, not tmpfs, for the write figures to mean anything)."""
    return os.environ.get("ALATAU_BENCH_DIR") or None


def _met(value: float, op: str, target: float) -> bool:
    return value >= target if op == ">=" else value <= target


ROWS: tuple[tuple[str, str, str | None, str], ...] = (
    ("durable ingest", "ingest_readings_per_s", "ingest_naive_readings_per_s", "readings/s"),
    ("  ratio to naive", "ingest_vs_naive", None, "x"),
    ("drain to cloud, end to end", "drain_readings_per_s", "drain_naive_readings_per_s",
     "readings/s"),
    ("  CPU: gateway side", "drain_gateway_cpu_s", None, "s"),
    ("  CPU: cloud side", "drain_cloud_cpu_s", None, "s"),
    ("wire, gzip (5000-reading batches)", "wire_bytes_per_reading_gzip",
     "wire_bytes_per_reading_naive", "B/reading"),
    ("wire, uncompressed", "wire_bytes_per_reading_raw", "wire_bytes_per_reading_naive",
     "B/reading"),
    ("wire, gzip (10 s batches)", "wire_bytes_per_reading_gzip_10s_batches", None,
     "B/reading"),
    ("wire, gzip, values unrounded", "wire_bytes_per_reading_gzip_unrounded", None,
     "B/reading"),
    ("steady: CPU of one core", "steady_cpu_percent", None, "%"),
    ("steady: CPU per 1000 readings", "steady_cpu_s_per_1000_readings", None, "s"),
    ("steady: peak RSS", "steady_peak_rss_mb", None, "MiB"),
    ("steady via poller: CPU of one core", "steady_poller_cpu_percent", None, "%"),
    ("steady via poller: CPU per 1000 rd.", "steady_poller_cpu_s_per_1000_readings", None,
     "s"),
    ("storage written (steady run)", "storage_bytes_per_reading", None, "B/reading"),
    ("storage written (with checkpoints)", "storage_bytes_per_reading_long_run", None,
     "B/reading"),
    ("start-up to READY", "startup_to_ready_s", None, "s"),
)


def _fmt(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def table(out: dict[str, Any]) -> str:
    lines = [f"{'figure':<36} {'value':>12} {'naive':>12}  {'unit':<11} target",
             "-" * 80]
    for label, key, naive, unit in ROWS:
        target = TARGETS.get(key)
        mark = ""
        if target is not None:
            mark = f"{target[0]} {_fmt(target[1])}  " + ("ok" if out["targets_met"][key]
                                                          else "MISSED")
        naive_text = _fmt(out[naive]) if naive else ""
        lines.append(f"{label:<36} {_fmt(out[key]):>12} {naive_text:>12}  {unit:<11} {mark}")
    lines.append(f"(timed figures: median of {out['repeats']} runs; start-up: median of "
                 f"{out['startup_repeats']})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="scripts/bench",
        description="Throughput, memory, wire bytes, storage writes and start-up, beside "
                    "naive baselines (docs/performance.md).")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes, one run each (seconds; figures are rough)")
    parser.add_argument("--repeats", type=int, help="runs of each timed figure (median)")
    options = parser.parse_args(args)
    plan = QUICK if options.quick else FULL
    if options.repeats is not None:
        if options.repeats < 1:
            parser.error("--repeats must be at least 1")
        plan = Plan(**{**plan.__dict__, "repeats": options.repeats})

    def log(message: str) -> None:
        print(f"bench: {message}", file=sys.stderr, flush=True)

    started = time.monotonic()
    out = run(plan, log)
    out["quick"] = options.quick
    out["bench_seconds"] = time.monotonic() - started
    out["python"] = sys.version.split()[0]
    out["machine"] = os.uname().machine
    out["cpus"] = os.cpu_count() or 1
    if options.json:
        print(json.dumps(out, indent=1, sort_keys=True))
    else:
        print(table(out))
    return 0






if __name__ == "__main__":
    sys.exit(main())

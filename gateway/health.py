"""The local health endpoint: ``/healthz`` (JSON) and ``/metrics`` (Prometheus text)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from gateway import power
from gateway.config import Config
from gateway.poller import stale_after
from gateway.store import StoreStats
from gateway.telemetry import Telemetry

log = logging.getLogger(__name__)


def _age(mono: float | None, now: float) -> float | None:
    return None if mono is None else round(now - mono, 3)


def snapshot(config: Config, telemetry: Telemetry, stats: StoreStats) -> dict[str, Any]:
    """The ``/healthz`` object (and ``status --json``)."""
    now = time.monotonic()
    sensors: dict[str, Any] = {}
    worst = "ok"
    for sensor in config.sensors:
        state = telemetry.sensor(sensor.name)
        age = _age(state.last_reading_mono, now)
        shown = state.state
        if shown == "ok" and age is not None and age > stale_after(sensor,
                                                                   config.health.stale_after):
            shown = "stale"
        if shown == "starting" and now - telemetry.started_mono > stale_after(
                sensor, config.health.stale_after):
            shown = "stale"
        if shown in ("failing", "stale"):
            worst = "degraded"
        sensors[sensor.name] = {
            "state": shown, "last_reading_age_s": age, "errors": state.errors,
            "consecutive_errors": state.consecutive_errors, "last_error": state.last_error,
            "stuck": state.stuck, "lateness_s": round(state.lateness_s, 4),
            "max_lateness_s": round(state.max_lateness_s, 4), "resets": state.resets,
            "reinits": state.reinits, "power_cycles": state.power_cycles,
        }
    up = telemetry.uplink
    oldest_age = None
    if stats.oldest_ts is not None:
        oldest_age = round(max(0.0, time.time() - stats.oldest_ts / 1000), 3)
    uplink = {
        "state": up.state, "last_success_age_s": _age(up.last_success_mono, now),
        "last_error": up.last_error, "uploads": up.uploads, "readings_sent": up.readings_sent,
        "bytes_sent": up.bytes_sent, "failures": dict(up.failures),
        "retry_in_s": None if up.retry_at_mono is None else round(max(0.0, up.retry_at_mono
                                                                        - now), 3),
    }
    if up.state in ("unauthorized", "rejecting"):
        worst = "failing"
    elif up.state in ("retrying", "throttled") and worst == "ok":
        worst = "degraded"
    supply = power.decode(telemetry.throttled)
    if power.degraded(supply) and worst == "ok":
        worst = "degraded"
    if sensors and all(s["state"] in ("failing", "stale") for s in sensors.values()):
        worst = "failing"
    actuators = {
        name: {"state": a.value, "source": a.source, "last_command": a.last_command}
        for name, a in telemetry.actuators.items()
    }
    return {
        "status": worst,
        "gateway": config.gateway_id,
        "uptime_s": round(now - telemetry.started_mono, 3),
        "sensors": sensors,
        "buffer": {
            "readings": stats.readings, "bytes": stats.bytes, "oldest_age_s": oldest_age,
            "dead_letters": stats.dead_letters, "next_seq": stats.next_seq,
            "acked_seq": stats.acked_seq, "pending_drops": stats.pending_drops,
            "dropped": stats.dropped_by_reason, "file_bytes": stats.file_bytes,
            "quarantined": stats.quarantined,
        },
        "uplink": uplink,
        "actuators": actuators,
        "clock": {"synchronized": telemetry.clock_synchronized},
        "power": supply,
        "produced": telemetry.produced,
    }


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def metrics_text(health: dict[str, Any]) -> str:
    """Prometheus text exposition format 0.0.4."""
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str,
               samples: list[tuple[dict[str, str], float | None]]) -> None:
        lines.append(f"# HELP alatau_{name} {help_text}")
        lines.append(f"# TYPE alatau_{name} {kind}")
        for labels, value in samples:
            if value is None:
                continue
            label_text = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
            lines.append(f"alatau_{name}{{{label_text}}} {float(value):g}" if label_text
                         else f"alatau_{name} {float(value):g}")

    sensors = health["sensors"]
    metric("sensor_up", "gauge", "1 if the sensor's last read succeeded and is fresh.",
           [({"sensor": n}, 1.0 if s["state"] == "ok" else 0.0) for n, s in sensors.items()])
    metric("sensor_errors_total", "counter", "Failed reads.",
           [({"sensor": n}, s["errors"]) for n, s in sensors.items()])
    metric("sensor_last_reading_age_seconds", "gauge", "Seconds since the last good reading.",
           [({"sensor": n}, s["last_reading_age_s"]) for n, s in sensors.items()])
    metric("sensor_poll_lateness_seconds", "gauge", "How late the last poll started.",
           [({"sensor": n}, s["lateness_s"]) for n, s in sensors.items()])
    metric("sensor_stuck", "gauge", "1 if the sensor repeats the same values.",
           [({"sensor": n}, 1.0 if s["stuck"] else 0.0) for n, s in sensors.items()])
    metric("sensor_resets_total", "counter", "Soft resets after failures in a row.",
           [({"sensor": n}, s["resets"]) for n, s in sensors.items()])
    metric("sensor_reinits_total", "counter",
           "Drivers made anew (chip probed and set up again) after failures in a row.",
           [({"sensor": n}, s["reinits"]) for n, s in sensors.items()])
    metric("sensor_power_cycles_total", "counter",
           "Supply switched off and on (power_pin) after failures in a row.",
           [({"sensor": n}, s["power_cycles"]) for n, s in sensors.items()])
    buffer = health["buffer"]
    metric("buffer_readings", "gauge", "Readings waiting for upload.", [({}, buffer["readings"])])
    metric("buffer_bytes", "gauge", "Bytes of readings waiting for upload.",
           [({}, buffer["bytes"])])
    metric("buffer_oldest_age_seconds", "gauge", "Age of the oldest unsent reading.",
           [({}, buffer["oldest_age_s"])])
    metric("buffer_dead_letters", "gauge", "Readings the cloud refused for good.",
           [({}, buffer["dead_letters"])])
    metric("buffer_dropped_total", "counter", "Readings dropped on purpose, by reason.",
           [({"reason": r}, c) for r, c in buffer["dropped"].items()])
    metric("buffer_in_memory", "gauge", "Readings read but not yet committed to the buffer.",
           [({}, buffer.get("in_memory"))])
    metric("buffer_commit_failures_total", "counter",
           "Commits that failed (e.g. disk full); their readings were kept and retried.",
           [({}, buffer.get("commit_failures"))])
    up = health["uplink"]
    metric("uplink_uploads_total", "counter", "Batches stored by the cloud.",
           [({}, up["uploads"])])
    metric("uplink_readings_sent_total", "counter", "Readings stored by the cloud.",
           [({}, up["readings_sent"])])
    metric("uplink_bytes_sent_total", "counter", "Request body bytes sent.",
           [({}, up["bytes_sent"])])
    metric("uplink_failures_total", "counter", "Failed uploads, by kind.",
           [({"kind": k}, c) for k, c in up["failures"].items()])
    metric("uplink_last_success_age_seconds", "gauge", "Seconds since the last stored batch.",
           [({}, up["last_success_age_s"])])
    metric("actuator_value", "gauge", "Actuator output (0..1).",
           [({"actuator": n, "source": a["source"]}, a["state"])
            for n, a in health["actuators"].items()])
    metric("clock_synchronized", "gauge", "1 if the wall clock is synchronised.",
           [({}, 1.0 if health["clock"]["synchronized"] else 0.0)])
    supply = health["power"]
    metric("power_throttled", "gauge", "Raspberry Pi get_throttled bits (0: all good).",
           [({}, supply.get("bits"))])
    metric("power_condition", "gauge",
           "1 if the supply condition holds now (when=now) or has held since boot.",
           [({"condition": name, "when": when}, float(supply[key]))
            for name, _, _ in power.CONDITIONS
            for when, key in (("now", name), ("since_boot", f"{name}_since_boot"))
            if supply.get(key) is not None])
    metric("readings_produced_total", "counter", "Readings taken since start.",
           [({}, health["produced"])])
    metric("up", "gauge", "1 ok, 0.5 degraded, 0 failing.",
           [({}, {"ok": 1.0, "degraded": 0.5}.get(health["status"], 0.0))])
    return "\n".join(lines) + "\n"


# The endpoint serves two small documents on loopback to `status`, a Prometheus scraper or
# a technician's curl, so it is a few lines on asyncio's streams rather than aiohttp's
# server: aiohttp.web and its modules cost the gateway process 2.3 MB of memory (see
# docs/performance.md), a device's scarcest resource after the SD card.
REQUEST_TIMEOUT_S = 5.0
MAX_REQUEST_BYTES = 8192
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           408: "Request Timeout", 431: "Request Header Fields Too Large",
           500: "Internal Server Error", 503: "Service Unavailable"}


class HealthServer:
    """``GET /healthz`` (JSON; 503 while failing) and ``GET /metrics`` (Prometheus text),
    one request per connection (``Connection: close``)."""

    def __init__(self, listen: str, snapshot_fn: Callable[[], Awaitable[dict[str, Any]]]
                 ) -> None:
        host, _, port = listen.rpartition(":")
        self.host = host.strip("[]")
        self.port = int(port)
        self.snapshot_fn = snapshot_fn
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, self.host, self.port,
                                                  limit=MAX_REQUEST_BYTES)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                     ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"),
                                              REQUEST_TIMEOUT_S)
            except (asyncio.LimitOverrunError, ValueError):
                status, content_type, body = 431, "text/plain", b"request too large\n"
                head = b""
            except TimeoutError:
                status, content_type, body = 408, "text/plain", b"request timeout\n"
                head = b""
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            method = ""
            if head:
                try:
                    status, content_type, body, method = await self._answer(head)
                except Exception as exc:  # one bad answer, not a dead endpoint
                    log.warning("health endpoint: %s: %s", type(exc).__name__, exc)
                    status, content_type = 500, "text/plain"
                    body = f"{type(exc).__name__}: {exc}\n".encode()
            reply = (f"HTTP/1.1 {status} {REASONS[status]}\r\n"
                     f"Content-Type: {content_type}\r\n"
                     f"Content-Length: {len(body)}\r\n"
                     + ("X-Prometheus-Format: 0.0.4\r\n"
                        if content_type.startswith("text/plain; version") else "")
                     + "Cache-Control: no-store\r\nConnection: close\r\n\r\n")
            writer.write(reply.encode("ascii") + (b"" if method == "HEAD" else body))
            with contextlib.suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(writer.drain(), REQUEST_TIMEOUT_S)
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _answer(self, head: bytes) -> tuple[int, str, bytes, str]:
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return 400, "text/plain", b"bad request line\n", ""
        method, target, _ = parts
        path = target.split("?", 1)[0]
        if path not in ("/healthz", "/metrics"):
            return 404, "text/plain", b"not found: try /healthz or /metrics\n", method
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"only GET and HEAD\n", method
        health = await self.snapshot_fn()
        if path == "/healthz":
            status = 503 if health["status"] == "failing" else 200
            return (status, "application/json",
                    json.dumps(health).encode("utf-8"), method)
        return (200, "text/plain; version=0.0.4; charset=utf-8",
                metrics_text(health).encode("utf-8"), method)

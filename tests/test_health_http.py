"""The health endpoint speaks enough HTTP/1.1 for curl, Prometheus and ``status``, and no
client (silent, oversized, wrong method) can stall it or make it answer wrongly."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from gateway.config import parse
from gateway.health import HealthServer, snapshot
from gateway.store import StoreStats
from gateway.telemetry import Telemetry

CONFIG = parse("""
[gateway]
id = "alatau-http-0001"
[storage]
path = "/nonexistent/buffer.db"
[uplink]
url = "http://127.0.0.1:9/v1/batches"
[[sensors]]
name = "air"
driver = "bme280"
interval = 10.0
""")
STATS = StoreStats(readings=3, bytes=4096, oldest_ts=None, next_seq=4, acked_seq=0,
                   pending_drops=0, dead_letters=0, dropped_by_reason={}, file_bytes=8192,
                   quarantined=[])
HEALTH = json.loads(json.dumps(snapshot(CONFIG, Telemetry(), STATS)))


async def exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 5.0)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, body


def serve(health: dict[str, Any], scenario: Any) -> Any:
    async def snapshot() -> dict[str, Any]:
        return health

    async def main() -> Any:
        server = HealthServer("127.0.0.1:0", snapshot)
        port = await server.start()
        try:
            return await scenario(port)
        finally:
            await server.stop()
    return asyncio.run(main())


def test_healthz_is_json_with_its_length_and_metrics_are_prometheus_text() -> None:
    async def scenario(port: int) -> Any:
        return (await exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"),
                await exchange(port, b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"))
    (status, headers, body), (m_status, m_headers, m_body) = serve(HEALTH, scenario)
    assert status == 200 and headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(body)
    assert json.loads(body) == HEALTH
    assert m_status == 200 and m_headers["content-type"].startswith("text/plain; version=0.0.4")
    assert m_body.decode().endswith("\n") and "alatau_buffer_readings 3" in m_body.decode()


def test_failing_gateway_answers_503_so_a_probe_notices() -> None:
    async def scenario(port: int) -> Any:
        return await exchange(port, b"GET /healthz HTTP/1.1\r\n\r\n")
    status, _, body = serve(dict(HEALTH, status="failing"), scenario)
    assert status == 503 and json.loads(body)["status"] == "failing"


def test_unknown_path_wrong_method_head_and_garbage() -> None:
    async def scenario(port: int) -> Any:
        return [await exchange(port, b"GET /nope HTTP/1.1\r\n\r\n"),
                await exchange(port, b"POST /healthz HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
                await exchange(port, b"HEAD /healthz HTTP/1.1\r\n\r\n"),
                await exchange(port, b"\x16\x03\x01 hello\r\n\r\n")]
    (nf, _, _), (na, _, _), (head, head_headers, head_body), (bad, _, _) = serve(HEALTH, scenario)
    assert (nf, na, head, bad) == (404, 405, 200, 400)
    assert head_body == b"" and int(head_headers["content-length"]) > 0


def test_oversized_request_is_refused_and_a_silent_client_blocks_no_one() -> None:
    async def scenario(port: int) -> Any:
        # A client that connects and says nothing holds its own connection only.
        _, silent = await asyncio.open_connection("127.0.0.1", port)
        big = b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
        result = [await exchange(port, big),
                  await exchange(port, b"GET /healthz HTTP/1.1\r\n\r\n")]
        silent.close()
        return result
    (big_status, _, _), (status, _, _) = serve(HEALTH, scenario)
    assert big_status == 431 and status == 200


def test_a_failing_snapshot_answers_500_and_the_endpoint_keeps_serving() -> None:
    calls = []

    async def snapshot_fn() -> dict[str, Any]:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("store closed")
        return HEALTH

    async def main() -> Any:
        server = HealthServer("127.0.0.1:0", snapshot_fn)
        port = await server.start()
        try:
            return [await exchange(port, b"GET /healthz HTTP/1.1\r\n\r\n"),
                    await exchange(port, b"GET /healthz HTTP/1.1\r\n\r\n")]
        finally:
            await server.stop()
    (first, _, body), (second, _, _) = asyncio.run(main())
    assert first == 500 and b"store closed" in body
    assert second == 200

"""The uploader against the real reference cloud on loopback: every reply class."""

from __future__ import annotations

import asyncio
import email.utils
import sqlite3
import time
from pathlib import Path

import pytest

from gateway.store import Store
from gateway.uplink import Backoff, retry_after_seconds
from tests.helpers import GATEWAY, fill, run_until, uplink


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "buffer.db")
    yield s
    s.close()


def delivered(cloud) -> list[int]:
    return cloud.store.seqs(GATEWAY)


def test_batches_are_delivered_in_order_with_idempotency_keys(tmp_path, store):
    fill(store, 250)

    async def go():
        async with uplink(tmp_path, store, batch_max_readings=100) as (up, cloud):
            await run_until(up, lambda: store.readings == 0)
            assert delivered(cloud) == list(range(1, 251))
            keys = [e["key"] for e in cloud.request_log]
            assert keys == [f"{GATEWAY}:1-100", f"{GATEWAY}:101-200", f"{GATEWAY}:201-250"]
    asyncio.run(go())
    assert store.acked_seq == 250


@pytest.mark.parametrize("status", [500, 502, 504, 408])
def test_server_errors_are_retried_and_nothing_is_lost(tmp_path, store, status):
    fill(store, 30)

    async def go():
        async with uplink(tmp_path, store) as (up, cloud):
            cloud.faults.status, cloud.faults.count = status, 3
            await run_until(up, lambda: store.readings == 0)
            assert [e["status"] for e in cloud.request_log] == [status] * 3 + [200]
            assert delivered(cloud) == list(range(1, 31))
            assert up.telemetry.uplink.failures["server_error"] == 3
    asyncio.run(go())


def test_rows_stay_until_the_cloud_acknowledges(tmp_path, store):
    fill(store, 10)

    async def go():
        async with uplink(tmp_path, store) as (up, cloud):
            cloud.faults.down = True
            task = asyncio.create_task(up.run())
            await asyncio.sleep(0.5)
            assert cloud.requests >= 2
            assert store.readings == 10 and store.acked_seq == 0
            up.stop()
            await task
    asyncio.run(go())
    reopened = Store(store.path)
    assert reopened.readings == 10
    reopened.close()


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_in_seconds_is_respected(tmp_path, store, status):
    fill(store, 5)

    async def go():
        async with uplink(tmp_path, store) as (up, cloud):
            cloud.faults.status, cloud.faults.count, cloud.faults.retry_after = status, 1, "1"
            await run_until(up, lambda: store.readings == 0)
            first, second = cloud.request_log[0], cloud.request_log[1]
            assert first["status"] == status and second["status"] == 200
            assert second["loop_time"] - first["loop_time"] >= 1.0
    asyncio.run(go())


def test_retry_after_as_http_date_is_respected(tmp_path, store):
    fill(store, 5)

    async def go():
        async with uplink(tmp_path, store) as (up, cloud):
            when = email.utils.formatdate(time.time() + 2, usegmt=True)
            cloud.faults.status, cloud.faults.count, cloud.faults.retry_after = 503, 1, when
            await run_until(up, lambda: store.readings == 0)
            gap = cloud.request_log[1]["loop_time"] - cloud.request_log[0]["loop_time"]
            # An HTTP date has one-second resolution: at least 1 s must pass.
            assert gap >= 1.0
    asyncio.run(go())


def test_retry_after_parsing():
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    date = email.utils.formatdate(1_000_060, usegmt=True)
    assert retry_after_seconds(date, now=1_000_000) == pytest.approx(60)
    assert retry_after_seconds(email.utils.formatdate(10, usegmt=True), now=1000) == 0


def test_conflict_counts_as_delivered(tmp_path, store):
    fill(store, 20)

    async def go():
        async with uplink(tmp_path, store) as (up, cloud):
            # The cloud already holds this batch (an earlier send whose reply was lost).
            cloud.store.ingest(GATEWAY, f"{GATEWAY}:1-20",
                               [__import__("json").loads(line) for _, line in
                                store.iter_lines()], [])
            await run_until(up, lambda: store.readings == 0)
            assert cloud.request_log[-1]["status"] == 409
            assert cloud.store.stats(GATEWAY)["readings"] == 20
    asyncio.run(go())


def test_too_large_splits_and_resends(tmp_path, store):
    fill(store, 100)

    async def go():
        async with uplink(tmp_path, store) as (up, cloud):
            cloud.faults.max_readings = 30
            await run_until(up, lambda: store.readings == 0)
            assert delivered(cloud) == list(range(1, 101))
            assert all(e.get("readings", 0) <= 30 for e in cloud.request_log
                       if e["status"] == 200)
            assert cloud.store.stats(GATEWAY)["dropped"] == 0
    asyncio.run(go())


def test_poison_reading_is_dead_lettered_and_the_rest_delivered(tmp_path, store):
    fill(store, 64)

    async def go():
        async with uplink(tmp_path, store) as (up, cloud):
            cloud.faults.reject_seqs = {37}
            task = asyncio.create_task(up.run())
            while store.readings:
                await asyncio.sleep(0.01)
            assert delivered(cloud) == [s for s in range(1, 65) if s != 37]
            # The next batch tells the cloud about the gap, so it knows it is not a loss.
            fill(store, 1)
            while store.readings:
                await asyncio.sleep(0.01)
            up.stop()
            await task
            stats = cloud.store.stats(GATEWAY)
            assert stats["dropped_ranges"] == [{"from_seq": 37, "to_seq": 37,
                                                "reason": "rejected"}]
    asyncio.run(go())
    letters = store.dead_letters()
    assert [d["seq"] for d in letters] == [37]
    assert letters[0]["status"] == 422 and "37" in letters[0]["reason"]


def test_unauthorized_keeps_data_and_reports_unhealthy(tmp_path, store):
    fill(store, 10)
    token = tmp_path / "token"
    token.write_text("wrong\n")

    async def go():
        async with uplink(tmp_path, store, token="right", token_file=str(token)) as (up, cloud):
            task = asyncio.create_task(up.run())
            await asyncio.sleep(0.5)
            assert up.telemetry.uplink.state == "unauthorized"
            assert cloud.requests == 1  # slow retries: not hammering
            assert store.readings == 10
            up.stop()
            await task
    asyncio.run(go())


def test_bearer_token_is_sent(tmp_path, store):
    fill(store, 3)
    token = tmp_path / "token"
    token.write_text("s3cret\n")

    async def go():
        async with uplink(tmp_path, store, token="s3cret", token_file=str(token)) as (up, cl):
            await run_until(up, lambda: store.readings == 0)
            assert delivered(cl) == [1, 2, 3]
    asyncio.run(go())


def test_connection_refused_backs_off_then_delivers(tmp_path, store):
    fill(store, 5)

    async def go():
        async with uplink(tmp_path, store) as (up, cloud):
            port = cloud.port
            await cloud._runner.cleanup()  # the cloud vanishes
            task = asyncio.create_task(up.run())
            await asyncio.sleep(0.3)
            assert up.telemetry.uplink.failures["connection"] >= 1
            assert store.readings == 5
            await cloud.start(port=port)
            deadline = time.monotonic() + 10
            while store.readings and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            up.stop()
            await task
            assert delivered(cloud) == [1, 2, 3, 4, 5]
    asyncio.run(go())


def test_backoff_has_full_jitter_and_a_cap():
    import random
    b = Backoff(1.0, 30.0, random.Random(1))
    waits = [b.next() for _ in range(12)]
    assert all(0 <= w <= 30 for w in waits)
    assert max(waits[6:]) > 8  # grows past the first steps
    assert len(set(round(w, 3) for w in waits)) == len(waits)  # jittered, not fixed


def test_a_poison_reading_on_a_full_disk_stays_and_is_set_aside_once_there_is_room(
        tmp_path, store, monkeypatch):
    """Moving a refused reading to the dead letters is a write: on a full disk it fails.
    The uploader keeps running, the readings stay in the buffer, and once the disk has
    room the reading is set aside and the rest delivered."""
    from gateway import store as store_mod

    fill(store, 20)
    full = {"on": True}
    resolve = store._resolve

    def disk_full_resolve(batch, rejected):
        if rejected is not None and full["on"]:
            raise sqlite3.OperationalError("database or disk is full")
        return resolve(batch, rejected)

    monkeypatch.setattr(store, "_resolve", disk_full_resolve)
    monkeypatch.setattr(store_mod, "_disk_full", lambda exc: True)

    async def go():
        async with uplink(tmp_path, store) as (up, cloud):
            cloud.faults.reject_seqs = {5}
            task = asyncio.create_task(up.run())
            deadline = time.monotonic() + 10
            while up.telemetry.uplink.last_error is None or \
                    "dead letters" not in up.telemetry.uplink.last_error:
                assert time.monotonic() < deadline and not task.done()
                await asyncio.sleep(0.01)
            assert store.readings == 16 and store.dead_letters() == []  # 1-4 delivered
            await asyncio.sleep(0.3)
            assert not task.done() and up.telemetry.uplink.state != "rejecting"
            full["on"] = False
            while store.readings:
                assert time.monotonic() < deadline + 10 and not task.done()
                await asyncio.sleep(0.01)
            up.stop()
            await task
            assert delivered(cloud) == [s for s in range(1, 21) if s != 5]
    asyncio.run(go())
    assert [d["seq"] for d in store.dead_letters()] == [5]

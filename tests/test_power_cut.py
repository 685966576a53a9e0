"""Power cuts: the buffer's files as a cut in the middle of a write leaves them.

A kill -9 leaves every byte SQLite handed to the kernel; a power cut does not. What the
card holds afterwards is the state after the last ``fsync`` plus some of the writes in
flight: a prefix of them, a torn sector, zeros where the file grew but the data never
arrived, garbage, or (the card reorders) any mix of the sectors written since the last
barrier. The model used here:

1. Run the buffer for a while (commits, acknowledged batches) and copy its files right
   after a ``commit()`` returned: that state is synced, everything in it was promised.
2. Do one more step that writes between two barriers: a commit appended to the WAL, a
   checkpoint copying pages into the main file, or the first commit after a completed
   checkpoint, which rewrites the WAL from its start (header synced first).
3. Build the files a cut during that step can leave: only bytes written in step 2 are
   damaged, in the ways listed above; the -shm file is stale or garbage.
4. Reopen. Every reading of step 1 must be there, unchanged; the step-2 transaction is
   there entirely or not at all; nothing is quarantined; seq goes on above.

A second test damages the files anywhere (the card itself fails): the buffer must still
start, keep working, never hand out garbage as a reading and, when it had to quarantine,
never hand out a seq again.

Seeded, so a failure names its trial and replays exactly.
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gateway.cloud import CloudServer
from gateway.config import parse
from gateway.poller import SensorSlot
from gateway.service import Gateway
from gateway.store import Reading, Store

SEED = 20261128
TS0 = 1_764_337_000_000
SECTOR = 512
SUFFIXES = ("", "-wal", "-shm", ".seq")
TRIALS = 60


def reading(counter: int) -> Reading:
    return Reading("cabinet_air", TS0 + counter * 1000,
                   {"counter": float(counter), "temperature_celsius": 20.0 + counter % 97 / 10})


def counter_of(line: bytes) -> int:
    return int(json.loads(line)["values"]["counter"])


@dataclass
class History:
    """What the gateway promised: seq -> counter for every commit() that returned."""

    by_seq: dict[int, int] = field(default_factory=dict)
    counter: int = 0
    acked: int = 0

    @property
    def handed_out(self) -> int:
        return max(self.by_seq, default=0)

    def commit(self, store: Store, count: int) -> range:
        counters = range(self.counter, self.counter + count)
        for c in counters:
            store.add(reading(c))
        seqs = store.commit()
        assert len(seqs) == count
        self.by_seq.update(zip(seqs, counters, strict=True))
        self.counter += count
        return seqs

    def ack_some(self, store: Store, rng: random.Random) -> None:
        batch = store.next_batch(rng.randint(1, 60), 1 << 20)
        if batch is not None:
            store.ack(batch)
            if batch.lines:
                self.acked = max(self.acked, batch.key_range[1])


def run_for_a_while(store: Store, rng: random.Random, history: History, steps: int) -> int:
    """Commits and acks; returns where in the WAL the last commit began."""
    for _ in range(steps):
        if rng.random() < 0.7:
            history.commit(store, rng.randint(1, 80))
        else:
            history.ack_some(store, rng)
    wal = Path(f"{store.path}-wal")
    last_began = wal.stat().st_size if wal.exists() else 0
    history.commit(store, rng.randint(1, 20))  # the snapshot follows a commit that returned
    return last_began


def copy_files(path: Path) -> dict[str, bytes]:
    return {s: Path(f"{path}{s}").read_bytes() for s in SUFFIXES if Path(f"{path}{s}").exists()}


def write_files(directory: Path, files: dict[str, bytes]) -> Path:
    directory.mkdir()
    path = directory / "buffer.db"
    for suffix, data in files.items():
        Path(f"{path}{suffix}").write_bytes(data)
    return path


Content = tuple[int, int, tuple[tuple[int, int], ...]]


def content(store: Store) -> Content:
    """What a buffer holds: acked watermark, next seq, undelivered (seq, counter)."""
    return (store.acked_seq, store.next_seq,
            tuple((seq, counter_of(line)) for seq, line in store.iter_lines()))


# --- what a cut during one write leaves --------------------------------------------


def dirty_sectors(old: bytes, new: bytes) -> list[int]:
    """Offsets of the sectors the step wrote (differing, or beyond the old end)."""
    return [offset for offset in range(0, len(new), SECTOR)
            if new[offset:offset + SECTOR] != old[offset:offset + SECTOR]]


def cut(old: bytes, new: bytes, rng: random.Random, *, floor: int = 0,
        synced_first: int = 0) -> tuple[bytes, str]:
    """The file after power failed while ``old`` was being turned into ``new``.

    The first ``synced_first`` bytes (the WAL header after a restart) are written and
    flushed before anything else. Then sectors are written in ascending order; the sector
    being written
    when power went is torn (a prefix of it arrived), garbage, zeros or untouched; the
    sectors after it are either all missing (an ordered device) or each one old, new,
    zero or garbage (a device that reorders). A grown file may end short, or longer than
    anything written (a block allocated, never filled). Bytes below ``floor`` are not
    part of the write (an append) and are never touched: SQLite assumes, as most cards
    deliver, that writing a sector does not damage the bytes of it it did not write.
    """
    buf = bytearray(old[:len(new)].ljust(len(new), b"\0")) if len(new) >= len(old) \
        else bytearray(old)
    if synced_first:
        if rng.random() < 0.35:  # power went while the header was being written
            mode = rng.choice(("torn", "garbage", "zeros"))
            split = rng.randint(0, synced_first)
            if mode == "torn":
                buf[:split] = new[:split]
            elif mode == "garbage":
                buf[:synced_first] = rng.randbytes(synced_first)
            else:
                buf[:synced_first] = bytes(synced_first)
            return bytes(buf[:max(len(old), synced_first)]), f"header {mode}"
        buf[:synced_first] = new[:synced_first]
        floor = max(floor, synced_first)
    sectors = [s for s in dirty_sectors(old, new) if s + SECTOR > floor]
    if not sectors:
        return bytes(buf), "no change"
    at = rng.randint(0, len(sectors))  # sectors before ``at`` made it intact

    def put(offset: int, mode: str) -> None:
        low, end = max(offset, floor), min(offset + SECTOR, len(new))
        if low >= end:
            return
        if mode == "new":
            buf[low:end] = new[low:end]
        elif mode == "torn":
            split = rng.randint(low, end)
            buf[low:split] = new[low:split]
        elif mode == "garbage":
            buf[low:end] = rng.randbytes(end - low)
        elif mode == "zeros":
            buf[low:end] = bytes(end - low)

    reorder = rng.random() < 0.4
    for i, offset in enumerate(sectors):
        if i < at:
            put(offset, "new")
        elif i == at:
            put(offset, rng.choice(("torn", "garbage", "zeros", "old")))
        elif reorder:
            put(offset, rng.choice(("new", "old", "zeros", "garbage")))
    if len(new) > len(old) and rng.random() < 0.4:
        del buf[rng.randint(len(old), len(new)):]  # the new size never reached the card
    elif rng.random() < 0.15:
        buf += rng.randbytes(rng.randint(1, 3 * SECTOR))
    return bytes(buf), f"{len(sectors)} sectors, cut at {at}{' reordered' if reorder else ''}"


def stale_shm(files: dict[str, bytes], rng: random.Random) -> None:
    choice = rng.choice(("none", "garbage", "keep"))
    if choice == "none":
        files.pop("-shm", None)
    elif choice == "garbage":
        files["-shm"] = rng.randbytes(32 * 1024)


def checkpoint(path: Path, mode: str = "PASSIVE") -> None:
    """A checkpoint from a second connection, as SQLite's auto-checkpoint would run it."""
    db = sqlite3.connect(path)
    try:
        db.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
    finally:
        db.close()


STEPS = ("commit", "checkpoint", "wal_restart")


def power_cut_trial(tmp_path: Path, trial: int) -> tuple[Path, History, set[Content]]:
    """Runs the model; returns the cut files, the promise, and the acceptable contents."""
    rng = random.Random(SEED * 1000 + trial)
    step = STEPS[trial % len(STEPS)]
    live = tmp_path / "live" / "buffer.db"
    store = Store(live, max_bytes=1 << 30)
    history = History()
    run_for_a_while(store, rng, history, rng.randint(2, 12))
    if step == "wal_restart":
        checkpoint(live, "TRUNCATE" if rng.random() < 0.3 else "FULL")
        history.commit(store, rng.randint(1, 20))
        checkpoint(live, "FULL")  # everything is in the main file now, and synced
    before = copy_files(live)
    promised = content(store)
    if step == "checkpoint":
        checkpoint(live)
    else:
        in_flight = History(dict(history.by_seq), history.counter, history.acked)
        in_flight.commit(store, rng.randint(1, 120))  # never returned, as far as anyone knows
    after = copy_files(live)
    finished = content(store)
    store.close()

    damaged = dict(before)
    if step == "checkpoint":
        damaged[""], how = cut(before[""], after[""], rng)
    else:
        old_wal = before.get("-wal", b"")
        synced_first = 32 if step == "wal_restart" else 0  # the new header is synced first
        floor = len(old_wal) if step == "commit" else 0  # a commit appends
        damaged["-wal"], how = cut(old_wal, after["-wal"], rng, floor=floor,
                                   synced_first=synced_first)
    stale_shm(damaged, rng)
    path = write_files(tmp_path / "cut", damaged)
    (tmp_path / "what.txt").write_text(f"trial {trial}: {step}: {how}\n")
    return path, history, {promised, finished}


@pytest.mark.parametrize("trial", range(TRIALS))
def test_a_power_cut_mid_write_loses_nothing_that_was_committed(tmp_path: Path,
                                                                trial: int) -> None:
    path, history, acceptable = power_cut_trial(tmp_path, trial)
    what = (tmp_path / "what.txt").read_text().strip()
    store = Store(path, max_bytes=1 << 30)
    try:
        assert store.stats().quarantined == [], f"{what}: an honest cut was quarantined"
        got = content(store)
        assert got in acceptable, (
            f"{what}: the buffer is neither the synced state nor the finished write")
        for seq, counter in got[2]:
            if seq in history.by_seq:
                assert history.by_seq[seq] == counter, f"{what}: seq {seq} changed"
        # It goes on: new seqs above everything it held, and it drains.
        fresh = History(counter=10**6)
        seqs = fresh.commit(store, 5)
        assert seqs.start == got[1] and seqs.start > history.handed_out
        while (batch := store.next_batch(500, 1 << 20)) is not None:
            store.ack(batch)
        assert store.readings == 0
    finally:
        store.close()


# --- damage anywhere ---------------------------------------------------------------


TAIL_KINDS = ("truncate", "zero_tail")


def damage_anywhere(files: dict[str, bytes], rng: random.Random
                    ) -> tuple[str, list[tuple[str, str, int]]]:
    done = []
    for _ in range(rng.randint(1, 3)):
        suffix = rng.choice(("", "-wal")) if files.get("-wal") else ""
        data = bytearray(files.get(suffix, b""))
        kind = rng.choice(("truncate", "zero_tail", "garbage_range", "zero_range",
                           "garbage_tail", "delete"))
        at = rng.randint(0, len(data)) if data else 0
        if kind == "truncate":
            del data[at:]
        elif kind == "zero_tail":
            data[at:] = bytes(len(data) - at)
        elif kind == "garbage_range":
            n = rng.randint(1, 4 * SECTOR)
            data[at:at + n] = rng.randbytes(len(data[at:at + n]))
        elif kind == "zero_range":
            n = rng.randint(1, 4 * SECTOR)
            data[at:at + n] = bytes(len(data[at:at + n]))
        elif kind == "garbage_tail":
            data += rng.randbytes(rng.randint(1, 8 * SECTOR))
        if kind == "delete":
            files.pop(suffix, None)
        else:
            files[suffix] = bytes(data)
        done.append((kind, suffix, at))
    return ", ".join(f"{k} {s or 'db'} at {a}" for k, s, a in done), done


@pytest.mark.parametrize("trial", range(TRIALS))
def test_damage_anywhere_still_starts_and_never_hands_out_garbage(tmp_path: Path,
                                                                  trial: int) -> None:
    rng = random.Random(SEED * 7 + trial)
    live = tmp_path / "live" / "buffer.db"
    store = Store(live, max_bytes=1 << 30)
    history = History()
    run_for_a_while(store, rng, history, rng.randint(2, 12))
    if rng.random() < 0.5:
        checkpoint(live)
    files = copy_files(live)
    store.close()
    what, damage = damage_anywhere(files, rng)
    stale_shm(files, rng)
    path = write_files(tmp_path / "cut", files)

    store = Store(path, max_bytes=1 << 30)  # must not raise, whatever the damage
    try:
        known = store.next_seq - 1
        fresh = History(counter=10**6)
        seqs = fresh.commit(store, 5)
        assert seqs.start > known, what
        # Damage to committed WAL frames can be told from a torn last write only when a
        # complete transaction survives after it (the test below); there the buffer may
        # go back to an older state. Everything else keeps seq above all handed out.
        wal_hit = any(suffix == "-wal" and kind != "garbage_tail" for kind, suffix, _ in damage)
        if store.stats().quarantined or not wal_hit:
            assert seqs.start > history.handed_out, f"{what}: seq {seqs.start} handed out again"
        delivered: dict[int, int] = {}
        while (batch := store.next_batch(500, 1 << 20)) is not None:
            for seq, line in zip(batch.seqs, batch.lines, strict=True):
                assert seq not in delivered, f"{what}: seq {seq} delivered twice"
                delivered[seq] = counter_of(line)
            store.ack(batch)
        assert store.readings == 0, what
        for seq, counter in delivered.items():
            if seq in fresh.by_seq:
                assert counter == fresh.by_seq[seq], f"{what}: seq {seq} changed"
            else:
                assert counter == history.by_seq.get(seq), (
                    f"{what}: seq {seq} came out as reading {counter}")
    finally:
        store.close()


def test_transactions_cut_off_by_a_damaged_wal_frame_do_not_give_their_seqs_again(
        tmp_path: Path) -> None:
    """A frame in the middle of the WAL goes bad: SQLite recovers up to it and silently
    drops every transaction after it, though they were committed and maybe uploaded."""
    live = tmp_path / "live" / "buffer.db"
    store = Store(live, max_bytes=1 << 30)
    history = History()
    for _ in range(6):
        history.commit(store, 40)
    files = copy_files(live)
    store.close()
    wal = bytearray(files["-wal"])
    frame = 24 + int.from_bytes(wal[8:12], "big")  # frame header + the page size
    frames = (len(wal) - 32) // frame
    assert frames >= 6
    middle = 32 + frames // 2 * frame
    wal[middle + 24:middle + 536] = random.Random(SEED).randbytes(512)  # one bad sector
    files["-wal"] = bytes(wal)
    path = write_files(tmp_path / "cut", files)

    store = Store(path, max_bytes=1 << 30)
    try:
        kept = [seq for seq, _ in store.iter_lines()]
        assert kept and kept == list(range(1, len(kept) + 1))
        assert len(kept) < history.handed_out  # the later transactions are gone ...
        fresh = History(counter=10**6).commit(store, 3)
        assert fresh.start > history.handed_out  # ... and so are their seqs
        assert store.stats().quarantined == []  # what survived is still delivered
        drops: list[tuple[int, int, str]] = []
        delivered = []
        while (batch := store.next_batch(1000, 1 << 20)) is not None:
            drops += batch.drops
            delivered += list(batch.seqs)
            store.ack(batch)
        assert delivered == kept + list(fresh)
        assert drops == [(len(kept) + 1, fresh.start - 1, "buffer_corrupt")]
        assert store.stats().dropped_by_reason["buffer_corrupt"] == fresh.start - 1 - len(kept)
    finally:
        store.close()


# --- the whole gateway after a cut ----------------------------------------------------


GATEWAY_CONFIG = """
[gateway]
id = "alatau-cut-0001"
[storage]
path = "{path}"
commit_interval = 0.05
min_free_bytes = 0
[uplink]
url = "{url}"
flush_interval = 0.1
backoff_initial = 0.05
backoff_max = 0.2
[[sensors]]
name = "counter"
driver = "bme280"
interval = 0.05
"""


class Counter:
    def __init__(self, start: int) -> None:
        self.n = start

    def read(self) -> dict[str, float]:
        self.n += 1
        return {"counter": float(self.n)}


async def run_gateway(path: Path, cloud: CloudServer, start: int,
                      until: Callable[[Gateway], bool]) -> None:
    cfg = parse(GATEWAY_CONFIG.format(path=path, url=cloud.url()))
    gateway = Gateway(cfg, slots=[SensorSlot(cfg.sensor("counter"), lambda: Counter(start),
                                             "mem")], health=False)
    runner = asyncio.create_task(gateway.run())
    await gateway.ready.wait()
    deadline = time.monotonic() + 20
    while not until(gateway):
        assert time.monotonic() < deadline, "the gateway did not get there"
        assert not runner.done(), "the gateway stopped by itself"
        await asyncio.sleep(0.02)
    gateway.stop()
    await runner


@pytest.mark.parametrize("trial", range(4))
def test_a_gateway_restarted_after_a_power_cut_delivers_or_reports_every_seq(
        tmp_path: Path, trial: int) -> None:
    """The cut files of the model above, under a running gateway and the reference cloud."""
    path, history, _ = power_cut_trial(tmp_path, trial)
    gateway_id = "alatau-cut-0001"

    async def go() -> tuple[dict[int, dict[str, Any]], set[int]]:
        cloud = CloudServer(tmp_path / "cloud.db")
        await cloud.start()
        try:
            await run_gateway(path, cloud, 10**6, lambda g: g.telemetry.produced >= 20
                              and g.store is not None and g.store.readings == 0
                              and g.telemetry.uplink.uploads > 0)
            stats = cloud.store.stats(gateway_id)
            assert stats["duplicates"] == 0
            drops = {s for d in stats["dropped_ranges"]
                     for s in range(d["from_seq"], d["to_seq"] + 1)}
            return {r["seq"]: r for r in cloud.store.readings(gateway_id, 0, 10**6)}, drops
        finally:
            await cloud.stop()

    received, drops = asyncio.run(go())
    last = max(received)
    assert last > history.handed_out
    for seq, reading_ in received.items():
        if seq in history.by_seq:
            assert reading_["values"]["counter"] == history.by_seq[seq], f"seq {seq} changed"
    missing = [s for s in history.by_seq if s > history.acked and s not in received]
    assert not missing, f"committed, never delivered: {missing[:10]}"
    unaccounted = [s for s in range(history.acked + 1, last + 1)
                   if s not in received and s not in drops]
    assert not unaccounted, f"neither delivered nor reported dropped: {unaccounted[:10]}"

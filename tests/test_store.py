"""The store's contract, as one suite that any buffer backend must pass.

Every test takes the ``open_store`` factory, parametrized over the backends (today the
SQLite buffer) and over the configurations the service uses: overflow ``drop_oldest``
or ``drop_newest``, and small or large commit groups. What is asserted is what the
cloud and a technician see: seqs, batch contents, drop reports, dead letters, files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import tempfile
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.store import Batch, Reading, Store

TS0 = 1_764_337_000_000
SENSOR = "cabinet_air"
BIG = 10**12

BACKENDS: dict[str, Callable[..., Store]] = {"sqlite": Store}


@dataclass(frozen=True)
class Flavour:
    backend: str
    overflow: str
    group: int
    """Readings per commit: the service commits whatever arrived in one interval."""


FLAVOURS = [Flavour(backend, overflow, group)
            for backend in BACKENDS
            for overflow in ("drop_oldest", "drop_newest")
            for group in (3, 700)]


def flavour_id(f: Flavour) -> str:
    return f"{f.backend}-{f.overflow}-group{f.group}"


@pytest.fixture(params=FLAVOURS, ids=flavour_id)
def flavour(request: pytest.FixtureRequest) -> Flavour:
    param: Flavour = request.param
    return param


OpenStore = Callable[..., Store]


@pytest.fixture
def open_store(flavour: Flavour, tmp_path: Path) -> Iterator[OpenStore]:
    """Opens (or reopens) the buffer at ``tmp_path/buffer.db`` in this flavour."""
    opened: list[Store] = []

    def open_(path: Path | None = None, **overrides: Any) -> Store:
        options: dict[str, Any] = {"max_bytes": BIG, "overflow": flavour.overflow}
        options.update(overrides)
        store = BACKENDS[flavour.backend](path or tmp_path / "buffer.db", **options)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()


def reading(counter: int, ts: int | None = None) -> Reading:
    """A reading whose value is its own counter, so every line can be traced back."""
    return Reading(SENSOR, TS0 + counter * 1000 if ts is None else ts,
                   {"counter": float(counter), "temperature_celsius": 21.5})


def counter_of(line: bytes) -> int:
    return int(json.loads(line)["values"]["counter"])


@dataclass
class Feeder:
    """Adds readings in the flavour's commit groups and remembers seq -> counter."""

    group: int
    next_counter: int = 0
    by_seq: dict[int, int] = field(default_factory=dict)

    def feed(self, store: Store, count: int, ts: int | None = None) -> list[range]:
        ranges = []
        while count > 0:
            n = min(count, self.group)
            counters = range(self.next_counter, self.next_counter + n)
            for c in counters:
                store.add(reading(c, ts))
            seqs = store.commit()
            assert len(seqs) == n
            self.by_seq.update(zip(seqs, counters, strict=True))
            self.next_counter += n
            count -= n
            ranges.append(seqs)
        return ranges


@pytest.fixture
def feeder(flavour: Flavour) -> Feeder:
    return Feeder(flavour.group)


@dataclass
class Delivery:
    """What a cloud that acknowledges everything ends up with."""

    readings: dict[int, int] = field(default_factory=dict)
    drops: list[tuple[int, int, str]] = field(default_factory=list)
    batches: list[Batch] = field(default_factory=list)

    def dropped_seqs(self) -> Counter[int]:
        return Counter(s for a, b, _ in self.drops for s in range(a, b + 1))


def deliver_all(store: Store, delivery: Delivery | None = None, max_readings: int = 1000,
                max_bytes: int = 1 << 20) -> Delivery:
    delivery = delivery or Delivery()
    while (batch := store.next_batch(max_readings, max_bytes)) is not None:
        for seq, line in zip(batch.seqs, batch.lines, strict=True):
            assert json.loads(line)["seq"] == seq
            assert seq not in delivery.readings, f"seq {seq} delivered twice"
            delivery.readings[seq] = counter_of(line)
        delivery.drops.extend(batch.drops)
        delivery.batches.append(batch)
        store.ack(batch)
        assert len(delivery.batches) < 100_000
    return delivery


def covers(drops: list[tuple[int, int, str]], low: int, high: int, reason: str) -> bool:
    """Whether the drop ranges with ``reason`` hold every seq of ``low..high``."""
    need = low
    for a, b, r in sorted(drops):
        if r != reason:
            continue
        if a > need:
            break
        need = max(need, b + 1)
    return need > high


def assert_every_seq_accounted_once(store: Store, delivery: Delivery,
                                    by_seq: dict[int, int]) -> None:
    """The promise to the cloud: 1..next_seq-1 each delivered or reported dropped, once."""
    dropped = delivery.dropped_seqs()
    twice = sorted(s for s, n in dropped.items() if n > 1)
    assert not twice, f"seqs reported dropped more than once: {twice[:10]}"
    both = sorted(set(dropped) & set(delivery.readings))
    assert not both, f"seqs both delivered and reported dropped: {both[:10]}"
    everything = set(range(1, store.next_seq))
    missing = sorted(everything - set(dropped) - set(delivery.readings))
    assert not missing, f"seqs neither delivered nor reported dropped: {missing[:10]}"
    extra = sorted((set(dropped) | set(delivery.readings)) - everything)
    assert not extra, f"seqs reported that were never handed out: {extra[:10]}"
    for seq, counter in delivery.readings.items():
        assert by_seq[seq] == counter, f"seq {seq} carries another reading's content"


# --- seq ---------------------------------------------------------------------------


def test_seq_starts_at_1_and_increases_strictly(open_store: OpenStore, feeder: Feeder) -> None:
    store = open_store()
    ranges = feeder.feed(store, 2000)
    assert ranges[0].start == 1
    seqs = [s for r in ranges for s in r]
    assert seqs == list(range(1, 2001))
    assert store.next_seq == 2001


def test_seq_is_never_reused_across_reopen(open_store: OpenStore, feeder: Feeder) -> None:
    store = open_store()
    feeder.feed(store, 50)
    deliver_all(store)  # everything delivered: no row left that remembers the seqs
    store.close()
    store = open_store()
    assert feeder.feed(store, 10)[0].start == 51
    store.add(reading(10_000))  # added, never committed: its seq was never handed out
    store.close()
    store = open_store()
    assert feeder.feed(store, 5)[0].start == 61


def test_seq_is_never_reused_after_drops_are_reported(open_store: OpenStore,
                                                      feeder: Feeder) -> None:
    """Readings expire, the batch reporting them is acked: no row holds their seqs."""
    store = open_store(max_age_s=60)
    feeder.feed(store, 20)
    assert store.expire(TS0 + 10**7) == 20
    delivery = deliver_all(store)
    assert delivery.readings == {}
    assert sorted(delivery.dropped_seqs()) == list(range(1, 21))
    store.close()
    store = open_store(max_age_s=60)
    assert feeder.feed(store, 1)[0].start == 21


def test_commit_with_nothing_added_hands_out_no_seq(open_store: OpenStore,
                                                    feeder: Feeder) -> None:
    store = open_store()
    assert len(store.commit()) == 0
    feeder.feed(store, 3)
    assert len(store.commit()) == 0
    assert feeder.feed(store, 1)[0].start == 4


# --- commit ------------------------------------------------------------------------


def test_nothing_counts_as_stored_before_commit(open_store: OpenStore) -> None:
    store = open_store()
    for c in range(10):
        store.add(reading(c))
    assert store.pending == 10
    assert store.readings == 0
    assert store.next_batch(100, 1 << 20) is None
    assert list(store.iter_lines()) == []
    store.close()  # e.g. a crash before the commit interval ran out
    store = open_store()
    assert store.readings == 0 and store.pending == 0
    assert store.next_batch(100, 1 << 20) is None
    assert store.commit() == range(1, 1)


def test_committed_readings_survive_reopen_with_content(open_store: OpenStore,
                                                        feeder: Feeder) -> None:
    store = open_store()
    feeder.feed(store, 1500)
    store.close()
    store = open_store()
    assert store.readings == 1500
    assert {seq: counter_of(line) for seq, line in store.iter_lines()} == feeder.by_seq
    line = json.loads(next(store.iter_lines())[1])
    assert line == {"seq": 1, "sensor": SENSOR, "ts": TS0, "flags": [],
                    "values": {"counter": 0.0, "temperature_celsius": 21.5}}


# --- ack ---------------------------------------------------------------------------


@pytest.mark.parametrize("take", [1, 2, 699, 700, 701, 1399])
def test_ack_removes_exactly_the_acknowledged_prefix(open_store: OpenStore, feeder: Feeder,
                                                     take: int) -> None:
    store = open_store()
    feeder.feed(store, 1400)
    batch = store.next_batch(take, 1 << 24)
    assert batch is not None and list(batch.seqs) == list(range(1, take + 1))
    store.ack(batch)
    assert store.acked_seq == take
    assert store.readings == 1400 - take
    left = [seq for seq, _ in store.iter_lines()]
    assert left == list(range(take + 1, 1401))
    store.close()
    store = open_store()
    assert store.readings == 1400 - take
    assert [seq for seq, _ in store.iter_lines()] == left
    nxt = store.next_batch(10, 1 << 20)
    assert nxt is not None and nxt.first_seq == take + 1


def test_ack_of_a_split_batch_half_keeps_the_other_half(open_store: OpenStore,
                                                        feeder: Feeder) -> None:
    store = open_store()
    feeder.feed(store, 9)
    left, right = store.next_batch(100, 1 << 20).split()  # type: ignore[union-attr]
    store.ack(left)
    assert [seq for seq, _ in store.iter_lines()] == list(right.seqs)
    store.ack(right)
    assert store.readings == 0 and store.next_batch(100, 1 << 20) is None


def test_a_batch_not_acked_is_sent_again(open_store: OpenStore, feeder: Feeder) -> None:
    store = open_store()
    feeder.feed(store, 30)
    first = store.next_batch(10, 1 << 20)
    store.release()  # the upload failed
    again = store.next_batch(10, 1 << 20)
    assert first is not None and again is not None
    assert again.lines == first.lines


# --- batches -----------------------------------------------------------------------


@pytest.mark.parametrize(("max_readings", "max_bytes"),
                         [(1, 1 << 20), (7, 1 << 20), (5000, 1 << 20), (5000, 1000),
                          (5000, 1), (333, 20_000)])
def test_batches_respect_both_limits_in_ascending_seq(open_store: OpenStore, feeder: Feeder,
                                                      max_readings: int,
                                                      max_bytes: int) -> None:
    store = open_store()
    feeder.feed(store, 1000)
    delivery = deliver_all(store, max_readings=max_readings, max_bytes=max_bytes)
    expected_seq = 1
    for batch in delivery.batches:
        assert 1 <= len(batch.lines) <= max_readings
        size = sum(len(line) + 1 for line in batch.lines)
        assert size <= max_bytes or len(batch.lines) == 1
        seqs = [json.loads(line)["seq"] for line in batch.lines]
        assert seqs == list(range(expected_seq, expected_seq + len(seqs)))
        assert batch.key_range == (seqs[0], seqs[-1])
        expected_seq += len(seqs)
    assert delivery.readings == feeder.by_seq


@pytest.mark.slow
def test_a_large_backlog_is_read_chunk_by_chunk_in_bounded_memory(tmp_path: Path) -> None:
    """Months of outage: the backlog is far larger than what iteration holds at once."""
    count = 400_000
    store = Store(tmp_path / "buffer.db", max_bytes=BIG)
    try:
        for start in range(0, count, 20_000):
            for c in range(start, start + 20_000):
                store.add(reading(c))
            store.commit()
        tracemalloc.start()
        try:
            backlog_bytes = 0
            expected = 1
            for seq, line in store.iter_lines():
                assert seq == expected
                expected += 1
                backlog_bytes += len(line)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert expected == count + 1
        # What a list of every line would hold is several times backlog_bytes.
        assert peak < backlog_bytes / 8, (peak, backlog_bytes)
    finally:
        store.close()


# --- overflow ----------------------------------------------------------------------


def overflow_store(open_store: OpenStore, flavour: Flavour, tmp_path: Path,
                   fill_chunks: int = 6) -> Store:
    """A store whose ``max_bytes`` holds about ``fill_chunks`` commit groups."""
    (tmp_path / "probe").mkdir()
    probe = open_store(tmp_path / "probe" / "buffer.db")
    Feeder(flavour.group).feed(probe, flavour.group)
    chunk_bytes = probe.stats().bytes
    probe.close()
    return open_store(max_bytes=chunk_bytes * fill_chunks + chunk_bytes // 2)


def test_max_bytes_drops_by_the_overflow_policy_and_counts(open_store: OpenStore,
                                                           feeder: Feeder,
                                                           flavour: Flavour,
                                                           tmp_path: Path) -> None:
    store = overflow_store(open_store, flavour, tmp_path)
    feeder.feed(store, flavour.group * 10)
    stats = store.stats()
    assert stats.bytes <= store.max_bytes
    dropped = stats.dropped_by_reason.get("buffer_full", 0)
    assert dropped >= flavour.group * 3
    kept = [seq for seq, _ in store.iter_lines()]
    assert len(kept) + dropped == flavour.group * 10
    if flavour.overflow == "drop_oldest":
        assert kept == list(range(flavour.group * 10 - len(kept) + 1, flavour.group * 10 + 1))
    else:
        assert kept == list(range(1, len(kept) + 1))
    batch = store.next_batch(10, 1 << 20)
    assert batch is not None
    reported = {s for a, b, reason in batch.drops for s in range(a, b + 1)
                if reason == "buffer_full"}
    assert len(reported) == dropped
    assert reported.isdisjoint(kept)


def test_reported_drops_are_not_reported_again_after_ack(open_store: OpenStore,
                                                         feeder: Feeder,
                                                         flavour: Flavour,
                                                         tmp_path: Path) -> None:
    store = overflow_store(open_store, flavour, tmp_path)
    feeder.feed(store, flavour.group * 10)
    first = store.next_batch(1, 1 << 20)
    assert first is not None and first.drops
    store.ack(first)
    later = deliver_all(store)
    assert later.drops == []
    store.close()
    store = open_store()
    assert store.stats().pending_drops == 0
    assert deliver_all(store).drops == []


def test_drops_made_while_a_batch_is_in_flight_are_reported_later(
        open_store: OpenStore, feeder: Feeder, flavour: Flavour, tmp_path: Path) -> None:
    store = overflow_store(open_store, flavour, tmp_path)
    delivery = Delivery()
    feeder.feed(store, flavour.group * 8)
    in_flight = store.next_batch(flavour.group, 1 << 20)
    assert in_flight is not None and in_flight.drops
    feeder.feed(store, flavour.group * 4)  # the buffer overflows again meanwhile
    store.ack(in_flight)
    delivery.readings.update((s, counter_of(line))
                             for s, line in zip(in_flight.seqs, in_flight.lines, strict=True))
    delivery.drops.extend(in_flight.drops)
    deliver_all(store, delivery)
    assert_every_seq_accounted_once(store, delivery, feeder.by_seq)


@pytest.mark.parametrize("outcome", ["stored", "refused"])
def test_a_retried_batch_whose_readings_were_dropped_meanwhile_is_not_reported_twice(
        open_store: OpenStore, feeder: Feeder, flavour: Flavour, tmp_path: Path,
        outcome: str) -> None:
    """The upload fails (release), the buffer overflows, then the retry is answered."""
    store = overflow_store(open_store, flavour, tmp_path)
    feeder.feed(store, flavour.group * 6)
    batch = store.next_batch(flavour.group * 2, 1 << 20)
    assert batch is not None
    store.release()
    feeder.feed(store, flavour.group * 6)
    delivery = Delivery()
    if outcome == "stored":  # the retry of the very same batch got through
        store.ack(batch)
        delivery.readings.update((s, counter_of(line))
                                 for s, line in zip(batch.seqs, batch.lines, strict=True))
        delivery.drops.extend(batch.drops)
    else:
        store.dead_letter(batch, 422, "poison")
    deliver_all(store, delivery)
    assert_every_seq_accounted_once(store, delivery, feeder.by_seq)
    if outcome == "refused":
        assert [d["seq"] for d in store.dead_letters()] == list(batch.seqs)
        rejected = {s for a, b, r in delivery.drops if r == "rejected" for s in range(a, b + 1)}
        assert rejected == set(batch.seqs)


# --- dead letters, expiry ------------------------------------------------------------


def test_dead_letters_are_kept_readable_and_reported_dropped(open_store: OpenStore,
                                                             feeder: Feeder) -> None:
    store = open_store()
    feeder.feed(store, 10)
    batch = store.next_batch(10, 1 << 20)
    assert batch is not None
    poison = Batch(4, 4, [batch.lines[3]])
    before, rest = Batch(1, 3, batch.lines[:3]), Batch(5, 10, batch.lines[4:])
    store.ack(before)
    store.dead_letter(poison, 422, "readings[0].values: must map names to numbers")
    store.ack(rest)
    store.close()
    store = open_store()
    letters = store.dead_letters()
    assert [(d["seq"], d["status"], d["reason"]) for d in letters] == [
        (4, 422, "readings[0].values: must map names to numbers")]
    reading_4: Any = letters[0]["reading"]
    assert reading_4["seq"] == 4 and reading_4["values"]["counter"] == feeder.by_seq[4]
    assert store.stats().dead_letters == 1
    delivery = deliver_all(store)
    assert delivery.drops == [(4, 4, "rejected")]


def test_drops_riding_on_a_dead_lettered_batch_are_reported_by_the_next(
        open_store: OpenStore, feeder: Feeder) -> None:
    """The cloud refused the whole request, so it never saw the drops it carried."""
    store = open_store(max_age_s=60)
    feeder.feed(store, 5)
    store.expire(TS0 + 10**7)
    feeder.feed(store, 5, ts=TS0 + 10**7)
    batch = store.next_batch(1, 1 << 20)
    assert batch is not None and batch.drops == [(1, 5, "too_old")]
    store.dead_letter(batch, 422, "poison")
    delivery = deliver_all(store)
    assert sorted(delivery.dropped_seqs()) == [1, 2, 3, 4, 5, 6]
    assert sorted(delivery.readings) == [7, 8, 9, 10]


def test_max_age_expires_old_readings_as_too_old(open_store: OpenStore,
                                                 feeder: Feeder) -> None:
    store = open_store(max_age_s=3600)
    now = TS0 + 10 * 3600 * 1000
    feeder.feed(store, 50, ts=now - 2 * 3600 * 1000)
    feeder.feed(store, 50, ts=now - 60 * 1000)
    assert store.expire(now) == 50
    assert store.expire(now) == 0
    assert store.stats().dropped_by_reason["too_old"] == 50
    assert [seq for seq, _ in store.iter_lines()] == list(range(51, 101))
    delivery = deliver_all(store)
    assert delivery.drops == [(1, 50, "too_old")]
    assert_every_seq_accounted_once(store, delivery, feeder.by_seq)


def test_expiry_is_off_without_max_age(open_store: OpenStore, feeder: Feeder) -> None:
    store = open_store()
    feeder.feed(store, 5, ts=0)
    assert store.expire(TS0 + 10**12) == 0
    assert store.readings == 5


# --- every seq delivered or reported dropped: property ------------------------------


Op = tuple[str, int]
OPS = st.lists(st.one_of(
    st.tuples(st.just("add"), st.integers(1, 30)),
    st.tuples(st.just("commit"), st.just(0)),
    st.tuples(st.just("batch"), st.integers(1, 40)),
    st.tuples(st.just("ack"), st.just(0)),
    st.tuples(st.just("dead_letter"), st.just(0)),
    st.tuples(st.just("retry_later"), st.just(0)),
    st.tuples(st.just("give_up"), st.just(0)),
    st.tuples(st.just("reopen"), st.just(0)),
    st.tuples(st.just("expire"), st.integers(0, 120)),
), max_size=60)


@dataclass
class Model:
    """What the uploader and the cloud have seen; the store is checked against it."""

    by_seq: dict[int, int] = field(default_factory=dict)
    pending: list[int] = field(default_factory=list)
    counter: int = 0
    now_ms: int = TS0
    last_seq: int = 0
    in_flight: Batch | None = None
    delivery: Delivery = field(default_factory=Delivery)
    dead: dict[int, int] = field(default_factory=dict)


def run_ops(store_factory: Callable[[], Store], ops: list[Op]) -> None:
    store = store_factory()
    m = Model()
    try:
        for name, arg in ops:
            if name == "add":
                for _ in range(arg):
                    store.add(reading(m.counter, ts=m.now_ms))
                    m.pending.append(m.counter)
                    m.counter += 1
            elif name == "commit":
                seqs = store.commit()
                assert len(seqs) == len(m.pending)
                if m.pending:
                    assert seqs.start > m.last_seq, "seq went backwards or was reused"
                    m.last_seq = seqs[-1]
                m.by_seq.update(zip(seqs, m.pending, strict=True))
                m.pending = []
            elif name == "batch" and m.in_flight is None:
                batch = store.next_batch(arg, 40 * arg + 100)
                if batch is not None:
                    check_batch(batch, arg, m)
                    m.in_flight = batch
            elif name == "ack" and m.in_flight is not None:
                accept(store, m.in_flight, m)
                m.in_flight = None
            elif name == "dead_letter" and m.in_flight is not None and m.in_flight.lines:
                store.dead_letter(m.in_flight, 422, "poison")
                m.dead.update((s, counter_of(line)) for s, line in
                              zip(m.in_flight.seqs, m.in_flight.lines, strict=True))
                m.in_flight = None
            elif name == "retry_later":
                store.release()  # the same batch is sent again later
            elif name == "give_up":
                store.release()
                m.in_flight = None
            elif name == "reopen":
                store.close()
                store = store_factory()
                m.pending, m.in_flight = [], None
            elif name == "expire":
                m.now_ms += arg * 1000
                store.expire(m.now_ms)
        if m.in_flight is not None:
            accept(store, m.in_flight, m)
        seqs = store.commit()
        m.by_seq.update(zip(seqs, m.pending, strict=True))
        deliver_all(store, m.delivery, max_readings=50, max_bytes=4000)
        assert store.readings == 0 and store.stats().pending_drops == 0
        assert store.next_seq == max([m.last_seq, *seqs]) + 1
        assert_every_seq_accounted_once(store, m.delivery, m.by_seq)
        rejected = {s for a, b, r in m.delivery.drops if r == "rejected"
                    for s in range(a, b + 1)}
        assert rejected == set(m.dead)
        letters = {d["seq"]: d["reading"] for d in store.dead_letters()}
        assert {s: int(r["values"]["counter"]) for s, r in letters.items()} == m.dead  # type: ignore[index]
    finally:
        store.close()


def check_batch(batch: Batch, max_readings: int, m: Model) -> None:
    assert len(batch.lines) <= max_readings
    for seq, line in zip(batch.seqs, batch.lines, strict=True):
        assert json.loads(line)["seq"] == seq
        assert counter_of(line) == m.by_seq[seq], f"seq {seq}: content changed"
        assert seq not in m.delivery.readings, f"seq {seq} offered again after its ack"


def accept(store: Store, batch: Batch, m: Model) -> None:
    store.ack(batch)
    for seq, line in zip(batch.seqs, batch.lines, strict=True):
        assert seq not in m.delivery.readings
        m.delivery.readings[seq] = counter_of(line)
    m.delivery.drops.extend(batch.drops)


@pytest.mark.parametrize("overflow", ["drop_oldest", "drop_newest"])
@pytest.mark.parametrize("max_bytes", [700, 3000, BIG])
@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_every_seq_is_delivered_or_reported_dropped(overflow: str, max_bytes: int,
                                                    ops: list[Op]) -> None:
    with tempfile.TemporaryDirectory(prefix="alatau-store-prop-") as tmp:
        path = Path(tmp) / "buffer.db"
        run_ops(lambda: Store(path, max_bytes=max_bytes, overflow=overflow, max_age_s=60),
                ops)


# --- corrupt files ----------------------------------------------------------------


def crash_copy(store: Store, target: Path) -> Path:
    """The files as a power cut would leave them: main file, WAL and seq reserve."""
    target.mkdir()
    for suffix in ("", "-wal", "-shm", ".seq"):
        src = Path(f"{store.path}{suffix}")
        if src.exists():
            shutil.copyfile(src, target / f"buffer.db{suffix}")
    return target / "buffer.db"


def corrupt_random_bytes(path: Path) -> None:
    path.write_bytes(os.urandom(64 * 1024))


def corrupt_truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def corrupt_zero_length(path: Path) -> None:
    path.write_bytes(b"")


def corrupt_garbage_header(path: Path) -> None:
    with open(path, "r+b") as f:
        f.write(os.urandom(100))


def corrupt_deleted(path: Path) -> None:
    path.unlink()


CORRUPTIONS = {
    "random_bytes": corrupt_random_bytes,
    "truncated": corrupt_truncated,
    "zero_length": corrupt_zero_length,
    "garbage_header": corrupt_garbage_header,
    "deleted": corrupt_deleted,
}
STAMPED = re.compile(r"^buffer\.db\.corrupt-\d{8}T\d{6}(-\d+)?$")


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_a_corrupt_buffer_is_quarantined_and_seq_continues(open_store: OpenStore,
                                                           feeder: Feeder, tmp_path: Path,
                                                           corruption: str) -> None:
    store = open_store()
    feeder.feed(store, 900)
    delivered = deliver_all(store, max_readings=400)  # the cloud holds 1..900 ...
    store.close()
    assert delivered.readings
    store = open_store()
    feeder.feed(store, 700)  # ... and these were committed but not yet delivered
    handed_out = store.next_seq - 1
    store.close()

    CORRUPTIONS[corruption](tmp_path / "buffer.db")
    store = open_store()
    if corruption != "deleted":
        names = [p.name for p in tmp_path.iterdir() if ".corrupt-" in p.name]
        main = [n for n in names if STAMPED.match(n)]
        assert len(main) == 1, names
        assert [str(tmp_path / main[0])] == store.stats().quarantined
    fresh = [s for r in feeder.feed(store, 5) for s in r]
    assert fresh[0] > handed_out
    later = deliver_all(store)
    # Committed but never delivered, and reserved but never used: both reported.
    assert covers(later.drops, 901, fresh[0] - 1, "buffer_corrupt")
    assert sorted(later.readings) == fresh
    counted = store.stats().dropped_by_reason.get("buffer_corrupt", 0)
    assert counted >= fresh[0] - 901


def test_a_garbage_wal_is_quarantined_and_seq_continues(open_store: OpenStore, feeder: Feeder,
                                                        tmp_path: Path) -> None:
    """Committed transactions that sat only in the WAL are gone: their seqs must not
    come back, though the main file alone would say they were never handed out."""
    store = open_store()
    feeder.feed(store, 1400)
    path = crash_copy(store, tmp_path / "crashed")
    assert Path(f"{path}-wal").stat().st_size > 0
    wal = Path(f"{path}-wal")
    wal.write_bytes(os.urandom(wal.stat().st_size))
    handed_out = store.next_seq - 1
    recovered = open_store(path)
    assert len(recovered.stats().quarantined) == 1
    assert STAMPED.match(Path(recovered.stats().quarantined[0]).name)
    recovered.add(reading(99_999))
    assert recovered.commit().start > handed_out
    delivery = deliver_all(recovered)
    assert covers(delivery.drops, 1, handed_out, "buffer_corrupt")


def test_a_wal_left_by_a_crash_is_recovered_not_quarantined(open_store: OpenStore,
                                                            feeder: Feeder,
                                                            tmp_path: Path) -> None:
    store = open_store()
    feeder.feed(store, 1400)
    path = crash_copy(store, tmp_path / "crashed")
    recovered = open_store(path)
    assert recovered.stats().quarantined == []
    assert {s: counter_of(line) for s, line in recovered.iter_lines()} == feeder.by_seq
    assert len(recovered.commit()) == 0
    recovered.add(reading(1))
    assert recovered.commit().start == 1401


def test_two_quarantines_in_the_same_second_keep_both_files(open_store: OpenStore,
                                                            feeder: Feeder,
                                                            tmp_path: Path) -> None:
    path = tmp_path / "buffer.db"
    for _ in range(2):
        store = open_store()
        feeder.feed(store, 10)
        store.close()
        corrupt_random_bytes(path)
        open_store().close()
    kept = sorted(p.name for p in tmp_path.iterdir() if STAMPED.match(p.name))
    assert len(kept) == 2, kept


def test_a_garbled_seq_reserve_file_does_not_stop_the_buffer(open_store: OpenStore,
                                                             feeder: Feeder,
                                                             tmp_path: Path) -> None:
    store = open_store()
    feeder.feed(store, 10)
    store.close()
    Path(f"{tmp_path / 'buffer.db'}.seq").write_text("not a number\n")
    store = open_store()
    assert feeder.feed(store, 1)[0].start == 11


def test_a_buffer_from_before_clock_repair_is_upgraded_in_place(open_store: OpenStore,
                                                               feeder: Feeder,
                                                               tmp_path: Path) -> None:
    """Undelivered readings written by the previous release are kept, new ones stored."""
    store = open_store()
    feeder.feed(store, 30)
    store.close()
    db = sqlite3.connect(tmp_path / "buffer.db")
    db.executescript("""
        CREATE TABLE old_chunks (first_seq INTEGER PRIMARY KEY, last_seq INTEGER NOT NULL,
            first_ts INTEGER NOT NULL, last_ts INTEGER NOT NULL, data BLOB NOT NULL);
        INSERT INTO old_chunks SELECT first_seq, last_seq, first_ts, last_ts, data FROM chunks;
        DROP TABLE chunks;
        ALTER TABLE old_chunks RENAME TO chunks;
    """)
    db.close()
    store = open_store()
    assert store.stats().quarantined == []
    feeder.feed(store, 10)
    assert deliver_all(store).readings == feeder.by_seq

"""The durable local buffer: every reading survives outages, crashes and power cuts.

Readings are added to memory and committed in groups (every ``commit_interval``); a
reading counts as stored, and gets its ``seq``, only once its group's transaction is on
disk (SQLite WAL, ``synchronous=FULL``), so a power cut loses at most one interval.

Layout: one row per committed group ("chunk") holding the readings as marshal columns,
zlib-compressed; they become the cloud protocol's JSON objects only when uploaded.
``seq`` is implicit (``first_seq + index``). Packing many readings into one row is what
makes ingest cheap and keeps SD-card writes per reading small (see docs/performance.md).

Delivery is a watermark: everything up to ``acked_seq`` has been stored by the cloud
(or deliberately dropped and reported). Batches are always acknowledged in ``seq``
order, so one number describes the delivered prefix.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import marshal
import math
import operator
import os
import shutil
import sqlite3
import threading
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal, NamedTuple

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
CHUNK_MAX_READINGS = 4096
ZLIB_LEVEL = 1
MAX_PENDING = 200_000
"""Readings held in memory while commits fail (disk full, I/O error) before the oldest
are given up; each one given up is counted under ``write_failed``."""
WAL_SHARE = 16
"""The WAL is checkpointed once it holds 1/16 of ``max_bytes`` (at most 2000 pages, about
8 MiB: few rewrites of the same pages on the SD card); a small cap is not blown by its
log."""
CACHE_KIB = 256
"""SQLite's page cache, per connection."""
PAGE_SIZE = 1024
"""Database page size of a new buffer. A commit (one interval's readings, a few KiB
compressed) rewrites the last leaf page and appends WAL frames of whole pages: 1 KiB
pages write about 40% fewer bytes per reading than SQLite's default 4 KiB, for a few
percent of ingest speed (docs/performance.md). An existing buffer keeps its size."""
FILE_CAP_MIN = 1024 * 1024
"""From this ``max_bytes`` up (the smallest the config accepts) the cap holds for the
files themselves (database pages in use plus room for the WAL), not only for readings."""
SEQ_RESERVE_BLOCK = 1_000_000
"""Seqs are reserved in a side file in blocks, so a lost database never reuses a seq."""

DROP_BUFFER_FULL = "buffer_full"
DROP_DISK_FULL = "disk_full"
DROP_TOO_OLD = "too_old"
DROP_REJECTED = "rejected"
DROP_BUFFER_CORRUPT = "buffer_corrupt"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (
    first_seq INTEGER PRIMARY KEY,
    last_seq INTEGER NOT NULL,
    first_ts INTEGER NOT NULL,
    last_ts INTEGER NOT NULL,
    data BLOB NOT NULL,
    unsynced INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS drops (
    from_seq INTEGER PRIMARY KEY,
    to_seq INTEGER NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    seq INTEGER PRIMARY KEY,
    reading BLOB NOT NULL,
    status INTEGER,
    reason TEXT NOT NULL,
    at_ms INTEGER NOT NULL
);
"""


_BLANK = ("SELECT NOT (EXISTS (SELECT 1 FROM meta) OR EXISTS (SELECT 1 FROM chunks) "
          "OR EXISTS (SELECT 1 FROM drops) OR EXISTS (SELECT 1 FROM dead_letters))")

WAL_MAGIC = (0x377F0682, 0x377F0683)


def _wal_header_valid(header: bytes) -> bool:
    """The 32-byte WAL header's magic and checksum (sqlite.org/fileformat2.html#walformat)."""
    if len(header) < 32:
        return False
    magic = int.from_bytes(header[:4], "big")
    if magic not in WAL_MAGIC:
        return False
    order: Literal["big", "little"] = "big" if magic & 1 else "little"
    s0 = s1 = 0
    for i in range(0, 24, 8):
        s0 = (s0 + int.from_bytes(header[i:i + 4], order) + s1) & 0xFFFFFFFF
        s1 = (s1 + int.from_bytes(header[i + 4:i + 8], order) + s0) & 0xFFFFFFFF
    return (s0, s1) == (int.from_bytes(header[24:28], "big"),
                        int.from_bytes(header[28:32], "big"))


def _wal_already_in(wal: BinaryIO, db_path: Path) -> bool:
    """Whether the WAL's last generation of frames is already in the main file: the last
    committed image of every page in it equals that page there. No committed frame to
    compare (a WAL of garbage) counts as no."""
    try:
        with open(db_path, "rb") as f:
            head = f.read(100)
            size_field = int.from_bytes(head[16:18], "big") if len(head) >= 18 else 0
            page_size = 65536 if size_field == 1 else size_field
            if page_size < 512 or page_size & (page_size - 1):
                return False
            wal.seek(32)
            frames: list[tuple[int, bool, bytes, bytes]] = []
            while len(frame := wal.read(24 + page_size)) == 24 + page_size:
                frames.append((int.from_bytes(frame[:4], "big"),
                               int.from_bytes(frame[4:8], "big") != 0, frame[8:16], frame[24:]))
            if not frames:
                return True
            # A restart rewrites the WAL from its start, so the frames of the last
            # generation (equal salts) come first; older generations may follow them.
            latest: dict[int, bytes] = {}
            pending: dict[int, bytes] = {}
            for page, commit, salts, image in frames:
                if salts != frames[0][2]:
                    break
                pending[page] = image
                if commit:
                    latest.update(pending)
                    pending.clear()
            if not latest:
                return False
            for page, image in latest.items():
                f.seek((page - 1) * page_size)
                if page < 1 or f.read(page_size) != image:
                    return False
            return True
    except OSError:
        return False


def _without(ranges: list[tuple[Any, ...]], low: int, high: int) -> list[tuple[Any, ...]]:
    """Drop ranges (from, to, reason) with the seqs ``low..high`` taken out."""
    out: list[tuple[Any, ...]] = []
    for a, b, reason in ranges:
        if b < low or a > high:
            out.append((a, b, reason))
            continue
        if a < low:
            out.append((a, low - 1, reason))
        if b > high:
            out.append((high + 1, b, reason))
    return out


_NOT_THE_FILE = {sqlite3.SQLITE_FULL, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_NOMEM,
                 sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_READONLY,
                 sqlite3.SQLITE_PERM, sqlite3.SQLITE_IOERR_WRITE, sqlite3.SQLITE_IOERR_FSYNC,
                 sqlite3.SQLITE_IOERR_TRUNCATE, sqlite3.SQLITE_IOERR_DIR_FSYNC,
                 sqlite3.SQLITE_IOERR_SHMOPEN, sqlite3.SQLITE_IOERR_SHMSIZE,
                 sqlite3.SQLITE_IOERR_SHMMAP, sqlite3.SQLITE_IOERR_NOMEM}


def _environment(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` says the disk, memory or permissions failed, not the file's
    content (a full disk cannot even create the -shm index): no reason to quarantine."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and (code in _NOT_THE_FILE or code & 0xFF in _NOT_THE_FILE)


def _disk_full(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_FULL


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _wal_lost_commits(wal_path: str, valid_frames: int) -> bool:
    """Whether whole committed transactions sit in the WAL past the frames SQLite
    recovered, cut off by damage before them.

    Past the recovered end, a power cut leaves at most the one transaction that was being
    written: each page at most once, its commit frame last. A commit frame of the WAL's
    generation (its salts) followed by another frame of it, or one page twice, means
    more than one transaction: committed readings were lost, and their seqs may have
    been handed out.
    """
    try:
        with open(wal_path, "rb") as f:
            header = f.read(32)
            if not _wal_header_valid(header):
                return False
            page_size = int.from_bytes(header[8:12], "big")
            salts = header[16:24]
            f.seek(32 + valid_frames * (24 + page_size))
            seen_commit = False
            pages: set[bytes] = set()
            while len(frame := f.read(24 + page_size)) == 24 + page_size:
                if frame[8:16] != salts:
                    continue
                if seen_commit or frame[:4] in pages:
                    return True
                pages.add(frame[:4])
                seen_commit = int.from_bytes(frame[4:8], "big") != 0
    except OSError:
        return False
    return False


class StoreError(Exception):
    """The buffer cannot do what was asked (not a corrupt file: that is recovered)."""


class Reading(NamedTuple):
    """One measurement. ``values`` must be finite numbers (the poller checks)."""

    sensor: str
    ts: int
    values: Mapping[str, float]
    flags: tuple[str, ...] = ()
    clock: tuple[str, int] | None = None
    """(boot id, monotonic ms) for readings taken before the clock was synchronised."""


@dataclass
class Batch:
    """Readings (encoded JSON objects, ascending seq) plus the drop ranges to report."""

    first_seq: int
    last_seq: int
    lines: list[bytes]
    drops: list[tuple[int, int, str]] = field(default_factory=list)

    @property
    def seqs(self) -> range:
        return range(self.first_seq, self.first_seq + len(self.lines))

    def split(self) -> tuple[Batch, Batch]:
        """Two halves; the drops travel with the first."""
        half = len(self.lines) // 2
        left = Batch(self.first_seq, self.first_seq + half - 1, self.lines[:half], self.drops)
        right = Batch(self.first_seq + half, self.last_seq, self.lines[half:], [])
        return left, right

    @property
    def key_range(self) -> tuple[int, int]:
        if self.lines:
            return self.first_seq, self.first_seq + len(self.lines) - 1
        return self.drops[0][0], self.drops[-1][1]


@dataclass
class StoreStats:
    readings: int
    bytes: int
    oldest_ts: int | None
    next_seq: int
    acked_seq: int
    pending_drops: int
    dead_letters: int
    dropped_by_reason: dict[str, int]
    file_bytes: int
    quarantined: list[str]


Record = tuple[Any, ...]
"""How a reading sits in a chunk: (sensor, ts, values, flags, clock), where clock is
(boot id, monotonic ms) for readings taken before the clock was synchronised, else None.
Its seq is its position in the chunk. A ``Reading`` is one, as it is."""

CLOCK_UNSYNCED = "clock_unsynced"
CLOCK_CORRECTED = "clock_corrected"

_templates: dict[tuple[Any, ...], str] = {}
"""Formats by (sensor, flags, *quantity names)."""


def _template(sensor: str, names: tuple[str, ...], flags: tuple[str, ...]) -> str:
    """A ``%`` format for one sensor's readings: the JSON around seq, ts and the values.

    A sensor sends the same quantities every time, so the names, quoting and layout are
    built once and each reading costs one string format (a float's ``repr`` is valid JSON
    for the finite values the poller admits). Members come seq and ts first: the order of
    an object's members carries no meaning in JSON, and next to each other the two
    numbers that change every reading compress better (docs/performance.md).
    """
    def quoted(text: str) -> str:
        return json.dumps(text).replace("%", "%%")
    values = ",".join(f"{quoted(name)}:%r" for name in names)
    flag_list = ",".join(quoted(flag) for flag in flags)
    template = (f'{{"seq":%d,"ts":%d,"sensor":{quoted(sensor)},"values":{{{values}}},'
                f'"flags":[{flag_list}]}}')
    if len(_templates) > 4096:
        _templates.clear()
    _templates[(sensor, flags, *names)] = template
    return template


def encode_records(first_seq: int, records: Sequence[Record]) -> list[bytes]:
    """Readings as the ingest protocol's JSON objects, one ``bytes`` each."""
    out: list[bytes] = []
    append = out.append
    known = _templates.get
    seq = first_seq
    for sensor, ts, values, flags, clock in records:
        if clock is None:
            template = known((sensor, flags, *values)) or _template(
                sensor, tuple(values), flags)
            append((template % (seq, ts, *values.values())).encode())
        else:
            boot, mono_ms = clock
            append(json.dumps(
                {"seq": seq, "ts": ts, "sensor": sensor, "values": values,
                 "flags": list(flags), "boot_id": boot, "mono_ms": mono_ms},
                separators=(",", ":")).encode())
        seq += 1
    return out


def encode_reading(seq: int, reading: Reading) -> bytes:
    """One reading as the ingest protocol's JSON object."""
    for name, value in reading.values.items():
        if not math.isfinite(value):
            raise ValueError(f"{reading.sensor}: {name} is {value}, not a finite number")
    return encode_records(seq, [reading])[0]


CHUNK_FORMAT = b"C1"
"""Chunk encoding: zlib of ``marshal`` (version 4) of the records as five columns
(sensors, ts, values, flags, clocks), each a tuple. marshal is the fastest stable encoder
in the standard library, and columns are made (``itemgetter``) and taken apart (``zip``)
without a Python step per reading (see docs/performance.md); a newer Python reads older marshal
versions, and an unreadable chunk is reported, never guessed at."""
CHUNK_FORMAT_ROWS = b"M4"
"""The earlier encoding, still read: a list of records of four items, or five with a
clock."""


_COLUMNS = tuple(operator.itemgetter(i) for i in range(5))


def _pack(records: Sequence[Record]) -> bytes:
    """``records`` (``Reading``s or plain tuples) as a chunk's bytes."""
    columns = tuple(tuple(map(column, records)) for column in _COLUMNS)
    return CHUNK_FORMAT + zlib.compress(marshal.dumps(columns, 4), ZLIB_LEVEL)


def _unsynced(records: Sequence[Record]) -> int:
    """How many of ``records`` still await a clock repair."""
    return sum(1 for r in records if r[4] is not None and CLOCK_UNSYNCED in r[3])


def _unpack(blob: bytes) -> list[Record]:
    kind = blob[:2]
    if kind == CHUNK_FORMAT:
        columns = marshal.loads(zlib.decompress(blob[2:]))
        if not isinstance(columns, tuple) or len(columns) != 5:
            raise StoreError("a chunk without its five columns")
        return list(zip(*columns, strict=True))
    if kind == CHUNK_FORMAT_ROWS:
        rows: list[Record] = marshal.loads(zlib.decompress(blob[2:]))
        return [r if len(r) == 5 else (*r, None) for r in rows]
    raise StoreError(f"unknown chunk format {kind!r}")


class Store:
    """The buffer. Thread-safe; blocking (the service calls it from one worker thread)."""

    def __init__(
        self,
        path: str | Path,
        *,
        max_bytes: int = 256 * 1024 * 1024,
        overflow: str = "drop_oldest",
        min_free_bytes: int = 0,
        max_age_s: float | None = None,
        clock_ms: object = None,
    ) -> None:
        self.path = Path(path)
        # Its sibling files, named once: a Path made again and again interns its last part
        # each time, and that churn grows the interpreter's table of interned strings
        # (docs/reliability.md, "Soak").
        self._wal_path = Path(f"{self.path}-wal")
        self._reserve_path = Path(f"{self.path}.seq")
        self._reserve_tmp = Path(f"{self.path}.seq.tmp")
        self.max_bytes = max_bytes
        self.overflow = overflow
        self.min_free_bytes = min_free_bytes
        self.max_age_ms = None if max_age_s is None else int(max_age_s * 1000)
        self._lock = threading.RLock()
        self._pending: collections.deque[Reading] = collections.deque()
        """Added, not yet committed. A deque: ``add`` appends without the lock, so the
        poller (on the event loop) never waits for a commit's fsync; ``commit`` takes
        from the left what was there when it started."""
        self._unsaved_acks: list[Batch] = []
        """Acknowledged batches a full disk had no room to record (see ``ack``)."""
        self._cache: tuple[int, list[Record]] | None = None
        self.quarantined: list[str] = []
        self.dropped_by_reason: dict[str, int] = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._wal_damaged = False
        self._db = self._open_checked()
        self._load_state()
        if self._wal_damaged:
            self._skip_lost_seqs()

    # --- opening, integrity, quarantine ----------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                             timeout=10)
        db.execute(f"PRAGMA page_size={PAGE_SIZE}")  # a new file only; before WAL mode
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        # SQLite's page cache grows to 2 MB by default as a long run touches new pages:
        # memory that climbs for hours. Chunks are read once, in seq order, so a small
        # cache costs nothing measurable (docs/performance.md).
        db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        # Checkpoint rarely and keep the WAL file from growing without bound: fewer
        # rewrites of the same pages on the SD card, within the cap.
        self._page_size = int(db.execute("PRAGMA page_size").fetchone()[0])
        pages = max(16, min(2000, self.max_bytes // WAL_SHARE // self._page_size))
        self._wal_limit = 32 + pages * (24 + self._page_size)
        db.execute(f"PRAGMA wal_autocheckpoint={pages}")
        db.execute(f"PRAGMA journal_size_limit={self._wal_limit}")
        return db

    def _open_checked(self) -> sqlite3.Connection:
        salvage: dict[str, int] = {}
        existed = self.path.exists()
        try:
            self._check_wal()
            db = self._connect()
            result = db.execute("PRAGMA quick_check").fetchone()
            if result is None or result[0] != "ok":
                raise sqlite3.DatabaseError(f"quick_check: {result[0] if result else 'none'}")
            db.executescript(_SCHEMA)
            if "unsynced" not in {row[1] for row in db.execute("PRAGMA table_info(chunks)")}:
                # A buffer from before the clock repair: CREATE IF NOT EXISTS left its
                # chunks table as it was, and every commit would fail on the column count.
                db.execute("ALTER TABLE chunks ADD COLUMN unsynced INTEGER NOT NULL DEFAULT 0")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise sqlite3.DatabaseError(f"unknown schema version {version}")
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self._wal_damaged = self._lost_in_wal(db)
            if db.execute(_BLANK).fetchone()[0]:
                if self._read_reserve() is None:  # a new buffer: seq starts at 1
                    db.execute("INSERT INTO meta VALUES ('next_seq', 1)")
                    return db
                # Seqs were handed out before, yet nothing here remembers them: the file
                # was emptied (a zero-length file after a power cut) or removed.
                if existed:
                    raise sqlite3.DatabaseError("empty, though seqs were handed out before")
                log.error("buffer %s is missing, though seqs were handed out before; "
                          "starting a fresh buffer above them", self.path)
                self._restart_sequence(db, {})
            return db
        except sqlite3.DatabaseError as exc:
            if _environment(exc):
                with contextlib.suppress(Exception):
                    db.close()
                raise StoreError(f"cannot open buffer {self.path}: {exc} "
                                 f"({getattr(exc, 'sqlite_errorname', 'error')}; "
                                 f"{self._free_disk()} bytes free)") from None
            with contextlib.suppress(Exception):
                salvage = self._salvage_meta(db)
            with contextlib.suppress(Exception):
                db.close()
            self._quarantine(str(exc))
        db = self._connect()
        db.executescript(_SCHEMA)
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self._restart_sequence(db, salvage)
        return db

    def _lost_in_wal(self, db: sqlite3.Connection) -> bool:
        """Checkpoint what SQLite recovered, then look past it for lost transactions."""
        row = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if row is None or row[1] < 0:
            return False
        lost = _wal_lost_commits(f"{self.path}-wal", int(row[1]))
        if lost:
            log.error("buffer %s: the write-ahead log is damaged; committed readings after "
                      "the damage are lost", self.path)
        return lost

    def _skip_lost_seqs(self) -> None:
        """Transactions were lost from the WAL: the seqs they held may have been sent.
        Continue above every seq ever handed out and report the gap, keeping the rest."""
        reserved = self._read_reserve()
        if reserved is None or reserved <= self._next_seq:
            return
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        self._record_drop_locked(self._next_seq, reserved - 1, DROP_BUFFER_CORRUPT)
        db.execute("INSERT OR REPLACE INTO meta VALUES ('next_seq', ?)", (reserved,))
        db.execute("COMMIT")
        self._load_state()

    def _check_wal(self) -> None:
        """SQLite ignores a WAL whose header is damaged, and every transaction in it: the
        buffer would silently go back in time and hand out those seqs again.

        One damaged header is harmless: SQLite rewrites the header (and syncs it before
        any new frame) only once every frame has been copied into the main file, so a
        power cut during that write leaves a WAL whose pages the main file already holds.
        """
        try:
            with open(f"{self.path}-wal", "rb") as f:
                header = f.read(32)
                if not header or _wal_header_valid(header):
                    return
                if _wal_already_in(f, self.path):
                    log.warning("buffer %s: the write-ahead log header is torn, but every "
                                "page in it is already in the main file: nothing lost",
                                self.path)
                    return
        except FileNotFoundError:
            return
        raise sqlite3.DatabaseError("the write-ahead log (-wal) is damaged")

    @staticmethod
    def _salvage_meta(db: sqlite3.Connection) -> dict[str, int]:
        return {k: int(v) for k, v in db.execute("SELECT key, value FROM meta")}

    def _quarantine(self, reason: str) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        taken = 1
        while any(Path(f"{self.path}.corrupt-{stamp}{s}").exists() for s in ("", "-wal", "-shm")):
            taken += 1  # quarantined before within this second: keep that evidence too
            stamp = f"{stamp.partition('-')[0]}-{taken}"
        for suffix in ("", "-wal", "-shm"):
            src = Path(f"{self.path}{suffix}")
            if src.exists():
                dst = Path(f"{self.path}.corrupt-{stamp}{suffix}")
                os.replace(src, dst)
                if not suffix:
                    self.quarantined.append(str(dst))
        log.error("buffer %s is unreadable (%s); moved aside as %s.corrupt-%s, "
                  "starting a fresh buffer", self.path, reason, self.path.name, stamp)

    def _restart_sequence(self, db: sqlite3.Connection, salvage: dict[str, int]) -> None:
        """After quarantine: continue seq above anything ever handed out, report the gap."""
        reserved = self._read_reserve()
        next_seq = max(salvage.get("next_seq", 1), reserved or 1)
        acked = salvage.get("acked_seq", 0)
        db.execute("BEGIN")
        db.execute("INSERT OR REPLACE INTO meta VALUES ('next_seq', ?)", (next_seq,))
        db.execute("INSERT OR REPLACE INTO meta VALUES ('acked_seq', ?)", (next_seq - 1,))
        if next_seq - 1 > acked:
            db.execute("INSERT INTO drops VALUES (?, ?, ?)",
                       (acked + 1, next_seq - 1, DROP_BUFFER_CORRUPT))
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                       (f"dropped:{DROP_BUFFER_CORRUPT}", next_seq - 1 - acked))
        db.execute("COMMIT")

    def _read_reserve(self) -> int | None:
        try:
            return int(self._reserve_path.read_text().strip())
        except (OSError, ValueError):
            return None

    def _write_reserve(self, value: int) -> None:
        tmp = self._reserve_tmp
        with open(tmp, "w") as f:
            f.write(f"{value}\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._reserve_path)
        with contextlib.suppress(OSError):
            fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self._reserved = value

    def _load_state(self) -> None:
        db = self._db
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        self._acked_seq = max([int(meta.get("acked_seq", 0)),
                               *(b.key_range[1] for b in self._unsaved_acks if b.lines)])
        highest = db.execute(
            "SELECT MAX(COALESCE((SELECT MAX(last_seq) FROM chunks), 0),"
            " COALESCE((SELECT MAX(to_seq) FROM drops), 0),"
            " COALESCE((SELECT MAX(seq) FROM dead_letters), 0))").fetchone()[0]
        self._next_seq = max(int(meta.get("next_seq", 1)), int(highest) + 1,
                             self._acked_seq + 1)
        row = db.execute("SELECT COALESCE(SUM(length(data)), 0), COUNT(*) FROM chunks").fetchone()
        self._bytes = int(row[0]) + 64 * int(row[1])
        self._readings = self._count_readings()
        self._inflight_through = self._acked_seq
        reserved = self._read_reserve()
        if reserved is None or reserved < self._next_seq:
            self._write_reserve(self._next_seq + SEQ_RESERVE_BLOCK)
        else:
            self._reserved = reserved
        for reason, count in db.execute(
            "SELECT key, value FROM meta WHERE key LIKE 'dropped:%'"
        ):
            self.dropped_by_reason[reason.removeprefix("dropped:")] = int(count)

    def _count_readings(self) -> int:
        row = self._db.execute(
            "SELECT COALESCE(SUM(last_seq - MAX(first_seq, ?) + 1), 0) FROM chunks "
            "WHERE last_seq > ?", (self._acked_seq + 1, self._acked_seq)).fetchone()
        return int(row[0])

    def close(self) -> None:
        with self._lock, contextlib.suppress(sqlite3.Error):
            self._db.close()

    # --- ingest --------------------------------------------------------------------

    def add(self, reading: Reading) -> None:
        """Queue a reading for the next commit. It is not stored until ``commit()``."""
        self._pending.append(reading)  # atomic; see _pending

    @property
    def pending(self) -> int:
        return len(self._pending)

    def commit(self) -> range:
        """Write every queued reading in one transaction; returns the seqs it assigned."""
        with self._lock:
            self._save_acks()
            queue = self._pending
            pending = [queue.popleft() for _ in range(len(queue))]
            if not pending:
                return range(self._next_seq, self._next_seq)
            first = self._next_seq
            chunks: list[tuple[int, int, int, int, bytes, int]] = []
            for offset in range(0, len(pending), CHUNK_MAX_READINGS):
                part = pending[offset:offset + CHUNK_MAX_READINGS]
                start = first + offset
                chunks.append((start, start + len(part) - 1, part[0][1], part[-1][1],
                               _pack(part), _unsynced(part)))
            seq = first + len(pending)
            last = seq - 1
            new_bytes = sum(len(c[4]) + 64 for c in chunks)
            db = self._db
            try:
                if seq > self._reserved:
                    self._write_reserve(seq + SEQ_RESERVE_BLOCK)
                db.execute("BEGIN IMMEDIATE")
                full, _ = self._lacking(new_bytes)
                if full is not None and self.overflow == "drop_oldest":
                    full = self._drop_oldest_locked(new_bytes)
                room = full is None
                if full is None:
                    db.executemany("INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?)", chunks)
                else:
                    self._record_drop_locked(first, last, full)
                # No write of next_seq here: it follows from the chunks (one page less per
                # commit on the SD card); it is written when chunks are deleted.
                db.execute("COMMIT")
            except (sqlite3.Error, OSError) as exc:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                # Nothing was stored: keep the readings for the next attempt, bounded.
                self._pending.extendleft(reversed(pending))
                overflow = len(self._pending) - MAX_PENDING
                if overflow > 0:
                    for _ in range(overflow):
                        self._pending.popleft()
                    self.dropped_by_reason["write_failed"] = (
                        self.dropped_by_reason.get("write_failed", 0) + overflow)
                self._load_state()
                if isinstance(exc, sqlite3.OperationalError) and _disk_full(exc):
                    self._checkpoint()  # the next attempt may fit in the WAL as it is
                raise
            self._next_seq = seq
            if room:
                self._bytes += new_bytes
                self._readings += last - first + 1
            return range(first, seq)

    def correct_clock(self, boot_id: str, offset_ms: int) -> int:
        """The clock is synchronised now: repair the ``ts`` of this boot's unsynced readings.

        ``offset_ms`` is wall time minus monotonic time, measured just after the sync; a
        reading's true time is its monotonic time plus that offset. Readings of other
        boots keep their flag: their monotonic clock cannot be related to this one.
        Returns how many readings were corrected.
        """
        def fix(record: Record) -> Record:
            sensor, _, values, flags, clock = record
            if clock is None or clock[0] != boot_id or CLOCK_UNSYNCED not in flags:
                return record
            new_flags = tuple(CLOCK_CORRECTED if f == CLOCK_UNSYNCED else f for f in flags)
            return (sensor, clock[1] + offset_ms, values, new_flags, clock)

        with self._lock:
            corrected = 0
            queue = self._pending  # readings added meanwhile go to its right end
            waiting = [queue.popleft() for _ in range(len(queue))]
            for i, reading in enumerate(waiting):
                if reading.clock is not None:
                    fixed = fix(reading)
                    if fixed[1] != reading.ts or fixed[3] != reading.flags:
                        waiting[i] = Reading(*fixed)
                        corrected += 1
            queue.extendleft(reversed(waiting))
            rows = self._db.execute(
                "SELECT first_seq, last_seq, data FROM chunks WHERE unsynced > 0 "
                "ORDER BY first_seq").fetchall()
            if not rows:
                return corrected
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for first_seq, _, blob in rows:
                    records = [fix(r) for r in _unpack(blob)]
                    left = _unsynced(records)
                    corrected += sum(1 for r in records
                                     if r[4] is not None and CLOCK_CORRECTED in r[3])
                    self._db.execute(
                        "UPDATE chunks SET data = ?, unsynced = ?, first_ts = ?, last_ts = ? "
                        "WHERE first_seq = ?",
                        (_pack(records), left, records[0][1], records[-1][1], first_seq))
                self._db.execute("COMMIT")
            except Exception:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise
            self._cache = None
            return corrected

    def _free_disk(self) -> int:
        try:
            return shutil.disk_usage(self.path.parent).free
        except OSError:
            return 0

    def _lacking(self, new_bytes: int) -> tuple[str | None, bool]:
        """Why ``new_bytes`` more of chunks do not fit now (``buffer_full`` or
        ``disk_full``; None: they fit), and whether deleting chunks can make room.

        The cap counts readings' bytes and, from ``FILE_CAP_MIN`` up, the database pages
        in use plus room for the WAL. The reserve limits what the buffer takes from the
        disk: new pages beyond the free ones inside the file, pages still to be copied
        from the WAL into a grown file, and the WAL's own growth up to its limit. Writing
        into space the files already hold takes nothing, so a disk filled by something
        else still lets the oldest readings make room for the newest.
        """
        if self._bytes + new_bytes > self.max_bytes:
            return DROP_BUFFER_FULL, True
        if self.max_bytes < FILE_CAP_MIN and not self.min_free_bytes:
            return None, False
        page = self._page_size
        pages = -(-new_bytes // page) + 2
        count, free_pages = (int(self._db.execute(f"PRAGMA {name}").fetchone()[0])
                             for name in ("page_count", "freelist_count"))
        if self.max_bytes >= FILE_CAP_MIN and \
                (count - free_pages + pages) * page > self.max_bytes - 2 * self._wal_limit:
            return DROP_BUFFER_FULL, True
        if self.min_free_bytes:
            new_pages = max(0, pages - free_pages)
            growth = new_pages * page + max(0, count * page - _size(self.path)) + max(
                0, self._wal_limit - _size(self._wal_path))
            if growth and self._free_disk() - growth < self.min_free_bytes:
                return DROP_DISK_FULL, new_pages > 0
        return None, False

    def _drop_oldest_locked(self, new_bytes: int) -> str | None:
        """Delete the oldest undelivered chunks until ``new_bytes`` fits; record the drops.

        Chunks of the batch being uploaded are left alone (they may be delivered at this
        very moment); returns why there is still no room (None: there is).
        """
        rows = self._db.execute(
            "SELECT first_seq, last_seq, length(data) FROM chunks WHERE first_seq > ? "
            "ORDER BY first_seq", (self._inflight_through,)).fetchall()
        full, deleting_helps = self._lacking(new_bytes)
        for first_seq, last_seq, size in rows:
            if full is None or not deleting_helps:
                break
            self._db.execute("DELETE FROM chunks WHERE first_seq = ?", (first_seq,))
            low = max(first_seq, self._acked_seq + 1)
            if last_seq >= low:
                self._record_drop_locked(low, last_seq, full)
                self._readings -= last_seq - low + 1
            self._bytes -= size + 64
            full, deleting_helps = self._lacking(new_bytes)
        self._cache = None
        return full

    def _record_drop_locked(self, low: int, high: int, reason: str) -> None:
        last = self._db.execute(
            "SELECT from_seq, to_seq, reason FROM drops ORDER BY from_seq DESC LIMIT 1"
        ).fetchone()
        if last is not None and last[2] == reason and last[1] + 1 == low:
            self._db.execute("UPDATE drops SET to_seq = ? WHERE from_seq = ?", (high, last[0]))
        else:
            self._db.execute("INSERT INTO drops VALUES (?, ?, ?)", (low, high, reason))
        key = f"dropped:{reason}"
        self._db.execute(
            "INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = value + ?",
            (key, high - low + 1, high - low + 1))
        self.dropped_by_reason[reason] = self.dropped_by_reason.get(reason, 0) + high - low + 1

    def _uncover_locked(self, low: int, high: int) -> list[tuple[int, int, str]]:
        """Take seqs ``low..high`` out of the drop ranges still to report; returns the
        parts taken. A range may have grown since a batch carried it (a later drop next
        to it is merged in), so only the part that was carried may go."""
        taken = []
        rows = self._db.execute(
            "SELECT from_seq, to_seq, reason FROM drops WHERE from_seq <= ? AND to_seq >= ?",
            (high, low)).fetchall()
        for a, b, reason in rows:
            self._db.execute("DELETE FROM drops WHERE from_seq = ?", (a,))
            if a < low:
                self._db.execute("INSERT INTO drops VALUES (?, ?, ?)", (a, low - 1, reason))
            if b > high:
                self._db.execute("INSERT INTO drops VALUES (?, ?, ?)", (high + 1, b, reason))
            taken.append((max(a, low), min(b, high), str(reason)))
        return taken

    def expire(self, now_ms: int) -> int:
        """Drop undelivered readings older than ``max_age``; returns how many."""
        if self.max_age_ms is None:
            return 0
        with self._lock:
            cutoff = now_ms - self.max_age_ms
            rows = self._db.execute(
                "SELECT first_seq, last_seq, length(data) FROM chunks WHERE last_ts < ? "
                "AND first_seq > ? ORDER BY first_seq",
                (cutoff, self._inflight_through)).fetchall()
            if not rows:
                return 0
            dropped = 0
            self._db.execute("BEGIN IMMEDIATE")
            for first_seq, last_seq, size in rows:
                self._db.execute("DELETE FROM chunks WHERE first_seq = ?", (first_seq,))
                low = max(first_seq, self._acked_seq + 1)
                if last_seq >= low:
                    self._record_drop_locked(low, last_seq, DROP_TOO_OLD)
                    dropped += last_seq - low + 1
                self._bytes -= size + 64
            self._db.execute("COMMIT")
            self._readings -= dropped
            self._cache = None
            return dropped

    # --- delivery ------------------------------------------------------------------

    def _records_of(self, first_seq: int, last_seq: int, blob: bytes) -> list[Record] | None:
        """A chunk's records; an unreadable chunk is deleted and reported dropped."""
        if self._cache is not None and self._cache[0] == first_seq:
            return self._cache[1]
        try:
            records = _unpack(blob)
            if len(records) != last_seq - first_seq + 1:
                raise StoreError(f"holds {len(records)} readings, expected "
                                 f"{last_seq - first_seq + 1}")
        except (StoreError, zlib.error, ValueError, EOFError, TypeError) as exc:
            log.error("buffer chunk %d-%d is unreadable (%s): reported as dropped",
                      first_seq, last_seq, exc)
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM chunks WHERE first_seq = ?", (first_seq,))
            low = max(first_seq, self._acked_seq + 1)
            if last_seq >= low:
                self._record_drop_locked(low, last_seq, DROP_BUFFER_CORRUPT)
                self._readings -= last_seq - low + 1
            self._bytes -= len(blob) + 64
            self._db.execute("COMMIT")
            return None
        self._cache = (first_seq, records)
        return records

    def iter_lines(self, after_seq: int | None = None) -> Iterator[tuple[int, bytes]]:
        """Undelivered readings in seq order, one chunk in memory at a time."""
        position = self._acked_seq if after_seq is None else after_seq
        while True:
            with self._lock:
                row = self._db.execute(
                    "SELECT first_seq, last_seq, data FROM chunks WHERE last_seq > ? "
                    "ORDER BY first_seq LIMIT 1", (position,)).fetchone()
                if row is None:
                    return
                first_seq, last_seq, blob = row
                records = self._records_of(first_seq, last_seq, blob)
            if records is not None:
                start = max(position + 1, first_seq)
                lines = encode_records(start, records[start - first_seq:])
                yield from zip(range(start, last_seq + 1), lines, strict=True)
            position = last_seq

    def next_batch(self, max_readings: int, max_bytes: int, after_seq: int | None = None
                   ) -> Batch | None:
        """The oldest undelivered readings, within both limits; ``None`` when none."""
        with self._lock:
            position = self._acked_seq if after_seq is None else after_seq
            drops = [tuple(r) for r in self._db.execute(
                "SELECT from_seq, to_seq, reason FROM drops ORDER BY from_seq LIMIT 1000")]
            for batch in self._unsaved_acks:  # delivered after all: not dropped
                if batch.lines:
                    drops = _without(drops, batch.first_seq, batch.key_range[1])
            lines: list[bytes] = []
            size = 0
            first: int | None = None
            while len(lines) < max_readings:
                row = self._db.execute(
                    "SELECT first_seq, last_seq, data FROM chunks WHERE last_seq > ? "
                    "ORDER BY first_seq LIMIT 1", (position,)).fetchone()
                if row is None:
                    break
                first_seq, last_seq, blob = row
                start = max(position + 1, first_seq)
                if first is not None and start != position + 1:
                    break  # a gap (dropped chunk): end the batch so seqs stay contiguous
                records = self._records_of(first_seq, last_seq, blob)
                if records is None:
                    if first is not None:
                        break
                    continue
                if first is None:
                    first = start
                index = start - first_seq
                wanted = records[index:index + max_readings - len(lines)]
                encoded = encode_records(start, wanted)
                whole = size + sum(map(len, encoded)) + len(encoded)  # a comma each
                if whole <= max_bytes:  # the usual case, without a step per reading
                    lines.extend(encoded)
                    size = whole
                    taken = len(encoded)
                else:
                    taken = 0
                    for line in encoded:
                        if lines and size + len(line) + 1 > max_bytes:
                            break
                        lines.append(line)
                        size += len(line) + 1
                        taken += 1
                position = start + taken - 1
                if taken < len(wanted) or (position < last_seq and len(lines) >= max_readings):
                    break
            if not lines and not drops:
                return None
            if first is None:
                first = position + 1
            self._inflight_through = max(self._inflight_through, position)
            return Batch(first, first + len(lines) - 1, lines,
                         [(int(a), int(b), str(c)) for a, b, c in drops])

    def ack(self, batch: Batch) -> None:
        """The cloud stored ``batch`` (2xx or 409): forget its readings and reported drops.

        On a disk too full to record even that, the acknowledgement is kept in memory
        and written before the next write: the batch is not sent again, and drops that
        overlap it are not reported. After a restart in between it is sent again, and the
        cloud deduplicates it.
        """
        with self._lock:
            self._unsaved_acks.append(batch)
            self._save_acks()
            if self._unsaved_acks:
                log.warning("disk full: the acknowledgement of seqs up to %d is kept in "
                            "memory until it can be written", self._acked_seq)

    def _save_acks(self) -> None:
        """Write the acknowledgements kept in memory, oldest first, as far as they go."""
        if not self._unsaved_acks:
            return
        waiting, self._unsaved_acks = self._unsaved_acks, []
        # A batch read ahead (the uploader prepares the next one while one is sent) is
        # still in flight after this acknowledgement: its chunks stay protected.
        inflight = self._inflight_through
        try:
            self._load_state()  # the watermark as written, for _resolve to move on from
            for attempt in range(2):
                try:
                    while waiting:
                        self._resolve(waiting[0], None)
                        waiting.pop(0)
                    return
                except sqlite3.OperationalError as exc:
                    if not _disk_full(exc):
                        raise  # the batches not recorded are sent again
                    if attempt == 0:
                        self._checkpoint()
            self._unsaved_acks = waiting
            self._load_state()
        finally:
            self._inflight_through = max(inflight, self._acked_seq)

    def _checkpoint(self) -> None:
        """Copy the WAL into the main file, so the next write reuses the WAL from its start
        instead of growing it (what a full disk may still allow)."""
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()

    def dead_letter(self, batch: Batch, status: int | None, reason: str) -> None:
        """The cloud refused these readings for good: keep them aside, report them dropped.

        On a full disk (after a checkpoint has been tried) this raises ``StoreError`` and
        changes nothing: the readings stay in the buffer, to be sent and refused again
        once there is room to set them aside.
        """
        with self._lock:
            for attempt in range(2):
                try:
                    self._resolve(batch, (status, reason))
                    return
                except sqlite3.OperationalError as exc:
                    if not _disk_full(exc):
                        raise
                    if attempt == 0:
                        self._checkpoint()
            raise StoreError(f"disk full: cannot move seqs {batch.first_seq}-"
                             f"{batch.key_range[1]} to the dead letters; they stay in the "
                             "buffer")

    def _resolve(self, batch: Batch, rejected: tuple[int | None, str] | None) -> None:
        db = self._db
        last = batch.key_range[1] if batch.lines else self._acked_seq
        db.execute("BEGIN IMMEDIATE")
        try:
            if rejected is None:  # a refused request: the cloud never saw its drops
                for low, high, _ in batch.drops:
                    self._uncover_locked(low, high)
            if batch.lines:
                # After release() this very batch's chunks may have been dropped while it
                # was being retried: it was delivered (or is dead-lettered) after all.
                for low, high, reason in self._uncover_locked(batch.first_seq, last):
                    count = high - low + 1
                    db.execute("UPDATE meta SET value = value - ? WHERE key = ?",
                               (count, f"dropped:{reason}"))
                    self.dropped_by_reason[reason] = (
                        self.dropped_by_reason.get(reason, 0) - count)
            if rejected is not None and batch.lines:
                now = int(time.time() * 1000)
                db.executemany(
                    "INSERT OR REPLACE INTO dead_letters VALUES (?, ?, ?, ?, ?)",
                    [(seq, line, rejected[0], rejected[1], now)
                     for seq, line in zip(batch.seqs, batch.lines, strict=True)])
                self._record_drop_locked(batch.first_seq, last, DROP_REJECTED)
            if batch.lines and last > self._acked_seq:
                removed = db.execute(
                    "SELECT COALESCE(SUM(length(data)), 0), COUNT(*) FROM chunks "
                    "WHERE last_seq <= ?", (last,)).fetchone()
                db.execute("DELETE FROM chunks WHERE last_seq <= ?", (last,))
                db.execute("INSERT OR REPLACE INTO meta VALUES ('acked_seq', ?)", (last,))
                self._bytes -= int(removed[0]) + 64 * int(removed[1])
                self._acked_seq = last
            # Rows that held the highest seqs may be gone now (chunks, or drop ranges
            # reported by a batch without readings): next_seq must not follow them down.
            db.execute("INSERT OR REPLACE INTO meta VALUES ('next_seq', ?)", (self._next_seq,))
            db.execute("COMMIT")
        except sqlite3.Error:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            self._load_state()
            raise
        self._readings = self._count_readings()

    def release(self) -> None:
        """The batch in flight was not delivered (yet): its chunks may be dropped again."""
        with self._lock:
            self._inflight_through = self._acked_seq

    # --- inspection ----------------------------------------------------------------

    @property
    def next_seq(self) -> int:
        return self._next_seq

    @property
    def acked_seq(self) -> int:
        return self._acked_seq

    @property
    def readings(self) -> int:
        return self._readings

    def stats(self) -> StoreStats:
        with self._lock:
            oldest = self._db.execute(
                "SELECT first_ts FROM chunks WHERE last_seq > ? ORDER BY first_seq LIMIT 1",
                (self._acked_seq,)).fetchone()
            pending_drops = self._db.execute(
                "SELECT COALESCE(SUM(to_seq - from_seq + 1), 0) FROM drops").fetchone()[0]
            dead = self._db.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0]
            file_bytes = _size(self.path) + _size(self._wal_path)
            return StoreStats(
                readings=self._readings, bytes=self._bytes,
                oldest_ts=int(oldest[0]) if oldest else None,
                next_seq=self._next_seq, acked_seq=self._acked_seq,
                pending_drops=int(pending_drops), dead_letters=int(dead),
                dropped_by_reason=dict(self.dropped_by_reason), file_bytes=file_bytes,
                quarantined=list(self.quarantined))

    def dead_letters(self) -> list[dict[str, object]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, reading, status, reason, at_ms FROM dead_letters ORDER BY seq"
            ).fetchall()
        return [{"seq": seq, "reading": json.loads(reading), "status": status,
                 "reason": reason, "at_ms": at_ms} for seq, reading, status, reason, at_ms in rows]


def read_only_stats(path: str | Path) -> tuple[StoreStats, list[dict[str, object]]]:
    """Stats and dead letters of a buffer, without writing to it (the service may run)."""
    path = Path(path)
    if not path.exists():
        raise StoreError(f"no buffer at {path}")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            acked = int(meta.get("acked_seq", 0))
            highest = db.execute("SELECT MAX(last_seq) FROM chunks").fetchone()[0]
            if highest is not None and highest + 1 > int(meta.get("next_seq", 1)):
                meta["next_seq"] = highest + 1
            readings = db.execute(
                "SELECT COALESCE(SUM(last_seq - MAX(first_seq, ?) + 1), 0) FROM chunks "
                "WHERE last_seq > ?", (acked + 1, acked)).fetchone()[0]
            size, chunks = db.execute(
                "SELECT COALESCE(SUM(length(data)), 0), COUNT(*) FROM chunks").fetchone()
            oldest = db.execute("SELECT first_ts FROM chunks WHERE last_seq > ? "
                                "ORDER BY first_seq LIMIT 1", (acked,)).fetchone()
            pending_drops = db.execute(
                "SELECT COALESCE(SUM(to_seq - from_seq + 1), 0) FROM drops").fetchone()[0]
            rows = db.execute("SELECT seq, reading, status, reason, at_ms FROM dead_letters "
                              "ORDER BY seq").fetchall()
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read buffer {path}: {exc}") from None
    dropped = {k.removeprefix("dropped:"): int(v) for k, v in meta.items()
               if k.startswith("dropped:")}
    file_bytes = sum(Path(f"{path}{s}").stat().st_size
                     for s in ("", "-wal") if Path(f"{path}{s}").exists())
    stats = StoreStats(
        readings=int(readings), bytes=int(size) + 64 * int(chunks),
        oldest_ts=int(oldest[0]) if oldest else None,
        next_seq=int(meta.get("next_seq", 1)), acked_seq=acked,
        pending_drops=int(pending_drops), dead_letters=len(rows), dropped_by_reason=dropped,
        file_bytes=file_bytes, quarantined=[])
    letters = [{"seq": seq, "reading": json.loads(reading), "status": status,
                "reason": reason, "at_ms": at_ms} for seq, reading, status, reason, at_ms in rows]
    return stats, letters


def export_lines(path: str | Path) -> Iterator[bytes]:
    """Every undelivered reading's JSON, in seq order, read-only."""
    db = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True, timeout=5)
    try:
        acked = int(dict(db.execute("SELECT key, value FROM meta").fetchall()
                         ).get("acked_seq", 0))
        position = acked
        while True:
            row = db.execute("SELECT first_seq, last_seq, data FROM chunks WHERE last_seq > ? "
                             "ORDER BY first_seq LIMIT 1", (position,)).fetchone()
            if row is None:
                return
            first_seq, last_seq, blob = row
            start = max(position + 1, first_seq)
            try:
                records = _unpack(blob)
            except (StoreError, zlib.error, ValueError, EOFError, TypeError) as exc:
                raise StoreError(f"chunk {first_seq}-{last_seq} is unreadable: {exc}") from None
            yield from encode_records(start, records[start - first_seq:])
            position = last_seq
    finally:
        db.close()

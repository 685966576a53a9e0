"""The reference city-cloud receiver: speaks ingest protocol v1, for development and tests.

It stores readings in SQLite deduplicated on (gateway, seq), counts duplicates, records
reported drops, and can be told to fail on purpose (``/_admin/faults``) so outages,
throttling and poison readings can be rehearsed against the real uploader.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import sqlite3
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.control import signing

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024 * 1024
INGEST_PATH = "/v1/batches"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS bodies (id INTEGER PRIMARY KEY, gateway TEXT NOT NULL,
    body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    gateway TEXT NOT NULL, first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL,
    body INTEGER NOT NULL, item INTEGER NOT NULL,
    PRIMARY KEY (gateway, first_seq)) WITHOUT ROWID;
DROP VIEW IF EXISTS readings;
CREATE VIEW readings (gateway, seq, reading) AS
    WITH RECURSIVE expanded (gateway, seq, last_seq, body, item) AS (
        SELECT gateway, first_seq, last_seq, body, item FROM runs
        UNION ALL
        SELECT gateway, seq + 1, last_seq, body, item + 1 FROM expanded WHERE seq < last_seq)
    SELECT e.gateway, e.seq, json_extract(CAST(b.body AS TEXT), '$.readings[' || e.item || ']')
    FROM expanded e JOIN bodies b ON b.id = e.body;
CREATE TABLE IF NOT EXISTS dropped (
    gateway TEXT NOT NULL, from_seq INTEGER NOT NULL, to_seq INTEGER NOT NULL,
    reason TEXT NOT NULL, PRIMARY KEY (gateway, from_seq, to_seq, reason));
CREATE TABLE IF NOT EXISTS counters (
    gateway TEXT NOT NULL, name TEXT NOT NULL, value INTEGER NOT NULL,
    PRIMARY KEY (gateway, name));
CREATE TABLE IF NOT EXISTS batches (gateway TEXT NOT NULL, key TEXT NOT NULL,
    PRIMARY KEY (gateway, key));
"""
"""Each batch body is stored once, as received (decompressed), and ``runs`` index its
readings: seqs ``first_seq..last_seq`` of a gateway are the body's readings from index
``item`` on. A gateway's batch is one run of consecutive seqs, so storing it costs two
rows whatever its size, and no reading is encoded again (docs/performance.md). Runs never
overlap: a seq already stored is a duplicate. The ``readings`` view shows one row per
stored reading with its JSON (slow: it parses a body per row; for inspection)."""


@dataclass
class Faults:
    """What the cloud does wrong on purpose."""

    down: bool = False
    """Refuse connections' worth: answer every ingest with ``status`` (default 503)."""
    status: int = 503
    count: int = 0
    """Answer the next ``count`` requests with ``status`` (0: none, unless ``down``)."""
    retry_after: str | None = None
    reject_seqs: set[int] = field(default_factory=set)
    """Batches holding any of these seqs get 422: a poison reading."""
    max_readings: int | None = None
    """Batches with more readings than this get 413."""
    delay_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"down": self.down, "status": self.status, "count": self.count,
                "retry_after": self.retry_after, "reject_seqs": sorted(self.reject_seqs),
                "max_readings": self.max_readings, "delay_s": self.delay_s}


class ProtocolError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class CloudStore:
    """What the cloud holds, in SQLite."""

    def __init__(self, path: str | Path) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        old = self.db.execute("SELECT type FROM sqlite_master WHERE name = 'readings'").fetchone()
        if old is not None and old[0] == "table":  # one encoded row per reading, before
            self.db.execute("ALTER TABLE readings RENAME TO readings_v1")
        self.db.executescript(_SCHEMA)
        if self.db.execute("SELECT 1 FROM sqlite_master WHERE name = 'readings_v1'").fetchone():
            self._migrate()
        if self.db.execute("SELECT 1 FROM sqlite_master WHERE name = 'stored'").fetchone():
            self.db.executescript(  # one index row per reading, briefly
                "BEGIN; INSERT OR IGNORE INTO runs SELECT gateway, seq, seq, body, item "
                "FROM stored; DROP TABLE stored; COMMIT;")

    def _migrate(self) -> None:
        """Rows of the layout with one encoded row per reading become bodies of one."""
        db = self.db
        db.execute("BEGIN")
        for gateway, seq, text in db.execute(
                "SELECT gateway, seq, reading FROM readings_v1").fetchall():
            body = db.execute("INSERT INTO bodies (gateway, body) VALUES (?, ?)",
                              (gateway, f'{{"readings":[{text}]}}'.encode())).lastrowid
            db.execute("INSERT OR IGNORE INTO runs VALUES (?, ?, ?, ?, 0)",
                       (gateway, seq, seq, body))
        db.execute("DROP TABLE readings_v1")
        db.execute("COMMIT")

    def ingest(self, gateway: str, key: str, readings: list[dict[str, Any]],
               dropped: list[dict[str, Any]], body: bytes | None = None
               ) -> tuple[int, int, bool]:
        """Store a batch; returns (new readings, duplicates, batch key seen before).

        ``body`` is the request's JSON (its ``readings`` are ``readings``): kept as it
        is. Without it, the readings are encoded once into a body of their own.
        """
        db = self.db
        if body is None:
            body = json.dumps({"readings": readings}, separators=(",", ":")).encode()
        db.execute("BEGIN")
        seen = db.execute("SELECT 1 FROM batches WHERE gateway = ? AND key = ?",
                          (gateway, key)).fetchone() is not None
        stored = 0
        repeated: list[tuple[int, int]] = []
        """(seq, index in ``readings``) of the seqs stored before."""
        if readings:
            body_id = db.execute("INSERT INTO bodies (gateway, body) VALUES (?, ?)",
                                 (gateway, body)).lastrowid
            for first, last, start in _runs([r["seq"] for r in readings]):
                position = first
                for low, high in self._covered(gateway, first, last):
                    if low > position:
                        self._insert_run(gateway, position, low - 1, body_id,
                                         start + position - first)
                        stored += low - position
                    repeated += [(seq, start + seq - first) for seq in range(
                        max(low, position), min(high, last) + 1)]
                    position = max(position, high + 1)
                if position <= last:
                    self._insert_run(gateway, position, last, body_id,
                                     start + position - first)
                    stored += last - position + 1
            if not stored:
                db.execute("DELETE FROM bodies WHERE id = ?", (body_id,))
        duplicates = len(readings) - stored
        conflicts = 0
        if repeated:
            # A seq sent again must be the same reading (its ts and flags may have been
            # repaired after a clock sync); another one means the gateway reused a seq.
            kept_bodies: dict[int, list[Any]] = {}
            for seq, index in repeated:
                kept, reading = self._reading(gateway, seq, kept_bodies), readings[index]
                if kept is not None and kept != reading and \
                        _identity(kept) != _identity(reading):
                    conflicts += 1
                    log.warning("gateway %s reused seq %d for another reading", gateway, seq)
        db.executemany("INSERT OR IGNORE INTO dropped VALUES (?, ?, ?, ?)",
                       [(gateway, d["from_seq"], d["to_seq"], d["reason"]) for d in dropped])
        db.execute("INSERT OR IGNORE INTO batches VALUES (?, ?)", (gateway, key))
        for name, value in (("duplicates", duplicates), ("batches", 1),
                            ("conflicts", conflicts)):
            db.execute("INSERT INTO counters VALUES (?, ?, ?) ON CONFLICT(gateway, name) "
                       "DO UPDATE SET value = value + ?", (gateway, name, value, value))
        db.execute("COMMIT")
        return stored, duplicates, seen

    def _covered(self, gateway: str, first: int, last: int) -> list[tuple[int, int]]:
        """Stored runs overlapping ``first..last``, in order (they never overlap)."""
        before = self.db.execute(
            "SELECT first_seq, last_seq FROM runs WHERE gateway = ? AND first_seq < ? "
            "ORDER BY first_seq DESC LIMIT 1", (gateway, first)).fetchone()
        inside = self.db.execute(
            "SELECT first_seq, last_seq FROM runs WHERE gateway = ? AND first_seq "
            "BETWEEN ? AND ? ORDER BY first_seq", (gateway, first, last)).fetchall()
        if before is not None and before[1] >= first:
            return [(int(before[0]), int(before[1])), *inside]
        return [(int(a), int(b)) for a, b in inside]

    def _insert_run(self, gateway: str, first: int, last: int, body_id: int | None,
                    item: int) -> None:
        self.db.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?)",
                        (gateway, first, last, body_id, item))

    def _body(self, body_id: int, cache: dict[int, list[Any]]) -> list[Any]:
        """The readings of one stored body, parsed once per ``cache``."""
        if body_id not in cache:
            (blob,) = self.db.execute("SELECT body FROM bodies WHERE id = ?",
                                      (body_id,)).fetchone()
            cache[body_id] = json.loads(blob)["readings"]
        return cache[body_id]

    def _reading(self, gateway: str, seq: int, cache: dict[int, list[Any]]) -> Any:
        row = self.db.execute(
            "SELECT first_seq, last_seq, body, item FROM runs WHERE gateway = ? AND "
            "first_seq <= ? ORDER BY first_seq DESC LIMIT 1", (gateway, seq)).fetchone()
        if row is None or row[1] < seq:
            return None
        return self._body(row[2], cache)[row[3] + seq - row[0]]

    def stats(self, gateway: str) -> dict[str, Any]:
        db = self.db
        count, low, high = db.execute(
            "SELECT COALESCE(SUM(last_seq - first_seq + 1), 0), MIN(first_seq), "
            "MAX(last_seq) FROM runs WHERE gateway = ?", (gateway,)).fetchone()
        counters = dict(db.execute("SELECT name, value FROM counters WHERE gateway = ?",
                                   (gateway,)).fetchall())
        ranges = db.execute("SELECT from_seq, to_seq, reason FROM dropped WHERE gateway = ? "
                            "ORDER BY from_seq", (gateway,)).fetchall()
        # Distinct seqs covered by the (sorted, possibly repeated or overlapping) ranges.
        dropped = 0
        covered_to = 0
        for a, b, _ in ranges:
            if b > covered_to:
                dropped += b - max(a, covered_to + 1) + 1
                covered_to = b
        return {
            "gateway": gateway, "readings": count, "min_seq": low, "max_seq": high,
            "duplicates": counters.get("duplicates", 0), "batches": counters.get("batches", 0),
            "conflicts": counters.get("conflicts", 0),
            "dropped": dropped,
            "dropped_ranges": [{"from_seq": a, "to_seq": b, "reason": r} for a, b, r in ranges],
        }

    def seqs(self, gateway: str) -> list[int]:
        return [seq for first, last in self.db.execute(
            "SELECT first_seq, last_seq FROM runs WHERE gateway = ? ORDER BY first_seq",
            (gateway,)) for seq in range(first, last + 1)]

    def readings(self, gateway: str, after_seq: int = 0, limit: int = 1000
                 ) -> list[dict[str, Any]]:
        cache: dict[int, list[Any]] = {}
        out: list[dict[str, Any]] = []
        for first, last, body_id, item in self.db.execute(
                "SELECT first_seq, last_seq, body, item FROM runs WHERE gateway = ? AND "
                "last_seq > ? ORDER BY first_seq", (gateway, after_seq)):
            start = max(first, after_seq + 1)
            take = min(last - start + 1, limit - len(out))
            offset = item + start - first
            out += self._body(body_id, cache)[offset:offset + take]
            if len(out) >= limit:
                break
        return out

    def gateways(self) -> list[str]:
        return [g for (g,) in self.db.execute("SELECT DISTINCT gateway FROM runs")]

    def close(self) -> None:
        self.db.close()


def _runs(seqs: list[int]) -> list[tuple[int, int, int]]:
    """``seqs`` as runs of consecutive seqs: (first, last, index of first in ``seqs``).
    A gateway's batch is one run, found without a step per reading."""
    if not seqs:
        return []
    if seqs == list(range(seqs[0], seqs[0] + len(seqs))):
        return [(seqs[0], seqs[-1], 0)]
    runs: list[tuple[int, int, int]] = []
    start = 0
    for i in range(1, len(seqs) + 1):
        if i == len(seqs) or seqs[i] != seqs[i - 1] + 1:
            runs.append((seqs[start], seqs[i - 1], start))
            start = i
    return runs


def _identity(reading: dict[str, Any]) -> tuple[Any, ...]:
    """What makes a reading that reading: its sensor, values and time of the read (the
    boot and monotonic time for one taken before clock sync, whose ``ts`` may be
    repaired later)."""
    when = (reading.get("boot_id"), reading.get("mono_ms")) if "boot_id" in reading \
        else reading.get("ts")
    return (reading.get("sensor"), reading.get("values"), when)


def _check_reading(r: Any, index: int) -> None:
    where = f"readings[{index}]"
    if not isinstance(r, dict):
        raise ProtocolError(400, f"{where}: must be an object")
    seq = r.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise ProtocolError(422, f"{where}.seq: must be an integer >= 1")
    if not isinstance(r.get("sensor"), str) or not r["sensor"]:
        raise ProtocolError(422, f"{where}.sensor: must be a non-empty string")
    if not isinstance(r.get("ts"), int) or isinstance(r.get("ts"), bool):
        raise ProtocolError(422, f"{where}.ts: must be integer milliseconds")
    values = r.get("values")
    if not isinstance(values, dict) or not all(
            isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
            for k, v in values.items()):
        raise ProtocolError(422, f"{where}.values: must map names to numbers")
    flags = r.get("flags", [])
    if not isinstance(flags, list) or not all(isinstance(f, str) for f in flags):
        raise ProtocolError(422, f"{where}.flags: must be a list of strings")


def decode_body(body: bytes, encoding: str | None) -> bytes:
    """The request body with its Content-Encoding undone."""
    # aiohttp's server may already have undone the Content-Encoding: look at the bytes.
    if encoding == "gzip" and body[:2] == b"\x1f\x8b":
        try:
            decoder = zlib.decompressobj(wbits=31)
            body = decoder.decompress(body, MAX_BODY_BYTES)
            if decoder.unconsumed_tail:
                raise ProtocolError(413, "decompressed body larger than the limit")
        except zlib.error as exc:
            raise ProtocolError(400, f"body is not valid gzip: {exc}") from None
    elif encoding not in (None, "", "identity", "gzip"):
        raise ProtocolError(415, f"unsupported Content-Encoding {encoding!r}")
    return body


_EMPTY: list[Any] = []


def _all_valid(readings: list[Any]) -> bool:
    """What ``_check_reading`` checks, for every reading at once, a column at a time (a
    batch of thousands costs a few C loops, not a Python call per reading). False: some
    reading is bad, and ``_check_reading`` finds which."""
    if not set(map(type, readings)) <= {dict}:
        return False
    seqs = [r.get("seq") for r in readings]
    if not set(map(type, seqs)) <= {int} or (seqs and min(seqs) < 1):
        return False  # type() is exact: a bool is not an int here
    sensors = [r.get("sensor") for r in readings]
    if not set(map(type, sensors)) <= {str} or not all(sensors):
        return False
    if not set(map(type, [r.get("ts") for r in readings])) <= {int}:
        return False
    values = [r.get("values") for r in readings]
    if not set(map(type, values)) <= {dict}:
        return False
    # Keys of a parsed JSON object are always strings.
    if not {type(v) for d in values for v in d.values()} <= {int, float}:
        return False
    flags = [r.get("flags", _EMPTY) for r in readings]
    return set(map(type, flags)) <= {list} and {type(f) for fs in flags for f in fs} <= {str}


def parse_batch(body: bytes, encoding: str | None) -> dict[str, Any]:
    body = decode_body(body, encoding)
    try:
        batch = json.loads(body)
    except ValueError as exc:
        raise ProtocolError(400, f"body is not JSON: {exc}") from None
    if not isinstance(batch, dict):
        raise ProtocolError(400, "body must be a JSON object")
    if not isinstance(batch.get("gateway"), str) or not batch["gateway"]:
        raise ProtocolError(400, "gateway: must be a non-empty string")
    readings = batch.get("readings")
    if not isinstance(readings, list):
        raise ProtocolError(400, "readings: must be a list")
    if not _all_valid(readings):
        for i, r in enumerate(readings):
            _check_reading(r, i)
    dropped = batch.get("dropped", [])
    if not isinstance(dropped, list) or not all(
            isinstance(d, dict) and isinstance(d.get("from_seq"), int)
            and isinstance(d.get("to_seq"), int) and isinstance(d.get("reason"), str)
            and d["from_seq"] <= d["to_seq"] for d in dropped):
        raise ProtocolError(400, "dropped: must be a list of {from_seq, to_seq, reason}")
    return batch


class CloudServer:
    """The receiver as an aiohttp application; usable in-process or via ``cloud`` CLI."""

    def __init__(self, db_path: str | Path, token: str | None = None) -> None:
        self.store = CloudStore(db_path)
        self.token = token
        self.faults = Faults()
        self.requests = 0
        self.request_log: list[dict[str, Any]] = []
        """Per ingest request: time, key, status, readings (for tests)."""
        self.extensions: list[Any] = []
        """Objects with ``on_batch(gateway, batch) -> dict`` adding fields to the reply."""
        self.app = web.Application(client_max_size=MAX_BODY_BYTES)
        self.app.add_routes([
            web.post(INGEST_PATH, self._ingest),
            web.get("/v1/gateways", self._gateways),
            web.get("/v1/gateways/{gateway}/stats", self._stats),
            web.get("/v1/gateways/{gateway}/readings", self._readings),
            web.get("/_admin/faults", self._get_faults),
            web.post("/_admin/faults", self._set_faults),
        ])
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self.port

    def url(self, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{INGEST_PATH}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.store.close()

    def _fault_status(self, readings: list[dict[str, Any]] | None) -> tuple[int, str] | None:
        f = self.faults
        if f.down:
            return f.status, "cloud is down (fault injection)"
        if f.count > 0:
            f.count -= 1
            return f.status, "injected failure"
        if readings is not None:
            if f.max_readings is not None and len(readings) > f.max_readings:
                return 413, f"batch of {len(readings)} readings is over {f.max_readings}"
            bad = [r["seq"] for r in readings if r["seq"] in f.reject_seqs]
            if bad:
                return 422, f"reading seq {bad[0]} rejected"
        return None

    async def _ingest(self, request: web.Request) -> web.Response:
        self.requests += 1
        entry: dict[str, Any] = {"key": request.headers.get("Idempotency-Key"),
                                 "loop_time": asyncio.get_running_loop().time()}
        self.request_log.append(entry)
        if self.faults.delay_s:
            await asyncio.sleep(self.faults.delay_s)
        if self.token is not None and \
                request.headers.get("Authorization") != f"Bearer {self.token}":
            entry["status"] = 401
            return _error(401, "missing or wrong bearer token")
        early = self._fault_status(None)
        if early is not None:
            entry["status"] = early[0]
            return _error(*early, retry_after=self.faults.retry_after)
        try:
            body = decode_body(await request.read(), request.headers.get("Content-Encoding"))
            batch = parse_batch(body, None)
        except ProtocolError as exc:
            entry["status"] = exc.status
            return _error(exc.status, str(exc))
        readings = batch["readings"]
        entry["readings"] = len(readings)
        late = self._fault_status(readings)
        if late is not None:
            entry["status"] = late[0]
            return _error(*late)
        gateway = batch["gateway"]
        key = str(batch.get("batch") or request.headers.get("Idempotency-Key") or "")
        stored, duplicates, seen = await asyncio.get_running_loop().run_in_executor(
            None, self.store.ingest, gateway, key, readings, batch.get("dropped", []), body)
        reply: dict[str, Any] = {"stored": stored, "duplicates": duplicates}
        for extension in self.extensions:
            reply.update(extension.on_batch(gateway, batch))
        status = 409 if seen and stored == 0 and readings else 200
        entry["status"] = status
        return web.json_response(reply, status=status)

    async def _gateways(self, request: web.Request) -> web.Response:
        return web.json_response({"gateways": self.store.gateways()})

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.store.stats(request.match_info["gateway"]))

    async def _readings(self, request: web.Request) -> web.Response:
        try:
            after = int(request.query.get("after_seq", "0"))
            limit = min(int(request.query.get("limit", "1000")), 100_000)
        except ValueError:
            return _error(400, "after_seq and limit must be integers")
        return web.json_response(
            {"readings": self.store.readings(request.match_info["gateway"], after, limit)})

    async def _get_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self.faults.to_json())

    async def _set_faults(self, request: web.Request) -> web.Response:
        try:
            data = await request.json()
            if not isinstance(data, dict):
                raise ValueError("must be an object")
            faults = Faults()
            for name, value in data.items():
                if not hasattr(faults, name):
                    raise ValueError(f"unknown fault {name!r}")
                setattr(faults, name, set(value) if name == "reject_seqs" else value)
        except ValueError as exc:
            return _error(400, f"bad faults: {exc}")
        self.faults = faults
        return web.json_response(self.faults.to_json())


COMMANDS_PATH = "/_admin/commands"
DEFAULT_COMMAND_TTL_S = 300.0


class CommandQueue:
    """Signed actuator commands for gateways, handed out in their ingest replies.

    A queued command rides on every reply to its gateway until that gateway reports a
    result for its id (a lost reply is thus made good) or it expires. Results arriving
    in batches' ``command_results`` are recorded, the first per id winning: gateways
    resend a result until a reply confirms it, so duplicates are expected. The queue
    lives in memory: this is the reference cloud, for development and tests.
    """

    def __init__(self, signing_key: Ed25519PrivateKey,
                 wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000) -> None:
        self.signing_key = signing_key
        self.wall_ms = wall_ms
        self.queued: dict[str, list[dict[str, Any]]] = {}
        self._once: dict[str, list[Any]] = {}
        self.results: dict[str, dict[str, dict[str, Any]]] = {}
        self.unmatched_results: list[dict[str, Any]] = []
        """Results without a usable id (a malformed command has none)."""
        self.deliveries = 0

    @classmethod
    def from_key_file(cls, path: str | Path) -> CommandQueue:
        text = signing.read_key_file(path, "signing key")
        return cls(signing.private_key_from_text(text, f"signing key {path}"))

    @property
    def public_key(self) -> str:
        """What goes into the gateways' ``[control] public_key``."""
        return signing.public_key_text(self.signing_key.public_key())

    def install(self, server: CloudServer) -> None:
        server.extensions.append(self)
        server.app.add_routes([web.post(COMMANDS_PATH, self._post_command),
                               web.get(COMMANDS_PATH, self._get_commands)])

    def sign(self, gateway: str, command_id: str, actuator: str, value: float,
             not_after_ms: int) -> dict[str, Any]:
        message = signing.canonical_bytes(gateway, command_id, actuator, value, not_after_ms)
        return {"id": command_id, "actuator": actuator, "value": value,
                "not_after": not_after_ms,
                "signature": signing.sign(self.signing_key, message)}

    def queue(self, gateway: str, actuator: str, value: float,
              ttl_s: float = DEFAULT_COMMAND_TTL_S, command_id: str | None = None
              ) -> dict[str, Any]:
        """Sign and queue a command; returns it as the gateway will receive it."""
        command_id = command_id or f"cmd-{uuid.uuid4().hex[:16]}"
        command = self.sign(gateway, command_id, actuator, value,
                            self.wall_ms() + round(ttl_s * 1000))
        self.queued.setdefault(gateway, []).append(command)
        return command

    def queue_raw(self, gateway: str, item: Any) -> None:
        """Hand ``item`` over exactly as given, once: forged and malformed commands."""
        self._once.setdefault(gateway, []).append(item)

    def result(self, gateway: str, command_id: str) -> dict[str, Any] | None:
        return self.results.get(gateway, {}).get(command_id)

    def on_batch(self, gateway: str, batch: dict[str, Any]) -> dict[str, Any]:
        self._record_results(gateway, batch.get("command_results"))
        now = self.wall_ms()
        done = self.results.get(gateway, {})
        live = [c for c in self.queued.get(gateway, [])
                if c["id"] not in done and c["not_after"] >= now]
        self.queued[gateway] = live
        commands = live + self._once.pop(gateway, [])
        if not commands:
            return {}
        self.deliveries += len(commands)
        return {"commands": commands}

    def _record_results(self, gateway: str, results: Any) -> None:
        if results is None:
            return
        if not isinstance(results, list):
            log.warning("gateway %s: command_results is not a list; ignored", gateway)
            return
        received = self.wall_ms()
        known = self.results.setdefault(gateway, {})
        for result in results:
            if not isinstance(result, dict) or not isinstance(result.get("status"), str):
                log.warning("gateway %s: a command result without a status; ignored", gateway)
                continue
            entry = {**result, "received_at": received}
            command_id = result.get("id")
            if not isinstance(command_id, str):
                self.unmatched_results.append(entry)
            elif command_id not in known:
                known[command_id] = entry

    async def _post_command(self, request: web.Request) -> web.Response:
        try:
            data = await request.json()
            if not isinstance(data, dict):
                raise ValueError("must be a JSON object")
            gateway, actuator = data.get("gateway"), data.get("actuator")
            value, ttl_s = data.get("value"), data.get("ttl_s", DEFAULT_COMMAND_TTL_S)
            if not isinstance(gateway, str) or not isinstance(actuator, str):
                raise ValueError("gateway and actuator must be strings")
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError("value must be a number")
            if isinstance(ttl_s, bool) or not isinstance(ttl_s, int | float) or ttl_s <= 0:
                raise ValueError("ttl_s must be a number of seconds > 0")
            command_id = data.get("id")
            if command_id is not None and not isinstance(command_id, str):
                raise ValueError("id must be a string")
            command = self.queue(gateway, actuator, float(value), float(ttl_s), command_id)
        except ValueError as exc:
            return _error(400, f"bad command: {exc}")
        return web.json_response({"gateway": gateway, "command": command}, status=201)

    async def _get_commands(self, request: web.Request) -> web.Response:
        gateway = request.query.get("gateway")
        gateways = [gateway] if gateway else sorted(set(self.queued) | set(self.results))
        return web.json_response({
            g: {"queued": self.queued.get(g, []),
                "results": list(self.results.get(g, {}).values())}
            for g in gateways})


def _error(status: int, message: str, retry_after: str | None = None) -> web.Response:
    headers = {"Retry-After": retry_after} if retry_after else None
    return web.json_response({"error": message}, status=status, headers=headers)


async def serve(host: str, port: int, db_path: str, token: str | None = None,
                commands: CommandQueue | None = None) -> None:
    """Run the receiver until cancelled (the ``cloud`` command)."""
    server = CloudServer(db_path, token)
    if commands is not None:
        commands.install(server)
    actual = await server.start(host, port)
    log.info("reference cloud listening on http://%s:%d%s (db %s)", host, actual,
             INGEST_PATH, db_path)
    print(f"reference cloud: POST http://{host}:{actual}{INGEST_PATH}  db={db_path}",
          flush=True)
    if commands is not None:
        print(f"signed commands: POST/GET http://{host}:{actual}{COMMANDS_PATH}  "
              f"public key {commands.public_key}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


def gunzip(data: bytes) -> bytes:
    return gzip.decompress(data)

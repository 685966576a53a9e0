"""The controller's durable memory: command ids seen, results not yet delivered, and a
floor under the wall clock.

One small SQLite file (``[control] state_path``, by default ``commands.db`` next to the
buffer). Every write is its own transaction with ``synchronous=FULL``: an id is on disk
before its command touches an output, so a crash right after actuating cannot let the
same command run twice.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

SEEN_RETENTION_MS = 7 * 24 * 3600 * 1000
"""Ids whose command expired this long before the clock floor are forgotten: the expiry
check alone refuses them from then on, since the floor never moves back."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (
    id TEXT PRIMARY KEY, not_after INTEGER NOT NULL, seen_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS results (
    n INTEGER PRIMARY KEY AUTOINCREMENT, result TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class LedgerError(OSError):
    """The control state file cannot be opened (an I/O problem, reported as one)."""


class Ledger:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(str(self.path), isolation_level=None,
                                      check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise LedgerError(f"control state {self.path}: {exc}") from None

    def close(self) -> None:
        self.db.close()

    # --- ids -------------------------------------------------------------------------

    def remember(self, command_id: str, not_after_ms: int, now_ms: int) -> bool:
        """Record ``command_id``; False if it was already there (a replay)."""
        cursor = self.db.execute("INSERT OR IGNORE INTO seen VALUES (?, ?, ?)",
                                 (command_id, not_after_ms, now_ms))
        return cursor.rowcount == 1

    def seen(self, command_id: str) -> bool:
        return self.db.execute("SELECT 1 FROM seen WHERE id = ?",
                               (command_id,)).fetchone() is not None

    def prune(self) -> int:
        cutoff = self.clock_floor_ms() - SEEN_RETENTION_MS
        return self.db.execute("DELETE FROM seen WHERE not_after < ?", (cutoff,)).rowcount

    # --- the clock floor ---------------------------------------------------------------

    def clock_floor_ms(self) -> int:
        row = self.db.execute("SELECT value FROM meta WHERE name = 'clock_floor_ms'").fetchone()
        return int(row[0]) if row else 0

    def raise_clock_floor(self, wall_ms: int) -> None:
        self.db.execute(
            "INSERT INTO meta VALUES ('clock_floor_ms', ?) ON CONFLICT(name) "
            "DO UPDATE SET value = max(value, excluded.value)", (wall_ms,))

    # --- results waiting for delivery ------------------------------------------------------

    def add_result(self, result: dict[str, Any]) -> int:
        cursor = self.db.execute("INSERT INTO results (result) VALUES (?)",
                                 (json.dumps(result, separators=(",", ":")),))
        return int(cursor.lastrowid or 0)

    def pending_results(self, limit: int) -> list[tuple[int, dict[str, Any]]]:
        rows = self.db.execute("SELECT n, result FROM results ORDER BY n LIMIT ?", (limit,))
        return [(int(n), json.loads(text)) for n, text in rows]

    def drop_results(self, numbers: list[int]) -> None:
        self.db.execute("BEGIN")
        self.db.executemany("DELETE FROM results WHERE n = ?", [(n,) for n in numbers])
        self.db.execute("COMMIT")

"""Chunks written in the earlier row encoding (M4) are still read after an upgrade."""

from __future__ import annotations

import json
import marshal
import sqlite3
import zlib
from pathlib import Path

from gateway.store import Reading, Store


def test_chunks_of_the_row_encoding_are_still_delivered(tmp_path: Path) -> None:
    path = tmp_path / "buffer.db"
    store = Store(path)
    store.add(Reading("cabinet_air", 1764337000000, {"temperature_celsius": 21.5}))
    store.commit()
    store.close()
    rows = [("cabinet_air", 1764337001000, {"temperature_celsius": 21.25}, ()),
            ("street_co2", 1764337002000, {"co2_ppm": 415.0}, ("clock_unsynced",),
             ("boot-1", 5000))]
    blob = b"M4" + zlib.compress(marshal.dumps(rows, 4), 1)
    db = sqlite3.connect(path)
    db.execute("INSERT INTO chunks VALUES (2, 3, 1764337001000, 1764337002000, ?, 1)", (blob,))
    db.commit()
    db.close()

    store = Store(path)
    try:
        batch = store.next_batch(10, 1 << 20)
        assert batch is not None and batch.first_seq == 1 and batch.last_seq == 3
        readings = [json.loads(line) for line in batch.lines]
        assert [r["seq"] for r in readings] == [1, 2, 3]
        assert readings[1] == {"seq": 2, "ts": 1764337001000, "sensor": "cabinet_air",
                               "values": {"temperature_celsius": 21.25}, "flags": []}
        assert readings[2]["boot_id"] == "boot-1" and readings[2]["mono_ms"] == 5000
        assert store.correct_clock("boot-1", 1764337000000 - 5000 + 7) == 1
        repaired = json.loads(store.next_batch(10, 1 << 20).lines[2])  # type: ignore[union-attr]
        assert repaired["ts"] == 1764337000007 and repaired["flags"] == ["clock_corrected"]
    finally:
        store.close()

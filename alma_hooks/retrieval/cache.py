"""Caches of the retrieval path (both explicit about being process-wide state of their owner).

- :class:`EmbeddingCache`: query vectors, in memory and persisted in a small
  SQLite file, keyed by a hash of the normalised text and the model id, so a
  repeated prompt costs no model run, even after an engine restart.
- :class:`ResultCache`: ranked hits per (scope, query, k), valid while the
  scope's generation counter is unchanged (every write bumps it).
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..types import Hit, Scope


def text_key(text: str, model_id: str) -> str:
    """sha256 of the normalised text (whitespace collapsed, lower case) and the model id."""
    norm = " ".join(text.split()).lower()
    return hashlib.sha256(f"{norm}\0{model_id}".encode()).hexdigest()


class EmbeddingCache:
    """Query text -> vector, LRU in memory over a persisted table."""

    def __init__(self, path: Path | None, model_id: str, capacity: int = 4096) -> None:
        self.model_id = model_id
        self.capacity = capacity
        self.memory: OrderedDict[str, list[float]] = OrderedDict()
        self.conn = None
        if path is not None:
            import apsw

            from ..config import ensure_private_dir

            ensure_private_dir(path.parent)
            if not path.exists():
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))  # user-only from the first byte
            self.conn = apsw.Connection(str(path))
            # a cache: losing the last entries in a power cut costs one re-embed, so no fsync per insert
            for sql in ("PRAGMA busy_timeout = 1000", "PRAGMA journal_mode = WAL", "PRAGMA synchronous = OFF",
                        "CREATE TABLE IF NOT EXISTS qcache (key TEXT PRIMARY KEY, vec BLOB NOT NULL)"):
                self.conn.execute(sql).fetchall()
        self.hits = self.misses = 0

    def has(self, key: str) -> bool:
        if key in self.memory:
            return True
        return self.conn is not None and self.conn.execute(
            "SELECT 1 FROM qcache WHERE key = ?", (key,)).fetchone() is not None

    def get_or_compute(self, text: str, compute: Callable[[str], Sequence[float]]) -> list[float]:
        key = text_key(text, self.model_id)
        vec = self.memory.get(key)
        if vec is None and self.conn is not None:
            row = self.conn.execute("SELECT vec FROM qcache WHERE key = ?", (key,)).fetchone()
            if row:
                vec = list(struct.unpack(f"<{len(row[0]) // 4}f", row[0]))
        if vec is None:
            self.misses += 1
            vec = [float(x) for x in compute(text)]
            if self.conn is not None:
                try:
                    self.conn.execute("INSERT OR REPLACE INTO qcache(key, vec) VALUES (?, ?)",
                                      (key, struct.pack(f"<{len(vec)}f", *vec)))
                except Exception:  # noqa: BLE001 - a cache that cannot persist still serves from memory
                    pass
        else:
            self.hits += 1
        self.memory[key] = vec
        self.memory.move_to_end(key)
        while len(self.memory) > self.capacity:
            self.memory.popitem(last=False)
        return vec

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class ResultCache:
    """(scope, query, k, types) -> hits, dropped as soon as the scope's generation moves."""

    def __init__(self, capacity: int = 512) -> None:
        self.capacity = capacity
        self.entries: OrderedDict[tuple[Any, ...], tuple[int, list[Hit]]] = OrderedDict()

    def get(self, scope: Scope, key: tuple[Any, ...], generation: int) -> list[Hit] | None:
        entry = self.entries.get((scope, *key))
        if entry is None or entry[0] != generation:
            return None
        self.entries.move_to_end((scope, *key))
        return entry[1]

    def put(self, scope: Scope, key: tuple[Any, ...], generation: int, hits: list[Hit]) -> None:
        self.entries[(scope, *key)] = (generation, hits)
        self.entries.move_to_end((scope, *key))
        while len(self.entries) > self.capacity:
            self.entries.popitem(last=False)

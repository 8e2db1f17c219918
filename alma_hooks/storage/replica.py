"""The SQLite side of team sync: outbox, sync state, tombstones and the merge of remote changes.

The local SQLite file stays the replica every read is served from; the team
store (Cosmos DB, :mod:`alma_hooks.sync`) is where replicas meet. This module
owns the three tables of migration ``m004_sync``:

- ``outbox``: one row per write of a syncable memory while sync is enabled for
  its project, appended by the store's write paths *in the same transaction* as
  the write (:func:`.outbox.on_write`, :func:`.outbox.on_delete`), removed by the worker only
  after the team store acknowledged it (:meth:`Replica.done`);
- ``sync_state``: key/value: this replica's ``origin`` id, ``enabled:<project>``
  and ``feed:<project>`` (the change-feed continuation);
- ``sync_tombstones``: the last (version, updated_at, origin) this replica
  deleted or forgot of a memory, so a pulled copy comes back only when newer.

Last writer wins by the key ``(version, updated_at, origin)``, compared as a
tuple: deterministic on every replica, whatever order changes arrive in.

Forgetting (a delete whose reason starts with ``forgetting:``) is local to a
replica (DESIGN §9): it leaves a tombstone here but enqueues nothing.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..types import Memory, memory_from_dict
from .base import log, redact_memory
from .migrations import EMBEDDING_DIM
from .outbox import (ORIGIN_KEY, SYNCABLE_TYPES, LWWKey, enabled_key, feed_key, get_state, is_enabled, origin,
                     put_tombstone, set_state)
from .sqlite import _COLUMNS, SQLiteStore

if TYPE_CHECKING:
    import apsw

__all__ = ["LWWKey", "MergeResult", "OutboxEntry", "RemoteChange", "Replica", "feed_key"]


# ---------------------------------------------------------------- what the worker sees

@dataclass
class OutboxEntry:
    """The newest outbox row of one memory: what to push for it, and which rows that acknowledges."""

    memory_id: str
    project_id: str
    op: str                      # upsert | delete
    seq: int                     # rows of this memory up to here are settled by this push
    attempts: int = 0
    memory: Memory | None = None  # upsert: the memory as stored now; None if it is gone (forgotten)
    embedding: bytes | None = None
    embedding_model: str | None = None
    tombstone: LWWKey | None = None  # delete: the key the tombstone carries

    @property
    def key(self) -> LWWKey | None:
        if self.op == "delete":
            return self.tombstone
        if self.memory is None:
            return None
        return (self.memory.version, self.memory.updated_at, self.memory.origin)


@dataclass
class RemoteChange:
    """One item of the team store, as the worker read it (a memory or a tombstone)."""

    memory_id: str
    project_id: str
    version: int
    updated_at: float
    origin: str
    deleted: bool = False
    memory: dict[str, Any] | None = None
    embedding: bytes | None = None
    embedding_model: str | None = None

    @property
    def key(self) -> LWWKey:
        return (int(self.version), float(self.updated_at), str(self.origin))


@dataclass
class MergeResult:
    """What a pull did with the changes it read."""

    applied: int = 0           # inserted or replaced a memory
    deleted: int = 0           # a remote tombstone deleted a local memory
    stale: int = 0             # local copy (or tombstone) already as new or newer
    other_project: int = 0     # not this project's: never imported
    refused: int = 0           # outside this replica's agent/domain policy
    invalid: int = 0           # not a memory this version understands
    invalid_ids: list[str] = field(default_factory=list)

    def add(self, other: MergeResult) -> None:
        for f in dataclasses.fields(self):
            if f.name == "invalid_ids":
                self.invalid_ids.extend(other.invalid_ids)
            else:
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


class Replica:
    """Sync operations over one open :class:`SQLiteStore` (the worker's view of the local replica)."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store

    @property
    def conn(self) -> apsw.Connection:
        return self.store.conn

    # ------------------------------------------------------------ enable / state
    def origin(self) -> str:
        with self.store._write():
            return origin(self.conn)

    def enabled(self, project_id: str) -> bool:
        return is_enabled(self.conn, project_id)

    def enable(self, project_id: str) -> int:
        """Turn sync on for ``project_id`` and enqueue every syncable memory once (the initial push).

        Returns how many memories were enqueued (0 when sync was already on).
        """
        types = sorted(SYNCABLE_TYPES)
        marks = ",".join("?" * len(types))
        with self.store._write():
            if is_enabled(self.conn, project_id):
                return 0
            now = time.time()
            set_state(self.conn, enabled_key(project_id), repr(now))
            mine = origin(self.conn)
            # rows written before sync was on carry no origin: they are this replica's writes
            self.conn.execute(f"UPDATE memories SET origin = ? WHERE project_id = ? AND origin = '' "
                              f"AND type IN ({marks})", (mine, project_id, *types))
            rows = self.conn.execute(
                "INSERT INTO outbox(memory_id, project_id, op, version, enqueued_at) "
                f"SELECT id, project_id, 'upsert', version, ? FROM memories WHERE project_id = ? AND type IN ({marks}) "
                "ORDER BY rid RETURNING 1", (now, project_id, *types)).fetchall()
        return len(rows)

    def disable(self, project_id: str) -> bool:
        """Stop enqueuing writes of ``project_id``; rows already queued stay (and push on re-enable)."""
        with self.store._write():
            was = is_enabled(self.conn, project_id)
            self.conn.execute("DELETE FROM sync_state WHERE key = ?", (enabled_key(project_id),))
        return was

    def state(self, key: str) -> str | None:
        return get_state(self.conn, key)

    def set_state(self, key: str, value: str | None) -> None:
        with self.store._write():
            if value is None:
                self.conn.execute("DELETE FROM sync_state WHERE key = ?", (key,))
            else:
                set_state(self.conn, key, value)

    def status(self, project_id: str) -> dict[str, Any]:
        pending, parked = self.conn.execute(
            "SELECT count(DISTINCT CASE WHEN parked = 0 THEN memory_id END), "
            "count(DISTINCT CASE WHEN parked = 1 THEN memory_id END) FROM outbox WHERE project_id = ?",
            (project_id,)).fetchone()
        parked_rows = self.conn.execute(
            "SELECT o.memory_id, o.op, o.attempts, o.error FROM outbox o JOIN (SELECT max(seq) AS last FROM outbox "
            "WHERE project_id = ? AND parked = 1 GROUP BY memory_id) g ON o.seq = g.last ORDER BY o.seq LIMIT 20",
            (project_id,)).fetchall()
        return {
            "project_id": project_id,
            "enabled": self.enabled(project_id),
            "origin": get_state(self.conn, ORIGIN_KEY),
            "pending": pending,
            "parked": parked,
            "parked_items": [{"memory_id": m, "op": op, "attempts": a, "error": e} for m, op, a, e in parked_rows],
            "feed_continuation": get_state(self.conn, feed_key(project_id)) is not None,
            "last_push": _float(get_state(self.conn, f"last_push:{project_id}")),
            "last_pull": _float(get_state(self.conn, f"last_pull:{project_id}")),
        }

    # ------------------------------------------------------------ push side
    def batch(self, project_id: str, limit: int, *, include_parked: bool = False) -> list[OutboxEntry]:
        """The oldest ``limit`` memories with outbox rows, each coalesced to its newest row."""
        parked = "" if include_parked else " AND parked = 0"
        rows = self.conn.execute(
            "SELECT o.memory_id, o.seq, o.op, g.attempts FROM outbox o JOIN ("
            "  SELECT max(seq) AS last, min(seq) AS first, sum(attempts) AS attempts FROM outbox "
            f"  WHERE project_id = ?{parked} GROUP BY memory_id ORDER BY first LIMIT ?"
            ") g ON o.seq = g.last ORDER BY g.first", (project_id, int(limit))).fetchall()
        return [self._entry(project_id, mid, seq, op, attempts) for mid, seq, op, attempts in rows]

    def _entry(self, project_id: str, memory_id: str, seq: int, op: str, attempts: int) -> OutboxEntry:
        entry = OutboxEntry(memory_id, project_id, op, seq, attempts)
        if op == "delete":
            row = self.conn.execute("SELECT version, updated_at, origin FROM sync_tombstones WHERE memory_id = ?",
                                    (memory_id,)).fetchone()
            if row is None:  # pragma: no cover - on_delete writes both in one transaction
                row = self.conn.execute("SELECT version, enqueued_at, ? FROM outbox WHERE seq = ?",
                                        (get_state(self.conn, ORIGIN_KEY) or "", seq)).fetchone()
            entry.tombstone = (int(row[0]), float(row[1]), str(row[2]))
            return entry
        cols = ", ".join("m." + c.strip() for c in _COLUMNS.split(","))
        row = self.conn.execute(f"SELECT {cols}, v.embedding FROM memories m LEFT JOIN memory_vec v "
                                "ON v.rowid = m.rid WHERE m.id = ?", (memory_id,)).fetchone()
        if row is not None and row[3] == project_id:  # moved to another project: nothing to send here
            entry.memory = self.store._row_to_memory(row[:-1])
            if row[-1]:
                entry.embedding = bytes(row[-1])
                entry.embedding_model = self.store.embedding_model()
        return entry

    def done(self, entries: Sequence[OutboxEntry], project_id: str) -> None:
        """Remove the rows the team store acknowledged (and only those: later rows stay)."""
        if not entries:
            return
        with self.store._write():
            for e in entries:
                self.conn.execute("DELETE FROM outbox WHERE memory_id = ? AND seq <= ?", (e.memory_id, e.seq))
            set_state(self.conn, f"last_push:{project_id}", repr(time.time()))

    def failed(self, entry: OutboxEntry, error: str, *, park: bool) -> None:
        """Count a failed push; a poison item is parked with its error and not retried by ``run``."""
        with self.store._write():
            self.conn.execute("UPDATE outbox SET attempts = attempts + 1, error = ?, parked = ? "
                              "WHERE memory_id = ? AND seq <= ?", (error[:500], int(park), entry.memory_id, entry.seq))

    def unpark(self, project_id: str) -> int:
        with self.store._write():
            return len(self.conn.execute("UPDATE outbox SET parked = 0 WHERE project_id = ? AND parked = 1 "
                                         "RETURNING 1", (project_id,)).fetchall())

    # ------------------------------------------------------------ pull side
    def apply_remote(self, project_id: str, changes: Iterable[RemoteChange], *, accept_model: str | None,
                     state: dict[str, str] | None = None) -> MergeResult:
        """Merge one page of remote changes of ``project_id`` and save ``state`` (the continuation), atomically.

        Only changes of ``project_id`` are considered; every other one is counted
        and dropped. Newer (by LWW key) remote memories replace local ones through
        the store's import path (redacted, policy-checked, audited); tombstones
        delete local copies (audited). A vector is kept only when it was made by
        ``accept_model``; otherwise the memory waits for re-embedding.
        """
        result = MergeResult()
        store = self.store
        with store._write():
            for ch in changes:
                if ch.project_id != project_id or (ch.memory is not None and ch.memory.get("project_id") != project_id):
                    result.other_project += 1
                    continue
                self._merge_one(project_id, ch, accept_model, result)
            for key, value in (state or {}).items():
                set_state(self.conn, key, value)
            set_state(self.conn, f"last_pull:{project_id}", repr(time.time()))
        return result

    def _local_key(self, memory_id: str) -> tuple[tuple[Any, ...] | None, LWWKey | None]:
        row = self.conn.execute("SELECT rid, version, updated_at, origin FROM memories WHERE id = ?",
                                (memory_id,)).fetchone()
        tomb = self.conn.execute("SELECT version, updated_at, origin FROM sync_tombstones WHERE memory_id = ?",
                                 (memory_id,)).fetchone()
        return (tuple(row) if row else None), (_key(tomb) if tomb else None)

    def _merge_one(self, project_id: str, ch: RemoteChange, accept_model: str | None, result: MergeResult) -> None:
        row, tomb = self._local_key(ch.memory_id)
        local = _key(row[1:]) if row else None
        if (local is not None and ch.key <= local) or (local is None and tomb is not None and ch.key <= tomb):
            result.stale += 1
            return
        if ch.deleted:
            if row is not None:
                self._delete_local(row[0], ch)
                result.deleted += 1
            put_tombstone(self.conn, ch.memory_id, project_id, ch.key, False)
            return
        try:
            memory = self._remote_memory(ch)
        except (KeyError, TypeError, ValueError) as e:
            log.warning("sync: skipped remote item %s: not a memory this version reads (%s)", ch.memory_id,
                        type(e).__name__)
            result.invalid += 1
            result.invalid_ids.append(ch.memory_id)
            return
        refusal = self.store.policy.check_write(memory.agent, memory.domain)
        if refusal:
            log.warning("sync: refused remote item %s: %s", memory.id, refusal)
            result.refused += 1
            return
        self._replace_local(row, memory, ch, accept_model)
        result.applied += 1

    @staticmethod
    def _remote_memory(ch: RemoteChange) -> Memory:
        if ch.memory is None:
            raise ValueError("no memory")
        memory = redact_memory(memory_from_dict(ch.memory))
        if (memory.id, memory.version, memory.updated_at, memory.origin) != (
                ch.memory_id, ch.version, ch.updated_at, ch.origin):
            raise ValueError("envelope and memory disagree")
        return memory

    def _delete_local(self, rid: int, ch: RemoteChange) -> None:
        store = self.store
        old = store._row_to_memory(self.conn.execute(f"SELECT {_COLUMNS} FROM memories WHERE rid = ?",
                                                     (rid,)).fetchone())
        store._audit(old, "delete", f"sync: deleted on replica {ch.origin}", json.dumps(old.to_dict()))
        store._delete_vector(rid)  # both indexes: a coarse row left behind would outlive its memory
        self.conn.execute("DELETE FROM memories WHERE rid = ?", (rid,))
        store._bump(old.project_id, old.agent)

    def _replace_local(self, row: tuple[Any, ...] | None, memory: Memory, ch: RemoteChange,
                       accept_model: str | None) -> None:
        store = self.store
        if row is not None:
            last = self.conn.execute("SELECT last_retrieved FROM memories WHERE rid = ?", (row[0],)).fetchone()[0]
            memory = dataclasses.replace(memory, last_retrieved=max(last, memory.last_retrieved))
            store._delete_vector(row[0])
            self.conn.execute("DELETE FROM memories WHERE rid = ?", (row[0],))
        vector = None
        db_model = store.embedding_model()
        if (ch.embedding and len(ch.embedding) == EMBEDDING_DIM * 4 and ch.embedding_model
                and ch.embedding_model == accept_model and db_model in (None, accept_model)):
            if db_model is None:
                self.conn.execute("INSERT INTO meta(key, value) VALUES ('embedding_model', ?)", (accept_model,))
            vector = ch.embedding
        store._insert(memory, vector)
        store._audit(memory, "import", f"sync pull from replica {ch.origin}")
        store._bump(memory.project_id, memory.agent)
        self.conn.execute("DELETE FROM sync_tombstones WHERE memory_id = ?", (memory.id,))


def _key(row: Sequence[Any]) -> LWWKey:
    return (int(row[0]), float(row[1]), str(row[2]))


def _float(value: str | None) -> float | None:
    return float(value) if value is not None else None

"""The write-path half of team sync: outbox rows and tombstones, appended inside the store's transactions.

Kept apart from :mod:`.replica` (the worker's half) so the hook path imports only
this small module. Every function takes the store's open connection and runs in
the caller's ``BEGIN IMMEDIATE`` transaction: an outbox row commits or rolls back
with the write that caused it. See :mod:`.replica` for the tables and the rules.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import TYPE_CHECKING

from ..types import ANY, MEMORY_TYPES, Memory

if TYPE_CHECKING:
    import apsw

#: Every memory type syncs; events, tasks and injections live in other tables and never do.
SYNCABLE_TYPES = frozenset(MEMORY_TYPES)
#: Deletes whose reason starts with this are forgetting: local, never a remote tombstone.
FORGETTING_PREFIX = "forgetting:"
ORIGIN_KEY = "origin"

LWWKey = tuple[int, float, str]


def enabled_key(project_id: str) -> str:
    return f"enabled:{project_id}"


def feed_key(project_id: str) -> str:
    return f"feed:{project_id}"


# ---------------------------------------------------------------- state (inside the caller's transaction)

def get_state(conn: apsw.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM sync_state WHERE key = ?", (key,)).fetchone()
    return row[0] if row else None


def set_state(conn: apsw.Connection, key: str, value: str) -> None:
    conn.execute("INSERT INTO sync_state(key, value) VALUES (?, ?) "
                 "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))


def is_enabled(conn: apsw.Connection, project_id: str) -> bool:
    return get_state(conn, enabled_key(project_id)) is not None


def origin(conn: apsw.Connection) -> str:
    """This replica's id (made once, kept in ``sync_state``): the last part of every LWW key it writes."""
    value = get_state(conn, ORIGIN_KEY)
    if value is None:
        value = os.urandom(8).hex()
        set_state(conn, ORIGIN_KEY, value)
    return value


def _syncable(memory: Memory) -> bool:
    # a preference for "every project" (project_id "*") has no team partition: it stays with its user
    return memory.type in SYNCABLE_TYPES and memory.project_id != ANY


def stamp(conn: apsw.Connection, memory: Memory, *, only_if_empty: bool = False) -> Memory:
    """``memory`` with this replica's origin when its project syncs (the writer is this replica)."""
    if not _syncable(memory) or not is_enabled(conn, memory.project_id):
        return memory
    if only_if_empty and memory.origin:
        return memory
    mine = origin(conn)
    return memory if memory.origin == mine else dataclasses.replace(memory, origin=mine)


def _enqueue(conn: apsw.Connection, memory_id: str, project_id: str, op: str, version: int, when: float) -> None:
    # Only the newest row of a memory is ever pushed, so older ones go now: the outbox stays at one row per
    # changed memory however long the worker is away. A push in flight acknowledges only rows up to the seq
    # it read, so it cannot swallow this one.
    conn.execute("DELETE FROM outbox WHERE memory_id = ?", (memory_id,))
    conn.execute("INSERT INTO outbox(memory_id, project_id, op, version, enqueued_at) VALUES (?,?,?,?,?)",
                 (memory_id, project_id, op, version, when))


def on_write(conn: apsw.Connection, memory: Memory, when: float | None = None) -> None:
    """Append an upsert to the outbox when ``memory``'s project syncs (call inside the write's transaction)."""
    if _syncable(memory) and is_enabled(conn, memory.project_id):
        _enqueue(conn, memory.id, memory.project_id, "upsert", memory.version, time.time() if when is None else when)


def on_delete(conn: apsw.Connection, memory: Memory, reason: str, when: float | None = None) -> None:
    """Record a tombstone for a deleted memory; enqueue it for the team store unless this was forgetting.

    A forgotten memory's tombstone carries its own key (a pulled copy of the same
    version stays forgotten); an explicit delete's tombstone is one version newer,
    so it wins over the copy other replicas hold.
    """
    if not _syncable(memory):
        return
    when = time.time() if when is None else when
    enabled = is_enabled(conn, memory.project_id)
    forgotten = reason.startswith(FORGETTING_PREFIX)
    if forgotten:
        key: LWWKey = (memory.version, memory.updated_at, memory.origin or (origin(conn) if enabled else ""))
    else:
        key = (memory.version + 1, when, origin(conn) if enabled else memory.origin)
    put_tombstone(conn, memory.id, memory.project_id, key, forgotten)
    if enabled and not forgotten:
        _enqueue(conn, memory.id, memory.project_id, "delete", key[0], when)


def put_tombstone(conn: apsw.Connection, memory_id: str, project_id: str, key: LWWKey, forgotten: bool) -> None:
    conn.execute(
        "INSERT INTO sync_tombstones(memory_id, project_id, version, updated_at, origin, forgotten) "
        "VALUES (?,?,?,?,?,?) ON CONFLICT(memory_id) DO UPDATE SET project_id = excluded.project_id, "
        "version = excluded.version, updated_at = excluded.updated_at, origin = excluded.origin, "
        "forgotten = excluded.forgotten", (memory_id, project_id, *key, int(forgotten)))

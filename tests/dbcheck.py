"""What a DB must look like after any crash: SQLite's own checks plus the store's cross-table invariants.

``problems(db)`` returns a list of human-readable problems (empty: the DB is whole).
A write of the store touches several tables in one transaction (a memory, its FTS
row through a trigger, its two vector rows, its audit row, its outbox row), so a
kill -9 at any point must leave either all of them or none:

- ``PRAGMA integrity_check`` is ok, and FTS5's own ``integrity-check`` agrees with
  the content table (every memory has its FTS row, no FTS row without a memory);
- the vectors (``memory_vectors``) and the coarse KNN index (``memory_bits``) hold
  the same rows, each of an existing memory and in that memory's partition;
  ``embedding_pending = 0`` exactly when a memory has its vector;
- every memory has its ``create``/``import`` audit row;
- every outbox row points at a memory or a tombstone (a forgotten memory leaves one);
- no half tasks: a task closed with an outcome has that outcome, an outcome of a
  task has its task closed with it, and an event's task exists.
"""

from __future__ import annotations

from pathlib import Path

import apsw

#: How many offending ids a problem line shows.
SHOW = 5


def _connect(db: Path) -> apsw.Connection:
    from alma_hooks.storage.sqlite import vec_extension_path

    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READWRITE)
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.enable_load_extension(True)
    conn.load_extension(vec_extension_path())
    return conn


def _ids(conn: apsw.Connection, sql: str) -> list[str]:
    return [str(r[0]) for r in conn.execute(sql).fetchall()]


CHECKS = {
    "vector in memory_vectors but not memory_bits":
        "SELECT rid FROM memory_vectors WHERE rid NOT IN (SELECT rowid FROM memory_bits)",
    "vector in memory_bits but not memory_vectors":
        "SELECT rowid FROM memory_bits WHERE rowid NOT IN (SELECT rid FROM memory_vectors)",
    "vector without a memory":
        "SELECT rid FROM memory_vectors WHERE rid NOT IN (SELECT rid FROM memories)",
    "vector in another partition than its memory":
        "SELECT m.id FROM memories m JOIN memory_bits b ON b.rowid = m.rid WHERE "
        "(b.project_id, b.agent, b.type, b.user_id) != (m.project_id, m.agent, m.type, m.user_id)",
    "stored vector in another partition than its memory":
        "SELECT m.id FROM memories m JOIN memory_vectors v ON v.rid = m.rid WHERE "
        "(v.project_id, v.agent, v.type, v.user_id) != (m.project_id, m.agent, m.type, m.user_id)",
    "memory marked embedded without a vector":
        "SELECT id FROM memories WHERE embedding_pending = 0 AND rid NOT IN (SELECT rid FROM memory_vectors)",
    "memory marked pending with a vector":
        "SELECT id FROM memories WHERE embedding_pending = 1 AND rid IN (SELECT rid FROM memory_vectors)",
    "memory without its create/import audit row":
        "SELECT id FROM memories WHERE id NOT IN (SELECT memory_id FROM audit WHERE action IN ('create', 'import'))",
    "outbox upsert of neither a memory nor a tombstone":
        "SELECT memory_id FROM outbox WHERE op = 'upsert' AND memory_id NOT IN (SELECT id FROM memories) "
        "AND memory_id NOT IN (SELECT memory_id FROM sync_tombstones)",
    "outbox delete without a tombstone":
        "SELECT memory_id FROM outbox WHERE op = 'delete' AND memory_id NOT IN (SELECT memory_id FROM sync_tombstones)",
    "task closed with an outcome that does not exist":
        "SELECT id FROM tasks WHERE outcome_id != '' AND outcome_id NOT IN (SELECT id FROM memories) "
        "AND outcome_id NOT IN (SELECT memory_id FROM audit WHERE action = 'delete')",
    "outcome of a task that is not closed with it (half a task)":
        "SELECT m.id FROM memories m JOIN tasks t ON t.id = m.id WHERE m.type = 'outcome' "
        "AND (t.closed_at = 0 OR t.outcome_id != m.id)",
    "event of a task that does not exist":
        "SELECT id FROM events WHERE task_id != '' AND task_id NOT IN (SELECT id FROM tasks)",
}


def problems(db: Path, *, full: bool = True) -> list[str]:
    """Every broken invariant of ``db``; [] when it is whole.

    ``full=False`` leaves out the page-level checks (integrity_check, FTS5's), which
    read every page: seconds on a 100k-memory DB, where only the cross-table rules matter.
    """
    db = Path(db)
    if not db.exists():
        return []
    conn = _connect(db)
    try:
        found: list[str] = []
        check = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()] if full else ["ok"]
        if check != ["ok"]:
            found.append(f"integrity_check: {check[:SHOW]}")
            return found  # the cross-table checks mean little in a damaged file
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
        if full and "memories_fts" in tables:
            try:
                conn.execute("INSERT INTO memories_fts(memories_fts, rank) VALUES ('integrity-check', 1)")
            except apsw.Error as e:
                found.append(f"FTS index disagrees with the memories: {e}")
        for what, sql in CHECKS.items():
            try:
                bad = _ids(conn, sql)
            except apsw.SQLError as e:
                if "no such table" in str(e):
                    continue  # an older schema: nothing of that kind to check
                raise
            if bad:
                found.append(f"{what}: {len(bad)} ({', '.join(bad[:SHOW])})")
        return found
    finally:
        conn.close()


def quick_check(db: Path) -> str:
    """``PRAGMA quick_check`` of any SQLite file (the engine's query cache)."""
    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        conn.execute("PRAGMA busy_timeout = 10000")
        return str(conn.execute("PRAGMA quick_check").fetchone()[0])
    finally:
        conn.close()

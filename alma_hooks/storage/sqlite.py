"""The embedded default store: SQLite through apsw, sqlite-vec for KNN, FTS5 for words.

- One connection per store object; pragmas set in one place (``_connect``).
- Every read-modify-write runs in ``BEGIN IMMEDIATE`` (``_write``): with
  deferred transactions two writers lose rows (measured: 459 of 4,000 kept).
- sqlite-vec is loaded by file path, never by ``import sqlite_vec`` (which
  costs ~100 ms of imports in the hook path).
- Scope: ``_VISIBLE`` is the SQL twin of ``Memory.visible_to``; every query
  over memories carries it, and KNN runs inside the scope's partitions.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import struct
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import apsw

from ..config import ScopePolicy, ensure_private_dir
from ..errors import AlmaError, EmbeddingError, NotFound, SchemaTooNew, StoreCorrupt, StoreUnavailable
from ..redact import redact
from ..types import ANY, MEMORY_TYPES, ExecutionEvent, Hit, Memory, Scope, ScopeSummary, Task
from . import outbox
from .base import Store, Vector, log, redact_memory
from .migrations import EMBEDDING_DIM, MIGRATIONS

_COLUMNS = ("rid, id, type, project_id, agent, user_id, domain, payload, confidence, pinned, version, origin, "
            "source_ids, created_at, updated_at, last_retrieved")
_VISIBLE = "(m.project_id IN (?, '*') AND m.agent IN (?, '*') AND m.user_id IN ('', ?))"
# The same predicate where rows are found by rid or id: '+' keeps the planner from scanning
# the scope index instead (measured at 100k rows: 8.5 ms instead of 0.3 ms for 100 rids;
# 146 ms instead of 0.3 ms to touch 30 ids).
_VISIBLE_BY_KEY = _VISIBLE.replace("m.", "+m.")
_F = TypeVar("_F", bound=Callable[..., Any])
#: bm25 weight of a memory's context column against its text (1.0): context words
#: find a memory, but less strongly than its own words (LoCoMo dev: 0.5 beat 0.3, 0.7 and 1.0).
CONTEXT_WEIGHT = 0.5
#: KNN reads this many coarse (Hamming) candidates per wanted neighbour, at least KNN_MIN_CANDIDATES.
KNN_OVERSAMPLE = 3
KNN_MIN_CANDIDATES = 48
#: A lexical query scores at most about this many postings (sum of its words' document counts).
#: At 100k memories BM25 over 10k postings cost ~3.4 ms, over 6k ~2 ms; a word left out is in
#: over 6% of the memories (BM25 IDF under ~2.8, a rare word's ~9), and it still counts in the
#: fusion's word coverage of every candidate found (retrieval.search.fusion_signals).
LEXICAL_POSTINGS_BUDGET = 6_000
#: Page cache (KiB) of a store opened ``warm``: it fills only as pages are read (memory rows, FTS
#: doclists), which then stay in the engine whatever the kernel keeps cached (the development VM
#: keeps almost nothing: a 4 KB read from the DB file costs ~60 us there). A memory map would be
#: as fast, but turns a DB truncated under the engine into SIGBUS.
WARM_CACHE_KIB = 131_072
#: Below this share of all memories, a lexical search filters by project inside FTS5. Above it
#: the filter costs more than it saves (100k memories, one project: 6.7 ms instead of 3.4 ms
#: to rank; 1M across 10 projects: 8.8 ms instead of 32 ms).
PROJECT_FILTER_SHARE = 0.5
#: FTS5 ranks this many times the wanted rows (at least 200) before the scope filter.
LEXICAL_OVERFETCH = 5


def _scope_args(scope: Scope) -> tuple[str, str, str]:
    return (scope.project_id, scope.agent, scope.user_id)


@functools.lru_cache(maxsize=1)
def vec_extension_path() -> str:
    """Path of sqlite-vec's loadable extension, found without importing the package."""
    from importlib.util import find_spec

    spec = find_spec("sqlite_vec")
    if spec is None or not spec.submodule_search_locations:
        raise StoreUnavailable("sqlite-vec is not installed", "run ./install.sh (pip install sqlite-vec)")
    return os.path.join(list(spec.submodule_search_locations)[0], "vec0")


def pack_vector(vec: Vector) -> bytes:
    """float32 little-endian bytes, whatever the machine's byte order."""
    if isinstance(vec, bytes):
        return vec
    if hasattr(vec, "astype"):
        return vec.astype("<f4").tobytes()  # type: ignore[union-attr]
    return struct.pack(f"<{len(vec)}f", *vec)


def unpack_vector(blob: bytes) -> list[float]:
    return list(struct.unpack(f"<{len(blob) // 4}f", blob))


def _translate(fn: _F) -> _F:
    """Turn apsw's errors into the store's typed errors."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (apsw.NotADBError, apsw.CorruptError) as e:
            raise StoreCorrupt(f"the database is corrupt: {e}", "run `alma-hooks doctor` to quarantine it") from e
        except (apsw.BusyError, apsw.LockedError) as e:
            raise StoreUnavailable(f"the database is busy: {e}", "retry; another process holds a write lock") from e
        except (apsw.ReadOnlyError, apsw.CantOpenError, apsw.PermissionsError) as e:
            raise StoreUnavailable(f"the database cannot be written: {e}", "check the file's permissions") from e
        except (apsw.FullError, apsw.IOError) as e:
            store = args[0] if args and isinstance(args[0], SQLiteStore) else None
            where = _full_disk(store.path) if store is not None else ""
            raise StoreUnavailable(f"the database cannot be written: {e}" + (f"; the disk holding {where} is full"
                                                                             if where else ""),
                                   "free disk space; hook captures wait in the spool until then") from e
        except apsw.ConstraintError as e:
            raise AlmaError(f"refused by the database: {e}", "a memory with this id already exists") from e

    return wrapper  # type: ignore[return-value]


#: Below this many free bytes a disk counts as full in error messages.
FULL_DISK_BYTES = 1 << 20


def _full_disk(path: Path) -> str:
    """The directory of ``path`` when its filesystem has (almost) no space left, else ''."""
    directory = Path(path).parent
    try:
        st = os.statvfs(directory)
    except OSError:
        return ""
    return str(directory) if st.f_bavail * st.f_frsize < FULL_DISK_BYTES else ""


class SQLiteStore(Store):
    """Memories of every project of one user in one SQLite file."""

    def __init__(self, path: Path | str, policy: ScopePolicy | None = None, *,
                 busy_timeout_ms: int = 5000, actor: str = "", warm: bool = False) -> None:
        """``warm``: a long-lived process (the engine) keeps the KNN partitions' sign codes in memory
        (:mod:`.codes`) and a larger page cache; a short-lived one searches ``memory_bits`` with
        sqlite-vec instead, and its page cache stays small."""
        self.path = Path(path)
        self.policy = policy or ScopePolicy.permissive()
        self.actor = actor
        self.codes: Any = None
        self._cache_kib = WARM_CACHE_KIB if warm else 32_768
        if warm:
            from .codes import CodeCache

            self.codes = CodeCache()
        self._tokenizer: Any = None  # FTS5's own tokenizer, for the stems of query words
        self._doc_counts: dict[str, int] = {}  # stem -> rows holding it, see _document_counts
        self._doc_counts_at = 0  # max(rid) when _doc_counts was started: about how many rows there were
        self._busy_timeout_ms = int(busy_timeout_ms)
        self.conn = self._connect()

    # ------------------------------------------------------------ connection
    @_translate
    def _connect(self) -> apsw.Connection:
        if str(self.path) != ":memory:":
            ensure_private_dir(self.path.parent)
            if not self.path.exists():
                fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)
                os.close(fd)
        conn = apsw.Connection(str(self.path))
        try:
            conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
            conn.enable_load_extension(True)
            conn.load_extension(vec_extension_path())
            conn.enable_load_extension(False)
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()
            if mode and mode[0] != "wal" and str(self.path) != ":memory:":
                log.warning("journal_mode is %s, not wal", mode[0])
            for pragma in ("synchronous = NORMAL", f"cache_size = -{self._cache_kib}", "foreign_keys = ON"):
                conn.execute(f"PRAGMA {pragma}").fetchall()
            if self.codes is not None:
                # the engine checkpoints between requests (checkpoint()), not inside the commit of
                # the one that fills the WAL: 1,000 pages copied and synced to a large DB, mid-prompt
                conn.execute("PRAGMA wal_autocheckpoint = 0").fetchall()
            self.conn = conn
            self._migrate()
        except BaseException:
            conn.close()
            raise
        return conn

    def _migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise SchemaTooNew(f"{self.path} was written by a newer alma-hooks (schema {version}, "
                               f"this one knows {len(MIGRATIONS)})", "upgrade alma-hooks: ./install.sh")
        for number, (name, sql) in enumerate(MIGRATIONS, start=1):
            if number <= version:
                continue
            with self._write():
                # re-read inside the lock: another process may have migrated meanwhile
                if self.conn.execute("PRAGMA user_version").fetchone()[0] >= number:
                    continue
                self.conn.execute(sql)
                self.conn.execute(f"PRAGMA user_version = {number}")
                log.info("applied migration %s to %s", name, self.path)

    @contextmanager
    def _write(self) -> Iterator[apsw.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            if not self.conn.getautocommit():
                self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    def close(self) -> None:
        conn, self.conn = self.conn, None  # type: ignore[assignment]
        if conn is not None:
            conn.close()

    def schema_version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    @_translate
    def quick_check(self) -> str:
        return self.conn.execute("PRAGMA quick_check").fetchone()[0]

    # ------------------------------------------------------------ rows <-> memories
    @staticmethod
    def _row_to_memory(row: Sequence[Any]) -> Memory:
        (_rid, mid, mtype, project_id, agent, user_id, domain, payload, confidence, pinned, version, origin,
         source_ids, created_at, updated_at, last_retrieved) = row
        cls = MEMORY_TYPES[mtype]
        return cls(id=mid, project_id=project_id, agent=agent, user_id=user_id, domain=domain,
                   confidence=confidence, pinned=bool(pinned), version=version, origin=origin,
                   source_ids=json.loads(source_ids), created_at=created_at, updated_at=updated_at,
                   last_retrieved=last_retrieved, **json.loads(payload))

    def _audit(self, memory: Memory, action: str, reason: str, snapshot: str = "") -> None:
        self.conn.execute(
            "INSERT INTO audit(at, actor, memory_id, type, project_id, agent, user_id, action, reason, snapshot) "
            "VALUES (?,?,?,?,?,?,?,?,?,?)",
            (time.time(), self.actor, memory.id, memory.type, memory.project_id, memory.agent, memory.user_id,
             action, redact(reason), snapshot))

    def _bump(self, project_id: str, agent: str) -> None:
        self.conn.execute("INSERT INTO generations(project_id, agent, gen) VALUES (?,?,1) "
                          "ON CONFLICT(project_id, agent) DO UPDATE SET gen = gen + 1", (project_id, agent))

    def _insert(self, m: Memory, vector: bytes | None = None) -> None:
        cur = self.conn.execute(
            "INSERT INTO memories(id, type, project_id, agent, user_id, domain, text, context, payload, confidence, "
            "pinned, version, origin, source_ids, created_at, updated_at, last_retrieved, embedding_pending) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) RETURNING rid",
            (m.id, m.type, m.project_id, m.agent, m.user_id, m.domain, m.text, m.search_context,
             json.dumps(m.payload()),
             float(m.confidence), int(m.pinned), m.version, m.origin, json.dumps(m.source_ids), m.created_at,
             m.updated_at, m.last_retrieved, 0 if vector else 1))
        rid = cur.fetchone()[0]
        if vector:
            self._insert_vector(rid, m, vector)

    def _insert_vector(self, rid: int, m: Memory | Sequence[Any], vector: bytes) -> None:
        """Store a memory's vector; triggers index its sign code in ``memory_bits`` (migration m006)."""
        if len(vector) != EMBEDDING_DIM * 4:
            raise EmbeddingError(f"a vector of {len(vector) // 4} dimensions does not fit this DB ({EMBEDDING_DIM})",
                                 "run `alma-hooks reembed`")
        if isinstance(m, Memory):
            key = (m.project_id, m.agent, m.type, m.user_id)
        else:
            key = tuple(m)
        self._delete_vector(rid)
        self.conn.execute("INSERT INTO memory_vectors(rid, project_id, agent, type, user_id, code, embedding) "
                          "VALUES (?,?,?,?,?,vec_quantize_binary(?),?)", (rid, *key, vector, vector))

    def _delete_vector(self, rid: int) -> None:
        """Drop a memory's vector (and, by trigger, its code in ``memory_bits``)."""
        self.conn.execute("DELETE FROM memory_vectors WHERE rid = ?", (rid,))

    def _visible_row(self, scope: Scope, memory_id: str) -> tuple[Any, ...] | None:
        return self.conn.execute(f"SELECT {_COLUMNS} FROM memories m WHERE m.id = ? AND {_VISIBLE}",
                                 (memory_id, *_scope_args(scope))).fetchone()

    # ------------------------------------------------------------ memories
    @_translate
    def add(self, scope: Scope, memory: Memory, *, reason: str = "create") -> Memory:
        self.check_write(scope, memory)
        memory = redact_memory(memory)
        with self._write():
            return self._add_in_transaction(memory, reason)

    def _add_in_transaction(self, memory: Memory, reason: str) -> Memory:
        memory = outbox.stamp(self.conn, memory)
        self._insert(memory)
        self._audit(memory, "create", reason)
        self._bump(memory.project_id, memory.agent)
        outbox.on_write(self.conn, memory)  # the outbox row commits with the write, or not at all
        return memory

    @_translate
    def get(self, scope: Scope, memory_id: str) -> Memory:
        row = self._visible_row(scope, memory_id)
        if row is None:
            raise NotFound(f"no memory {memory_id} in this scope", "list ids with `alma-hooks search`")
        return self._row_to_memory(row)

    @_translate
    def update(self, scope: Scope, memory: Memory, *, reason: str = "update") -> Memory:
        self.check_write(scope, memory)
        memory = redact_memory(memory)
        with self._write():
            row = self._visible_row(scope, memory.id)
            if row is None or row[2] != memory.type:
                raise NotFound(f"no {memory.type} {memory.id} in this scope")
            old = self._row_to_memory(row)
            if (old.project_id, old.agent, old.user_id) != (memory.project_id, memory.agent, memory.user_id):
                self.check_write(scope, old)  # moving a memory needs the right to the old place too
            memory = outbox.stamp(self.conn, dataclasses.replace(memory, version=old.version + 1,
                                                                  updated_at=time.time(), created_at=old.created_at))
            text_changed = old.text != memory.text
            moved = (old.project_id, old.agent, old.user_id) != (memory.project_id, memory.agent, memory.user_id)
            self.conn.execute(
                "UPDATE memories SET project_id=?, agent=?, user_id=?, domain=?, text=?, context=?, payload=?, "
                "confidence=?, pinned=?, version=?, origin=?, source_ids=?, updated_at=?, last_retrieved=?, "
                "embedding_pending = CASE WHEN ? THEN 1 ELSE embedding_pending END WHERE rid = ?",
                (memory.project_id, memory.agent, memory.user_id, memory.domain, memory.text, memory.search_context,
                 json.dumps(memory.payload()), float(memory.confidence), int(memory.pinned), memory.version,
                 memory.origin, json.dumps(memory.source_ids), memory.updated_at, memory.last_retrieved,
                 int(text_changed), row[0]))
            if text_changed:
                self._delete_vector(row[0])
            elif moved:
                blob = self.conn.execute("SELECT embedding FROM memory_vectors WHERE rid = ?", (row[0],)).fetchone()
                if blob:
                    self._insert_vector(row[0], memory, blob[0])
            self._audit(memory, "update", reason, json.dumps(old.to_dict()))
            self._bump(memory.project_id, memory.agent)
            if moved:
                self._bump(old.project_id, old.agent)
            outbox.on_write(self.conn, memory)
        return memory

    @_translate
    def delete(self, scope: Scope, memory_id: str, *, reason: str) -> None:
        with self._write():
            row = self._visible_row(scope, memory_id)
            if row is None:
                raise NotFound(f"no memory {memory_id} in this scope", "list ids with `alma-hooks search`")
            old = self._row_to_memory(row)
            self.check_write(scope, old)
            self._audit(old, "delete", reason, json.dumps(old.to_dict()))
            self.conn.execute("DELETE FROM memories WHERE rid = ?", (row[0],))  # its vector goes by trigger
            self._bump(old.project_id, old.agent)
            outbox.on_delete(self.conn, old, reason)  # a tombstone; enqueued unless it is forgetting

    @staticmethod
    def _types_clause(types: Sequence[str] | None) -> tuple[str, tuple[str, ...]]:
        if not types:
            return "", ()
        return f" AND m.type IN ({','.join('?' * len(types))})", tuple(types)

    @_translate
    def list(self, scope: Scope, types: Sequence[str] | None = None, *, limit: int = 100) -> list[Memory]:
        clause, targs = self._types_clause(types)
        rows = self.conn.execute(
            f"SELECT {_COLUMNS} FROM memories m WHERE {_VISIBLE}{clause} ORDER BY m.updated_at DESC LIMIT ?",
            (*_scope_args(scope), *targs, int(limit))).fetchall()
        return [self._row_to_memory(r) for r in rows]

    def _partitions(self, scope: Scope, mtype: str) -> list[tuple[str, str, str]]:
        """(project, agent, user) vec0 partitions where memories of ``mtype`` visible to ``scope`` live."""
        p, a, u = _scope_args(scope)
        if mtype == "preference":
            return [(p, a, u), (p, ANY, u), (ANY, a, u), (ANY, ANY, u)]
        if mtype == "knowledge":
            return [(p, a, ""), (p, ANY, "")]
        return [(p, a, "")]

    @_translate
    def knn(self, scope: Scope, vector: Vector, k: int, types: Sequence[str] | None = None) -> list[Hit]:
        """Nearest visible memories: a Hamming pass over the sign codes of each (type, partition), then
        the exact cosine of its ``KNN_OVERSAMPLE * k`` candidates (at least ``KNN_MIN_CANDIDATES``).

        The coarse pass is sqlite-vec's KNN on ``memory_bits`` and the re-rank reads the candidates'
        vectors, or, in a ``warm`` store, both run in numpy over what :mod:`.codes` holds in memory;
        the two return the same candidates up to ties of the Hamming distance. A partition
        no larger than the candidate count is searched exactly; in larger ones a true neighbour can be
        missed only if its sign bits disagree with the query's more than the candidates' do (recall@10
        1.0 on clustered 384-d sets).
        """
        blob = pack_vector(vector)
        if len(blob) != EMBEDDING_DIM * 4:
            raise EmbeddingError(f"a query vector of {len(blob) // 4} dimensions does not fit this DB "
                                 f"({EMBEDDING_DIM})", "run `alma-hooks reembed`")
        coarse = max(KNN_MIN_CANDIDATES, KNN_OVERSAMPLE * int(k))
        code = self.conn.execute("SELECT vec_quantize_binary(?)", (blob,)).fetchone()[0]
        coarse_pass = self._coarse_in_memory if self.codes is not None else self._coarse_in_sqlite
        candidates, dist = coarse_pass(scope, list(types or MEMORY_TYPES), blob, code, coarse)
        best: dict[int, float] = {}
        for rids in candidates.values():
            for rid in sorted((r for r in rids if r in dist), key=dist.__getitem__)[:int(k)]:
                best[rid] = dist[rid]
        if not best:
            return []
        rows = self._rows_by_rid(scope, list(best))
        hits = [Hit(self._row_to_memory(r), 1.0 - best[r[0]], 1.0 - best[r[0]]) for r in rows]
        hits.sort(key=lambda h: -h.similarity)
        return hits[:k] if not types or len(types) == 1 else hits

    def _coarse_in_memory(self, scope: Scope, types: list[str], blob: bytes, code: bytes,
                          coarse: int) -> tuple[dict[str, list[int]], dict[int, float]]:
        """Per type, the coarse candidates' rids, and every candidate's cosine distance (warm store)."""
        import numpy as np

        query = np.frombuffer(blob, dtype="<f4")
        gens = self._vector_generations(scope)
        candidates: dict[str, list[int]] = {}
        dist: dict[int, float] = {}
        for mtype in types:
            found: dict[int, float] = {}
            for p, a, u in self._partitions(scope, mtype):
                key = (p, a, mtype, u)
                if key in gens:
                    found.update(self.codes.nearest(self.conn, key, gens[key], code, query, coarse))
            candidates[mtype] = list(found)
            dist.update(found)
        return candidates, dist

    def _coarse_in_sqlite(self, scope: Scope, types: list[str], blob: bytes, code: bytes,
                          coarse: int) -> tuple[dict[str, list[int]], dict[int, float]]:
        """The same with sqlite-vec's KNN on ``memory_bits`` and the vectors read from the DB."""
        candidates = {mtype: [r for p, a, u in self._partitions(scope, mtype) for (r,) in self.conn.execute(
            "SELECT rowid FROM memory_bits WHERE embedding MATCH vec_bit(?) AND k = ? "
            "AND project_id = ? AND agent = ? AND type = ? AND user_id = ?", (code, coarse, p, a, mtype, u))]
            for mtype in types}
        wanted = [r for rids in candidates.values() for r in rids]
        if not wanted:
            return candidates, {}
        return candidates, {rid: d for rid, d in self.conn.execute(  # a zero vector has no cosine (NULL)
            f"SELECT rid, vec_distance_cosine(embedding, ?) FROM memory_vectors WHERE rid IN "
            f"({','.join('?' * len(wanted))})", (blob, *wanted)) if d is not None}

    def _vector_generations(self, scope: Scope) -> dict[tuple[str, str, str, str], int]:
        """Generation of every vector partition the scope may read (see :mod:`.codes`)."""
        return {(p, a, t, u): g for p, a, t, u, g in self.conn.execute(
            "SELECT project_id, agent, type, user_id, gen FROM vector_generations WHERE project_id IN (?, '*') "
            "AND agent IN (?, '*') AND user_id IN ('', ?)", _scope_args(scope))}

    @_translate
    def checkpoint(self) -> None:
        """Copy what the WAL holds into the DB as far as no reader needs it (never waits for one)."""
        self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    @_translate
    def refresh_codes(self) -> int:
        """Reload the cached code partitions that changed on disk (the engine's idle work); returns how many."""
        if self.codes is None or not self.codes.held():
            return 0
        gens = {(p, a, t, u): g for p, a, t, u, g in self.conn.execute(
            "SELECT project_id, agent, type, user_id, gen FROM vector_generations")}
        return self.codes.refresh(self.conn, gens)

    def _rows_by_rid(self, scope: Scope, rids: list[int]) -> list[tuple[Any, ...]]:
        # the scope predicate again: defence in depth behind the partition filter
        return self.conn.execute(
            f"SELECT {_COLUMNS} FROM memories m WHERE m.rid IN ({','.join('?' * len(rids))}) AND {_VISIBLE_BY_KEY}",
            (*rids, *_scope_args(scope))).fetchall()

    @_translate
    def lexical(self, scope: Scope, query: str, k: int, types: Sequence[str] | None = None) -> list[Hit]:
        # The budget bounds the postings read, all projects' (FTS5 walks a word's whole doclist
        # whatever the project filter): scaled to the scope's share instead, a search over 1M
        # memories across 10 projects cost 10.9/13.2 ms (p50/p95) instead of 8.0/9.8 in the
        # engine, and 29 ms instead of 14 in a cold process.
        words = self._match_expression(query)
        if not words:
            return []
        match = f"{{text context}} : ({words})"
        if self._project_share(scope) < PROJECT_FILTER_SHARE:
            match = f"{fts_project_filter(scope)} AND {match}"
        clause, targs = self._types_clause(types)
        # Rank inside FTS5 first (a join per matching row costs more than BM25 itself), in a DB
        # of many projects only the rows of the scope's, then keep what the scope may see;
        # when that leaves too few, rank the visible rows only.
        inner = max(LEXICAL_OVERFETCH * int(k), 200)
        columns = ", ".join(f"m.{c.strip()}" for c in _COLUMNS.split(","))
        rows = self.conn.execute(
            f"SELECT {columns}, f.rank FROM (SELECT rowid, bm25(memories_fts, 1.0, {CONTEXT_WEIGHT}, 0.0) AS rank "
            "FROM memories_fts WHERE memories_fts MATCH ? ORDER BY rank LIMIT ?) AS f "
            f"JOIN memories m ON m.rid = f.rowid WHERE {_VISIBLE_BY_KEY}{clause} ORDER BY f.rank LIMIT ?",
            (match, inner, *_scope_args(scope), *targs, int(k))).fetchall()
        if len(rows) < k and self.conn.execute(
                "SELECT count(*) >= ? FROM (SELECT 1 FROM memories_fts WHERE memories_fts MATCH ? LIMIT ?)",
                (inner, match, inner)).fetchone()[0]:
            rows = self.conn.execute(
                f"SELECT {columns}, bm25(memories_fts, 1.0, {CONTEXT_WEIGHT}, 0.0) AS rank FROM memories_fts "
                f"JOIN memories m ON m.rid = memories_fts.rowid WHERE memories_fts MATCH ? AND {_VISIBLE}{clause} "
                "ORDER BY rank LIMIT ?",
                (match, *_scope_args(scope), *targs, int(k))).fetchall()
        return [Hit(self._row_to_memory(r[:-1]), -r[-1]) for r in rows]

    def _match_expression(self, query: str) -> str:
        """The words of ``query`` to MATCH, rarest first, within :data:`LEXICAL_POSTINGS_BUDGET`.

        BM25 is computed for every row matching any word, so a very common word
        costs in proportion to its document count while adding little (its IDF is
        near zero). Words are kept rarest first while the sum of their document
        counts stays within the budget (the rarest is always kept); words no row
        holds are dropped. A small DB keeps every word.
        """
        words = fts_words(query)
        if not words:
            return ""
        stems = self._stems(words)  # stem -> first word spelling it
        if not stems:
            return ""
        # counted up to 10x the budget: enough to tell the rarest of words all over it (it is kept)
        docs = self._document_counts(stems, 10 * LEXICAL_POSTINGS_BUDGET)
        kept, total = [], 0
        for stem in sorted((s for s in stems if docs.get(s)), key=lambda s: docs[s]):
            if kept and total + docs[stem] > LEXICAL_POSTINGS_BUDGET:
                break
            kept.append(stems[stem])
            total += docs[stem]
        return " OR ".join(f'"{w}"' for w in dict.fromkeys(kept))

    def _project_share(self, scope: Scope) -> float:
        """About what share of all memories the scope's project and the all-projects rows are."""
        tokens = self._stems(fts_project_tokens(scope))
        counts = self._document_counts(tokens, int(PROJECT_FILTER_SHARE * self._rows()) + 1)
        return min(1.0, sum(counts.values()) / self._doc_counts_at) if self._doc_counts_at else 1.0

    def _stems(self, words: Sequence[str]) -> dict[str, str]:
        """FTS5's own stems of ``words`` (what its vocabulary holds), each with the first word spelling it."""
        if self._tokenizer is None:
            self._tokenizer = self.conn.fts5_tokenizer("porter", ["unicode61", "remove_diacritics", "2"])
        stems: dict[str, str] = {}
        joined = " ".join(words).encode()
        for start, end, stem, *_ in self._tokenizer(joined, apsw.FTS5_TOKENIZE_QUERY, None):
            stems.setdefault(stem, joined[start:end].decode())
        return stems

    def _rows(self) -> int:
        """About how many memories there are (the highest rid); starts a new epoch of remembered counts
        when that grew by 10% or more."""
        top = self.conn.execute("SELECT coalesce(max(rid), 0) FROM memories").fetchone()[0]
        if self._doc_counts_at < _counted_since(top) or len(self._doc_counts) > 100_000:
            self._doc_counts, self._doc_counts_at = {}, top
        return top

    def _document_counts(self, stems: dict[str, str], cap: int) -> dict[str, int]:
        """Rows holding each stem, up to ``cap`` (absent: none); valid while the table grows by under 10%.

        ``stems`` maps each stem to a word spelling it, which is what is matched.
        Counting stops at ``cap``: fts5vocab read a word's whole doclist to count
        it, all of it from disk in a short-lived process, while only the rarer
        words need an exact count (the budget keeps none far above it). Counts
        are remembered in this process and in ``lexical_counts`` for the next
        one (a hook lives for one prompt). Only counts above zero are kept: a
        word in no row is looked up again, so a memory added since is found by it.
        """
        top = self._rows()
        missing = [s for s in stems if s not in self._doc_counts]
        if missing:
            self._doc_counts.update(self.conn.execute(
                f"SELECT stem, docs FROM lexical_counts WHERE stem IN ({','.join('?' * len(missing))}) "
                "AND rows_at >= ?", (*missing, _counted_since(top))).fetchall())
            counted = []
            for stem in missing:
                if stem not in self._doc_counts:
                    n = self.conn.execute("SELECT count(*) FROM (SELECT 1 FROM memories_fts WHERE memories_fts "
                                          "MATCH ? LIMIT ?)", (f'"{stems[stem]}"', int(cap))).fetchone()[0]
                    if n:
                        self._doc_counts[stem] = n
                        counted.append((stem, n, top))
            if counted:
                self._save_counts(counted)
        return {s: self._doc_counts[s] for s in stems if s in self._doc_counts}

    def _save_counts(self, rows: list[tuple[str, int, int]]) -> None:
        """Best effort, never waiting: a count another writer keeps out is counted again next time."""
        if not self.conn.getautocommit():
            return
        self.conn.set_busy_timeout(0)
        try:
            with self.conn:
                self.conn.executemany("INSERT OR REPLACE INTO lexical_counts(stem, docs, rows_at) VALUES (?, ?, ?)",
                                      rows)
        except apsw.Error as e:  # busy, read-only, disk full: the counts are a cache
            log.debug("document counts not saved: %s", e)
        finally:
            self.conn.set_busy_timeout(self._busy_timeout_ms)

    @_translate
    def touch(self, scope: Scope, memory_ids: Sequence[str], when: float) -> None:
        if not memory_ids:
            return
        with self._write():
            self.conn.execute(
                f"UPDATE memories AS m SET last_retrieved = ? WHERE m.id IN ({','.join('?' * len(memory_ids))}) "
                f"AND {_VISIBLE_BY_KEY}", (when, *memory_ids, *_scope_args(scope)))

    # ------------------------------------------------------------ embeddings
    @_translate
    def pending_embeddings(self, limit: int = 256) -> list[tuple[str, str]]:
        return [tuple(r) for r in self.conn.execute(  # type: ignore[misc]
            "SELECT id, text FROM memories WHERE embedding_pending = 1 LIMIT ?", (int(limit),)).fetchall()]

    @_translate
    def embedding_model(self) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'embedding_model'").fetchone()
        return row[0] if row else None

    @_translate
    def set_embeddings(self, model_id: str, items: Sequence[tuple[str, Vector]]) -> int:
        written = 0
        with self._write():
            current = self.embedding_model()
            if current is None:
                self.conn.execute("INSERT INTO meta(key, value) VALUES ('embedding_model', ?)", (model_id,))
            elif current != model_id:
                raise EmbeddingError(f"the DB holds vectors of model {current}, not {model_id}",
                                     "run `alma-hooks reembed`")
            touched: set[tuple[str, str]] = set()
            for memory_id, vec in items:
                row = self.conn.execute("SELECT rid, project_id, agent, type, user_id FROM memories WHERE id = ?",
                                        (memory_id,)).fetchone()
                if row is None:
                    continue  # deleted meanwhile
                self._insert_vector(row[0], row[1:], pack_vector(vec))
                self.conn.execute("UPDATE memories SET embedding_pending = 0 WHERE rid = ?", (row[0],))
                touched.add((row[1], row[2]))
                written += 1
            for project_id, agent in touched:  # KNN results change: caches keyed on the generation must drop
                self._bump(project_id, agent)
        return written

    @_translate
    def reset_embeddings(self) -> int:
        """Drop every vector (for ``reembed``); all memories become pending again."""
        with self._write():
            self.conn.execute("DELETE FROM memory_bits")  # first: the per-row trigger then finds nothing to do
            self.conn.execute("DELETE FROM memory_vectors")
            self.conn.execute("DELETE FROM meta WHERE key = 'embedding_model'")
            return self.conn.execute("UPDATE memories SET embedding_pending = 1 RETURNING 1").fetchall().__len__()

    # ------------------------------------------------------------ events and tasks
    @_translate
    def add_event(self, scope: Scope, event: ExecutionEvent) -> None:
        self.check_event(scope, event)
        e = event
        with self._write():
            self.conn.execute(
                "INSERT INTO events(id, project_id, agent, session_id, task_id, tool, input_summary, result_summary, "
                "ok, error, duration_ms, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO NOTHING",
                (e.id, e.project_id, e.agent, e.session_id, e.task_id, redact(e.tool), redact(e.input_summary),
                 redact(e.result_summary), int(e.ok), redact(e.error), int(e.duration_ms), e.created_at))

    @_translate
    def events(self, scope: Scope, *, session_id: str = "", task_id: str = "", limit: int = 200) -> list[ExecutionEvent]:
        sql = ("SELECT id, project_id, agent, session_id, task_id, tool, input_summary, result_summary, ok, error, "
               "duration_ms, created_at FROM events WHERE project_id = ? AND agent = ?")
        args: list[Any] = [scope.project_id, scope.agent]
        if session_id:
            sql += " AND session_id = ?"
            args.append(session_id)
        if task_id:
            sql += " AND task_id = ?"
            args.append(task_id)
        sql += " ORDER BY created_at, rid LIMIT ?"
        rows = self.conn.execute(sql, (*args, int(limit))).fetchall()
        return [ExecutionEvent(id=r[0], project_id=r[1], agent=r[2], session_id=r[3], task_id=r[4], tool=r[5],
                               input_summary=r[6], result_summary=r[7], ok=bool(r[8]), error=r[9],
                               duration_ms=r[10], created_at=r[11]) for r in rows]

    @_translate
    def open_task(self, scope: Scope, task: Task) -> Task:
        if (task.project_id, task.agent) != (scope.project_id, scope.agent):
            self.check_event(scope, ExecutionEvent(project_id=task.project_id, agent=task.agent, tool=""))
        task = dataclasses.replace(task, description=redact(task.description), user_id=scope.user_id)
        with self._write():
            owner = self.conn.execute("SELECT project_id, agent, closed_at FROM tasks WHERE id = ?",
                                      (task.id,)).fetchone()
            if owner is not None and tuple(owner[:2]) != (task.project_id, task.agent):
                from ..errors import ScopeViolation

                raise ScopeViolation("write refused: the task id belongs to another scope")
            if owner is not None and owner[2]:
                # the same prompt again (a replayed or twice-handled event): reopening would detach
                # the task from the outcome that closed it, and its next Stop would fail on that id
                return self._task(task.id)
            # a new task of this session and agent supersedes any earlier open one
            self.conn.execute("UPDATE tasks SET closed_at = ? WHERE project_id = ? AND agent = ? AND session_id = ? "
                              "AND closed_at = 0 AND id != ?",
                              (task.started_at, task.project_id, task.agent, task.session_id, task.id))
            self.conn.execute(
                "INSERT OR REPLACE INTO tasks(id, project_id, agent, user_id, session_id, description, started_at, "
                "closed_at, outcome_id, injected_ids) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (task.id, task.project_id, task.agent, task.user_id, task.session_id, task.description,
                 task.started_at, task.closed_at, task.outcome_id, json.dumps(task.injected_ids)))
        return task

    _TASK_COLUMNS = ("id, project_id, agent, user_id, session_id, description, started_at, closed_at, outcome_id, "
                     "injected_ids")

    def _task(self, task_id: str) -> Task:
        return self._row_to_task(self.conn.execute(f"SELECT {self._TASK_COLUMNS} FROM tasks WHERE id = ?",
                                                   (task_id,)).fetchone())

    @_translate
    def current_task(self, scope: Scope, session_id: str) -> Task | None:
        r = self.conn.execute(
            f"SELECT {self._TASK_COLUMNS} FROM tasks WHERE project_id = ? AND agent = ? AND session_id = ? "
            "AND closed_at = 0 ORDER BY started_at DESC LIMIT 1", (scope.project_id, scope.agent, session_id)).fetchone()
        return None if r is None else self._row_to_task(r)

    @staticmethod
    def _row_to_task(r: Sequence[Any]) -> Task:
        return Task(id=r[0], project_id=r[1], agent=r[2], user_id=r[3], session_id=r[4], description=r[5],
                    started_at=r[6], closed_at=r[7], outcome_id=r[8], injected_ids=json.loads(r[9]))

    @_translate
    def close_task(self, scope: Scope, task_id: str, outcome_id: str, when: float) -> None:
        with self._write():
            self._close_task(scope, task_id, outcome_id, when)

    def _close_task(self, scope: Scope, task_id: str, outcome_id: str, when: float) -> None:
        self.conn.execute("UPDATE tasks SET closed_at = ?, outcome_id = ? WHERE id = ? AND project_id = ? "
                          "AND agent = ?", (when, outcome_id, task_id, scope.project_id, scope.agent))

    @_translate
    def close_task_with_outcome(self, scope: Scope, task_id: str, outcome: Memory, when: float, *,
                                reason: str = "task closed") -> Memory:
        # one transaction: a kill -9 between the two writes left an outcome whose task stayed open,
        # and a replay of that Stop then failed on the outcome's id
        self.check_write(scope, outcome)
        outcome = redact_memory(outcome)
        with self._write():
            stored = self._add_in_transaction(outcome, reason)
            self._close_task(scope, task_id, stored.id, when)
        return stored

    @_translate
    def record_injection(self, scope: Scope, session_id: str, event: str, items: Sequence[tuple[str, int]],
                         tokens: int, when: float) -> None:
        with self._write():
            self.conn.execute(
                "INSERT INTO injections(project_id, agent, session_id, event, items, tokens, at) "
                "VALUES (?,?,?,?,?,?,?)",
                (scope.project_id, scope.agent, session_id, event, json.dumps([list(i) for i in items]), tokens, when))

    @_translate
    def injected(self, scope: Scope, session_id: str) -> dict[str, int]:
        seen: dict[str, int] = {}
        for (items,) in self.conn.execute(
                "SELECT items FROM injections WHERE project_id = ? AND agent = ? AND session_id = ? ORDER BY rid",
                (scope.project_id, scope.agent, session_id)):
            seen.update({mid: ver for mid, ver in json.loads(items)})
        return seen

    @_translate
    def injection_log(self, scope: Scope, limit: int = 50) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT session_id, event, items, tokens, at FROM injections WHERE project_id = ? AND agent = ? "
            "ORDER BY at DESC, rid DESC LIMIT ?", (scope.project_id, scope.agent, int(limit))).fetchall()
        return [{"session_id": r[0], "event": r[1], "items": json.loads(r[2]), "tokens": r[3], "at": r[4]}
                for r in rows]

    # ------------------------------------------------------------ admin
    @_translate
    def generation(self, scope: Scope) -> int:
        row = self.conn.execute("SELECT coalesce(sum(gen), 0) FROM generations WHERE project_id IN (?, '*') "
                                "AND agent IN (?, '*')", (scope.project_id, scope.agent)).fetchone()
        return int(row[0])

    @_translate
    def stats(self, scope: Scope | None = None) -> dict[str, Any]:
        if scope is None:
            where, args = "1", ()
        else:
            where, args = _VISIBLE, _scope_args(scope)
        by_type = {t: n for t, n in self.conn.execute(
            f"SELECT m.type, count(*) FROM memories m WHERE {where} GROUP BY m.type", args)}
        by_agent = {a: n for a, n in self.conn.execute(
            f"SELECT m.agent, count(*) FROM memories m WHERE {where} GROUP BY m.agent", args)}
        pending = self.conn.execute(f"SELECT count(*) FROM memories m WHERE {where} AND m.embedding_pending = 1",
                                    args).fetchone()[0]
        if scope is None:
            events = self.conn.execute("SELECT count(*) FROM events").fetchone()[0]
        else:
            events = self.conn.execute("SELECT count(*) FROM events WHERE project_id = ? AND agent = ?",
                                       (scope.project_id, scope.agent)).fetchone()[0]
        size = self.path.stat().st_size if self.path.exists() else 0
        return {"memories": sum(by_type.values()), "by_type": by_type, "by_agent": by_agent,
                "pending_embeddings": pending, "events": events, "db_path": str(self.path), "db_bytes": size,
                "schema_version": self.schema_version(), "embedding_model": self.embedding_model()}

    @_translate
    def prune_events(self, scope: Scope, before: float, *, dry_run: bool = False) -> int:
        where = ("FROM events WHERE project_id = ? AND agent = ? AND created_at < ? AND (task_id = '' OR task_id IN "
                 "(SELECT id FROM tasks WHERE closed_at > 0))")
        args = (scope.project_id, scope.agent, before)
        if dry_run:
            return int(self.conn.execute(f"SELECT count(*) {where}", args).fetchone()[0])
        with self._write():
            n = len(self.conn.execute(f"DELETE {where} RETURNING 1", args).fetchall())
            if n:
                self.conn.execute(
                    "INSERT INTO audit(at, actor, memory_id, type, project_id, agent, action, reason) "
                    "VALUES (?,?,?,?,?,?,?,?)", (time.time(), self.actor, "", "event", scope.project_id, scope.agent,
                                                 "prune", f"{n} events before {before:.0f}"))
        return n

    @_translate
    def note(self, scope: Scope, memory: Memory, action: str, reason: str) -> None:
        with self._write():
            if self._visible_row(scope, memory.id) is None:
                raise NotFound(f"no memory {memory.id} in this scope")
            self._audit(memory, action, redact(reason))

    @_translate
    def audit_log(self, scope: Scope, limit: int = 100, *, memory_id: str = "", types: Sequence[str] | None = None,
                  actions: Sequence[str] | None = None, with_snapshot: bool = False) -> list[dict[str, Any]]:
        keys = ("at", "actor", "memory_id", "type", "project_id", "agent", "action", "reason")
        if with_snapshot:
            keys += ("snapshot",)
        sql = (f"SELECT {', '.join(keys)} FROM audit "
               "WHERE project_id IN (?, '*') AND agent IN (?, '*') AND user_id IN ('', ?)")
        args: list[Any] = [scope.project_id, scope.agent, scope.user_id]
        if memory_id:
            sql += " AND memory_id = ?"
            args.append(memory_id)
        for column, values in (("type", types), ("action", actions)):
            if values:
                sql += f" AND {column} IN ({','.join('?' * len(values))})"
                args.extend(values)
        rows = self.conn.execute(sql + " ORDER BY rid DESC LIMIT ?", (*args, int(limit))).fetchall()
        return [dict(zip(keys, r)) for r in rows]

    @_translate
    def scopes(self) -> list[ScopeSummary]:
        counts: dict[tuple[str, str], int] = {}
        for table in ("memories", "events", "tasks", "injections"):
            count = "count(*)" if table == "memories" else "0"
            for p, a, n in self.conn.execute(f"SELECT project_id, agent, {count} FROM {table} "
                                             "GROUP BY project_id, agent"):
                counts[(p, a)] = counts.get((p, a), 0) + n
        return [ScopeSummary(p, a, n) for (p, a), n in sorted(counts.items())]

    @_translate
    def export(self, project_id: str | None = None) -> Iterator[dict[str, Any]]:
        sql = (f"SELECT {', '.join('m.' + c.strip() for c in _COLUMNS.split(','))}, v.embedding FROM memories m "
               "LEFT JOIN memory_vectors v ON v.rid = m.rid")
        args: tuple[Any, ...] = ()
        if project_id is not None:
            sql += " WHERE m.project_id = ?"
            args = (project_id,)
        model = self.embedding_model()
        for row in self.conn.execute(sql + " ORDER BY m.rid", args).fetchall():
            d = self._row_to_memory(row[:-1]).to_dict()
            d["embedding"] = unpack_vector(row[-1]) if row[-1] else None
            d["embedding_model"] = model if row[-1] else None
            yield d

    @_translate
    def import_(self, rows: Iterable[dict[str, Any]], *, reason: str = "import") -> int:
        from ..types import memory_from_dict

        written = 0
        model = self.embedding_model()
        with self._write():
            for d in rows:
                d = dict(d)
                vec, vec_model = d.pop("embedding", None), d.pop("embedding_model", None)
                m = redact_memory(memory_from_dict(d))
                reason_refused = self.policy.check_write(m.agent, m.domain)
                if reason_refused:
                    log.warning("import refused %s: %s", m.id, reason_refused)
                    continue
                old = self.conn.execute("SELECT rid, version FROM memories WHERE id = ?", (m.id,)).fetchone()
                if old is not None:
                    if old[1] >= m.version:
                        continue
                    self.conn.execute("DELETE FROM memories WHERE rid = ?", (old[0],))
                usable = vec is not None and vec_model is not None and vec_model == (model or vec_model)
                if usable and model is None:
                    self.conn.execute("INSERT INTO meta(key, value) VALUES ('embedding_model', ?)", (vec_model,))
                    model = vec_model
                m = outbox.stamp(self.conn, m, only_if_empty=True)
                self._insert(m, pack_vector(vec) if usable else None)
                self._audit(m, "import", reason)
                self._bump(m.project_id, m.agent)
                outbox.on_write(self.conn, m)
                written += 1
        return written


_FTS_STRIP = str.maketrans({c: " " for c in '"*^:(){}[]+-~,.;!?/\\\'`<>=|&#@$%'})


def _counted_since(rows: int) -> float:
    """The fewest rows a document count still holds for, with ``rows`` now: the table grew by under 10% (and 100)."""
    return (rows - 100) / 1.1


def fts_words(text: str, max_terms: int = 64) -> list[str]:
    """The distinct lower-case words of ``text`` with FTS5 syntax characters removed (safe to double-quote)."""
    seen: dict[str, None] = {}
    for w in text.translate(_FTS_STRIP).split():
        seen.setdefault(w.lower(), None)
    return list(seen)[:max_terms]


def fts_project_tokens(scope: Scope) -> tuple[str, str]:
    """The FTS ``scope`` column's tokens of the projects ``scope`` may read: its own, and all ('*').

    The same tokens as the triggers of migration m007 write: 'p' + hex of the UTF-8 project id.
    """
    return ("p" + scope.project_id.encode().hex(), "p" + ANY.encode().hex())


def fts_project_filter(scope: Scope) -> str:
    """FTS5 query text matching only the rows of the projects ``scope`` may read."""
    own, every = fts_project_tokens(scope)
    return f'scope : ("{own}" OR "{every}")'


def is_corrupt(path: Path) -> bool:
    """True only when ``path`` is not SQLite or fails ``PRAGMA quick_check``.

    Busy, locked, read-only and permission errors are not corruption: they
    fail open and are retried, and never cost the user their data.
    """
    try:
        with open(path, "rb") as f:
            header = f.read(16)
    except OSError:
        return False
    if not header:
        return False  # empty file: SQLite will initialise it
    if header != b"SQLite format 3\x00":
        return True
    try:
        conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
        try:
            conn.execute("PRAGMA busy_timeout = 2000")
            return conn.execute("PRAGMA quick_check").fetchone()[0] != "ok"
        finally:
            conn.close()
    except (apsw.NotADBError, apsw.CorruptError):
        return True
    except apsw.Error:
        return False


def quarantine_if_corrupt(path: Path) -> Path | None:
    """Rename a corrupt DB (and its WAL) aside, never delete it; returns the new name."""
    path = Path(path)
    if not path.exists() or not is_corrupt(path):
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        src = Path(str(path) + suffix)
        if src.exists():
            os.replace(src, Path(str(target) + suffix))
    log.warning("quarantined corrupt database %s as %s; a fresh one starts now", path, target)
    return target

"""The simplest fallback store: JSON-lines files in a user-only directory.

Layout of the directory (0700; every file 0600):

- ``memories.jsonl``: an append-only log. A ``put`` record holds a whole memory
  (``Memory.to_dict``) with its vector or null; ``del`` is a tombstone; ``vec``
  attaches a vector, ``touch`` the staleness clock, ``reset_vecs`` drops every
  vector. Loading replays the log: the last record per id wins. Records carry
  the (project, agent) pairs whose generation they bump, so the generation is
  replayed too.
- ``events.jsonl``, ``tasks.jsonl`` (last record per id wins),
  ``injections.jsonl``, ``audit.jsonl``: append-only as well.
- ``meta.json``: the format version and the embedding model id, replaced atomically.

Every read-modify-write holds an exclusive ``flock`` on ``.lock`` and first
reads whatever other processes appended since this object last looked (by file
identity and size), so two processes never lose each other's writes. Reads hold
a shared lock, so they never see half a record.

Search is brute force: cosine over all visible vectors (numpy, imported only
when ``knn`` runs) and a small BM25 over the words of the visible memories.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import math
import os
import re
import struct
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ScopePolicy, ensure_private_dir
from ..errors import AlmaError, EmbeddingError, NotFound, StoreUnavailable
from ..redact import redact
from ..types import ANY, MEMORY_TYPES, ExecutionEvent, Hit, Memory, Scope, ScopeSummary, Task, memory_from_dict
from .base import Store, Vector, log, redact_memory

FORMAT_VERSION = 1
EMBEDDING_DIM = 384  # the same width as the SQLite store's vec0 table
_LOGS = ("memories", "events", "tasks", "injections", "audit")
# FTS5's unicode61 tokenizer splits on "_" too; matching it keeps both backends' lexical results alike.
_WORD = re.compile(r"[^\W_]+")
_MAX_TERMS = 64
_BM25_K1, _BM25_B = 1.2, 0.75


def words(text: str) -> list[str]:
    """The lowercase words of ``text``, as the lexical search sees them."""
    return _WORD.findall(text.lower())


def _vector_list(vec: Vector) -> list[float]:
    """A vector as float32-rounded Python floats (what the SQLite store would return)."""
    if isinstance(vec, (bytes, bytearray, memoryview)):
        blob = bytes(vec)
        if len(blob) % 4:
            raise EmbeddingError("a vector blob must be a whole number of float32 values")
        return list(struct.unpack(f"<{len(blob) // 4}f", blob))
    values = [float(x) for x in vec]
    return list(struct.unpack(f"<{len(values)}f", struct.pack(f"<{len(values)}f", *values)))


def _check_dim(vec: list[float]) -> None:
    if len(vec) != EMBEDDING_DIM:
        raise EmbeddingError(f"a vector of {len(vec)} dimensions does not fit this store ({EMBEDDING_DIM})",
                             "run `alma-hooks reembed`")


def _copy(m: Memory) -> Memory:
    # the only mutable field is the list; callers must not be able to change the cached state
    return dataclasses.replace(m, source_ids=list(m.source_ids))


@dataclass
class _Entry:
    """One live memory in the replayed state."""

    memory: Memory
    vector: list[float] | None
    pending: bool
    seq: int
    _words: Counter[str] | None = field(default=None, repr=False)

    def word_counts(self) -> Counter[str]:
        if self._words is None:
            self._words = Counter(words(self.memory.text))
        return self._words


@dataclass
class _LogFile:
    """Where this object stopped reading one append-only log."""

    path: Path
    ident: tuple[int, int] = (0, 0)
    offset: int = 0


class FileStore(Store):
    """Memories of every project of one user as JSON-lines files in one directory."""

    def __init__(self, directory: Path | str, policy: ScopePolicy | None = None, *, actor: str = "") -> None:
        self.directory = Path(directory)
        self.policy = policy or ScopePolicy.permissive()
        self.actor = actor
        self._seq = 0
        self._meta: dict[str, Any] = {}
        self._meta_stamp: tuple[int, ...] = ()
        try:
            ensure_private_dir(self.directory)
            self._logs = {name: _LogFile(self.directory / f"{name}.jsonl") for name in _LOGS}
            for path in [*(lf.path for lf in self._logs.values()), self.directory / "meta.json"]:
                if path.exists():
                    os.chmod(path, 0o600)
            self._lock_fd: int | None = os.open(self.directory / ".lock", os.O_CREAT | os.O_RDWR, 0o600)
        except OSError as e:
            raise StoreUnavailable(f"the store directory {self.directory} cannot be used: {e}",
                                   "check its permissions") from e
        self._reset_state()
        with self._locked(exclusive=True):
            self._refresh_meta()
            if self._meta.get("format", FORMAT_VERSION) > FORMAT_VERSION:
                from ..errors import SchemaTooNew

                raise SchemaTooNew(f"{self.directory} was written by a newer alma-hooks "
                                   f"(format {self._meta['format']})", "upgrade alma-hooks: ./install.sh")
            if "format" not in self._meta:
                self._write_meta({**self._meta, "format": FORMAT_VERSION})

    def _reset_state(self, *names: str) -> None:
        names = names or _LOGS
        if "memories" in names:
            self._memories: dict[str, _Entry] = {}
            self._gens: Counter[tuple[str, str]] = Counter()
        if "events" in names:
            self._events: list[tuple[int, ExecutionEvent]] = []
            self._event_ids: set[str] = set()
        if "tasks" in names:
            self._tasks: dict[str, tuple[int, Task]] = {}
        if "injections" in names:
            self._injections: list[dict[str, Any]] = []
        if "audit" in names:
            self._audit_rows: list[dict[str, Any]] = []

    def close(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)

    # ------------------------------------------------------------ files and locks
    @contextmanager
    def _locked(self, exclusive: bool) -> Iterator[None]:
        if self._lock_fd is None:
            raise StoreUnavailable("the store is closed")
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _refresh(self, *names: str) -> None:
        """Apply whatever was appended to these logs since this object last read them (lock held)."""
        for name in names:
            lf = self._logs[name]
            try:
                st = os.stat(lf.path)
            except FileNotFoundError:
                if lf.offset:
                    self._reset_state(name)
                lf.ident, lf.offset = (0, 0), 0
                continue
            ident = (st.st_dev, st.st_ino)
            if ident != lf.ident or st.st_size < lf.offset:  # replaced or truncated: replay from scratch
                self._reset_state(name)
                lf.ident, lf.offset = ident, 0
            if st.st_size == lf.offset:
                continue
            with open(lf.path, "rb") as f:
                f.seek(lf.offset)
                data = f.read()
            end = data.rfind(b"\n") + 1  # a torn last line (a crash mid-append) is left for later
            lf.offset += end
            apply = getattr(self, f"_apply_{name}")
            for line in data[:end].splitlines():
                if not line.strip():
                    continue
                self._seq += 1
                try:
                    apply(json.loads(line), self._seq)
                except (ValueError, KeyError, TypeError) as e:
                    # a torn or foreign record must not make the whole store unreadable
                    log.warning("skipping an unreadable record in %s: %s", lf.path, e)

    def _append(self, name: str, records: Sequence[dict[str, Any]]) -> None:
        """Append records to a log and apply them (exclusive lock held, log refreshed)."""
        if not records:
            return
        lf = self._logs[name]
        data = "".join(json.dumps(r, separators=(",", ":"), ensure_ascii=False) + "\n" for r in records).encode()
        try:
            fd = os.open(lf.path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
            try:
                size = os.fstat(fd).st_size
                if size and size > lf.offset:
                    with open(lf.path, "rb") as f:
                        f.seek(size - 1)
                        if f.read(1) != b"\n":
                            data = b"\n" + data  # end a torn line so ours stay whole
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
        except OSError as e:
            raise StoreUnavailable(f"{lf.path} cannot be written: {e}", "check permissions and free disk space") from e
        self._refresh(name)

    def _refresh_meta(self) -> None:
        path = self.directory / "meta.json"
        try:
            st = os.stat(path)
        except FileNotFoundError:
            self._meta, self._meta_stamp = {}, ()
            return
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if stamp != self._meta_stamp:
            try:
                self._meta = json.loads(path.read_text(encoding="utf-8"))
            except ValueError:
                log.warning("meta.json of %s is unreadable; treating it as empty", self.directory)
                self._meta = {}
            self._meta_stamp = stamp

    def _write_meta(self, meta: dict[str, Any]) -> None:
        path = self.directory / "meta.json"
        tmp = path.with_name(f"meta.json.{os.getpid()}.tmp")
        try:
            fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(meta, f)
            os.replace(tmp, path)
        except OSError as e:
            raise StoreUnavailable(f"{path} cannot be written: {e}", "check permissions and free disk space") from e
        self._refresh_meta()

    # ------------------------------------------------------------ replay
    def _apply_memories(self, rec: dict[str, Any], seq: int) -> None:
        for p, a in rec.get("bump", ()):
            self._gens[(p, a)] += 1
        op = rec.get("op")
        if op == "put":
            m = memory_from_dict(rec["memory"])
            old = self._memories.get(m.id)
            keep_seq = old.seq if old is not None and not rec.get("new_seq") else seq
            self._memories[m.id] = _Entry(m, rec.get("embedding"), bool(rec.get("pending", True)), keep_seq)
        elif op == "del":
            self._memories.pop(rec["id"], None)
        elif op == "vec":
            e = self._memories.get(rec["id"])
            if e is not None:
                e.vector, e.pending = rec["embedding"], False
        elif op == "touch":
            for mid in rec["ids"]:
                e = self._memories.get(mid)
                if e is not None:
                    e.memory = dataclasses.replace(e.memory, last_retrieved=rec["when"])
        elif op == "reset_vecs":
            for e in self._memories.values():
                e.vector, e.pending = None, True
        else:
            log.warning("skipping an unknown record %r in memories.jsonl", op)

    def _apply_events(self, rec: dict[str, Any], seq: int) -> None:
        if rec["id"] not in self._event_ids:  # the first record of an id wins, as in SQLite
            self._event_ids.add(rec["id"])
            self._events.append((seq, ExecutionEvent(**rec)))

    def _apply_tasks(self, rec: dict[str, Any], seq: int) -> None:
        old = self._tasks.get(rec["id"])
        self._tasks[rec["id"]] = (old[0] if old else seq, Task(**rec))

    def _apply_injections(self, rec: dict[str, Any], seq: int) -> None:
        self._injections.append(rec)

    def _apply_audit(self, rec: dict[str, Any], seq: int) -> None:
        self._audit_rows.append(rec)

    # ------------------------------------------------------------ helpers
    def _visible(self, scope: Scope, memory_id: str) -> _Entry | None:
        e = self._memories.get(memory_id)
        return e if e is not None and e.memory.visible_to(scope) else None

    def _visible_entries(self, scope: Scope, types: Sequence[str] | None) -> list[_Entry]:
        return [e for e in self._memories.values()
                if e.memory.visible_to(scope) and (not types or e.memory.type in types)]

    @staticmethod
    def _put(m: Memory, vector: list[float] | None, pending: bool, bump: Iterable[tuple[str, str]],
             new_seq: bool = False) -> dict[str, Any]:
        rec: dict[str, Any] = {"op": "put", "memory": m.to_dict(), "embedding": vector, "pending": pending,
                               "bump": [list(b) for b in dict.fromkeys(bump)]}
        if new_seq:
            rec["new_seq"] = True
        return rec

    def _audit(self, m: Memory, action: str, reason: str, snapshot: Memory | None = None) -> dict[str, Any]:
        return {"at": time.time(), "actor": self.actor, "memory_id": m.id, "type": m.type,
                "project_id": m.project_id, "agent": m.agent, "user_id": m.user_id, "action": action,
                "reason": redact(reason), "snapshot": json.dumps(snapshot.to_dict()) if snapshot else ""}

    # ------------------------------------------------------------ memories
    def add(self, scope: Scope, memory: Memory, *, reason: str = "create") -> Memory:
        self.check_write(scope, memory)
        memory = redact_memory(memory)
        with self._locked(exclusive=True):
            self._refresh("memories", "audit")
            if memory.id in self._memories:
                raise AlmaError(f"a memory with id {memory.id} already exists", "update it instead")
            self._append("audit", [self._audit(memory, "create", reason)])
            self._append("memories", [self._put(memory, None, True, [(memory.project_id, memory.agent)])])
        return _copy(memory)

    def get(self, scope: Scope, memory_id: str) -> Memory:
        with self._locked(exclusive=False):
            self._refresh("memories")
        e = self._visible(scope, memory_id)
        if e is None:
            raise NotFound(f"no memory {memory_id} in this scope", "list ids with `alma-hooks search`")
        return _copy(e.memory)

    def update(self, scope: Scope, memory: Memory, *, reason: str = "update") -> Memory:
        self.check_write(scope, memory)
        memory = redact_memory(memory)
        with self._locked(exclusive=True):
            self._refresh("memories", "audit")
            e = self._visible(scope, memory.id)
            if e is None or e.memory.type != memory.type:
                raise NotFound(f"no {memory.type} {memory.id} in this scope")
            old = e.memory
            moved = (old.project_id, old.agent, old.user_id) != (memory.project_id, memory.agent, memory.user_id)
            if moved:
                self.check_write(scope, old)  # moving a memory needs the right to the old place too
            memory = dataclasses.replace(memory, version=old.version + 1, updated_at=time.time(),
                                         created_at=old.created_at, source_ids=list(memory.source_ids))
            text_changed = old.text != memory.text
            vector = None if text_changed else e.vector
            pending = True if text_changed else e.pending
            self._append("audit", [self._audit(memory, "update", reason, old)])
            self._append("memories", [self._put(memory, vector, pending,
                                                [(memory.project_id, memory.agent), (old.project_id, old.agent)])])
        return _copy(memory)

    def delete(self, scope: Scope, memory_id: str, *, reason: str) -> None:
        with self._locked(exclusive=True):
            self._refresh("memories", "audit")
            e = self._visible(scope, memory_id)
            if e is None:
                raise NotFound(f"no memory {memory_id} in this scope", "list ids with `alma-hooks search`")
            old = e.memory
            self.check_write(scope, old)
            # the audit row (with the snapshot) first: a crash in between leaves a restorable trace
            self._append("audit", [self._audit(old, "delete", reason, old)])
            self._append("memories", [{"op": "del", "id": old.id, "bump": [[old.project_id, old.agent]]}])

    def list(self, scope: Scope, types: Sequence[str] | None = None, *, limit: int = 100) -> list[Memory]:
        with self._locked(exclusive=False):
            self._refresh("memories")
        entries = self._visible_entries(scope, types)
        entries.sort(key=lambda e: (-e.memory.updated_at, -e.seq))
        return [_copy(e.memory) for e in entries[:max(0, int(limit))]]

    def knn(self, scope: Scope, vector: Vector, k: int, types: Sequence[str] | None = None) -> list[Hit]:
        import numpy as np  # only here: numpy costs ~100 ms of imports in the hook path

        query = np.asarray(_vector_list(vector), dtype=np.float32)
        _check_dim(query.tolist())
        with self._locked(exclusive=False):
            self._refresh("memories")
        qnorm = float(np.linalg.norm(query))
        hits: list[Hit] = []
        for mtype in types or list(MEMORY_TYPES):
            entries = [e for e in self._visible_entries(scope, [mtype]) if e.vector is not None]
            if not entries or k <= 0:
                continue
            matrix = np.asarray([e.vector for e in entries], dtype=np.float32)
            norms = np.linalg.norm(matrix, axis=1) * qnorm
            sims = np.divide(matrix @ query, norms, out=np.zeros(len(entries), dtype=np.float32), where=norms > 0)
            for i in np.argsort(-sims, kind="stable")[:k]:
                s = float(sims[i])
                hits.append(Hit(_copy(entries[i].memory), s, s))
        hits.sort(key=lambda h: -h.similarity)
        # like the SQLite store: k overall for one type or all types, k per type for a list of types
        return hits[:k] if not types or len(types) == 1 else hits

    def lexical(self, scope: Scope, query: str, k: int, types: Sequence[str] | None = None) -> list[Hit]:
        terms = list(dict.fromkeys(words(query)))[:_MAX_TERMS]
        if not terms or k <= 0:
            return []
        with self._locked(exclusive=False):
            self._refresh("memories")
        # statistics over the caller's visible memories only: other scopes must not even shift the ranking
        entries = self._visible_entries(scope, types)
        if not entries:
            return []
        avgdl = sum(sum(e.word_counts().values()) for e in entries) / len(entries) or 1.0
        df = {t: sum(1 for e in entries if t in e.word_counts()) for t in terms}
        n = len(entries)
        scored: list[tuple[float, int, _Entry]] = []
        for e in entries:
            counts = e.word_counts()
            dl = sum(counts.values())
            score = 0.0
            for t in terms:
                tf = counts.get(t, 0)
                if tf:
                    idf = math.log(1.0 + (n - df[t] + 0.5) / (df[t] + 0.5))
                    score += idf * tf * (_BM25_K1 + 1) / (tf + _BM25_K1 * (1 - _BM25_B + _BM25_B * dl / avgdl))
            if score > 0:
                scored.append((score, e.seq, e))
        scored.sort(key=lambda t: (-t[0], -t[1]))
        return [Hit(_copy(e.memory), s) for s, _, e in scored[:k]]

    def touch(self, scope: Scope, memory_ids: Sequence[str], when: float) -> None:
        if not memory_ids:
            return
        with self._locked(exclusive=True):
            self._refresh("memories")
            ids = [mid for mid in dict.fromkeys(memory_ids) if self._visible(scope, mid) is not None]
            if ids:
                self._append("memories", [{"op": "touch", "ids": ids, "when": when}])

    # ------------------------------------------------------------ embeddings
    def pending_embeddings(self, limit: int = 256) -> list[tuple[str, str]]:
        with self._locked(exclusive=False):
            self._refresh("memories")
        pending = sorted((e for e in self._memories.values() if e.pending), key=lambda e: e.seq)
        return [(e.memory.id, e.memory.text) for e in pending[:max(0, int(limit))]]

    def embedding_model(self) -> str | None:
        with self._locked(exclusive=False):
            self._refresh_meta()
        return self._meta.get("embedding_model")

    def set_embeddings(self, model_id: str, items: Sequence[tuple[str, Vector]]) -> int:
        vectors = [(mid, _vector_list(vec)) for mid, vec in items]
        for _, vec in vectors:
            _check_dim(vec)
        with self._locked(exclusive=True):
            self._refresh_meta()
            current = self._meta.get("embedding_model")
            if current is not None and current != model_id:
                raise EmbeddingError(f"the store holds vectors of model {current}, not {model_id}",
                                     "run `alma-hooks reembed`")
            if current is None:
                self._write_meta({**self._meta, "embedding_model": model_id})
            self._refresh("memories")
            records = []
            for mid, vec in vectors:
                e = self._memories.get(mid)
                if e is None:
                    continue  # deleted meanwhile
                # a new vector changes what KNN returns, so caches keyed by the generation must see it
                records.append({"op": "vec", "id": mid, "embedding": vec,
                                "bump": [[e.memory.project_id, e.memory.agent]]})
            self._append("memories", records)
        return len(records)

    def reset_embeddings(self) -> int:
        """Drop every vector (for ``reembed``); all memories become pending again."""
        with self._locked(exclusive=True):
            self._refresh_meta()
            self._write_meta({k: v for k, v in self._meta.items() if k != "embedding_model"})
            self._refresh("memories")
            self._append("memories", [{"op": "reset_vecs"}])
            return len(self._memories)

    # ------------------------------------------------------------ events and tasks
    def add_event(self, scope: Scope, event: ExecutionEvent) -> None:
        self.check_event(scope, event)
        e = dataclasses.replace(event, tool=redact(event.tool), input_summary=redact(event.input_summary),
                                result_summary=redact(event.result_summary), error=redact(event.error),
                                ok=bool(event.ok), duration_ms=int(event.duration_ms))
        with self._locked(exclusive=True):
            self._refresh("events")
            if e.id not in self._event_ids:
                self._append("events", [dataclasses.asdict(e)])

    def events(self, scope: Scope, *, session_id: str = "", task_id: str = "", limit: int = 200) -> list[ExecutionEvent]:
        with self._locked(exclusive=False):
            self._refresh("events")
        found = [(e.created_at, seq, e) for seq, e in self._events
                 if e.project_id == scope.project_id and e.agent == scope.agent
                 and (not session_id or e.session_id == session_id) and (not task_id or e.task_id == task_id)]
        found.sort(key=lambda t: (t[0], t[1]))
        return [dataclasses.replace(e) for _, _, e in found[:max(0, int(limit))]]

    def open_task(self, scope: Scope, task: Task) -> Task:
        if (task.project_id, task.agent) != (scope.project_id, scope.agent):
            self.check_event(scope, ExecutionEvent(project_id=task.project_id, agent=task.agent, tool=""))
        task = dataclasses.replace(task, description=redact(task.description), user_id=scope.user_id,
                                   injected_ids=list(task.injected_ids))
        with self._locked(exclusive=True):
            self._refresh("tasks")
            old = self._tasks.get(task.id)
            if old is not None and (old[1].project_id, old[1].agent) != (scope.project_id, scope.agent):
                raise NotFound(f"no task {task.id} in this scope")  # never take over another scope's task
            if old is not None and old[1].closed_at:
                return dataclasses.replace(old[1], injected_ids=list(old[1].injected_ids))  # never reopened
            self._append("tasks", [dataclasses.asdict(task)])
        return task

    def current_task(self, scope: Scope, session_id: str) -> Task | None:
        with self._locked(exclusive=False):
            self._refresh("tasks")
        mine = [(t.started_at, seq, t) for seq, t in self._tasks.values()
                if t.project_id == scope.project_id and t.agent == scope.agent and t.session_id == session_id]
        if not mine:
            return None
        # the latest task opened supersedes earlier ones: once it is closed, none is current
        _, _, latest = max(mine, key=lambda x: (x[0], x[1]))
        return dataclasses.replace(latest, injected_ids=list(latest.injected_ids)) if not latest.closed_at else None

    def close_task(self, scope: Scope, task_id: str, outcome_id: str, when: float) -> None:
        with self._locked(exclusive=True):
            self._refresh("tasks")
            found = self._tasks.get(task_id)
            if found is None or (found[1].project_id, found[1].agent) != (scope.project_id, scope.agent):
                return
            self._append("tasks", [dataclasses.asdict(dataclasses.replace(found[1], closed_at=when,
                                                                          outcome_id=outcome_id))])

    def record_injection(self, scope: Scope, session_id: str, event: str, items: Sequence[tuple[str, int]],
                         tokens: int, when: float) -> None:
        with self._locked(exclusive=True):
            self._refresh("injections")
            self._append("injections", [{"project_id": scope.project_id, "agent": scope.agent,
                                         "session_id": session_id, "event": event,
                                         "items": [[mid, int(ver)] for mid, ver in items], "tokens": int(tokens),
                                         "at": when}])

    def injected(self, scope: Scope, session_id: str) -> dict[str, int]:
        with self._locked(exclusive=False):
            self._refresh("injections")
        seen: dict[str, int] = {}
        for rec in self._injections:
            if (rec["project_id"], rec["agent"], rec["session_id"]) == (scope.project_id, scope.agent, session_id):
                seen.update({mid: ver for mid, ver in rec["items"]})
        return seen

    def injection_log(self, scope: Scope, limit: int = 50) -> list[dict[str, Any]]:
        with self._locked(exclusive=False):
            self._refresh("injections")
        mine = [(rec["at"], seq, rec) for seq, rec in enumerate(self._injections)
                if (rec["project_id"], rec["agent"]) == (scope.project_id, scope.agent)]
        mine.sort(key=lambda t: (t[0], t[1]), reverse=True)
        return [{"session_id": r["session_id"], "event": r["event"], "items": [list(i) for i in r["items"]],
                 "tokens": r["tokens"], "at": r["at"]} for _, _, r in mine[:max(0, int(limit))]]

    # ------------------------------------------------------------ admin
    def generation(self, scope: Scope) -> int:
        with self._locked(exclusive=False):
            self._refresh("memories")
        return sum(n for (p, a), n in self._gens.items() if p in (scope.project_id, ANY) and a in (scope.agent, ANY))

    def stats(self, scope: Scope | None = None) -> dict[str, Any]:
        with self._locked(exclusive=False):
            self._refresh("memories", "events")
            self._refresh_meta()
        entries = list(self._memories.values()) if scope is None else self._visible_entries(scope, None)
        by_type = Counter(e.memory.type for e in entries)
        by_agent = Counter(e.memory.agent for e in entries)
        if scope is None:
            events = len(self._events)
        else:
            events = sum(1 for _, e in self._events if (e.project_id, e.agent) == (scope.project_id, scope.agent))
        size = sum(p.stat().st_size for p in self.directory.iterdir() if p.is_file())
        return {"memories": len(entries), "by_type": dict(by_type), "by_agent": dict(by_agent),
                "pending_embeddings": sum(1 for e in entries if e.pending), "events": events,
                "db_path": str(self.directory), "db_bytes": size,
                "schema_version": self._meta.get("format", FORMAT_VERSION),
                "embedding_model": self._meta.get("embedding_model")}

    def note(self, scope: Scope, memory: Memory, action: str, reason: str) -> None:
        with self._locked(exclusive=True):
            self._refresh("memories", "audit")
            entry = self._visible(scope, memory.id)
            if entry is None:
                raise NotFound(f"no memory {memory.id} in this scope")
            self._append("audit", [self._audit(entry.memory, action, reason)])

    def prune_events(self, scope: Scope, before: float, *, dry_run: bool = False) -> int:
        with self._locked(exclusive=True):
            self._refresh("events", "tasks")
            closed = {tid for tid, (_, t) in self._tasks.items() if t.closed_at}
            doomed = {e.id for _, e in self._events
                      if e.project_id == scope.project_id and e.agent == scope.agent and e.created_at < before
                      and (not e.task_id or e.task_id in closed)}
            if dry_run or not doomed:
                return len(doomed)
            kept = [dataclasses.asdict(e) for _, e in self._events if e.id not in doomed]
            path = self.directory / "events.jsonl"
            tmp = path.with_name(path.name + ".tmp")
            fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.writelines(json.dumps(r) + "\n" for r in kept)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)  # every reader sees a new inode and replays the file
            self._refresh("events")
            self._append("audit", [{"at": time.time(), "actor": self.actor, "memory_id": "", "type": "event",
                                    "project_id": scope.project_id, "agent": scope.agent, "user_id": "",
                                    "action": "prune", "reason": f"{len(doomed)} events before {before:.0f}",
                                    "snapshot": ""}])
        return len(doomed)

    def audit_log(self, scope: Scope, limit: int = 100, *, memory_id: str = "", types: Sequence[str] | None = None,
                  actions: Sequence[str] | None = None, with_snapshot: bool = False) -> list[dict[str, Any]]:
        with self._locked(exclusive=False):
            self._refresh("audit")
        keys = ("at", "actor", "memory_id", "type", "project_id", "agent", "action", "reason")
        if with_snapshot:
            keys += ("snapshot",)
        rows = [r for r in reversed(self._audit_rows)
                if r["project_id"] in (scope.project_id, ANY) and r["agent"] in (scope.agent, ANY)
                and r.get("user_id", "") in ("", scope.user_id) and (not memory_id or r["memory_id"] == memory_id)
                and (not types or r["type"] in types) and (not actions or r["action"] in actions)]
        return [{k: r.get(k, "") for k in keys} for r in rows[:max(0, int(limit))]]

    def scopes(self) -> list[ScopeSummary]:
        with self._locked(exclusive=False):
            self._refresh("memories", "events", "tasks", "injections")
        counts: Counter[tuple[str, str]] = Counter(
            (e.memory.project_id, e.memory.agent) for e in self._memories.values())
        pairs = set(counts) | {(e.project_id, e.agent) for _, e in self._events} | {
            (t.project_id, t.agent) for _, t in self._tasks.values()} | {
            (r["project_id"], r["agent"]) for r in self._injections}
        return [ScopeSummary(p, a, counts.get((p, a), 0)) for p, a in sorted(pairs)]

    def export(self, project_id: str | None = None) -> Iterator[dict[str, Any]]:
        with self._locked(exclusive=False):
            self._refresh("memories")
            self._refresh_meta()
        model = self._meta.get("embedding_model")
        for e in sorted(self._memories.values(), key=lambda e: e.seq):
            if project_id is not None and e.memory.project_id != project_id:
                continue
            d = e.memory.to_dict()
            d["embedding"] = list(e.vector) if e.vector is not None else None
            d["embedding_model"] = model if e.vector is not None else None
            yield d

    def import_(self, rows: Iterable[dict[str, Any]], *, reason: str = "import") -> int:
        rows = list(rows)
        with self._locked(exclusive=True):
            self._refresh("memories", "audit")
            self._refresh_meta()
            model = self._meta.get("embedding_model")
            versions = {mid: e.memory.version for mid, e in self._memories.items()}
            puts: list[dict[str, Any]] = []
            audits: list[dict[str, Any]] = []
            for d in rows:
                d = dict(d)
                vec, vec_model = d.pop("embedding", None), d.pop("embedding_model", None)
                m = redact_memory(memory_from_dict(d))
                refused = self.policy.check_write(m.agent, m.domain)
                if refused:
                    log.warning("import refused %s: %s", m.id, refused)
                    continue
                if m.id in versions and versions[m.id] >= m.version:
                    continue
                usable = vec is not None and vec_model is not None and vec_model == (model or vec_model)
                vector = _vector_list(vec) if usable else None
                if vector is not None:
                    _check_dim(vector)  # before anything is written: a bad row leaves the store as it was
                    model = vec_model
                versions[m.id] = m.version
                puts.append(self._put(m, vector, vector is None, [(m.project_id, m.agent)], new_seq=True))
                audits.append(self._audit(m, "import", reason))
            if model is not None and self._meta.get("embedding_model") is None:
                self._write_meta({**self._meta, "embedding_model": model})
            self._append("audit", audits)
            self._append("memories", puts)
        return len(puts)

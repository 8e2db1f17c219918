"""The store contract: every backend implements :class:`Store`, and the
conformance suite (``tests/storage/test_conformance.py``) runs against each.

Scope is enforced here, not by callers:
- every read takes a :class:`~alma_hooks.types.Scope` and returns only what
  ``Memory.visible_to(scope)`` allows (the SQL mirrors that one rule);
- every write takes the writer's scope, refuses a memory that belongs to
  another project, agent or user, and refuses a domain outside the agent's
  ``can_learn`` or inside its ``cannot_learn`` (:class:`ScopeViolation`,
  logged with the reason);
- every text field passes through the redactor before it touches storage.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from .. import logs
from ..config import ScopePolicy
from ..errors import ScopeViolation
from ..redact import redact
from ..types import ANY, MEMORY_TYPES, ExecutionEvent, Hit, Memory, Scope, ScopeSummary, Task

log = logs.get("alma_hooks.storage")

Vector = Sequence[float] | bytes


class Store(ABC):
    """One place memories live. Backends: ``sqlite`` (default) and ``files``."""

    policy: ScopePolicy

    # ------------------------------------------------------------ memories
    @abstractmethod
    def add(self, scope: Scope, memory: Memory, *, reason: str = "create") -> Memory:
        """Store a new memory written by ``scope`` (redacted, audited); returns it as stored."""

    @abstractmethod
    def get(self, scope: Scope, memory_id: str) -> Memory:
        """The memory ``memory_id`` if ``scope`` may see it, else :class:`NotFound`."""

    @abstractmethod
    def update(self, scope: Scope, memory: Memory, *, reason: str = "update") -> Memory:
        """Replace a visible memory's fields; bumps ``version`` and ``updated_at``."""

    @abstractmethod
    def delete(self, scope: Scope, memory_id: str, *, reason: str) -> None:
        """Delete a visible memory; its audit row (with a snapshot) is written in the same transaction."""

    @abstractmethod
    def list(self, scope: Scope, types: Sequence[str] | None = None, *, limit: int = 100) -> list[Memory]:
        """Visible memories, newest update first."""

    @abstractmethod
    def knn(self, scope: Scope, vector: Vector, k: int, types: Sequence[str] | None = None) -> list[Hit]:
        """Nearest visible memories by cosine similarity (``Hit.similarity`` in [-1, 1]), best first."""

    @abstractmethod
    def lexical(self, scope: Scope, query: str, k: int, types: Sequence[str] | None = None) -> list[Hit]:
        """Visible memories matching any word of ``query``, best BM25 first (``Hit.score`` > 0)."""

    @abstractmethod
    def touch(self, scope: Scope, memory_ids: Sequence[str], when: float) -> None:
        """Record that visible memories were retrieved (staleness clock)."""

    # ------------------------------------------------------------ embeddings
    @abstractmethod
    def pending_embeddings(self, limit: int = 256) -> list[tuple[str, str]]:
        """(id, text) of memories with no vector yet, across scopes (engine/CLI only)."""

    @abstractmethod
    def set_embeddings(self, model_id: str, items: Sequence[tuple[str, Vector]]) -> int:
        """Attach vectors made by ``model_id``; a different model than the DB's is :class:`EmbeddingError`."""

    # ------------------------------------------------------------ events and tasks
    @abstractmethod
    def add_event(self, scope: Scope, event: ExecutionEvent) -> None:
        """Append one execution event (redacted) in the writer's scope."""

    @abstractmethod
    def events(self, scope: Scope, *, session_id: str = "", task_id: str = "", limit: int = 200) -> list[ExecutionEvent]:
        """The scope's events, oldest first, optionally of one session or task."""

    @abstractmethod
    def open_task(self, scope: Scope, task: Task) -> Task:
        """Start a task for (session, agent); an earlier open task of that pair is returned by ``current_task`` no more."""

    @abstractmethod
    def current_task(self, scope: Scope, session_id: str) -> Task | None:
        """The latest open task of this session and agent."""

    @abstractmethod
    def close_task(self, scope: Scope, task_id: str, outcome_id: str, when: float) -> None:
        """Mark a task closed with the outcome that ended it."""

    def close_task_with_outcome(self, scope: Scope, task_id: str, outcome: Memory, when: float, *,
                                reason: str = "task closed") -> Memory:
        """Store the outcome that ended a task and close the task with it; returns the outcome as stored.

        Backends with transactions do both in one (SQLite), so a crash leaves both or neither.
        """
        stored = self.add(scope, outcome, reason=reason)
        self.close_task(scope, task_id, stored.id, when)
        return stored

    @abstractmethod
    def record_injection(self, scope: Scope, session_id: str, event: str, items: Sequence[tuple[str, int]],
                         tokens: int, when: float) -> None:
        """Remember which (memory id, version) were injected in a session, and how many tokens."""

    @abstractmethod
    def injected(self, scope: Scope, session_id: str) -> dict[str, int]:
        """memory id -> version already injected in this session."""

    @abstractmethod
    def injection_log(self, scope: Scope, limit: int = 50) -> list[dict[str, Any]]:
        """The scope's recent injections, newest first.

        Each row: ``session_id``, ``event``, ``items`` (a list of ``[memory id, version]``),
        ``tokens``, ``at``; only the rows recorded by the scope's own project and agent.
        """

    # ------------------------------------------------------------ admin
    @abstractmethod
    def generation(self, scope: Scope) -> int:
        """A number that grows whenever anything visible to ``scope`` is written (cache key)."""

    @abstractmethod
    def stats(self, scope: Scope | None = None) -> dict[str, Any]:
        """Counts by type (and agent); ``None`` means the whole store (admin)."""

    @abstractmethod
    def prune_events(self, scope: Scope, before: float, *, dry_run: bool = False) -> int:
        """Delete the scope's events of closed tasks older than ``before`` (one audit note); returns the count."""

    @abstractmethod
    def note(self, scope: Scope, memory: Memory, action: str, reason: str) -> None:
        """Write an audit row about a visible memory without changing it (e.g. a learning conflict)."""

    @abstractmethod
    def audit_log(self, scope: Scope, limit: int = 100, *, memory_id: str = "", types: Sequence[str] | None = None,
                  actions: Sequence[str] | None = None, with_snapshot: bool = False) -> list[dict[str, Any]]:
        """Recent audit rows of memories in the scope's project, newest first.

        Rows carry ``at, actor, memory_id, type, project_id, agent, action, reason``,
        and ``snapshot`` (the memory as it was before an update or delete, JSON, or
        ``""``) when ``with_snapshot``. ``memory_id``, ``types`` and ``actions`` narrow
        the rows before ``limit`` applies.
        """

    @abstractmethod
    def scopes(self) -> list[ScopeSummary]:
        """Every (project, agent) pair holding memories, events, tasks or injections, sorted (admin).

        The one listing across scopes, for explicit admin faces (the viewer's project and
        agent menus, ``stats`` curves per agent): it names pairs and counts their own
        memories, and returns no memory content.
        """

    @abstractmethod
    def export(self, project_id: str | None = None) -> Iterator[dict[str, Any]]:
        """Every memory (with its vector) as plain dicts; ``None`` exports all projects (admin)."""

    @abstractmethod
    def import_(self, rows: Iterable[dict[str, Any]], *, reason: str = "import") -> int:
        """Insert or replace (when the row's version is newer) exported memories; returns the count written."""

    @abstractmethod
    def close(self) -> None:
        """Release files and connections."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ shared rules
    def check_write(self, scope: Scope, memory: Memory) -> None:
        """Refuse a memory the writer may not write; the one write-side scope rule."""
        reason = None
        if memory.type not in MEMORY_TYPES:
            reason = f"unknown memory type {memory.type!r}"
        elif memory.project_id not in (scope.project_id, ANY) or (
                memory.project_id == ANY and memory.type != "preference"):
            reason = f"project {memory.project_id!r} is outside the writer's project {scope.project_id!r}"
        elif memory.agent not in (scope.agent, ANY) or (memory.agent == ANY and memory.type not in ("preference", "knowledge")):
            reason = f"agent {memory.agent!r} is outside the writer's agent {scope.agent!r}"
        elif memory.type == "preference" and memory.user_id != scope.user_id:
            reason = "a preference belongs to the writing user"
        elif memory.type != "preference" and memory.user_id:
            reason = "only preferences carry a user_id"
        elif memory.type != "preference":
            # the writer's own profile decides, also for memories shared with every agent ("*")
            reason = self.policy.check_write(scope.agent, memory.domain)
        if reason:
            log.warning("write refused: %s (memory %s, type %s)", reason, memory.id, memory.type)
            raise ScopeViolation(f"write refused: {reason}", "write within your own project, agent and domains")

    @staticmethod
    def check_event(scope: Scope, event: ExecutionEvent) -> None:
        if event.project_id != scope.project_id or event.agent != scope.agent:
            log.warning("event write refused: %s/%s outside %s/%s", event.project_id, event.agent,
                        scope.project_id, scope.agent)
            raise ScopeViolation("write refused: event outside the writer's scope")


def redact_memory(memory: Memory) -> Memory:
    """A copy of ``memory`` whose every string field (lists included) is redacted."""
    import dataclasses

    changes: dict[str, Any] = {}
    for f in dataclasses.fields(memory):
        v = getattr(memory, f.name)
        if f.name in ("id", "project_id", "agent", "user_id"):
            continue
        if isinstance(v, str):
            r: Any = redact(v)
        elif isinstance(v, list):
            r = [redact(x) if isinstance(x, str) else x for x in v]
        else:
            continue
        if r != v:
            changes[f.name] = r
    return dataclasses.replace(memory, **changes) if changes else memory

"""The memory model: dataclasses of memories, scopes and slices. No I/O here.

Every stored memory has the common fields of :class:`Memory` (identity, scope,
times, confidence, provenance, version) plus the fields of its type. A store
keeps the common fields in columns and the type's own fields in a payload, so
a new field on a type needs no migration.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

#: ``agent`` or ``project_id`` value meaning "every agent" / "every project of this user".
ANY = "*"
MAIN_AGENT = "main"


def new_id() -> str:
    """A random 128-bit id as 32 hex characters (sortable enough, unique across machines)."""
    return os.urandom(16).hex()


def derived_id(*parts: object) -> str:
    """A 128-bit id determined by ``parts``: the same hook event handled twice makes the same row."""
    import hashlib

    return hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8", "replace")).hexdigest()[:32]


def now() -> float:
    return time.time()


@dataclass(frozen=True)
class Scope:
    """Who is asking: the project, the agent inside it, and the human user.

    A store returns only memories visible to this scope (see ``visible_to``).
    """

    project_id: str
    agent: str = MAIN_AGENT
    user_id: str = ""

    def __post_init__(self) -> None:
        if not self.project_id or self.project_id == ANY:
            raise ValueError("a scope needs a concrete project_id")
        if not self.agent or self.agent == ANY:
            raise ValueError("a scope needs a concrete agent")


@dataclass(frozen=True)
class ScopeSummary:
    """One (project, agent) pair that holds data, as an admin listing names it.

    ``agent`` may be :data:`ANY` (memories shared by every agent of the project) and
    ``project_id`` may be :data:`ANY` (preferences for all of a user's projects).
    ``memories`` counts the memories owned by exactly this pair.
    """

    project_id: str
    agent: str
    memories: int = 0


@dataclass(kw_only=True)
class Memory:
    """Fields every stored memory carries. Subclasses add their own and a ``text``."""

    type: ClassVar[str] = ""

    project_id: str
    agent: str = MAIN_AGENT
    user_id: str = ""
    domain: str = ""
    id: str = field(default_factory=new_id)
    created_at: float = field(default_factory=now)
    updated_at: float = field(default_factory=now)
    confidence: float = 0.5
    pinned: bool = False
    version: int = 1
    origin: str = ""
    source_ids: list[str] = field(default_factory=list)
    last_retrieved: float = 0.0

    @property
    def text(self) -> str:  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    @property
    def search_context(self) -> str:
        """Words that situate this memory: matched by full-text search with it, never embedded or shown."""
        return ""

    def visible_to(self, scope: Scope) -> bool:
        """The one visibility rule, mirrored in SQL by the stores.

        A memory is visible to a scope when it belongs to the scope's project
        (or, for a preference, to every project of that user), to the scope's
        agent or to every agent, and carries no user or the scope's user.
        """
        return (
            self.project_id in (scope.project_id, ANY)
            and self.agent in (scope.agent, ANY)
            and self.user_id in ("", scope.user_id)
        )

    def payload(self) -> dict[str, Any]:
        """The type's own fields (those not on :class:`Memory`)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in _BASE_FIELDS}

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["type"] = self.type
        return d


_BASE_FIELDS = frozenset(f.name for f in dataclasses.fields(Memory))


@dataclass(kw_only=True)
class Heuristic(Memory):
    """'When <condition>, <strategy>', learned from repeated successful outcomes."""

    type: ClassVar[str] = "heuristic"
    condition: str
    strategy: str
    occurrence_count: int = 0
    successes: int = 0
    trials: int = 0
    last_validated: float = field(default_factory=now)
    strategy_key: str = ""

    @property
    def text(self) -> str:
        return f"When {self.condition}: {self.strategy}"


@dataclass(kw_only=True)
class AntiPattern(Memory):
    """'<pattern> fails because <why>; instead <alternative>'."""

    type: ClassVar[str] = "anti_pattern"
    pattern: str
    why: str
    alternative: str = ""
    occurrence_count: int = 0
    last_validated: float = field(default_factory=now)
    strategy_key: str = ""

    @property
    def text(self) -> str:
        tail = f"; instead {self.alternative}" if self.alternative else ""
        return f"{self.pattern} fails because {self.why}{tail}"


@dataclass(kw_only=True)
class Preference(Memory):
    """A standing instruction of one user; ``project_id`` may be ANY for all their projects."""

    type: ClassVar[str] = "preference"
    agent: str = ANY
    category: str = "general"
    preference: str
    source: str = "explicit"

    @property
    def text(self) -> str:
        return self.preference


@dataclass(kw_only=True)
class DomainKnowledge(Memory):
    """A curated fact about the project; only ever stored on explicit request.

    ``context`` optionally situates the fact: the heading or sentence it was
    taken from, the previous turn of a conversation, the file it describes.
    Full-text search matches it (at a lower weight than the fact), so a fact
    that only makes sense after its lead-in ("Yes, we moved it to Fridays")
    is still found by the lead-in's words; it is not embedded (a mixed vector
    would blur the fact's meaning) and never rendered into a slice.
    """

    type: ClassVar[str] = "knowledge"
    agent: str = ANY
    fact: str
    source: str = "curated"
    context: str = ""

    @property
    def text(self) -> str:
        return self.fact

    @property
    def search_context(self) -> str:
        return self.context


@dataclass(kw_only=True)
class Outcome(Memory):
    """How one task ended: what was asked, what was done, whether it worked."""

    type: ClassVar[str] = "outcome"
    task_type: str = ""
    task_description: str
    success: bool
    strategy_used: str = ""
    duration_ms: int = 0
    timestamp: float = field(default_factory=now)
    feedback: str = ""
    session_id: str = ""
    error: str = ""
    failed_strategy: str = ""  # steps that failed before ``strategy_used`` worked

    @property
    def text(self) -> str:
        # the task alone: similar tasks must match whatever strategy each one used
        return self.task_description


MEMORY_TYPES: dict[str, type[Memory]] = {
    cls.type: cls for cls in (Heuristic, AntiPattern, Preference, DomainKnowledge, Outcome)
}
#: The user-facing names accepted by the CLI, mapped to stored type names.
TYPE_ALIASES = {"knowledge": "knowledge", "domain_knowledge": "knowledge", "anti-pattern": "anti_pattern",
                "antipattern": "anti_pattern", **{t: t for t in MEMORY_TYPES}}


def memory_from_dict(d: dict[str, Any]) -> Memory:
    """Rebuild a memory from ``to_dict`` output (unknown keys are an error)."""
    d = dict(d)
    cls = MEMORY_TYPES[d.pop("type")]
    return cls(**d)


@dataclass(kw_only=True)
class ExecutionEvent:
    """One tool call as captured by PostToolUse / PostToolUseFailure."""

    project_id: str
    agent: str = MAIN_AGENT
    session_id: str = ""
    task_id: str = ""
    tool: str
    input_summary: str = ""
    result_summary: str = ""
    ok: bool = True
    error: str = ""
    duration_ms: int = 0
    id: str = field(default_factory=new_id)
    created_at: float = field(default_factory=now)


@dataclass(kw_only=True)
class Task:
    """An open unit of work: a user prompt (main agent) or a delegated subagent task."""

    project_id: str
    agent: str = MAIN_AGENT
    session_id: str
    description: str
    user_id: str = ""
    id: str = field(default_factory=new_id)
    started_at: float = field(default_factory=now)
    closed_at: float = 0.0
    outcome_id: str = ""
    injected_ids: list[str] = field(default_factory=list)


@dataclass
class Hit:
    """A memory found by a search, with the score that ranked it."""

    memory: Memory
    score: float
    similarity: float = 0.0
    relevance: float = 0.0


@dataclass
class SliceItem:
    """One rendered line of a memory slice."""

    memory: Memory
    score: float
    line: str
    tokens: int


@dataclass
class MemorySlice:
    """What is injected: a few memories rendered compactly under a token budget."""

    items: list[SliceItem] = field(default_factory=list)
    budget: int = 1000
    text: str = ""
    tokens: int = 0

    def __bool__(self) -> bool:
        return bool(self.items)

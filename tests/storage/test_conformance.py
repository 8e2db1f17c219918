"""The store conformance suite: one set of behaviours, run against every backend.

Every test takes the ``backend`` fixture (``sqlite``, ``files``) and builds a
fresh store in ``tmp_path``. Vectors here are small deterministic fakes
(one-hot and seeded random unit vectors of 384 dimensions, exact in float32),
so KNN results are known in advance; retrieval quality with the real embedding
model is tested with the retrieval code, not here.

Where a backend departs from the contract in ``storage/base.py``, the test
says so with a strict ``xfail`` naming the backend and the reason, so a fix
turns it into a failure that asks for the marker to go.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import multiprocessing
import random
import stat
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from alma_hooks.config import ScopePolicy
from alma_hooks.errors import AlmaError, EmbeddingError, NotFound, ScopeViolation
from alma_hooks.storage.base import Store
from alma_hooks.storage.files import FileStore
from alma_hooks.storage.sqlite import SQLiteStore
from alma_hooks.types import (ANY, AntiPattern, DomainKnowledge, ExecutionEvent, Heuristic, Memory, Outcome,
                              Preference, Scope, ScopeSummary, Task)

#: "sqlite-warm" is the SQLite store as the warm engine opens it: KNN's coarse pass over codes held in memory.
BACKENDS = ["sqlite", "sqlite-warm", "files"]
TYPES = ["heuristic", "anti_pattern", "preference", "knowledge", "outcome"]
DIM = 384
MODEL = "fake-minilm-384"

# The agent profiles of alma_hooks/defaults.yaml.
AGENTS: dict[str, Any] = {
    "main": {"can_learn": ["coding_workflow", "testing_strategies", "tooling", "debugging", "project_conventions"],
             "cannot_learn": []},
    "helena": {"can_learn": ["testing_strategies", "selector_patterns", "ui_component_patterns", "form_testing",
                             "accessibility_testing"],
               "cannot_learn": ["backend_logic", "database_queries"]},
    "victor": {"can_learn": ["api_testing_patterns", "database_validation", "error_handling", "performance_testing",
                             "authentication_patterns"],
               "cannot_learn": ["frontend_styling", "ui_testing"]},
    "default": {"can_learn": ["testing_strategies", "debugging", "coding_workflow"], "cannot_learn": []},
}
POLICY = ScopePolicy.from_agents(AGENTS)
STRICT_POLICY = ScopePolicy.from_agents({**AGENTS, "default": None})
#: one domain each agent may learn
DOMAIN = {"main": "debugging", "helena": "form_testing", "victor": "api_testing_patterns", "zed": "debugging"}

A, B = "github.com/acme/shop", "github.com/acme/billing"
T0 = 1_700_000_000.0
SECRET = "AKIA" + "IOSFODNN7EXAMPLE"  # AWS's documented example key, built so no scanner flags this file


def make_store(backend: str, root: Path, policy: ScopePolicy = POLICY, actor: str = "test") -> Store:
    if backend.startswith("sqlite"):
        return SQLiteStore(root / "memory.db", policy, actor=actor, warm=backend == "sqlite-warm")
    return FileStore(root, policy, actor=actor)


@pytest.fixture(params=BACKENDS, ids=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def store(backend: str, store_dir: Path):
    s = make_store(backend, store_dir)
    yield s
    s.close()


def xfail_on(request: pytest.FixtureRequest, backend: str, which: str, reason: str) -> None:
    if backend == which:
        request.applymarker(pytest.mark.xfail(strict=True, reason=f"{which}: {reason}"))


# ---------------------------------------------------------------- builders

def S(project: str = A, agent: str = "main", user: str = "u1") -> Scope:
    return Scope(project, agent, user)


TEXT_FIELD = {"heuristic": "condition", "anti_pattern": "pattern", "preference": "preference",
              "knowledge": "fact", "outcome": "task_description"}


def new(mtype: str, text: str, *, project: str = A, agent: str | None = None, user: str = "",
        domain: str | None = None, **kw: Any) -> Memory:
    """A memory of ``mtype`` whose text contains ``text``."""
    common: dict[str, Any] = {"project_id": project, **kw}
    if mtype == "heuristic":
        agent = agent or "main"
        return Heuristic(**common, agent=agent, domain=DOMAIN.get(agent, "") if domain is None else domain,
                         condition=text, strategy="run the narrowest test first", occurrence_count=3, successes=3,
                         trials=4)
    if mtype == "anti_pattern":
        agent = agent or "main"
        return AntiPattern(**common, agent=agent, domain=DOMAIN.get(agent, "") if domain is None else domain,
                           pattern=text, why="it hides the failure", alternative="assert on the message")
    if mtype == "preference":
        return Preference(**common, agent=agent or ANY, user_id=user, domain=domain or "", preference=text,
                          category="style")
    if mtype == "knowledge":
        return DomainKnowledge(**common, agent=agent or ANY, domain=domain or "", fact=text)
    if mtype == "outcome":
        agent = agent or "main"
        common.setdefault("source_ids", ["ev1", "ev2"])
        return Outcome(**common, agent=agent, domain=DOMAIN.get(agent, "") if domain is None else domain,
                       task_description=text, success=True, strategy_used="bisect", duration_ms=1200,
                       session_id="s1")
    raise AssertionError(mtype)


def onehot(i: int, j: int | None = None, w: float = 0.0) -> list[float]:
    """e_i (+ w * e_j), normalised."""
    v = [0.0] * DIM
    v[i] = 1.0
    if j is not None:
        v[j] = w
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


@functools.lru_cache(maxsize=None)
def _rand_unit(seed: int) -> tuple[float, ...]:
    rng = random.Random(seed)
    v = [rng.gauss(0.0, 1.0) for _ in range(DIM)]
    n = math.sqrt(sum(x * x for x in v))
    return struct.unpack(f"<{DIM}f", struct.pack(f"<{DIM}f", *(x / n for x in v)))


def rand_unit(seed: int) -> list[float]:
    """A seeded random unit vector, rounded to float32 so every backend stores it exactly."""
    return list(_rand_unit(seed))


def ids(items: list[Any]) -> set[str]:
    return {(x.memory if hasattr(x, "memory") else x).id for x in items}


def raw_audit(store: Store) -> list[dict[str, Any]]:
    """Every audit row as stored, oldest first, with its snapshot parsed (not part of the contract)."""
    if isinstance(store, SQLiteStore):
        rows = store.conn.execute("SELECT memory_id, action, reason, snapshot FROM audit ORDER BY rid").fetchall()
    else:
        recs = [json.loads(line) for line in (store.directory / "audit.jsonl").read_text().splitlines()]
        rows = [(r["memory_id"], r["action"], r["reason"], r["snapshot"]) for r in recs]
    return [{"memory_id": m, "action": a, "reason": r, "snapshot": json.loads(s) if s else None}
            for m, a, r, s in rows]


def raw_files(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


# ---------------------------------------------------------------- round trips

@pytest.mark.parametrize("mtype", TYPES, ids=TYPES)
def test_add_get_update_delete_round_trip(store: Store, mtype: str) -> None:
    scope = S()
    m = new(mtype, "forms with many required fields", user="u1", created_at=T0, updated_at=T0, confidence=0.6)
    stored = store.add(scope, m, reason="learned")
    assert stored.to_dict() == m.to_dict()
    got = store.get(scope, m.id)
    assert type(got) is type(m) and got.to_dict() == m.to_dict()
    assert store.list(scope) == [got]

    changed = dataclasses.replace(got, **{TEXT_FIELD[mtype]: "forms with one field"}, confidence=0.9)
    updated = store.update(scope, changed, reason="validated")
    assert updated.version == 2 and updated.updated_at > T0 and updated.created_at == T0
    assert updated.confidence == 0.9 and "one field" in updated.text
    assert store.get(scope, m.id).to_dict() == updated.to_dict()

    store.delete(scope, m.id, reason="user asked")
    with pytest.raises(NotFound):
        store.get(scope, m.id)
    assert store.list(scope) == []
    with pytest.raises(NotFound):
        store.update(scope, updated)
    with pytest.raises(NotFound):
        store.delete(scope, m.id, reason="twice")

    log = store.audit_log(scope)
    assert [(r["action"], r["memory_id"], r["reason"]) for r in log] == [
        ("delete", m.id, "user asked"), ("update", m.id, "validated"), ("create", m.id, "learned")]
    assert all(r["actor"] == "test" and r["type"] == mtype and r["project_id"] == A for r in log)
    raw = raw_audit(store)
    assert [r["action"] for r in raw] == ["create", "update", "delete"]
    assert raw[1]["snapshot"] == m.to_dict()  # the state before the update
    assert raw[2]["snapshot"] == updated.to_dict()  # what was deleted, restorable


def test_returned_memories_are_copies(store: Store) -> None:
    scope = S()
    m = store.add(scope, new("outcome", "copy check"))
    got = store.get(scope, m.id)
    got.source_ids.append("tampered")
    got.confidence = 0.01
    assert store.get(scope, m.id).to_dict() == m.to_dict()


def test_add_existing_id_is_refused(request: pytest.FixtureRequest, backend: str, store: Store) -> None:
    scope = S()
    m = store.add(scope, new("heuristic", "first"))
    with pytest.raises(AlmaError):
        store.add(scope, dataclasses.replace(m, condition="second"))
    assert store.get(scope, m.id).text == m.text


def test_two_store_objects_see_each_others_writes(backend: str, store_dir: Path) -> None:
    one, two = make_store(backend, store_dir), make_store(backend, store_dir)
    try:
        m = one.add(S(), new("heuristic", "shared file"))
        assert two.get(S(), m.id).to_dict() == m.to_dict()
        two.update(S(), dataclasses.replace(m, strategy="changed"))
        assert one.get(S(), m.id).version == 2
        two.delete(S(), m.id, reason="gone")
        assert one.list(S()) == []
    finally:
        one.close()
        two.close()


def test_store_files_are_private(store: Store, store_dir: Path) -> None:
    store.add(S(), new("heuristic", "private files"))
    store.add_event(S(), ExecutionEvent(project_id=A, tool="Bash"))
    assert stat.S_IMODE(store_dir.stat().st_mode) == 0o700
    for path in raw_files(store_dir):
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path


# ---------------------------------------------------------------- generation, list

def test_generation_grows_on_writes_to_the_scope_only(store: Store) -> None:
    a_main, a_helena, b_main = S(A, "main"), S(A, "helena"), S(B, "main")

    def gens() -> tuple[int, int, int]:
        return store.generation(a_main), store.generation(a_helena), store.generation(b_main)

    g0 = gens()
    h = store.add(a_main, new("heuristic", "a main"))
    g1 = gens()
    assert g1[0] > g0[0] and g1[1:] == g0[1:]
    store.update(a_main, dataclasses.replace(h, strategy="other"))
    g2 = gens()
    assert g2[0] > g1[0] and g2[1:] == g1[1:]
    store.add(b_main, new("heuristic", "b main", project=B))
    g3 = gens()
    assert g3[0] == g2[0] and g3[1] == g2[1] and g3[2] > g2[2]
    store.add(a_main, new("knowledge", "shared fact"))  # agent "*": every agent of project A sees it
    g4 = gens()
    assert g4[0] > g3[0] and g4[1] > g3[1] and g4[2] == g3[2]
    store.add(a_main, new("preference", "no emojis", project=ANY, user="u1"))  # every project of u1
    g5 = gens()
    assert all(after > before for after, before in zip(g5, g4))
    store.delete(a_main, h.id, reason="gone")
    g6 = gens()
    assert g6[0] > g5[0] and g6[2] == g5[2]


def test_list_is_newest_first_with_type_filter_and_limit(store: Store) -> None:
    scope = S()
    made = [store.add(scope, new(t, f"item {i}", user="u1", updated_at=T0 + i))
            for i, t in enumerate(["heuristic", "anti_pattern", "heuristic", "outcome", "heuristic"])]
    assert [m.id for m in store.list(scope)] == [m.id for m in reversed(made)]
    assert [m.id for m in store.list(scope, ["heuristic"])] == [made[4].id, made[2].id, made[0].id]
    assert [m.id for m in store.list(scope, ["heuristic", "outcome"], limit=2)] == [made[4].id, made[3].id]
    assert store.list(scope, ["preference"]) == []
    updated = store.update(scope, dataclasses.replace(made[0], strategy="moved to front"))
    assert store.list(scope, limit=1) == [updated]


# ---------------------------------------------------------------- search

def test_knn_nearest_first_and_respects_types(store: Store) -> None:
    scope = S()
    h0 = store.add(scope, new("heuristic", "h0"))
    h1 = store.add(scope, new("heuristic", "h1"))
    h2 = store.add(scope, new("heuristic", "h2"))
    ap = store.add(scope, new("anti_pattern", "ap"))
    pending = store.add(scope, new("outcome", "no vector yet"))
    assert store.set_embeddings(MODEL, [(h0.id, onehot(0)), (h1.id, onehot(1)), (h2.id, onehot(2)),
                                        (ap.id, onehot(0, 3, 0.5))]) == 4
    query = onehot(0, 1, 0.5)  # nearest: h0 (0.894), then ap (0.8), then h1 (0.447), h2 (0)

    hits = store.knn(scope, query, 2, ["heuristic"])
    assert [h.memory.id for h in hits] == [h0.id, h1.id]
    assert hits[0].similarity == pytest.approx(2 / math.sqrt(5), abs=1e-5)
    assert hits[1].similarity == pytest.approx(1 / math.sqrt(5), abs=1e-5)
    assert all(h.memory.type == "heuristic" for h in hits)

    everything = store.knn(scope, query, 10)
    assert [h.memory.id for h in everything] == [h0.id, ap.id, h1.id, h2.id]
    assert pending.id not in ids(everything)
    assert [h.similarity for h in everything] == sorted((h.similarity for h in everything), reverse=True)
    assert [h.memory.id for h in store.knn(scope, query, 1)] == [h0.id]
    assert [h.memory.id for h in store.knn(scope, query, 5, ["anti_pattern"])] == [ap.id]
    assert store.knn(scope, query, 5, ["outcome"]) == []
    # bytes in the pinned little-endian float32 layout are a vector too
    assert store.knn(scope, struct.pack(f"<{DIM}f", *onehot(2)), 1, ["heuristic"])[0].memory.id == h2.id


LEXICAL_TEXTS = {
    "selectors": "playwright selectors need stable test ids",
    "apostrophe": "it's fine to retry flaky network calls",
    "operators": 'quote "AND" OR NOT* operators carefully',
    "colon": "the foo:bar config key",
    "other": "nothing relevant here",
}


@pytest.mark.parametrize("query, expected", [
    ("selectors", "selectors"),
    ("it's", "apostrophe"),
    ('"AND" OR NOT*', "operators"),
    ("foo:bar", "colon"),
    ("PLAYWRIGHT Stable", "selectors"),
], ids=["word", "apostrophe", "fts-operators", "column-filter", "case-insensitive"])
def test_lexical_finds_by_words(store: Store, query: str, expected: str) -> None:
    scope = S()
    made = {k: store.add(scope, new("heuristic", text)) for k, text in LEXICAL_TEXTS.items()}
    hits = store.lexical(scope, query, 3)
    assert hits and hits[0].memory.id == made[expected].id
    assert all(h.score > 0 for h in hits)
    assert made["other"].id not in ids(hits)
    assert store.lexical(scope, query, 3, ["outcome"]) == []


@pytest.mark.parametrize("query", [
    "", "   ", "it's", '"AND" OR NOT*', "foo:bar", "(((", ")", '"unbalanced', "NEAR(a b, 3)", "text:*", "-x",
    "^start", "a AND", "*", "{x y}: z", "x'); DROP TABLE memories; --", "ünïcödé wörds",
], ids=["empty", "blank", "apostrophe", "operators", "colon", "parens", "close-paren", "quote", "near",
        "column-star", "minus", "caret", "dangling-and", "star", "braces", "sql", "unicode"])
def test_lexical_survives_hostile_queries(store: Store, query: str) -> None:
    scope = S()
    store.add(scope, new("heuristic", "x marks it's spot foo bar start text"))
    hits = store.lexical(scope, query, 5)
    assert isinstance(hits, list) and all(h.score > 0 for h in hits)
    assert len(store.list(scope)) == 1


def test_lexical_sees_updated_text_and_not_deleted(store: Store) -> None:
    scope = S()
    m = store.add(scope, new("heuristic", "walrus"))
    assert ids(store.lexical(scope, "walrus", 5)) == {m.id}
    store.update(scope, dataclasses.replace(m, condition="narwhal"))
    assert store.lexical(scope, "walrus", 5) == []
    assert ids(store.lexical(scope, "narwhal", 5)) == {m.id}
    store.delete(scope, m.id, reason="gone")
    assert store.lexical(scope, "narwhal", 5) == []


def test_touch_records_retrieval_in_scope_only(store: Store) -> None:
    mine = store.add(S(A, "helena"), new("heuristic", "mine", agent="helena"))
    theirs = store.add(S(A, "victor"), new("heuristic", "theirs", agent="victor"))
    store.touch(S(A, "helena"), [mine.id, theirs.id], T0 + 5)
    assert store.get(S(A, "helena"), mine.id).last_retrieved == T0 + 5
    assert store.get(S(A, "victor"), theirs.id).last_retrieved == 0.0


# ---------------------------------------------------------------- embeddings

def test_pending_and_set_embeddings(store: Store) -> None:
    scope = S()
    a, b, c = (store.add(scope, new("heuristic", t)) for t in ("alpha", "beta", "gamma"))
    assert set(store.pending_embeddings()) == {(a.id, a.text), (b.id, b.text), (c.id, c.text)}
    assert len(store.pending_embeddings(limit=2)) == 2
    assert store.set_embeddings(MODEL, [(a.id, onehot(0)), ("no-such-id", onehot(1))]) == 1
    assert {i for i, _ in store.pending_embeddings()} == {b.id, c.id}
    assert store.stats(scope)["embedding_model"] == MODEL

    with pytest.raises(EmbeddingError):
        store.set_embeddings("another-model", [(b.id, onehot(1))])
    with pytest.raises(EmbeddingError):
        store.set_embeddings(MODEL, [(b.id, [0.5] * 5)])
    assert {i for i, _ in store.pending_embeddings()} == {b.id, c.id}

    store.set_embeddings(MODEL, [(b.id, struct.pack(f"<{DIM}f", *onehot(1)))])
    assert ids(store.knn(scope, onehot(1), 1)) == {b.id}
    # a new text needs a new vector; other changes keep it
    store.update(scope, dataclasses.replace(a, confidence=0.99))
    assert ids(store.knn(scope, onehot(0), 1)) == {a.id}
    store.update(scope, dataclasses.replace(b, condition="beta, reworded"))
    assert b.id in {i for i, _ in store.pending_embeddings()}
    assert b.id not in ids(store.knn(scope, onehot(1), 5))


def test_knn_query_of_the_wrong_width_is_an_embedding_error(request: pytest.FixtureRequest, backend: str,
                                                           store: Store) -> None:
    m = store.add(S(), new("heuristic", "h"))
    store.set_embeddings(MODEL, [(m.id, onehot(0))])
    with pytest.raises(EmbeddingError):
        store.knn(S(), [1.0, 0.0], 3)


def test_a_zero_vector_never_breaks_knn(request: pytest.FixtureRequest, backend: str, store: Store) -> None:
    zero, unit = store.add(S(), new("heuristic", "zero")), store.add(S(), new("heuristic", "unit"))
    store.set_embeddings(MODEL, [(zero.id, [0.0] * DIM), (unit.id, onehot(0))])
    hits = store.knn(S(), onehot(0), 5)
    assert hits[0].memory.id == unit.id
    assert all(-1.0 <= h.similarity <= 1.0 for h in hits)
    assert all(-1.0 <= h.similarity <= 1.0 for h in store.knn(S(), [0.0] * DIM, 5))


def test_new_vectors_bump_the_generation(request: pytest.FixtureRequest, backend: str, store: Store) -> None:
    scope = S()
    m = store.add(scope, new("heuristic", "embed me"))
    before = store.generation(scope)
    store.set_embeddings(MODEL, [(m.id, onehot(0))])
    assert store.generation(scope) > before


# ---------------------------------------------------------------- events, tasks, injections

def test_events_by_session_and_task(store: Store) -> None:
    scope = S()

    def ev(i: int, session: str, task: str, at: float) -> ExecutionEvent:
        return ExecutionEvent(project_id=A, session_id=session, task_id=task, tool="Bash", input_summary=f"cmd {i}",
                              result_summary="done", ok=i % 2 == 0, error="" if i % 2 == 0 else "boom",
                              duration_ms=10 * i, created_at=at, id=f"e{i}")

    e0, e1 = ev(0, "s1", "", T0), ev(1, "s1", "t1", T0 + 1)
    e2, e3 = ev(2, "s1", "t2", T0 + 2), ev(3, "s2", "t1", T0 + 3)
    # e0 is the oldest but written last: the order comes from created_at, not from the order of writes
    for e in (e1, e2, e3, e0):
        store.add_event(scope, e)
    store.add_event(scope, dataclasses.replace(e1, tool="Duplicate"))  # the same id again: kept once
    assert store.events(scope) == [e0, e1, e2, e3]
    assert store.events(scope, session_id="s1") == [e0, e1, e2]
    assert store.events(scope, task_id="t1") == [e1, e3]
    assert store.events(scope, session_id="s1", task_id="t1") == [e1]
    assert store.events(scope, limit=2) == [e0, e1]
    assert store.events(scope, session_id="nope") == []
    assert store.stats(scope)["events"] == 4


def test_tasks_open_current_close(store: Store) -> None:
    scope = S()
    t1 = Task(project_id=A, session_id="s1", description="fix the login form", started_at=T0)
    opened = store.open_task(scope, t1)
    assert opened.user_id == "u1"
    assert store.current_task(scope, "s1") == opened
    assert store.current_task(scope, "s2") is None
    assert store.current_task(S(A, "helena"), "s1") is None
    t2 = store.open_task(scope, Task(project_id=A, session_id="s1", description="then the signup", started_at=T0 + 1))
    assert store.current_task(scope, "s1") == t2
    store.close_task(scope, t2.id, "outcome-2", T0 + 2)
    current = store.current_task(scope, "s1")
    assert current is None or current.id != t2.id
    t3 = store.open_task(scope, Task(project_id=A, session_id="s1", description="third", started_at=T0 + 3))
    assert store.current_task(scope, "s1") == t3
    store.close_task(scope, t3.id, "outcome-3", T0 + 4)
    assert (store.current_task(scope, "s1") or t1).id != t3.id


def test_closing_the_latest_task_does_not_revive_a_superseded_one(
        request: pytest.FixtureRequest, backend: str, store: Store) -> None:
    scope = S()
    store.open_task(scope, Task(project_id=A, session_id="s1", description="interrupted", started_at=T0))
    t2 = store.open_task(scope, Task(project_id=A, session_id="s1", description="next", started_at=T0 + 1))
    store.close_task(scope, t2.id, "outcome", T0 + 2)
    assert store.current_task(scope, "s1") is None


def test_a_closed_task_is_never_reopened(store: Store) -> None:
    """The same prompt handled again (spool replay, engine and hook both) must not detach it from its outcome."""
    scope = S()
    task = store.open_task(scope, Task(id="task-1", project_id=A, session_id="s1", description="fix the cart",
                                       started_at=T0))
    outcome = store.close_task_with_outcome(scope, task.id, new("outcome", "fixed the cart", id=task.id), T0 + 1)
    again = store.open_task(scope, Task(id="task-1", project_id=A, session_id="s1", description="fix the cart",
                                        started_at=T0 + 2))
    assert again.closed_at == T0 + 1 and again.outcome_id == outcome.id
    assert store.current_task(scope, "s1") is None


def test_close_task_with_outcome_stores_both(store: Store) -> None:
    scope = S()
    task = store.open_task(scope, Task(project_id=A, session_id="s1", description="ship it", started_at=T0))
    outcome = store.close_task_with_outcome(scope, task.id, new("outcome", "shipped", id=task.id), T0 + 1)
    assert store.get(scope, task.id).id == outcome.id and store.current_task(scope, "s1") is None
    with pytest.raises(ScopeViolation):  # the writer's scope rules apply to the outcome as to add()
        store.close_task_with_outcome(scope, task.id, new("outcome", "x", project=B), T0 + 2)


def test_injections_latest_version_per_id(store: Store) -> None:
    scope = S()
    store.record_injection(scope, "s1", "SessionStart", [("m1", 1), ("m2", 1)], 50, T0)
    store.record_injection(scope, "s1", "UserPromptSubmit", [("m1", 2), ("m3", 4)], 30, T0 + 1)
    store.record_injection(scope, "s2", "SessionStart", [("m9", 1)], 10, T0 + 2)
    assert store.injected(scope, "s1") == {"m1": 2, "m2": 1, "m3": 4}
    assert store.injected(scope, "s2") == {"m9": 1}
    assert store.injected(scope, "s3") == {}


def test_injection_log_newest_first_of_the_scope_only(store: Store) -> None:
    scope = S()
    store.record_injection(scope, "s1", "SessionStart", [("m1", 1), ("m2", 1)], 50, T0)
    store.record_injection(scope, "s2", "UserPromptSubmit", [("m3", 4)], 30, T0 + 5)
    store.record_injection(scope, "s1", "UserPromptSubmit", [("m1", 2)], 20, T0 + 1)
    store.record_injection(S(agent="helena"), "s1", "SubagentStart", [("h1", 1)], 10, T0 + 9)
    store.record_injection(S(B), "s1", "SessionStart", [("b1", 1)], 10, T0 + 9)
    log = store.injection_log(scope)
    assert [(r["session_id"], r["event"], r["tokens"], r["at"]) for r in log] == [
        ("s2", "UserPromptSubmit", 30, T0 + 5), ("s1", "UserPromptSubmit", 20, T0 + 1),
        ("s1", "SessionStart", 50, T0)]
    assert log[2]["items"] == [["m1", 1], ["m2", 1]]
    assert [r["at"] for r in store.injection_log(scope, limit=1)] == [T0 + 5]
    assert [r["items"] for r in store.injection_log(S(agent="helena"))] == [[["h1", 1]]]
    assert store.injection_log(S(agent="victor")) == []


def test_audit_log_filters_and_snapshots(store: Store) -> None:
    scope = S()
    h = store.add(scope, new("heuristic", "filtered", confidence=0.4))
    h2 = store.update(scope, dataclasses.replace(h, confidence=0.6), reason="reinforced")
    store.update(scope, dataclasses.replace(h2, confidence=0.8), reason="reinforced")
    k = store.add(scope, new("knowledge", "another"))
    store.delete(scope, k.id, reason="outdated")
    rows = store.audit_log(scope, memory_id=h.id, with_snapshot=True)
    assert [r["action"] for r in rows] == ["update", "update", "create"]
    assert [json.loads(r["snapshot"])["confidence"] for r in rows[:2]] == [0.6, 0.4]  # the state before each update
    assert rows[2]["snapshot"] == ""
    assert "snapshot" not in store.audit_log(scope)[0]
    assert [r["memory_id"] for r in store.audit_log(scope, types=["knowledge"])] == [k.id, k.id]
    deleted = store.audit_log(scope, actions=["delete"], with_snapshot=True)
    assert [r["memory_id"] for r in deleted] == [k.id] and json.loads(deleted[0]["snapshot"])["fact"] == "another"
    assert [r["action"] for r in store.audit_log(scope, types=["heuristic"], actions=["create", "delete"])] == [
        "create"]
    assert len(store.audit_log(scope, limit=2, memory_id=h.id)) == 2
    assert store.audit_log(S(agent="helena"), memory_id=h.id) == []


def test_scopes_lists_every_pair_that_holds_data(store: Store) -> None:
    assert store.scopes() == []
    store.add(S(), new("heuristic", "one"))
    store.add(S(), new("heuristic", "two"))
    store.add(S(), new("knowledge", "shared"))
    store.add(S(), new("preference", "everywhere", project=ANY, user="u1"))
    store.add_event(S(agent="helena"), ExecutionEvent(project_id=A, agent="helena", tool="Bash"))
    store.open_task(S(B, "victor"), Task(project_id=B, agent="victor", session_id="s", description="t"))
    store.record_injection(S(B, "zed"), "s", "SessionStart", [("x", 1)], 5, T0)
    assert store.scopes() == [ScopeSummary(ANY, ANY, 1), ScopeSummary(B, "victor", 0), ScopeSummary(B, "zed", 0),
                              ScopeSummary(A, ANY, 1), ScopeSummary(A, "helena", 0), ScopeSummary(A, "main", 2)]


def test_stats(store: Store) -> None:
    scope = S()
    h1 = store.add(scope, new("heuristic", "one"))
    store.add(scope, new("heuristic", "two"))
    store.add(scope, new("knowledge", "fact"))
    store.add(scope, new("preference", "terse", user="u1"))
    store.add(S(B), new("outcome", "elsewhere", project=B))
    store.add_event(scope, ExecutionEvent(project_id=A, tool="Bash"))
    store.set_embeddings(MODEL, [(h1.id, onehot(0))])
    s = store.stats(scope)
    assert s["memories"] == 4
    assert s["by_type"] == {"heuristic": 2, "knowledge": 1, "preference": 1}
    assert s["by_agent"] == {"main": 2, "*": 2}
    assert s["pending_embeddings"] == 3 and s["events"] == 1 and s["embedding_model"] == MODEL
    assert s["db_bytes"] > 0 and isinstance(s["schema_version"], int) and s["db_path"]
    everything = store.stats()
    assert everything["memories"] == 5 and everything["by_type"]["outcome"] == 1 and everything["events"] == 1


# ---------------------------------------------------------------- export / import

def _populate_for_export(store: Store) -> None:
    main, helena = S(A, "main", "u1"), S(A, "helena", "u1")
    made = [store.add(main, new("heuristic", "export heuristic", created_at=T0, updated_at=T0)),
            store.add(helena, new("anti_pattern", "export anti", agent="helena")),
            store.add(main, new("preference", "export pref", project=ANY, user="u1")),
            store.add(main, new("knowledge", "export fact", domain="project_conventions")),
            store.add(main, new("outcome", "export outcome")),
            store.add(S(B), new("heuristic", "other project", project=B))]
    store.set_embeddings(MODEL, [(m.id, rand_unit(i)) for i, m in enumerate(made) if i != 4])
    store.update(main, dataclasses.replace(made[0], confidence=0.8))  # version 2, vector kept
    store.touch(main, [made[3].id], T0 + 9)


@pytest.mark.parametrize("target", BACKENDS, ids=[f"into-{b}" for b in BACKENDS])
def test_export_import_round_trip(store: Store, tmp_path: Path, target: str) -> None:
    _populate_for_export(store)
    rows = list(store.export())
    assert len(rows) == 6
    assert sum(r["embedding"] is not None for r in rows) == 5
    for r in rows:
        assert r["embedding_model"] == (MODEL if r["embedding"] is not None else None)
        assert {"id", "type", "project_id", "version", "embedding", "embedding_model"} <= set(r)
    json.dumps(rows)  # plain data
    fresh = make_store(target, tmp_path / f"import-{target}")
    try:
        assert fresh.import_(json.loads(json.dumps(rows))) == 6
        again = list(fresh.export())
        assert sorted(again, key=lambda d: d["id"]) == sorted(rows, key=lambda d: d["id"])
        assert all(r["action"] == "import" for r in fresh.audit_log(S(A, "main", "u1")))
        heuristic = next(r for r in rows if r["type"] == "heuristic" and r["project_id"] == A)
        hits = fresh.knn(S(A, "main", "u1"), heuristic["embedding"], 1)
        assert hits[0].memory.id == heuristic["id"] and hits[0].similarity == pytest.approx(1.0, abs=1e-5)
        assert [m["project_id"] for m in fresh.export(B)] == [B]
    finally:
        fresh.close()


def test_import_skips_older_and_equal_versions(store: Store) -> None:
    scope = S()
    m = store.add(scope, new("heuristic", "original"))
    m = store.update(scope, dataclasses.replace(m, strategy="second"))  # version 2
    row = next(store.export())
    assert row["version"] == 2
    older = {**row, "version": 1, "condition": "older text"}
    assert store.import_([older]) == 0
    assert store.import_([{**row, "condition": "same version"}]) == 0
    assert store.get(scope, m.id).condition == "original"
    newer = {**row, "version": 5, "condition": "newer text"}
    assert store.import_([newer]) == 1
    got = store.get(scope, m.id)
    assert got.condition == "newer text" and got.version == 5


# ---------------------------------------------------------------- scope: the populated world

PROJECTS = (A, B)
AGENT_NAMES = ("main", "helena", "victor")
USERS = ("u1", "u2")
READ_SCOPES = [S(p, a, u) for p in PROJECTS for a in (*AGENT_NAMES, "zed") for u in USERS]
SCOPE_IDS = [f"{'A' if s.project_id == A else 'B'}-{s.agent}-{s.user_id}" for s in READ_SCOPES]


@dataclasses.dataclass
class World:
    backend: str
    store: Store
    owners: dict[str, tuple[str, str, str]]  # memory id -> (project, agent, user)
    memories: dict[str, Memory]
    tasks: dict[tuple[str, str], str]  # (project, agent) -> task id
    query: list[float]

    def expected(self, scope: Scope, types: list[str] | None = None) -> set[str]:
        """Ids ``scope`` may read: written out here, independent of ``Memory.visible_to``."""
        out = set()
        for mid, (p, a, u) in self.owners.items():
            if types and self.memories[mid].type not in types:
                continue
            if p in (scope.project_id, ANY) and a in (scope.agent, ANY) and u in ("", scope.user_id):
                out.add(mid)
        return out

    def owned_by(self, **kw: str) -> set[str]:
        keys = {"project": 0, "agent": 1, "user": 2}
        return {mid for mid, o in self.owners.items() if all(o[keys[k]] == v for k, v in kw.items())}

    def of_type(self, mtype: str) -> set[str]:
        return {mid for mid, m in self.memories.items() if m.type == mtype}


def build_world(store: Store, backend: str = "") -> World:
    written: list[tuple[Scope, Memory]] = []
    for p in PROJECTS:
        for a in AGENT_NAMES:
            for mtype in ("heuristic", "anti_pattern", "outcome"):
                written.append((S(p, a), new(mtype, f"zebra {mtype} of {a} in {p}", project=p, agent=a)))
            written.append((S(p, a), new("knowledge", f"zebra fact only {a} reads in {p}", project=p, agent=a,
                                         domain=DOMAIN[a])))
        written.append((S(p, "main"), new("knowledge", f"zebra shared fact of {p}", project=p)))
        for u in USERS:
            written.append((S(p, "main", u), new("preference", f"zebra {u} likes this in {p}", project=p, user=u)))
    for u in USERS:
        written.append((S(A, "main", u), new("preference", f"zebra {u} likes this everywhere", project=ANY, user=u)))
    # a preference for one agent in one project
    written.append((S(A, "helena", "u1"), new("preference", "zebra u1 tells helena", agent="helena", user="u1")))

    memories: dict[str, Memory] = {}
    owners: dict[str, tuple[str, str, str]] = {}
    for scope, m in written:
        stored = store.add(scope, m)
        memories[stored.id] = stored
        owners[stored.id] = (stored.project_id, stored.agent, stored.user_id)
    store.set_embeddings(MODEL, [(mid, rand_unit(i)) for i, mid in enumerate(memories)])

    tasks = {}
    for p in PROJECTS:
        for a in AGENT_NAMES:
            scope = S(p, a)
            for i in range(2):
                store.add_event(scope, ExecutionEvent(project_id=p, agent=a, session_id="s1",
                                                      task_id=f"task-{p}-{a}", tool="Bash",
                                                      input_summary=f"{a} ran {i}"))
            t = store.open_task(scope, Task(project_id=p, agent=a, session_id="s1", description=f"{a} task"))
            tasks[(p, a)] = t.id
            mine = [mid for mid, o in owners.items() if o[:2] == (p, a)]
            store.record_injection(scope, "s1", "UserPromptSubmit", [(mid, 1) for mid in mine], 40, T0)
    return World(backend, store, owners, memories, tasks, rand_unit(10_000))


@pytest.fixture
def world(backend: str, store: Store) -> World:
    """A populated store for tests that write to it."""
    return build_world(store, backend)


@pytest.fixture(scope="module", params=BACKENDS, ids=BACKENDS)
def shared_world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """The same populated store, built once per backend, for tests that only read."""
    store = make_store(request.param, tmp_path_factory.mktemp(f"world-{request.param}"))
    yield build_world(store, request.param)
    store.close()


def test_world_has_what_the_scope_tests_need(shared_world: World) -> None:
    world = shared_world
    assert len(world.memories) == 2 * (3 * 4 + 1 + 2) + 2 + 1
    assert world.store.stats()["memories"] == len(world.memories)


@pytest.mark.parametrize("scope", READ_SCOPES, ids=SCOPE_IDS)
def test_reads_return_only_the_callers_scope(shared_world: World, scope: Scope) -> None:
    world = shared_world
    store, expected = world.store, world.expected(scope)

    for mid in world.memories:
        if mid in expected:
            assert store.get(scope, mid).id == mid
        else:
            with pytest.raises(NotFound):
                store.get(scope, mid)

    assert ids(store.list(scope, limit=1000)) == expected
    assert ids(store.knn(scope, world.query, 1000)) == expected
    assert ids(store.lexical(scope, "zebra", 1000)) == expected
    for mtype in TYPES:
        want = world.expected(scope, [mtype])
        assert ids(store.list(scope, [mtype], limit=1000)) == want, mtype
        assert ids(store.knn(scope, world.query, 1000, [mtype])) == want, mtype
        assert ids(store.lexical(scope, "zebra", 1000, [mtype])) == want, mtype

    stats = store.stats(scope)
    assert stats["memories"] == len(expected)
    assert stats["by_type"] == {t: n for t in TYPES if (n := len(world.expected(scope, [t])))}

    own_pair = (scope.project_id, scope.agent)
    events = store.events(scope, session_id="s1")
    assert all((e.project_id, e.agent) == own_pair for e in events)
    assert len(events) == (2 if scope.agent != "zed" else 0) == stats["events"]
    for (p, a), _ in world.tasks.items():
        if (p, a) != own_pair:
            assert store.events(scope, task_id=f"task-{p}-{a}") == []

    task = store.current_task(scope, "s1")
    if scope.agent == "zed":
        assert task is None
    else:
        assert task is not None and task.id == world.tasks[own_pair]

    injected = store.injected(scope, "s1")
    assert set(injected) == {mid for mid, o in world.owners.items() if o[:2] == own_pair}

    for row in store.audit_log(scope, limit=1000, with_snapshot=True):
        assert row["project_id"] in (scope.project_id, ANY) and row["agent"] in (scope.agent, ANY)
    for mid in world.memories:  # a memory's history is readable only where the memory is
        rows = store.audit_log(scope, memory_id=mid, with_snapshot=True)
        assert bool(rows) == (mid in expected), mid

    log = store.injection_log(scope, limit=1000)
    assert len(log) == (1 if scope.agent != "zed" else 0)
    assert {mid for r in log for mid, _ in r["items"]} == set(injected)


def test_scopes_name_every_pair_of_the_world(shared_world: World) -> None:
    world = shared_world
    owned: dict[tuple[str, str], int] = {}
    for p, a, _ in world.owners.values():
        owned[(p, a)] = owned.get((p, a), 0) + 1
    pairs = set(owned) | set(world.tasks)
    assert world.store.scopes() == [ScopeSummary(p, a, owned.get((p, a), 0)) for p, a in sorted(pairs)]


@pytest.mark.parametrize("scope", READ_SCOPES, ids=SCOPE_IDS)
def test_audit_log_hides_other_users_preferences(request: pytest.FixtureRequest, shared_world: World,
                                                 scope: Scope) -> None:
    world = shared_world
    others = {mid for mid, o in world.owners.items() if o[2] not in ("", scope.user_id)}
    seen = {r["memory_id"] for r in world.store.audit_log(scope, limit=1000)}
    assert not seen & others


def test_named_isolation_rules(shared_world: World) -> None:
    world = shared_world
    store = world.store
    heuristics = world.of_type("heuristic")
    prefs = world.of_type("preference")
    for p in PROJECTS:
        helena = S(p, "helena", "u1")
        seen = ids(store.list(helena, limit=1000)) | ids(store.knn(helena, world.query, 1000)) | ids(
            store.lexical(helena, "zebra", 1000))
        assert not seen & heuristics & (world.owned_by(agent="victor") | world.owned_by(agent="main"))
        assert heuristics & world.owned_by(project=p, agent="helena") <= seen
    for scope in READ_SCOPES:
        if scope.user_id == "u2":
            assert not ids(store.list(scope, limit=1000)) & world.owned_by(user="u1")
        if scope.project_id == B:
            seen = ids(store.list(scope, limit=1000)) | ids(store.knn(scope, world.query, 1000))
            assert not seen & world.owned_by(project=A)
            assert all(d["project_id"] == B for d in store.export(B))
    everywhere_u1 = world.owned_by(project=ANY, user="u1") & prefs
    assert len(everywhere_u1) == 1
    for scope in READ_SCOPES:
        seen = ids(store.list(scope, ["preference"], limit=1000)) | ids(
            store.knn(scope, world.query, 1000, ["preference"])) | ids(store.lexical(scope, "everywhere", 100))
        if scope.user_id == "u1":
            assert everywhere_u1 <= seen
        else:
            assert not everywhere_u1 & seen


def test_export_of_a_project_holds_only_that_project(shared_world: World) -> None:
    world = shared_world
    for p in PROJECTS:
        rows = list(world.store.export(p))
        assert {r["id"] for r in rows} == world.owned_by(project=p)
    assert {r["id"] for r in world.store.export()} == set(world.memories)


def test_generation_ignores_other_projects(world: World) -> None:
    store = world.store
    a_scopes = [s for s in READ_SCOPES if s.project_id == A]
    before = [store.generation(s) for s in a_scopes]
    b = S(B, "victor")
    m = store.add(b, new("heuristic", "b only", project=B, agent="victor"))
    store.update(b, dataclasses.replace(m, strategy="changed"))
    store.delete(b, m.id, reason="gone")
    store.import_([{**next(store.export(B)), "version": 99}])
    assert [store.generation(s) for s in a_scopes] == before


def test_any_agent_preference_of_one_agent_in_every_project(request: pytest.FixtureRequest, backend: str,
                                                            store: Store) -> None:
    scope = S(A, "helena", "u1")
    m = store.add(scope, new("preference", "helena prefers role selectors", project=ANY, agent="helena", user="u1"))
    store.set_embeddings(MODEL, [(m.id, onehot(7))])
    for s in (S(A, "helena", "u1"), S(B, "helena", "u1")):
        assert store.get(s, m.id).id == m.id
        assert ids(store.list(s, ["preference"])) == {m.id}
        assert ids(store.knn(s, onehot(7), 5, ["preference"])) == {m.id}
    for s in (S(A, "victor", "u1"), S(A, "helena", "u2")):
        assert store.knn(s, onehot(7), 5) == [] and store.list(s) == []


# ---------------------------------------------------------------- scope: refused writes

def _refused_cases() -> list[tuple[str, Scope, Callable[[], Memory]]]:
    return [
        ("other-project", S(A), lambda: new("heuristic", "x", project=B)),
        ("other-agent", S(A, "helena"), lambda: new("heuristic", "x", agent="victor")),
        ("other-user-preference", S(A, "main", "u1"), lambda: new("preference", "x", user="u2")),
        ("preference-without-user", S(A, "main", "u1"), lambda: new("preference", "x", user="")),
        ("user-on-heuristic", S(A, "main", "u1"), lambda: new("heuristic", "x", user_id="u1")),
        ("helena-cannot-learn", S(A, "helena"), lambda: new("heuristic", "x", agent="helena", domain="backend_logic")),
        ("helena-not-in-can-learn", S(A, "helena"),
         lambda: new("anti_pattern", "x", agent="helena", domain="api_testing_patterns")),
        ("victor-cannot-learn", S(A, "victor"), lambda: new("outcome", "x", agent="victor", domain="ui_testing")),
        ("any-agent-heuristic", S(A), lambda: new("heuristic", "x", agent=ANY, domain="")),
        ("any-agent-outcome", S(A), lambda: new("outcome", "x", agent=ANY, domain="")),
        ("any-project-heuristic", S(A), lambda: new("heuristic", "x", project=ANY)),
        ("any-project-knowledge", S(A), lambda: new("knowledge", "x", project=ANY)),
        ("other-project-knowledge", S(A), lambda: new("knowledge", "x", project=B)),
    ]


REFUSED = _refused_cases()


def _snapshot(store: Store) -> tuple[Any, ...]:
    return (sorted((d["id"], d["version"]) for d in store.export()), store.stats()["memories"],
            [store.generation(s) for s in READ_SCOPES], len(store.audit_log(S(A), 1000)), len(raw_audit(store)))


@pytest.mark.parametrize("scope, make", [(s, m) for _, s, m in REFUSED], ids=[n for n, _, _ in REFUSED])
def test_refused_writes(store: Store, scope: Scope, make: Callable[[], Memory]) -> None:
    build_world(store)
    before = _snapshot(store)
    memory = make()
    with pytest.raises(ScopeViolation):
        store.add(scope, memory)
    assert _snapshot(store) == before
    # the same memory smuggled in through an update of one the writer owns
    own = next(m for m in store.list(scope, [memory.type], limit=1000)
               if m.project_id == scope.project_id and m.user_id in ("", scope.user_id)
               and m.agent in (scope.agent, ANY))
    before = _snapshot(store)
    with pytest.raises(ScopeViolation):
        store.update(scope, dataclasses.replace(memory, id=own.id))
    assert _snapshot(store) == before
    assert store.get(scope, own.id).to_dict() == own.to_dict()


def test_unconfigured_agent_with_null_default_learns_nothing(backend: str, store_dir: Path) -> None:
    store = make_store(backend, store_dir, STRICT_POLICY)
    try:
        zed = S(A, "zed")
        for mtype in ("heuristic", "anti_pattern", "outcome"):
            with pytest.raises(ScopeViolation):
                store.add(zed, new(mtype, "x", agent="zed", domain="debugging"))
        with pytest.raises(ScopeViolation):
            store.add(zed, new("knowledge", "x", agent="zed", domain="debugging"))
        assert store.stats()["memories"] == 0
        store.add(S(A, "helena"), new("heuristic", "configured agents still learn", agent="helena"))
        # with the packaged default profile the same agent may learn its domains
        lenient = make_store(backend, store_dir.parent / "lenient")
        lenient.add(zed, new("heuristic", "x", agent="zed", domain="debugging"))
        lenient.close()
    finally:
        store.close()


def test_unconfigured_agent_with_null_default_cannot_write_domainless(backend: str, store_dir: Path) -> None:
    store = make_store(backend, store_dir, STRICT_POLICY)
    try:
        with pytest.raises(ScopeViolation):
            store.add(S(A, "zed"), new("outcome", "x", agent="zed", domain=""))
    finally:
        store.close()


def test_shared_knowledge_does_not_bypass_cannot_learn(store: Store) -> None:
    with pytest.raises(ScopeViolation):
        store.add(S(A, "helena"), new("knowledge", "x", agent=ANY, domain="backend_logic"))


def test_event_and_task_writes_outside_the_scope_are_refused(world: World) -> None:
    store = world.store
    helena_a = S(A, "helena")
    before = [len(store.events(s, limit=10_000)) for s in READ_SCOPES]
    with pytest.raises(ScopeViolation):
        store.add_event(helena_a, ExecutionEvent(project_id=B, agent="helena", tool="Bash"))
    with pytest.raises(ScopeViolation):
        store.add_event(helena_a, ExecutionEvent(project_id=A, agent="victor", tool="Bash"))
    assert [len(store.events(s, limit=10_000)) for s in READ_SCOPES] == before
    with pytest.raises(ScopeViolation):
        store.open_task(helena_a, Task(project_id=A, agent="victor", session_id="s1", description="x"))
    with pytest.raises(ScopeViolation):
        store.open_task(helena_a, Task(project_id=B, agent="helena", session_id="s1", description="x"))
    assert store.current_task(S(A, "victor"), "s1").id == world.tasks[(A, "victor")]
    # closing someone else's task does nothing
    store.close_task(helena_a, world.tasks[(A, "victor")], "outcome", T0)
    store.close_task(S(B, "victor"), world.tasks[(A, "victor")], "outcome", T0)
    assert store.current_task(S(A, "victor"), "s1").id == world.tasks[(A, "victor")]


def test_open_task_cannot_take_over_another_scopes_task(request: pytest.FixtureRequest, backend: str,
                                                        world: World) -> None:
    store = world.store
    victors = world.tasks[(A, "victor")]
    with pytest.raises((ScopeViolation, NotFound)):
        store.open_task(S(A, "helena"), Task(id=victors, project_id=A, agent="helena", session_id="s1",
                                             description="mine now"))
    assert store.current_task(S(A, "victor"), "s1").id == victors


def test_update_or_delete_of_another_scopes_memory_is_not_found(world: World) -> None:
    store = world.store
    full_before = sorted((d["id"], d["version"], json.dumps(d, sort_keys=True)) for d in store.export())
    audit_before = len(raw_audit(store))

    def owned(project: str, agent: str, user: str, mtype: str) -> Memory:
        mid = next(i for i in world.owned_by(project=project, agent=agent, user=user) if
                   world.memories[i].type == mtype)
        return world.memories[mid]

    cases = [
        (S(A, "helena"), owned(A, "victor", "", "heuristic")),
        (S(A, "helena"), owned(A, "main", "", "anti_pattern")),
        (S(B, "main"), owned(A, "main", "", "outcome")),
        (S(B, "victor"), owned(A, "victor", "", "knowledge")),
        (S(A, "main", "u2"), owned(A, ANY, "u1", "preference")),
        (S(B, "main", "u2"), owned(ANY, ANY, "u1", "preference")),
    ]
    for scope, victim in cases:
        with pytest.raises(NotFound):
            store.delete(scope, victim.id, reason="attack")
        # rewritten into the attacker's own scope: the id is still not theirs
        if victim.type == "preference":
            disguised = dataclasses.replace(victim, project_id=scope.project_id, user_id=scope.user_id,
                                            preference="hijacked")
        else:
            disguised = dataclasses.replace(victim, project_id=scope.project_id, agent=scope.agent,
                                            domain=DOMAIN[scope.agent])
        with pytest.raises(NotFound):
            store.update(scope, disguised)
        with pytest.raises((NotFound, ScopeViolation)):
            store.update(scope, victim)
        with pytest.raises(NotFound):
            store.get(scope, victim.id)
    assert sorted((d["id"], d["version"], json.dumps(d, sort_keys=True)) for d in store.export()) == full_before
    assert len(raw_audit(store)) == audit_before


# ---------------------------------------------------------------- redaction

def _assert_no_secret(root: Path) -> None:
    files = raw_files(root)
    assert files
    for path, data in files.items():
        assert SECRET.encode() not in data, path
        assert SECRET.lower().encode() not in data, path  # FTS tokens are lowercased


def test_secrets_never_reach_the_files(store: Store, store_dir: Path, tmp_path: Path) -> None:
    scope = S()
    h = store.add(scope, new("heuristic", f"deploying with key {SECRET} set"))
    assert SECRET not in h.text and "[REDACTED" in h.text
    assert SECRET not in store.get(scope, h.id).text
    assert store.lexical(scope, "deploying", 5)[0].memory.id == h.id
    o = store.add(scope, new("outcome", "clean"))
    updated = store.update(scope, dataclasses.replace(o, strategy_used=f"export AWS_KEY={SECRET}",
                                                      feedback=f"used {SECRET}"))
    assert SECRET not in json.dumps(updated.to_dict())
    store.add_event(scope, ExecutionEvent(project_id=A, tool="Bash", input_summary=f"aws --key {SECRET}",
                                          result_summary=f"echo {SECRET}", error=f"bad key {SECRET}"))
    ev = store.events(scope)[0]
    assert SECRET not in json.dumps(dataclasses.asdict(ev))
    task = store.open_task(scope, Task(project_id=A, session_id="s1", description=f"rotate {SECRET}"))
    assert SECRET not in task.description
    imported = new("knowledge", f"the CI key is {SECRET}")
    store.import_([{**imported.to_dict(), "embedding": None, "embedding_model": None}])
    assert SECRET not in store.get(scope, imported.id).text
    store.delete(scope, h.id, reason="cleanup")
    _assert_no_secret(store_dir)
    store.close()
    _assert_no_secret(store_dir)


def test_delete_reason_is_redacted(request: pytest.FixtureRequest, backend: str, store: Store,
                                   store_dir: Path) -> None:
    m = store.add(S(), new("heuristic", "to delete"))
    store.delete(S(), m.id, reason=f"contained {SECRET}")
    assert SECRET not in store.audit_log(S())[0]["reason"]
    _assert_no_secret(store_dir)


def test_source_ids_are_redacted(store: Store, store_dir: Path) -> None:
    m = store.add(S(), new("outcome", "with provenance", source_ids=["ev1", f"key={SECRET}"]))
    assert SECRET not in " ".join(store.get(S(), m.id).source_ids)
    _assert_no_secret(store_dir)


# ---------------------------------------------------------------- concurrency

N_WORKERS, N_EACH = 4, 200


N_UPDATES = 50  # per worker, all to one shared memory


def _concurrent_writer(backend: str, root: str, worker: int, shared_id: str, barrier: Any) -> None:
    store = make_store(backend, Path(root))
    scope = S()
    try:
        barrier.wait(timeout=60)
        for i in range(N_EACH):
            store.add(scope, new("heuristic", f"worker {worker} item {i}"))
            store.add_event(scope, ExecutionEvent(project_id=A, session_id=f"w{worker}", tool="Bash",
                                                  input_summary=f"item {i}"))
            if i % (N_EACH // N_UPDATES) == 0:
                # a stale copy on purpose: the store must number versions from what is stored, not from the caller
                shared = dataclasses.replace(store.get(scope, shared_id), confidence=(worker + i) / 1000)
                store.update(scope, shared, reason=f"worker {worker}")
    finally:
        store.close()


def test_concurrent_writers_lose_nothing(backend: str, store_dir: Path) -> None:
    setup = make_store(backend, store_dir)  # create the store once; the race under test is the writes
    shared = setup.add(S(), new("outcome", "updated by every worker"))
    setup.close()
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(N_WORKERS)
    procs = [ctx.Process(target=_concurrent_writer, args=(backend, str(store_dir), w, shared.id, barrier))
             for w in range(N_WORKERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0] * N_WORKERS
    store = make_store(backend, store_dir)
    try:
        total, updates = N_WORKERS * N_EACH, N_WORKERS * N_UPDATES
        memories = store.list(S(), ["heuristic"], limit=10 * total)
        assert len(memories) == total
        assert {m.text for m in memories} == {f"When worker {w} item {i}: run the narrowest test first"
                                              for w in range(N_WORKERS) for i in range(N_EACH)}
        assert len(store.events(S(), limit=10 * total)) == total
        assert store.get(S(), shared.id).version == 1 + updates  # no two updates took the same version
        assert store.generation(S()) == 1 + total + updates
        assert len(raw_audit(store)) == 1 + total + updates
    finally:
        store.close()


def test_note_audits_a_visible_memory_only(store: Store) -> None:
    m = store.add(S(), new("heuristic", "noted"))
    store.note(S(), m, "conflict", "two strategies disagree")
    assert store.audit_log(S())[0]["action"] == "conflict"
    with pytest.raises(NotFound):
        store.note(S(agent="helena"), m, "conflict", "not hers")
    assert all(row["action"] != "conflict" for row in store.audit_log(S(agent="helena")))


def test_prune_events_removes_old_events_of_closed_tasks_in_scope_only(store: Store) -> None:
    old = 1_000.0
    task = store.open_task(S(), Task(project_id=A, session_id="s", description="t"))
    for scope in (S(), S(agent="helena")):
        for i in range(3):
            store.add_event(scope, ExecutionEvent(project_id=A, agent=scope.agent, tool="Bash", created_at=old + i,
                                                  task_id=task.id if scope.agent == "main" else ""))
    store.add_event(S(), ExecutionEvent(project_id=A, tool="Bash", created_at=5_000.0, task_id=task.id))
    assert store.prune_events(S(), 2_000.0) == 0  # the task is still open: not learned from yet
    store.close_task(S(), task.id, "o", 3_000.0)
    assert store.prune_events(S(), 2_000.0, dry_run=True) == 3
    assert len(store.events(S())) == 4
    assert store.prune_events(S(), 2_000.0) == 3
    assert [e.created_at for e in store.events(S())] == [5_000.0]
    assert len(store.events(S(agent="helena"))) == 3
    assert store.audit_log(S())[0]["action"] == "prune"

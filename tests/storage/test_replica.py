"""The SQLite side of team sync (``alma_hooks.storage.replica``), without any network.

The outbox fills in the same transaction as each write, only while sync is on;
forgetting leaves a local tombstone and enqueues nothing; the merge of remote
changes is last-writer-wins by (version, updated_at, origin) and never imports
another project. The Cosmos side is in ``tests/azure``.
"""

from __future__ import annotations

import dataclasses
import json

import apsw
import pytest

from alma_hooks.storage.migrations import MIGRATIONS
from alma_hooks.storage.replica import RemoteChange, Replica
from alma_hooks.storage.sqlite import SQLiteStore
from alma_hooks.types import ANY, DomainKnowledge, Heuristic, Scope

P, Q = "github.com/acme/shop", "github.com/acme/billing"
SCOPE = Scope(P, "main", "alice@example.com")


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(tmp_path / "m.db")
    yield s
    s.close()


def fact(text: str, project: str = P) -> DomainKnowledge:
    return DomainKnowledge(project_id=project, agent=ANY, fact=text)


def outbox(store: SQLiteStore) -> list[tuple]:
    return store.conn.execute("SELECT memory_id, op, version FROM outbox ORDER BY seq").fetchall()


def remote(m, **changes) -> RemoteChange:
    m = dataclasses.replace(m, **changes)
    return RemoteChange(m.id, m.project_id, m.version, m.updated_at, m.origin, memory=m.to_dict())


def test_sync_migration_upgrades_a_schema_3_database(tmp_path):
    path = tmp_path / "old.db"
    s = SQLiteStore(":memory:")  # loads sqlite-vec the supported way; reuse its extension path
    from alma_hooks.storage.sqlite import vec_extension_path

    s.close()
    conn = apsw.Connection(str(path))
    conn.enable_load_extension(True)
    conn.load_extension(vec_extension_path())
    for number, (_, sql) in enumerate(MIGRATIONS[:3], start=1):
        conn.execute(sql)
        conn.execute(f"PRAGMA user_version = {number}")
    conn.execute("INSERT INTO memories(id, type, project_id, agent, text, payload, confidence, created_at, "
                 "updated_at) VALUES ('m1', 'knowledge', ?, '*', 'old fact', ?, 0.5, 1, 1)",
                 (P, json.dumps({"fact": "old fact", "source": "curated", "context": ""})))
    conn.close()

    upgraded = SQLiteStore(path)
    assert upgraded.schema_version() == len(MIGRATIONS)
    assert upgraded.get(SCOPE, "m1").text == "old fact"
    assert Replica(upgraded).enable(P) == 1
    upgraded.close()
    again = SQLiteStore(path)  # a second open applies nothing
    assert again.schema_version() == len(MIGRATIONS) and len(outbox(again)) == 1
    again.close()


def test_writes_enqueue_only_while_sync_is_on(store):
    a = store.add(SCOPE, fact("before"))
    assert outbox(store) == []
    Replica(store).enable(P)
    assert outbox(store) == [(a.id, "upsert", 1)]
    b = store.add(SCOPE, fact("after"))
    b2 = store.update(SCOPE, dataclasses.replace(b, fact="after, changed"))
    store.delete(SCOPE, a.id, reason="the user said so")
    # one row per changed memory: its newest change
    assert outbox(store) == [(b.id, "upsert", 2), (a.id, "delete", 2)]
    assert b2.origin == Replica(store).origin()
    entries = {e.memory_id: e for e in Replica(store).batch(P, 10)}
    assert entries[b.id].op == "upsert" and entries[b.id].memory.text == "after, changed"
    assert entries[a.id].op == "delete" and entries[a.id].tombstone[0] == 2


def test_forgetting_enqueues_nothing_but_keeps_a_tombstone(store):
    Replica(store).enable(P)
    h = store.add(SCOPE, Heuristic(project_id=P, condition="c", strategy="s", domain="testing_strategies"))
    store.conn.execute("DELETE FROM outbox")
    store.delete(SCOPE, h.id, reason="forgetting: confidence decayed to 0.01 < 0.05")
    assert outbox(store) == []
    replica = Replica(store)
    same = replica.apply_remote(P, [remote(h)], accept_model=None)
    assert (same.applied, same.stale) == (0, 1), "the version it forgot does not come back"
    newer = replica.apply_remote(P, [remote(h, version=2, updated_at=h.updated_at + 1, confidence=0.9)],
                                 accept_model=None)
    assert newer.applied == 1 and store.get(SCOPE, h.id).confidence == 0.9


def test_acknowledging_a_batch_keeps_rows_enqueued_meanwhile(store):
    replica = Replica(store)
    replica.enable(P)
    m = store.add(SCOPE, fact("v1"))
    [entry] = replica.batch(P, 10)
    store.update(SCOPE, dataclasses.replace(m, fact="v2"))  # while the push of v1 is in flight
    replica.done([entry], P)
    assert outbox(store) == [(m.id, "upsert", 2)]


def test_merge_is_last_writer_wins_and_idempotent(store):
    replica = Replica(store)
    m = fact("v1")
    m = dataclasses.replace(m, origin="aaaa", updated_at=100.0)
    assert replica.apply_remote(P, [remote(m)], accept_model=None).applied == 1
    assert replica.apply_remote(P, [remote(m)], accept_model=None).stale == 1, "the same change twice"
    older = remote(m, fact="older", updated_at=50.0)
    assert replica.apply_remote(P, [older], accept_model=None).stale == 1
    newer = remote(m, fact="v2", version=2, updated_at=60.0)  # newer version wins over a later clock
    assert replica.apply_remote(P, [newer], accept_model=None).applied == 1
    tomb = RemoteChange(m.id, P, 3, 70.0, "bbbb", deleted=True)
    assert replica.apply_remote(P, [tomb], accept_model=None).deleted == 1
    assert replica.apply_remote(P, [newer], accept_model=None).stale == 1, "a tombstone is not resurrected"
    assert store.list(SCOPE) == []


def test_merge_never_imports_another_project_and_skips_what_it_cannot_read(store):
    replica = Replica(store)
    theirs = fact("billing uses stripe", Q)
    forged = dataclasses.replace(fact("forged"), project_id=Q)
    changes = [remote(theirs),
               RemoteChange(forged.id, P, 1, 1.0, "x", memory=forged.to_dict()),  # envelope says P, memory says Q
               RemoteChange("bad", P, 1, 1.0, "x", memory={"type": "knowledge", "nonsense": 1, "project_id": P})]
    result = replica.apply_remote(P, changes, accept_model=None, state={"feed:" + P: "token-1"})
    assert (result.other_project, result.invalid, result.applied) == (2, 1, 0)
    assert store.conn.execute("SELECT count(*) FROM memories").fetchone()[0] == 0
    assert replica.state("feed:" + P) == "token-1", "the feed position commits with the page"


def _vector_rows(store: SQLiteStore) -> tuple[int, int]:
    return tuple(store.conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # type: ignore[return-value]
                 for t in ("memory_vectors", "memory_bits"))


def test_pulled_replace_and_delete_drop_both_vector_indexes(store):
    """Found by the crash campaign's invariant check: a pull left the coarse (bits) row of a memory behind."""
    from dbcheck import problems

    replica = Replica(store)
    a, b = store.add(SCOPE, fact("first")), store.add(SCOPE, fact("second"))
    store.set_embeddings("m", [(a.id, [1.0] + [0.0] * 383), (b.id, [0.0, 1.0] + [0.0] * 382)])
    assert _vector_rows(store) == (2, 2)
    tomb = RemoteChange(a.id, P, 5, a.updated_at + 1, "zz", deleted=True)
    assert replica.apply_remote(P, [tomb, remote(b, fact="second, v5", version=5, origin="zz")],
                                accept_model="m").deleted == 1
    assert _vector_rows(store) == (0, 0), "the replaced copy waits for its new vector; no coarse row outlives it"
    assert problems(store.path) == []

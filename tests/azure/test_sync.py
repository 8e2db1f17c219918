"""Team sync through Cosmos DB: two (or three) SQLite replicas of one project and a shared container.

Real ``azure-cosmos`` 4.x client → ``cosmos_proxy.CosmosProxy`` (loopback, fault injection,
change-feed continuation shim, missing-item-read shim) → ``@vercel/cosmosdb-server`` (npm,
the Cosmos stand-in). Real ``SecretClient`` → ``keyvault_standin.KeyVaultStandIn`` for the
Cosmos key. What the stand-ins cannot show (request units, partition scoping of the feed,
real throttling behaviour) is listed in their module docstrings and in README "Team scale".
"""

from __future__ import annotations

import dataclasses
import json
import time

import pytest
from conftest import MODEL, OTHER_PROJECT, PROJECT, USER, unit_vector

from alma_hooks.errors import AlmaError, ScopeViolation
from alma_hooks.storage.replica import RemoteChange, Replica
from alma_hooks.storage.sqlite import pack_vector
from alma_hooks.types import (ANY, AntiPattern, DomainKnowledge, ExecutionEvent, Heuristic, Outcome, Preference,
                              Scope)

pytestmark = pytest.mark.azure


def knowledge(text: str, project: str = PROJECT) -> DomainKnowledge:
    return DomainKnowledge(project_id=project, agent=ANY, fact=text, confidence=0.9)


def one_of_each(project: str = PROJECT) -> list:
    return [
        knowledge("We deploy with make release; never by hand", project),
        Heuristic(project_id=project, condition="a form has many required fields",
                  strategy="test the happy path first, then each field", occurrence_count=7, successes=7, trials=8,
                  domain="testing_strategies", confidence=0.8),
        AntiPattern(project_id=project, pattern="sleeping in tests", why="it is flaky",
                    alternative="wait for the element", domain="testing_strategies"),
        Preference(project_id=project, user_id=USER, preference="No emojis in code", category="style"),
        Outcome(project_id=project, task_description="fix the login test", success=True,
                strategy_used="waited for the button", domain="testing_strategies"),
    ]


def comparable(memory) -> dict:
    d = memory.to_dict()
    d.pop("last_retrieved")
    return d


def local_docs(team) -> dict[str, dict]:
    return {d["id"]: d for d in team.query_all()}


# ---------------------------------------------------------------- the round trip

def test_push_pull_round_trip_between_two_replicas(make_replica, team):
    a, b = make_replica("a"), make_replica("b")
    added = [a.store.add(a.scope(), m) for m in one_of_each()]
    a.store.set_embeddings(MODEL, [(added[0].id, unit_vector(1))])

    report = a.worker().run_once()
    assert report.ok and report.push.written == 5 and report.push.failed == 0
    docs = local_docs(team)
    assert set(docs) == {m.id for m in added}
    assert all(d["project_id"] == PROJECT and d["deleted"] is False for d in docs.values())

    pulled = b.worker().run_once()
    assert pulled.ok and pulled.pull.merge.applied == 5
    for m in added:
        got = b.store.get(b.scope(), m.id)
        assert comparable(got) == comparable(a.store.get(a.scope(), m.id))
        assert got.origin == a.replica.origin() != b.replica.origin()
    # the vector travelled with its item and is usable at once; the others wait for the local model
    vec = b.store.conn.execute("SELECT v.embedding FROM memory_vectors v JOIN memories m ON m.rid = v.rid "
                               "WHERE m.id = ?", (added[0].id,)).fetchone()[0]
    assert bytes(vec) == pack_vector(unit_vector(1))
    assert {mid for mid, _ in b.store.pending_embeddings(100)} == {m.id for m in added[1:]}
    assert not b.replica.batch(PROJECT, 100), "pulled items are not pushed back"

    # later changes travel through the saved change-feed continuation: only they are read again
    changed = a.store.update(a.scope(), dataclasses.replace(added[1], confidence=0.95), reason="reinforced")
    a.store.delete(a.scope(), added[2].id, reason="the user said so")
    assert a.worker().run_once().push.written == 2
    again = b.worker().run_once()
    assert again.pull.read == 2 and again.pull.merge.applied == 1 and again.pull.merge.deleted == 1
    assert b.store.get(b.scope(), changed.id).confidence == 0.95
    assert b.store.get(b.scope(), changed.id).version == 2
    with pytest.raises(AlmaError):
        b.store.get(b.scope(), added[2].id)
    audit = b.store.audit_log(b.scope())
    assert any(r["memory_id"] == added[2].id and r["action"] == "delete" and r["reason"].startswith("sync: deleted")
               for r in audit)
    assert local_docs(team)[added[2].id]["deleted"] is True
    assert "memory" not in local_docs(team)[added[2].id], "a tombstone carries no content"


def test_enable_queues_existing_memories_once_and_only_syncable_rows(make_replica):
    a = make_replica("a", enable=False)
    before = [a.store.add(a.scope(), m) for m in one_of_each()]
    a.store.add(a.scope(), Preference(project_id=ANY, user_id=USER, preference="Answer in English"))
    a.store.add_event(a.scope(), ExecutionEvent(project_id=PROJECT, tool="Bash", input_summary="ls"))
    assert a.store.conn.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0, "sync off: nothing queued"

    assert a.replica.enable(PROJECT) == 5
    assert a.replica.enable(PROJECT) == 0, "enabling twice queues nothing more"
    queued = {e.memory_id for e in a.replica.batch(PROJECT, 100)}
    assert queued == {m.id for m in before}, "events and all-project preferences never sync"
    origin = a.replica.origin()
    assert all(a.store.get(a.scope(), m.id).origin == origin for m in before)

    a.replica.disable(PROJECT)
    a.store.add(a.scope(), knowledge("written while sync is off"))
    assert len(a.replica.batch(PROJECT, 100)) == 5


def test_outbox_row_commits_with_its_write_or_not_at_all(make_replica):
    a = make_replica("a")
    m = a.store.add(a.scope(), knowledge("first"))
    rows = a.store.conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
    with pytest.raises(AlmaError):  # same id again: the insert fails inside the transaction
        a.store.add(a.scope(), dataclasses.replace(knowledge("dupe"), id=m.id))
    with pytest.raises(ScopeViolation):
        a.store.add(a.scope(), knowledge("someone else's project", OTHER_PROJECT))
    assert a.store.conn.execute("SELECT count(*) FROM outbox").fetchone()[0] == rows


# ---------------------------------------------------------------- idempotence and LWW

def test_replaying_a_pushed_batch_changes_nothing(make_replica, team, proxy):
    a = make_replica("a")
    for m in one_of_each():
        a.store.add(a.scope(), m)
    entries = a.replica.batch(PROJECT, 100)
    assert a.worker().push().written == 5
    before = {d["id"]: d["_etag"] for d in team.query_all()}
    # a crash after Cosmos acknowledged but before the rows left the outbox: the same rows again
    a.store.conn.execute("INSERT INTO outbox(memory_id, project_id, op, version, enqueued_at) "
                         "SELECT id, project_id, 'upsert', version, 0 FROM memories")
    assert {e.memory_id for e in a.replica.batch(PROJECT, 100)} == {e.memory_id for e in entries}
    replay = a.worker().push()
    assert (replay.written, replay.unchanged) == (0, 5)
    assert {d["id"]: d["_etag"] for d in team.query_all()} == before, "not even an ETag changed"
    assert set(proxy.applied_writes.values()) == {1}


@pytest.mark.parametrize("first", ["a", "b"], ids=["a-pushes-first", "b-pushes-first"])
def test_concurrent_updates_converge_on_the_same_winner(make_replica, first):
    a, b = make_replica("a"), make_replica("b")
    m = a.store.add(a.scope(), knowledge("the staging database is postgres 14"))
    a.worker().run_once()
    b.worker().run_once()
    # both replicas change the same memory before either syncs: same version, different time and origin
    ma = a.store.update(a.scope(), dataclasses.replace(m, fact="staging runs postgres 15"))
    mb = b.store.update(b.scope(), dataclasses.replace(b.store.get(b.scope(), m.id), fact="staging runs postgres 16"))
    assert ma.version == mb.version == 2
    winner = max((ma, mb), key=lambda x: (x.version, x.updated_at, x.origin))
    order = [a, b] if first == "a" else [b, a]
    for r in order + order:  # two rounds: everyone has seen everything
        r.worker().run_once()
    assert a.store.get(a.scope(), m.id).text == b.store.get(b.scope(), m.id).text == winner.text


def test_lww_tie_on_version_and_time_is_broken_by_origin():
    from alma_hooks.storage.sqlite import SQLiteStore

    store = SQLiteStore(":memory:")
    replica = Replica(store)
    replica.enable(PROJECT)
    base = knowledge("x")

    def change(text: str, origin: str) -> RemoteChange:
        m = dataclasses.replace(base, fact=text, version=3, updated_at=1000.0, origin=origin)
        return RemoteChange(m.id, PROJECT, 3, 1000.0, origin, memory=m.to_dict())

    for order in (["aaaa", "ffff"], ["ffff", "aaaa"]):
        store.conn.execute("DELETE FROM memories")
        for origin in order:
            replica.apply_remote(PROJECT, [change(f"from {origin}", origin)], accept_model=MODEL)
        assert store.get(Scope(PROJECT), base.id).text == "from ffff"
    store.close()


# ---------------------------------------------------------------- scope and deletion rules

def test_another_projects_items_are_never_imported(make_replica, team):
    a, b = make_replica("a"), make_replica("b")
    other = make_replica("other", project_id=OTHER_PROJECT)
    theirs = other.store.add(other.scope(), knowledge("billing uses stripe", OTHER_PROJECT))
    other.worker().run_once()
    ours = a.store.add(a.scope(), knowledge("shop uses adyen"))
    a.worker().run_once()
    # a forged document: our partition on the outside, another project's memory inside
    forged = {"id": "f" * 32, "project_id": PROJECT, "version": 1, "updated_at": 1.0, "origin": "x", "deleted": False,
              "memory": {**knowledge("forged", OTHER_PROJECT).to_dict(), "id": "f" * 32}, "schema": 1}
    team.container.create_item(forged)

    report = b.worker().run_once()
    assert report.pull.merge.other_project >= 2  # the stand-in's feed is not partition-scoped
    assert [m.id for m in b.store.list(b.scope(), limit=100)] == [ours.id]
    assert b.store.conn.execute("SELECT count(*) FROM memories WHERE project_id != ?", (PROJECT,)).fetchone()[0] == 0
    assert theirs.id in local_docs(team)


def test_forgetting_stays_local_and_a_forgotten_item_returns_only_newer(make_replica, team):
    a, b = make_replica("a"), make_replica("b")
    m = a.store.add(a.scope(), Heuristic(project_id=PROJECT, condition="c", strategy="s",
                                         domain="testing_strategies"))
    a.worker().run_once()
    b.worker().run_once()
    a.store.delete(a.scope(), m.id, reason="forgetting: stale: unused for 120 days")
    assert a.store.conn.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0
    a.worker().run_once()
    assert local_docs(team)[m.id]["deleted"] is False, "forgetting never deletes on the team store"
    assert b.worker().run_once().pull.merge.deleted == 0 and b.store.get(b.scope(), m.id)

    assert a.worker().pull(full=True).merge.applied == 0, "the same version stays forgotten"
    with pytest.raises(AlmaError):
        a.store.get(a.scope(), m.id)

    b.store.update(b.scope(), dataclasses.replace(b.store.get(b.scope(), m.id), confidence=0.9),
                   reason="validated again")
    b.worker().run_once()
    a.worker().run_once()
    back = a.store.get(a.scope(), m.id)
    assert (back.version, back.confidence) == (2, 0.9)


def test_explicit_delete_travels_and_an_older_copy_cannot_resurrect_it(make_replica, team):
    a, b = make_replica("a"), make_replica("b")
    m = a.store.add(a.scope(), knowledge("we use jenkins"))
    a.worker().run_once()
    b.worker().run_once()
    b.store.delete(b.scope(), m.id, reason="forgotten on request")
    b.worker().run_once()
    assert local_docs(team)[m.id]["deleted"] is True
    assert a.worker().run_once().pull.merge.deleted == 1
    # B reads the whole feed again: its own tombstone, nothing comes back
    assert b.worker().pull(full=True).merge.applied == 0
    for r in (a, b):
        with pytest.raises(AlmaError):
            r.store.get(r.scope(), m.id)


# ---------------------------------------------------------------- secrets and embeddings

AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def test_secrets_never_reach_cosmos(make_replica, team, proxy):
    a = make_replica("a")
    a.store.add(a.scope(), knowledge(f"deploy with AWS_ACCESS_KEY_ID={AWS_KEY} aws_secret_access_key={AWS_SECRET}"))
    # and a row an older version stored unredacted: the worker redacts again on the way out
    raw = a.store.add(a.scope(), knowledge("placeholder"))
    payload = json.dumps({**raw.payload(), "fact": f"old row with {AWS_KEY}"})
    a.store.conn.execute("UPDATE memories SET text = ?, payload = ? WHERE id = ?",
                         (f"old row with {AWS_KEY}", payload, raw.id))
    assert AWS_KEY in a.store.get(a.scope(), raw.id).text

    assert a.worker().run_once().push.written == 2
    sent = proxy.sent_bytes()
    stored = json.dumps(team.query_all())
    for secret in (AWS_KEY, AWS_SECRET):
        assert secret.encode() not in sent
        assert secret not in stored
    assert "[REDACTED:aws_key]" in stored


def test_pulled_items_are_redacted_on_the_way_in(make_replica, team):
    b = make_replica("b")
    m = knowledge(f"token {AWS_KEY}")
    team.container.create_item({"id": m.id, "project_id": PROJECT, "version": 1, "updated_at": m.updated_at,
                                "origin": "elsewhere", "deleted": False,
                                "memory": {**m.to_dict(), "origin": "elsewhere"}, "schema": 1})
    assert b.worker().run_once().pull.merge.applied == 1
    text = b.store.get(b.scope(), m.id).text
    assert AWS_KEY not in text and "[REDACTED:aws_key]" in text


def test_vectors_of_another_model_are_left_out_for_reembedding(make_replica):
    a, b = make_replica("a"), make_replica("b")
    m = a.store.add(a.scope(), knowledge("the api is versioned in the path"))
    a.store.set_embeddings("another-model-v2", [(m.id, unit_vector(7))])
    a.worker().run_once()
    assert b.worker(accept_model=MODEL).run_once().pull.merge.applied == 1
    assert b.store.pending_embeddings(10) == [(m.id, m.text)]
    assert b.store.embedding_model() is None


# ---------------------------------------------------------------- many items, pages

def test_many_items_in_batches_and_pages(make_replica, team):
    a, b = make_replica("a", batch_size=7, page_size=9), make_replica("b", page_size=9)
    ids = {a.store.add(a.scope(), knowledge(f"fact number {i}")).id for i in range(60)}
    push = a.worker().run_once()
    assert push.push.written == 60 and 60 <= push.requests < 80, "a new item costs one create"
    assert set(local_docs(team)) == ids
    pull = b.worker().run_once()
    assert pull.pull.pages == 7 and pull.pull.merge.applied == 60
    assert {m.id for m in b.store.list(b.scope(), limit=1000)} == ids
    status = a.replica.status(PROJECT)
    assert status["pending"] == 0 and status["enabled"] and status["feed_continuation"]


def test_status_reports_queue_and_last_runs(make_replica):
    a = make_replica("a")
    a.store.add(a.scope(), knowledge("x"))
    s = a.replica.status(PROJECT)
    assert (s["pending"], s["parked"], s["last_push"]) == (1, 0, None)
    a.worker().run_once()
    s = a.replica.status(PROJECT)
    assert s["pending"] == 0 and s["last_push"] <= time.time() and s["last_pull"]

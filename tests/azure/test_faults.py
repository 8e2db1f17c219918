"""Faults between the worker and Cosmos DB, injected by ``cosmos_proxy.CosmosProxy`` on loopback.

The client is the real ``azure-cosmos`` SDK with its own retries switched off
(``alma_hooks.sync.cosmos``): every retry counted here is the worker's policy.
Waits go through a recording ``sleep`` (which still sleeps, briefly), so the
tests check what was waited for without timing anything.
"""

from __future__ import annotations

import pytest
from conftest import PROJECT
from cosmos_proxy import body_contains, is_write

from alma_hooks.errors import SyncUnavailable
from alma_hooks.sync import cosmos
from alma_hooks.sync.retry import RetryPolicy, Verdict
from alma_hooks.types import ANY, DomainKnowledge

pytestmark = [pytest.mark.azure, pytest.mark.fault]


def knowledge(text: str) -> DomainKnowledge:
    return DomainKnowledge(project_id=PROJECT, agent=ANY, fact=text)


class RecordingSleep:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def policy(sleep: RecordingSleep, **kw) -> RetryPolicy:
    return RetryPolicy(cosmos.classify, sleep=sleep, **{"base_s": 0.05, "cap_s": 0.4, **kw})


def docs_by_id(team) -> dict[str, dict]:
    return {d["id"]: d for d in team.query_all()}


def test_429_waits_what_the_service_asked_for(make_replica, proxy, team):
    a = make_replica("a", concurrency=1)
    ids = {a.store.add(a.scope(), knowledge(f"fact {i}")).id for i in range(3)}
    proxy.add_fault("status", is_write, times=2, status=429, retry_after_ms=750)
    sleep = RecordingSleep()
    report = a.worker(policy=policy(sleep)).run_once()
    assert report.ok and report.push.written == 3
    assert report.throttled == 2 and report.retries == 2
    assert len(sleep.waits) == 2 and all(0.75 <= w <= 0.86 for w in sleep.waits), sleep.waits
    assert set(docs_by_id(team)) == ids


@pytest.mark.parametrize("status", [503, 408, 449, 500], ids=["503", "408", "449", "500"])
def test_transient_statuses_back_off_and_succeed(make_replica, proxy, team, status):
    a = make_replica("a", concurrency=1)
    ids = {a.store.add(a.scope(), knowledge(f"fact {i}")).id for i in range(2)}
    proxy.add_fault("status", is_write, times=3, status=status)
    sleep = RecordingSleep()
    report = a.worker(policy=policy(sleep)).run_once()
    assert report.ok and report.push.written == 2 and report.retries == 3 and report.throttled == 0
    # capped exponential backoff with jitter: attempt n waits in [b*2^(n-1)/2, b*2^(n-1)]
    for n, wait in enumerate(sleep.waits, start=1):
        exp = min(0.4, 0.05 * 2 ** (n - 1))
        assert exp / 2 <= wait <= exp
    assert set(docs_by_id(team)) == ids and set(proxy.applied_writes.values()) == {1}


def test_backoff_is_capped_jittered_and_bounded():
    sleep = RecordingSleep()
    draws = iter([0.0, 1.0] * 10)
    p = RetryPolicy(lambda e: Verdict("retry", "boom", None, 503), max_attempts=8, base_s=0.1, cap_s=1.0,
                    sleep=sleep, rand=lambda: next(draws))
    calls = []

    def always_fails() -> None:
        calls.append(1)
        raise RuntimeError("boom")

    from alma_hooks.sync.retry import Exhausted

    with pytest.raises(Exhausted):
        p.call(always_fails)
    assert len(calls) == 8 and len(sleep.waits) == 7
    assert sleep.waits == pytest.approx([0.05, 0.2, 0.2, 0.8, 0.5, 1.0, 0.5])


@pytest.mark.parametrize("kind", ["delay", "drop", "drop_after"], ids=["timeout", "dropped", "dropped-after-write"])
def test_timeouts_and_dropped_connections_are_retried_without_duplicates(make_replica, proxy, team, kind):
    a = make_replica("a", concurrency=1, timeout_s=1.0)
    memories = [a.store.add(a.scope(), knowledge(f"fact {i}")) for i in range(3)]
    proxy.add_fault(kind, is_write, times=2, delay_s=2.0)
    sleep = RecordingSleep()
    report = a.worker(policy=policy(sleep)).run_once()
    assert report.ok and report.retries >= 2
    assert report.push.written + report.push.unchanged == 3
    docs = docs_by_id(team)
    assert set(docs) == {m.id for m in memories}
    assert all(docs[m.id]["version"] == 1 and docs[m.id]["memory"]["fact"] == m.fact for m in memories)
    if kind == "drop_after":
        # the write landed but its answer was lost: the retry reads it back and writes nothing more
        assert set(proxy.applied_writes.values()) == {1}
    assert a.replica.status(PROJECT)["pending"] == 0


def test_pull_retries_a_failing_change_feed_page(make_replica, proxy):
    a, b = make_replica("a"), make_replica("b", page_size=5)
    ids = {a.store.add(a.scope(), knowledge(f"fact {i}")).id for i in range(12)}
    a.worker().run_once()
    proxy.add_fault("status", lambda r: r.method == "GET" and "a-im" in r.headers, times=2, status=503)
    proxy.add_fault("drop", lambda r: r.method == "GET" and "a-im" in r.headers and "if-none-match" in r.headers)
    sleep = RecordingSleep()
    report = b.worker(policy=policy(sleep)).run_once()
    assert report.ok and report.retries == 3
    assert {m.id for m in b.store.list(b.scope(), limit=100)} == ids
    imports = b.store.conn.execute("SELECT memory_id, count(*) FROM audit WHERE action = 'import' "
                                   "GROUP BY memory_id").fetchall()
    assert len(imports) == 12 and {n for _, n in imports} == {1}, "no page applied twice"


def test_an_outage_longer_than_the_budget_leaves_everything_queued(make_replica, proxy, team):
    a = make_replica("a", concurrency=2, max_attempts=3)
    ids = {a.store.add(a.scope(), knowledge(f"fact {i}")).id for i in range(4)}
    proxy.add_fault("status", is_write, times=1000, status=503)
    report = a.worker(policy=policy(RecordingSleep(), max_attempts=3)).run_once()
    assert not report.ok and report.push.failed >= 1 and report.push.written == 0
    assert "503" in report.push.error
    assert a.replica.status(PROJECT)["pending"] == 4 and a.replica.status(PROJECT)["parked"] == 0
    proxy.faults.clear()
    assert a.worker().run_once().push.written == 4
    assert set(docs_by_id(team)) == ids


@pytest.mark.parametrize("status", [400, 413], ids=["400", "413"])
def test_a_poison_item_is_parked_with_its_error_and_the_rest_goes_through(make_replica, proxy, team, status):
    a = make_replica("a")
    good = [a.store.add(a.scope(), knowledge(f"fine fact {i}")) for i in range(3)]
    bad = a.store.add(a.scope(), knowledge("the poison fact"))
    proxy.add_fault("status", body_contains("the poison fact"), times=1000, status=status)
    report = a.worker(policy=policy(RecordingSleep())).run_once()
    assert report.ok, "a parked item is not a failed run"
    assert (report.push.written, report.push.parked, report.retries) == (3, 1, 0)
    status_now = a.replica.status(PROJECT)
    assert status_now["pending"] == 0 and status_now["parked"] == 1
    [parked] = status_now["parked_items"]
    assert parked["memory_id"] == bad.id and str(status) in parked["error"]
    assert set(docs_by_id(team)) == {m.id for m in good}
    assert a.worker().run_once().push.written == 0, "parked items are not retried by a normal run"

    proxy.faults.clear()
    assert a.worker().push(retry_parked=True).written == 1
    assert bad.id in docs_by_id(team) and a.replica.status(PROJECT)["parked"] == 0


def test_rejected_credentials_stop_the_run_and_keep_the_queue(make_replica, proxy):
    a = make_replica("a")
    a.store.add(a.scope(), knowledge("x"))
    proxy.add_fault("status", is_write, times=1000, status=401)
    with pytest.raises(SyncUnavailable, match="refused the worker"):
        a.worker(policy=policy(RecordingSleep())).run_once()
    assert a.replica.status(PROJECT)["pending"] == 1 and a.replica.status(PROJECT)["parked"] == 0

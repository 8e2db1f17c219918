"""kill -9 of the sync worker at random points, pushing and pulling (issue 7, crash safety).

Each round changes replica A (new memories, updates, an explicit delete: all committed,
so acknowledged), then kills a real ``alma-hooks sync run`` subprocess of A mid-push
and one of B mid-pull, each at a random SQL statement or at a random moment after its
first request reached the Cosmos stand-in. After each kill both replicas pass
``PRAGMA integrity_check`` and the store's invariants (``tests/dbcheck.py``); after the
resumed runs (the outbox replayed) Cosmos holds every memory of A at its current version
(deleted ones as tombstones) and B holds exactly A's memories.

A few kills in the default run (``fault``), 25 under ``soak`` (``bench/reliability.py``).
"""

from __future__ import annotations

import dataclasses
import os
import random
import sys
from pathlib import Path

import pytest
from conftest import MODEL, PROJECT, unit_vector
from crashtools import Tally, pick_kill, run_writer
from dbcheck import problems
from figures import full_run, record

from alma_hooks.types import ANY, DomainKnowledge, Heuristic

pytestmark = [pytest.mark.azure, pytest.mark.fault]


def _sync_args(root: Path) -> list[str]:
    return ["sync", "run", "--once", "--no-embed", "--json", "--project-dir", str(root)]


def _change(a, rng: random.Random, n: int, live: dict[str, int], gone: set[str]) -> None:
    """Acknowledged writes of one round on replica A: adds, updates and one explicit delete."""
    scope = a.scope()
    for i in range(8):
        m = a.store.add(scope, DomainKnowledge(project_id=PROJECT, agent=ANY, fact=f"round {n} fact {i}: "
                                               f"the {rng.choice(['cart', 'invoice', 'login'])} service retries"))
        live[m.id] = m.version
    h = a.store.add(scope, Heuristic(project_id=PROJECT, condition=f"round {n} flaky test", strategy="rerun with -x",
                                     domain="testing_strategies"))
    live[h.id] = h.version
    for mid in rng.sample(sorted(live), k=min(2, len(live))):
        m = a.store.get(scope, mid)
        updated = a.store.update(scope, dataclasses.replace(m, confidence=round(rng.uniform(0.3, 0.95), 3)))
        live[mid] = updated.version
    # vectors travel with the documents, so a pull replaces and deletes vector rows too
    a.store.set_embeddings(MODEL, [(mid, unit_vector(rng.randrange(10**9))) for mid, _ in a.store.pending_embeddings(100)])
    victim = rng.choice(sorted(live))
    a.store.delete(scope, victim, reason=f"round {n}: the user said it is wrong")
    del live[victim]
    gone.add(victim)


def _kill_run(root: Path, rng: random.Random, calib: tuple[int, float], proxy, tmp: Path):  # type: ignore[no-untyped-def]
    statements, seconds = calib
    how = pick_kill(rng, statements, seconds)
    if "kill_after_s" in how:  # a random moment of the run's network phase, not of its imports
        seen = len(proxy.exchanges)
        how["kill_when"] = lambda: len(proxy.exchanges) > seen
    return run_writer("cli", _sync_args(root), env=dict(os.environ), cwd=root, **how, timeout=300)


def _calibrate(root: Path, tmp: Path) -> tuple[int, float]:
    w = run_writer("cli", _sync_args(root), env=dict(os.environ), cwd=root, count_file=tmp / "sync-statements",
                   timeout=300)
    assert w.returncode == 0, w.stderr[-2000:]
    return w.statements or 1, w.seconds


def _campaign(kills: int, make_replica, proxy, team, tmp: Path, seed: int) -> Tally:  # type: ignore[no-untyped-def]
    rng = random.Random(seed)
    a, b = make_replica("a", batch_size=4, concurrency=2), make_replica("b", page_size=4)
    live: dict[str, int] = {}
    gone: set[str] = set()
    _change(a, rng, -1, live, gone)
    push_calib = _calibrate(a.root, tmp)
    _change(a, rng, 0, live, gone)
    assert a.worker().run_once().ok
    pull_calib = _calibrate(b.root, tmp)
    proxy.latency_s = 0.01  # a run lasts long enough to be killed in its middle
    tally = Tally("sync worker")
    while tally.kills < kills:
        n = tally.rounds + 1
        _change(a, rng, n, live, gone)
        for replica, calib in ((a, push_calib), (b, pull_calib)):
            w = _kill_run(replica.root, rng, calib, proxy, tmp)
            assert w.returncode in (0, -9), w.stderr[-2000:]
            assert b"Traceback" not in w.stderr
            tally.kills += int(w.killed)
            found = problems(replica.store.path)
            if found:
                tally.integrity_failures += 1
                tally.problems += found
        # resume (the outbox and the feed position were left by the killed runs)
        assert a.worker().run_once().ok and b.worker().run_once().ok
        tally.rounds += 1
        docs = {d["id"]: d for d in team.query_all() if d.get("project_id") == PROJECT}
        b_has = dict(b.store.conn.execute("SELECT id, version FROM memories WHERE project_id = ?", (PROJECT,)))
        tally.acknowledged += len(live) + len(gone)
        for mid, version in live.items():
            ok = mid in docs and not docs[mid]["deleted"] and docs[mid]["version"] == version and b_has.get(mid) == version
            tally.recovered += ok
            if not ok:
                tally.problems.append(f"memory {mid} v{version}: cosmos {docs.get(mid, {}).get('version')}, "
                                      f"b {b_has.get(mid)}")
        for mid in gone:
            ok = mid in docs and docs[mid]["deleted"] and mid not in b_has
            tally.recovered += ok
            if not ok:
                tally.problems.append(f"deleted memory {mid} is back or not deleted everywhere")
        assert a.replica.status(PROJECT)["pending"] == 0
    proxy.latency_s = 0.0
    return tally


@pytest.mark.parametrize("kills", [
    pytest.param(2, id="2-kills"),
    pytest.param(25, id="25-kills", marks=pytest.mark.soak),
])
def test_kill_9_of_the_sync_worker_loses_nothing(kills, make_replica, proxy, team, tmp_path):
    if kills < 25 and full_run():
        pytest.skip("the fault runner runs the 25-kill variant")
    tally = _campaign(kills, make_replica, proxy, team, tmp_path, seed=kills)
    record("crash", **tally.figures())
    print(f"\nsync worker kills: {tally.figures()}", file=sys.stderr)
    assert tally.integrity_failures == 0 and not tally.problems, tally.problems
    assert tally.recovered == tally.acknowledged

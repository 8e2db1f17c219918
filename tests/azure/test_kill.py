"""``kill -9`` of a real ``alma-hooks sync run`` subprocess mid-push and mid-pull, then a resumed run.

The subprocess is the production CLI (``tests/azure/run_cli.py`` only swaps in the
static Key Vault token and TLS verification off for the loopback stand-ins). The
proxy adds a little latency per request so the run is still busy when it is killed,
and counts the writes the Cosmos stand-in applied per document.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import PROJECT

from alma_hooks.types import ANY, DomainKnowledge

pytestmark = pytest.mark.azure
RUN_CLI = Path(__file__).resolve().parent / "run_cli.py"
N = 150


def sync_run(root: Path) -> list[str]:
    return [sys.executable, str(RUN_CLI), "sync", "run", "--once", "--no-embed", "--json", "--project-dir", str(root)]


def wait_for(predicate: Callable[[], bool], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting for the subprocess"
        time.sleep(0.02)


def kill_when(proc: subprocess.Popen, ready: Callable[[], bool]) -> None:
    wait_for(lambda: ready() or proc.poll() is not None)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.communicate()}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL


def resume(root: Path) -> dict:
    done = subprocess.run(sync_run(root), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def count(store, sql: str, *args) -> int:
    return store.conn.execute(sql, args).fetchone()[0]


def test_kill_9_mid_push_then_resume_loses_nothing_and_writes_nothing_twice(make_replica, proxy, team):
    a = make_replica("a", batch_size=10, concurrency=4)
    ids = {a.store.add(a.scope(), DomainKnowledge(project_id=PROJECT, agent=ANY, fact=f"fact {i}")).id
           for i in range(N)}
    proxy.latency_s = 0.02
    proc = subprocess.Popen(sync_run(a.root), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    kill_when(proc, lambda: proxy.writes_seen() >= N // 3)
    pending = a.replica.status(PROJECT)["pending"]
    assert 0 < pending < N, "killed mid-push: some acknowledged, some still queued"

    proxy.latency_s = 0.0
    report = resume(a.root)
    assert report["ok"] and report["push"]["failed"] == 0
    assert report["push"]["written"] + report["push"]["unchanged"] == pending
    docs = team.query_all()
    assert len(docs) == N and {d["id"] for d in docs} == ids
    assert sum(proxy.applied_writes.values()) == N and set(proxy.applied_writes.values()) == {1}, \
        "every memory written to Cosmos exactly once"
    assert a.replica.status(PROJECT)["pending"] == 0


def test_kill_9_mid_pull_then_resume_applies_every_page_once(make_replica, proxy):
    a = make_replica("a")
    ids = {a.store.add(a.scope(), DomainKnowledge(project_id=PROJECT, agent=ANY, fact=f"fact {i}")).id
           for i in range(N)}
    assert a.worker().run_once().push.written == N
    b = make_replica("b", page_size=5)
    proxy.latency_s = 0.03
    proc = subprocess.Popen(sync_run(b.root), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    kill_when(proc, lambda: count(b.store, "SELECT count(*) FROM memories") >= N // 3)
    got = count(b.store, "SELECT count(*) FROM memories")
    assert got < N and b.replica.state(f"feed:{PROJECT}"), "killed mid-pull, with a saved feed position"

    proxy.latency_s = 0.0
    report = resume(b.root)
    assert report["ok"] and report["pull"]["merge"]["stale"] == 0, "the resumed pull starts where the last page ended"
    assert report["pull"]["merge"]["applied"] == N - got
    assert {m.id for m in b.store.list(b.scope(), limit=1000)} == ids
    per_memory = b.store.conn.execute("SELECT count(*) FROM audit WHERE action = 'import' GROUP BY memory_id").fetchall()
    assert len(per_memory) == N and {n for (n,) in per_memory} == {1}, "no page applied twice"

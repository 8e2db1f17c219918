"""Forgetting on a real SQLite store: decay, staleness, caps, pinned items, event retention."""

from __future__ import annotations

import time

import pytest

from alma_hooks.config import load_config
from alma_hooks.learning import forgetting
from alma_hooks.storage.sqlite import SQLiteStore
from alma_hooks.types import DomainKnowledge, ExecutionEvent, Heuristic, Preference, Scope, Task

DAY = 86400.0


@pytest.fixture
def setup(tmp_path):
    proj = tmp_path / "proj"
    (proj / ".alma").mkdir(parents=True)
    (proj / ".alma" / "config.yaml").write_text("forgetting:\n  max_per_type: 5\n  stale_days: 60\n")
    config = load_config(proj, {"ALMA_HOME": str(tmp_path / "home"), "ALMA_USER_ID": "u1", "HOME": str(tmp_path)})
    store = SQLiteStore(config.db_path, config.policy)
    yield config, store, Scope(config.project_id, "main", "u1")
    store.close()


def _h(scope, i, *, conf=0.6, validated_days_ago=0.0, pinned=False):
    now = time.time()
    return Heuristic(project_id=scope.project_id, agent=scope.agent, condition=f"case {i}", strategy=f"do {i}",
                     confidence=conf, last_validated=now - validated_days_ago * DAY, pinned=pinned,
                     successes=3, trials=4)


def test_decayed_heuristics_are_removed_and_audited(setup):
    config, store, scope = setup
    fresh = store.add(scope, _h(scope, 1))
    old = store.add(scope, _h(scope, 2, conf=0.3, validated_days_ago=200))  # 0.3 * 2^-6.7 < 0.05
    report = forgetting.run(store, config, scope)
    ids = {m.id for m in store.list(scope, ["heuristic"])}
    assert fresh.id in ids and old.id not in ids
    assert [r[0] for r in report.removed] == [old.id]
    assert any(a["memory_id"] == old.id and a["action"] == "delete" and "decayed" in a["reason"]
               for a in store.audit_log(scope))


def test_dry_run_changes_nothing(setup):
    config, store, scope = setup
    store.add(scope, _h(scope, 2, conf=0.3, validated_days_ago=200))
    report = forgetting.run(store, config, scope, dry_run=True)
    assert len(report.removed) == 1 and "would remove" in report.summary()
    assert len(store.list(scope, ["heuristic"])) == 1


def test_cap_keeps_the_strongest_and_every_pinned(setup):
    config, store, scope = setup
    pinned = store.add(scope, _h(scope, 0, conf=0.1, pinned=True))
    added = [store.add(scope, _h(scope, i, conf=0.1 + i / 20)) for i in range(1, 9)]
    forgetting.run(store, config, scope)
    left = {m.id for m in store.list(scope, ["heuristic"])}
    assert pinned.id in left
    assert left - {pinned.id} == {m.id for m in added[-5:]}


def test_stale_memories_go_but_curated_ones_stay(setup):
    config, store, scope = setup
    store.add(scope, DomainKnowledge(project_id=scope.project_id, fact="We deploy with make release"))
    store.add(scope, Preference(project_id=scope.project_id, user_id="u1", preference="No emojis in code"))
    stale = _h(scope, 1)
    stale.updated_at = stale.last_validated = time.time() - 100 * DAY
    store.conn.execute("PRAGMA foreign_keys = ON")
    stored = store.add(scope, stale)
    store.conn.execute("UPDATE memories SET updated_at = ? WHERE id = ?", (time.time() - 100 * DAY, stored.id))
    forgetting.run(store, config, scope)
    assert store.list(scope, ["heuristic"]) == []
    assert {m.type for m in store.list(scope)} == {"knowledge", "preference"}


def test_old_events_of_closed_tasks_are_pruned(setup):
    config, store, scope = setup
    task = store.open_task(scope, Task(project_id=scope.project_id, session_id="s", description="t"))
    old = time.time() - 30 * DAY
    for i in range(3):
        store.add_event(scope, ExecutionEvent(project_id=scope.project_id, tool="Bash", task_id=task.id,
                                              session_id="s", created_at=old))
    assert forgetting.run(store, config, scope).events_pruned == 0  # task still open: not learned from yet
    store.close_task(scope, task.id, "o", time.time())
    assert forgetting.run(store, config, scope).events_pruned == 3
    assert store.events(scope) == []

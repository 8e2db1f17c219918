"""Learning curves: the series `alma-hooks stats` prints, computed on a real SQLite store."""

from __future__ import annotations

import dataclasses
import time

import pytest

from alma_hooks.config import load_config
from alma_hooks.errors import AlmaError
from alma_hooks.learning import curves
from alma_hooks.storage.sqlite import SQLiteStore
from alma_hooks.types import ExecutionEvent, Heuristic, Outcome, Scope

DAY = 86400.0
MONDAY = 1_700_438_400.0  # 2023-11-20 00:00 UTC, a Monday


@pytest.fixture
def setup(tmp_path):
    proj = tmp_path / "proj"
    proj.mkdir()
    config = load_config(proj, {"ALMA_HOME": str(tmp_path / "home"), "ALMA_USER_ID": "u1", "HOME": str(tmp_path)})
    store = SQLiteStore(config.db_path, config.policy)
    yield config, store, Scope(config.project_id, "main", "u1")
    store.close()


def _outcome(scope: Scope, when: float, ok: bool) -> Outcome:
    return Outcome(project_id=scope.project_id, agent=scope.agent, domain="debugging", task_description="fix it",
                   success=ok, timestamp=when, created_at=when, updated_at=when)


def test_weekly_buckets_start_on_monday_and_count_outcomes_and_heuristics():
    outcomes = [(MONDAY + 1 * DAY, False), (MONDAY + 2 * DAY, True), (MONDAY + 8 * DAY, True),
                (MONDAY + 22 * DAY, True)]
    curve = curves.build_curve("p", "main", outcomes, [MONDAY + 9 * DAY], [MONDAY + 23 * DAY], "week",
                               now=MONDAY + 25 * DAY)
    assert [b.start for b in curve.buckets] == [MONDAY + 7 * DAY * i for i in range(4)]
    assert [(b.outcomes, b.successes) for b in curve.buckets] == [(2, 1), (1, 1), (0, 0), (1, 1)]
    assert [b.success_rate for b in curve.buckets] == [0.5, 1.0, None, 1.0]
    assert [(b.learned, b.retired) for b in curve.buckets] == [(0, 0), (1, 0), (0, 0), (0, 1)]
    assert (curve.outcomes, curve.successes, curve.learned, curve.retired) == (4, 3, 1, 1)
    d = curve.to_dict()
    assert d["every"] == "week" and d["buckets"][2]["success_rate"] is None
    assert d["buckets"][0] == {"start": MONDAY, "end": MONDAY + 7 * DAY, "outcomes": 2, "successes": 1,
                               "success_rate": 0.5, "heuristics_learned": 0, "heuristics_retired": 0}


def test_daily_buckets_run_up_to_now():
    curve = curves.build_curve("p", "a", [(MONDAY + 3600, True)], [], [], "day", now=MONDAY + 2.5 * DAY)
    assert [b.start for b in curve.buckets] == [MONDAY, MONDAY + DAY, MONDAY + 2 * DAY]


def test_buckets_of_n_outcomes():
    outcomes = [(MONDAY + i * 100, i >= 3) for i in range(7)]
    curve = curves.build_curve("p", "a", outcomes, [MONDAY - 50, MONDAY + 450], [MONDAY + 650], 3, now=MONDAY + 1000)
    assert curve.every == "3 outcomes"
    assert [(b.outcomes, b.successes) for b in curve.buckets] == [(3, 0), (3, 3), (1, 1)]
    assert [(b.learned, b.retired) for b in curve.buckets] == [(1, 0), (1, 0), (0, 1)]
    assert curve.buckets[0].start == MONDAY - 50  # a heuristic before the first outcome belongs to the first step
    only_heuristics = curves.build_curve("p", "a", [], [MONDAY], [], 5, now=MONDAY + 10)
    assert [(b.outcomes, b.learned) for b in only_heuristics.buckets] == [(0, 1)]


def test_no_history_no_buckets():
    assert curves.build_curve("p", "a", [], [], [], "week", now=MONDAY).buckets == []


@pytest.mark.parametrize("value,expected", [("week", "week"), (" Day ", "day"), ("10", 10), (7, 7)])
def test_parse_every(value, expected):
    assert curves.parse_every(value) == expected


@pytest.mark.parametrize("value", ["month", "0", "-3", "1.5", "", "999999999"])
def test_parse_every_refuses(value):
    with pytest.raises(AlmaError, match="invalid curve step"):
        curves.parse_every(value)


def test_history_from_the_store_includes_forgotten_outcomes(setup):
    config, store, scope = setup
    kept = [store.add(scope, _outcome(scope, MONDAY + i * DAY, ok)) for i, ok in enumerate([False, True, True])]
    gone = store.add(scope, _outcome(scope, MONDAY - 10 * DAY, False))
    store.delete(scope, gone.id, reason="forgetting: stale")
    h = store.add(scope, Heuristic(project_id=scope.project_id, domain="debugging", condition="c", strategy="s"))
    store.update(scope, dataclasses.replace(h, confidence=0.9), reason="reinforced")
    store.delete(scope, h.id, reason="retired: worked 1 of 4 times")
    store.add(scope, Heuristic(project_id=scope.project_id, domain="debugging", condition="c2", strategy="s2"))
    assert curves.outcome_history(store, scope) == [(MONDAY - 10 * DAY, False)] + [
        (o.timestamp, o.success) for o in kept]
    learned, retired = curves.heuristic_history(store, scope)
    assert len(learned) == 2 and len(retired) == 1
    now = time.time()
    curve = curves.learning_curve(store, scope, "week", now=now)
    assert curve.outcomes == 4 and curve.successes == 2
    assert curve.buckets[-1].learned == 2 and curve.buckets[-1].retired == 1  # audited just now


def test_project_curves_one_per_agent_of_the_project_only(setup):
    config, store, scope = setup
    helena = Scope(scope.project_id, "helena", "u1")
    store.add(scope, _outcome(scope, MONDAY, True))
    store.add(helena, dataclasses.replace(_outcome(helena, MONDAY, False), domain="form_testing"))
    other = Scope("github.com/acme/other", "main", "u1")
    store.add(other, _outcome(other, MONDAY, True))
    store.add_event(Scope(scope.project_id, "victor", "u1"),
                    ExecutionEvent(project_id=scope.project_id, agent="victor", tool="Bash"))  # no history: no curve
    found = curves.project_curves(store, scope.project_id, "u1", "week", now=MONDAY + DAY)
    assert [(c.agent, c.outcomes, c.successes) for c in found] == [("helena", 1, 0), ("main", 1, 1)]
    assert {c.project_id for c in curves.project_curves(store, None, "u1", now=MONDAY + DAY)} == {
        scope.project_id, other.project_id}


def test_sparkline_and_counts():
    assert curves.sparkline([0.0, 0.5, 1.0, None]) == "▁▅█·"
    assert curves.counts_line([0, 1, 9, 10]) == "·19+"


def test_format_curves():
    curve = curves.build_curve("p", "helena", [(MONDAY, False), (MONDAY + 8 * DAY, True)], [MONDAY + 8 * DAY], [],
                               "week", now=MONDAY + 8 * DAY)
    lines = curves.format_curves([curve])
    assert lines[0].startswith("Learning curves, one step per week")
    assert "helena  success  ▁█  0% -> 100% (2 outcomes, 50% overall)" in lines[1]
    assert "learned  ·1  +1 heuristics" in lines[2] and "retired  ··  -0" in lines[3]
    two = curves.format_curves([curve, dataclasses.replace(curve, project_id="q", buckets=curve.buckets[:1])], last=1)
    assert "  p" in two and "  q" in two and any("█" in line for line in two)
    assert curves.format_curves([]) == ["No learning history yet (an outcome is recorded when a task ends)."]
    no_outcomes = curves.build_curve("p", "a", [], [MONDAY], [], "week", now=MONDAY)
    assert "no outcomes" in curves.format_curves([no_outcomes])[1]


def test_confidence_history_from_update_snapshots(setup):
    config, store, scope = setup
    h = store.add(scope, Heuristic(project_id=scope.project_id, domain="debugging", condition="c", strategy="s",
                                   confidence=0.3, created_at=MONDAY, updated_at=MONDAY))
    h = store.update(scope, dataclasses.replace(h, confidence=0.5), reason="reinforced")
    h = store.update(scope, dataclasses.replace(h, confidence=0.7), reason="reinforced")
    points = curves.confidence_history(store, scope, h)
    assert [c for _, c in points] == [0.3, 0.5, 0.7]
    assert points[0][0] == MONDAY and points[-1][0] == h.updated_at
    fresh = store.add(scope, Heuristic(project_id=scope.project_id, domain="debugging", condition="n", strategy="t"))
    assert curves.confidence_history(store, scope, fresh) == [(fresh.updated_at, fresh.confidence)]

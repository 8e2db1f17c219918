"""The learning protocol on a real SQLite store with the real embedding model."""

from __future__ import annotations

import time

import pytest

from alma_hooks.config import load_config
from alma_hooks.errors import ScopeViolation
from alma_hooks.learning.domains import UNCLASSIFIED, classify
from alma_hooks.learning.heuristics import learn_from_outcome, strategy_key
from alma_hooks.retrieval.scoring import wilson_lower_bound
from alma_hooks.storage.sqlite import SQLiteStore
from alma_hooks.types import AntiPattern, Heuristic, Outcome, Scope

FORM_TASKS = [
    "fix the flaky signup form validation test",
    "the signup form validation test fails on the required email field",
    "signup form test is failing again on validation errors",
    "make the sign-up form validation tests pass",
    "validation test of the signup form breaks when email is empty",
    "repair the failing signup form field validation test",
]
GOOD = "Bash: npx playwright test tests/{n}.spec.ts --project=chromium"
BAD = "Bash: npx playwright test tests/{n}.spec.ts --headed --debug"


@pytest.fixture
def env(tmp_path):
    (tmp_path / "proj").mkdir()
    return {"ALMA_HOME": str(tmp_path / "home"), "ALMA_USER_ID": "u1", "HOME": str(tmp_path)}


@pytest.fixture
def setup(tmp_path, env, embedder):
    config = load_config(tmp_path / "proj", env)
    store = SQLiteStore(config.db_path, config.policy)
    yield config, store, (lambda texts: embedder.embed(list(texts)))
    store.close()


def _outcome(scope, i, success, strategy, task=None, error=""):
    return Outcome(project_id=scope.project_id, agent=scope.agent, task_description=task or FORM_TASKS[i % 6],
                   success=success, strategy_used=strategy.format(n=f"t{i}"), error=error,
                   timestamp=time.time() + i)


def _close(config, store, embed, scope, outcome):
    stored = store.add(scope, outcome)
    return learn_from_outcome(store, config, scope, stored, embed=embed)


def test_strategy_key_drops_paths_and_values():
    a = strategy_key("Bash: npx playwright test tests/a.spec.ts --retries=0 -> Edit: file_path=src/a.ts")
    b = strategy_key("Bash: npx playwright test tests/b.spec.ts --retries=3 -> Edit: file_path=src/b.ts")
    assert a == b == "bash npx playwright test --retries > edit:"[:-1] or a == b


@pytest.mark.parametrize("text,domain", [
    ("fix the signup form validation test", "form_testing"),
    ("the data-testid selector for the save button is brittle", "selector_patterns"),
    ("run the axe accessibility audit on the settings page", "accessibility_testing"),
    ("write a haiku about autumn", UNCLASSIFIED),
], ids=["form", "selector", "a11y", "unclassified"])
def test_classify_for_helena(setup, text, domain):
    config, _, _ = setup
    assert classify(text, config.policy.profile("helena")) == domain


def test_heuristic_needs_three_similar_successes(setup):
    config, store, embed = setup
    scope = Scope(config.project_id, "helena", "u1")
    for i in range(2):
        r = _close(config, store, embed, scope, _outcome(scope, i, True, GOOD))
        assert not r.created
    assert store.list(scope, ["heuristic"]) == []
    r = _close(config, store, embed, scope, _outcome(scope, 2, True, GOOD))
    assert r.domain in ("form_testing", "testing_strategies") and r.cluster == 3
    [h] = store.list(scope, ["heuristic"])
    assert isinstance(h, Heuristic) and "--project=chromium" in h.strategy
    assert (h.successes, h.trials, h.occurrence_count) == (3, 3, 3)
    assert h.confidence == pytest.approx(wilson_lower_bound(3, 3))
    # the same outcome learned again changes nothing (counts are recomputed, not incremented)
    again = learn_from_outcome(store, config, scope, store.list(scope, ["outcome"])[0], embed=embed)
    assert not again.created and len(store.list(scope, ["heuristic"])) == 1


def test_dissimilar_tasks_do_not_make_a_heuristic(setup):
    config, store, embed = setup
    scope = Scope(config.project_id, "helena", "u1")
    tasks = ["fix the signup form validation test", "the data-testid selector of the menu is brittle",
             "run the axe accessibility audit on settings"]
    for i, t in enumerate(tasks):
        _close(config, store, embed, scope, _outcome(scope, i, True, GOOD, task=t))
    assert store.list(scope, ["heuristic"]) == []


def test_repeated_failures_then_success_make_an_anti_pattern(setup):
    config, store, embed = setup
    scope = Scope(config.project_id, "helena", "u1")
    for i in range(2):
        _close(config, store, embed, scope, _outcome(scope, i, False, BAD, error="Timeout 30000ms exceeded"))
    r = _close(config, store, embed, scope, _outcome(scope, 2, True, GOOD))
    [ap] = store.list(scope, ["anti_pattern"])
    assert isinstance(ap, AntiPattern) and ap.id in r.created
    assert "--headed" in ap.pattern and "Timeout" in ap.why and "--project=chromium" in ap.alternative
    assert ap.occurrence_count == 2


def test_high_confidence_heuristic_is_never_overwritten(setup):
    config, store, embed = setup
    scope = Scope(config.project_id, "helena", "u1")
    for i in range(12):
        _close(config, store, embed, scope, _outcome(scope, i, True, GOOD))
    [strong] = store.list(scope, ["heuristic"])
    assert strong.confidence >= config.get("learning.high_confidence")  # 12 of 12: Wilson 0.76
    other = "Bash: npx cypress run --spec {n}"
    results = [_close(config, store, embed, scope, _outcome(scope, 20 + i, True, other)) for i in range(14)]
    [kept] = store.list(scope, ["heuristic"])
    assert "playwright" in kept.strategy and kept.id == strong.id
    assert any(r.conflicts for r in results)
    assert any(row["action"] == "conflict" for row in store.audit_log(scope))


def test_low_confidence_heuristic_is_replaced_by_a_better_strategy(setup):
    config, store, embed = setup
    scope = Scope(config.project_id, "helena", "u1")
    for i, ok in enumerate([True, True, True, False, False, False]):
        _close(config, store, embed, scope, _outcome(scope, i, ok, GOOD))
    [h] = store.list(scope, ["heuristic"])
    assert h.confidence < 0.7
    for i in range(6):
        _close(config, store, embed, scope, _outcome(scope, 20 + i, True, "Bash: npx cypress run --spec {n}"))
    [h2] = store.list(scope, ["heuristic"])
    assert h2.id == h.id and "cypress" in h2.strategy and h2.successes == 6


def test_a_cannot_learn_domain_is_never_learned(tmp_path, env, embedder):
    config = load_config(tmp_path / "proj", env)
    store = SQLiteStore(config.db_path, config.policy)
    scope = Scope(config.project_id, "helena", "u1")
    embed = lambda texts: embedder.embed(list(texts))  # noqa: E731
    task = "optimise the slow sql query behind the orders table join"
    results = [_close(config, store, embed, scope, _outcome(scope, i, True, GOOD, task=task)) for i in range(4)]
    assert all("cannot learn" in r.refused for r in results)
    assert store.list(scope, ["heuristic", "anti_pattern"]) == []


def test_an_unconfigured_agent_stores_and_learns_nothing(tmp_path, env):
    (tmp_path / "proj" / ".alma").mkdir(parents=True)
    (tmp_path / "proj" / ".alma" / "config.yaml").write_text("agents:\n  default: null\n")
    config = load_config(tmp_path / "proj", env)
    store = SQLiteStore(config.db_path, config.policy)
    scope = Scope(config.project_id, "ghost", "u1")
    with pytest.raises(ScopeViolation):
        store.add(scope, _outcome(scope, 0, True, GOOD))
    assert learn_from_outcome(store, config, scope, _outcome(scope, 0, True, GOOD)).refused


def test_lexical_clustering_without_an_embedder(setup):
    config, store, _ = setup
    scope = Scope(config.project_id, "helena", "u1")
    task = "fix the flaky signup form validation test"
    for i in range(3):
        _close(config, store, None, scope, _outcome(scope, i, True, GOOD, task=f"{task} in step {i}"))
    assert len(store.list(scope, ["heuristic"])) == 1


def test_learning_stays_in_the_agents_scope(setup):
    config, store, embed = setup
    helena = Scope(config.project_id, "helena", "u1")
    for i in range(3):
        _close(config, store, embed, helena, _outcome(helena, i, True, GOOD))
    for agent in ("victor", "main"):
        assert store.list(Scope(config.project_id, agent, "u1"), ["heuristic", "outcome"]) == []

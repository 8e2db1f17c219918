"""Rules of the learning protocol that the learning benchmark showed were needed.

Each test attempts the thing that must not happen (a good strategy turned into a
warning, a heuristic learned from someone else's evidence, a stale suggestion)
and shows it does not. Real SQLite store, real embedding model.
"""

from __future__ import annotations

import time

import pytest

from alma_hooks.config import load_config
from alma_hooks.learning.heuristics import learn_from_outcome, strategy_key
from alma_hooks.learning import outcomes
from alma_hooks.learning.preferences import detect_preference
from alma_hooks.storage.sqlite import SQLiteStore
from alma_hooks.types import AntiPattern, Heuristic, Outcome, Scope

TASKS = [
    "fix the flaky signup form validation test",
    "the signup form validation test fails on the required email field",
    "signup form test is failing again on validation errors",
    "make the sign-up form validation tests pass",
    "validation test of the signup form breaks when email is empty",
    "repair the failing signup form field validation test",
]
GOOD = "Bash: npx vitest run src/forms/{n}.test.tsx --environment=jsdom"
MEH = "Bash: npx playwright test tests/forms/{n}.spec.ts --grep @validation"
BAD = "Bash: npx jest src/forms/{n}.test.tsx --watchAll=false"


@pytest.fixture
def setup(tmp_path, embedder):
    (tmp_path / "proj").mkdir()
    env = {"ALMA_HOME": str(tmp_path / "home"), "ALMA_USER_ID": "u1", "HOME": str(tmp_path)}
    config = load_config(tmp_path / "proj", env)
    store = SQLiteStore(config.db_path, config.policy)
    scope = Scope(config.project_id, "helena", "u1")
    yield config, store, scope, (lambda texts: embedder.embed(list(texts)))
    store.close()


class Run:
    """Closes outcomes one after the other, with increasing timestamps."""

    def __init__(self, setup):
        self.config, self.store, self.scope, self.embed = setup
        self.i = 0

    def outcome(self, success: bool, strategy: str, error: str = "") -> Outcome:
        self.i += 1
        return Outcome(project_id=self.scope.project_id, agent=self.scope.agent,
                       task_description=TASKS[self.i % len(TASKS)], success=success,
                       strategy_used=strategy.format(n=f"f{self.i}"), error=error, timestamp=time.time() + self.i)

    def close(self, success: bool, strategy: str, error: str = ""):
        stored = self.store.add(self.scope, self.outcome(success, strategy, error))
        return learn_from_outcome(self.store, self.config, self.scope, stored, embed=self.embed)

    def record(self, success: bool, strategy: str) -> None:
        """An outcome stored without learning (as if learned from before)."""
        self.store.add(self.scope, self.outcome(success, strategy))

    def memories(self, mtype):
        return self.store.list(self.scope, [mtype])


@pytest.mark.parametrize("a,b", [
    ("Bash: cd web && npx playwright test a.spec.ts --project=chromium",
     "Bash: cd apps/shop && npx playwright test b.spec.ts --project=webkit"),
    ("Bash: CI=1 pytest tests/api -k orders --maxfail=1", "Bash: pytest tests/api -k users --maxfail=3"),
    ("Bash: export NODE_ENV=test; npx vitest run src/a --reporter=dot", "Bash: npx vitest run src/b --reporter=dot"),
], ids=["cd-prefix", "env-prefix", "export"])
def test_setup_before_a_command_is_not_its_approach(a, b):
    assert strategy_key(a) == strategy_key(b)
    assert strategy_key("Bash: cd web && npx playwright test --headed") != strategy_key(a)
    assert strategy_key("Bash: cd web") == "bash cd web"  # nothing but setup: that is the approach


def test_a_strategy_that_mostly_works_is_never_an_anti_pattern(setup):
    run = Run(setup)
    for ok in (True, False, True, True, False, True, True):
        run.close(ok, GOOD, error="1 failed")
    run.close(True, MEH)
    assert not [m for m in run.memories("anti_pattern") if isinstance(m, AntiPattern) and "vitest" in m.pattern]


def test_a_heuristic_that_fails_more_than_it_works_is_retired(setup):
    run = Run(setup)
    for _ in range(3):
        run.close(True, MEH)
    [h] = run.memories("heuristic")
    assert isinstance(h, Heuristic) and "playwright" in h.strategy
    for _ in range(3):
        run.close(False, MEH, error="1 failed")
    assert run.memories("heuristic"), "3 of 6 is a tie: kept"
    run.close(False, MEH, error="1 failed")
    assert run.memories("heuristic") == []
    assert any(row["action"] == "delete" and row["reason"].startswith("retired")
               for row in run.store.audit_log(run.scope))


def test_an_outcome_of_another_strategy_creates_no_heuristic(setup):
    run = Run(setup)
    for _ in range(3):
        run.record(True, GOOD)  # three successes, never learned from
    r = run.close(False, BAD, error="SyntaxError")
    assert not r.created and run.memories("heuristic") == []
    r = run.close(True, GOOD)
    [h] = run.memories("heuristic")
    assert h.id in r.created and "vitest" in h.strategy


def test_no_heuristic_while_a_better_supported_strategy_lacks_successes(setup):
    run = Run(setup)
    for ok in (True, False, True, False):
        run.close(ok, MEH, error="1 failed")
    for _ in range(2):
        run.close(True, GOOD)
    run.close(True, MEH)  # MEH: 3 of 5; GOOD: 2 of 2 is better supported (Wilson), but not yet at 3
    assert run.memories("heuristic") == []
    run.close(True, GOOD)
    [h] = run.memories("heuristic")
    assert "vitest" in h.strategy


def test_an_alternative_that_stopped_working_is_no_longer_suggested(setup):
    run = Run(setup)
    run.close(False, BAD, error="SyntaxError: Cannot use import statement outside a module")
    run.close(True, MEH)
    run.close(False, BAD, error="SyntaxError: Cannot use import statement outside a module")
    [ap] = run.memories("anti_pattern")
    assert "jest" in ap.pattern and "playwright" in ap.alternative
    for _ in range(2):
        run.close(False, MEH, error="1 failed")  # MEH now fails more often than it works
    [ap] = [m for m in run.memories("anti_pattern") if "jest" in m.pattern]
    assert ap.alternative == ""


def test_an_exit_code_line_is_not_a_test_count():
    assert outcomes.test_summary("Exit code 1\nFAILED: Can't locate revision identified by 'abc'") == ""
    assert outcomes.test_summary("==== 1 failed, 2 passed in 0.3s ====") == "2 passed, 1 failed"


@pytest.mark.parametrize("prompt", [
    "Make sure the form autosave does not submit invalid field values.",
    "Delegate to Helena: make sure a crashing job does not block the rest of the queue.",
    "Check that the export is not empty",
], ids=["does-not", "delegated-does-not", "is-not"])
def test_a_task_saying_what_something_does_not_do_is_no_preference(prompt):
    assert detect_preference(prompt) is None


def test_use_x_not_y_is_still_a_preference():
    found = detect_preference("use pnpm, not npm")
    assert found is not None and "pnpm" in found.preference

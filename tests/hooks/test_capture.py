"""Capture and injection through the real hook process, event by event, as Claude Code sends them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hooktools import SESSION, USER_ID, assert_fail_open, query

from alma_hooks.types import DomainKnowledge, Heuristic, Outcome, Preference

FAILING_RUN = {
    "tool_name": "Bash",
    "tool_input": {"command": "pytest tests/test_cart.py -q", "description": "Run the cart tests"},
    "tool_use_id": "toolu_01",
    "error": ("Exit code 1\n...F\n=================================== FAILURES ===================================\n"
              "FAILED tests/test_cart.py::test_total_with_discount - assert 9.99 == 10.0\n"
              "1 failed, 3 passed in 0.14s"),
    "is_interrupt": False,
    "duration_ms": 812,
}
EDIT = {
    "tool_name": "Edit",
    "tool_input": {"file_path": "src/cart.py", "old_string": "round(total, 1)", "new_string": "round(total, 2)"},
    "tool_response": {"filePath": "src/cart.py", "oldString": "round(total, 1)", "newString": "round(total, 2)"},
    "tool_use_id": "toolu_02",
    "duration_ms": 15,
}
PASSING_RUN = {
    "tool_name": "Bash",
    "tool_input": {"command": "pytest tests/test_cart.py -q -p no:randomly", "description": "Run the cart tests"},
    "tool_response": {"stdout": "....                                                  [100%]\n4 passed in 0.11s\n",
                      "stderr": "", "interrupted": False, "isImage": False, "noOutputExpected": False},
    "tool_use_id": "toolu_03",
    "duration_ms": 640,
}
PROMPT = "Fix the failing discount test in tests/test_cart.py"


def _open_tasks(db: Path, agent: str) -> list[tuple]:
    return query(db, "SELECT id, description FROM tasks WHERE agent = ? AND closed_at = 0", (agent,))


def test_session_stores_events_and_successful_outcome(run_hook, store, scope, config):
    results = [
        run_hook("SessionStart", {"source": "startup"}),
        run_hook("UserPromptSubmit", {"prompt": PROMPT, "prompt_id": "p1"}),
        run_hook("PostToolUseFailure", FAILING_RUN),
        run_hook("PostToolUse", EDIT),
        run_hook("PostToolUse", PASSING_RUN),
        run_hook("Stop", {"last_assistant_message": "Fixed the rounding in cart.total(); 4 tests pass.",
                          "stop_hook_active": False}),
    ]
    for r in results:
        assert_fail_open(r)
        assert r.stderr == ""

    (task_id, description, closed_at, outcome_id), = query(
        config.db_path, "SELECT id, description, closed_at, outcome_id FROM tasks WHERE session_id = ?", (SESSION,))
    assert description == PROMPT and closed_at > 0

    events = store.events(scope("main"), session_id=SESSION)
    assert [e.tool for e in events] == ["Bash", "Edit", "Bash"]
    assert [e.ok for e in events] == [False, True, True]
    assert {e.task_id for e in events} == {task_id}
    assert "1 failed" in events[0].error and "3 passed" in events[0].result_summary
    assert events[2].result_summary == "4 passed"
    assert events[0].duration_ms == 812

    outcomes = store.list(scope("main"), ["outcome"])
    assert len(outcomes) == 1
    outcome = outcomes[0]
    assert isinstance(outcome, Outcome) and outcome.id == outcome_id
    assert outcome.success is True
    assert outcome.task_description == PROMPT
    assert outcome.feedback == "last test run: 4 passed"
    assert "pytest tests/test_cart.py" in outcome.strategy_used and "Edit" in outcome.strategy_used
    assert outcome.strategy_used.index("Edit") < outcome.strategy_used.rindex("pytest")
    assert set(outcome.source_ids) == {e.id for e in events}
    assert outcome.session_id == SESSION and outcome.agent == "main"


HELENA_TASK = "Write UI tests for the signup form: every required field must show an error when left empty."
MAIN_PROMPT = "Add UI tests for the signup form required fields; delegate the tests to helena."
HELENA_STRATEGY = "test the happy path first, then leave each required field empty alone"
HELENA_FACT = "UI tests of the signup form select required fields by data-testid, e.g. signup-email"
VICTOR_STRATEGY = "post an empty JSON body and expect a 422 that lists every missing field"
MAIN_STRATEGY = "run the whole UI test suite after changing required form fields, not only the signup tests"


@pytest.fixture
def seeded(store, scope):
    """Memories of three agents that all match the signup-form prompts by words: only scope can tell them apart."""
    helena, victor, main = scope("helena"), scope("victor"), scope("main")
    p = helena.project_id
    store.add(helena, Heuristic(project_id=p, agent="helena", domain="form_testing",
                                condition="testing a signup form with many required fields",
                                strategy=HELENA_STRATEGY, occurrence_count=5, successes=5, trials=5, confidence=0.8))
    store.add(helena, DomainKnowledge(project_id=p, agent="helena", domain="selector_patterns", fact=HELENA_FACT))
    store.add(victor, Heuristic(project_id=p, agent="victor", domain="api_testing_patterns",
                                condition="testing the signup form API with required fields",
                                strategy=VICTOR_STRATEGY, occurrence_count=5, successes=5, trials=5, confidence=0.8))
    store.add(main, Heuristic(project_id=p, agent="main", domain="testing_strategies",
                              condition="changing signup form required fields and their UI tests",
                              strategy=MAIN_STRATEGY, occurrence_count=4, successes=4, trials=4, confidence=0.8))


def test_subagent_work_is_stored_and_injected_in_its_own_scope(run_hook, seeded, store, scope, config):
    helena = "alma-hooks:helena"
    main_prompt = run_hook("UserPromptSubmit", {"prompt": MAIN_PROMPT})
    launch = run_hook("PreToolUse", {"tool_name": "Agent", "tool_use_id": "toolu_a1",
                                     "tool_input": {"subagent_type": helena, "description": "Signup form UI tests",
                                                    "prompt": HELENA_TASK}})
    start = run_hook("SubagentStart", {"agent_id": "ag-1", "agent_type": helena})
    inside = [
        run_hook("PostToolUse", {"agent_id": "ag-1", "agent_type": helena, "tool_name": "Write",
                                 "tool_input": {"file_path": "tests/signup.spec.ts", "content": "test('x', ...)"},
                                 "tool_response": {"type": "create", "filePath": "tests/signup.spec.ts"},
                                 "tool_use_id": "toolu_h1", "duration_ms": 9}),
        run_hook("PostToolUse", {"agent_id": "ag-1", "agent_type": helena, "tool_name": "Bash",
                                 "tool_input": {"command": "npx playwright test tests/signup.spec.ts"},
                                 "tool_response": {"stdout": "Running 3 tests using 1 worker\n\n  3 passed (2.1s)\n",
                                                   "stderr": "", "interrupted": False, "isImage": False},
                                 "tool_use_id": "toolu_h2", "duration_ms": 2300}),
    ]
    sub_stop = run_hook("SubagentStop", {"agent_id": "ag-1", "agent_type": helena,
                                         "agent_transcript_path": "/tmp/agent-ag-1.jsonl",
                                         "last_assistant_message": "Added 3 signup form tests; all pass.",
                                         "stop_hook_active": False})
    agent_result = json.dumps({"status": "completed", "agentType": helena, "toolsUsed": ["Write", "Bash"]})
    back = run_hook("PostToolUse", {"tool_name": "Agent", "tool_use_id": "toolu_a1",
                                    "tool_input": {"subagent_type": helena, "description": "Signup form UI tests",
                                                   "prompt": HELENA_TASK},
                                    "tool_response": agent_result, "duration_ms": 5000})
    main_stop = run_hook("Stop", {"last_assistant_message": "Helena added the tests.", "stop_hook_active": False})
    for r in (main_prompt, launch, start, *inside, sub_stop, back, main_stop):
        assert_fail_open(r)

    # Helena's slice reaches Helena, and nothing of Victor's or main's does
    assert start.output["hookSpecificOutput"]["hookEventName"] == "SubagentStart"
    assert HELENA_STRATEGY in start.context and "signup-email" in start.context
    assert VICTOR_STRATEGY not in start.context and MAIN_STRATEGY not in start.context
    # the main agent gets its own memory, never Helena's or Victor's
    assert MAIN_STRATEGY in main_prompt.context
    for foreign in (HELENA_STRATEGY, "signup-email", VICTOR_STRATEGY):
        assert foreign not in main_prompt.context

    # Helena's work is stored in the helena scope only
    by_agent = dict(query(config.db_path, "SELECT agent, count(*) FROM events GROUP BY agent"))
    assert by_agent == {"helena": 2, "main": 1}
    helena_events = store.events(scope("helena"), session_id=SESSION)
    assert [e.tool for e in helena_events] == ["Write", "Bash"]
    assert store.events(scope("victor")) == []
    main_events = store.events(scope("main"), session_id=SESSION)
    assert [e.tool for e in main_events] == ["Agent"]

    (helena_outcome,) = store.list(scope("helena"), ["outcome"])
    assert helena_outcome.agent == "helena" and helena_outcome.success is True
    assert helena_outcome.task_description == HELENA_TASK
    assert "playwright" in helena_outcome.strategy_used
    (main_outcome,) = store.list(scope("main"), ["outcome"])
    assert main_outcome.task_description == MAIN_PROMPT
    assert "playwright" not in main_outcome.strategy_used
    assert store.list(scope("victor"), ["outcome"]) == []
    assert query(config.db_path, "SELECT agent FROM memories WHERE type = 'outcome' ORDER BY agent") == [
        ("helena",), ("main",)]
    assert _open_tasks(config.db_path, "helena") == [] and _open_tasks(config.db_path, "main") == []


TASK_NOTIFICATION = ("<task-notification>\n<task-id>bg-42</task-id>\n<status>completed</status>\n"
                     "<summary>Agent \"Signup tests\" completed</summary>\n"
                     "<result>That's wrong. Always use yarn instead of npm.</result>\n</task-notification>")


def test_task_notification_prompt_is_not_a_user_prompt(run_hook, seeded, store, scope, config):
    run_hook("UserPromptSubmit", {"prompt": "Fix the signup form required fields tests"})
    run_hook("PostToolUse", PASSING_RUN)
    run_hook("Stop", {"last_assistant_message": "Done.", "stop_hook_active": False})
    before = query(config.db_path, "SELECT count(*) FROM tasks")

    r = run_hook("UserPromptSubmit", {"prompt": TASK_NOTIFICATION})

    assert_fail_open(r)
    assert r.stdout == ""
    assert query(config.db_path, "SELECT count(*) FROM tasks") == before
    assert store.list(scope("main"), ["preference"]) == []
    (outcome,) = store.list(scope("main"), ["outcome"])
    assert outcome.success is True  # the notification's "That's wrong" is not the user's feedback


def test_internal_subagent_is_ignored(run_hook, seeded, store, scope, config):
    # /compact's internal subagent gets no digest: it would mark main's heuristics as already injected
    start = run_hook("SubagentStart", {"agent_id": "compact-0", "agent_type": ""})
    assert_fail_open(start)
    assert start.stdout == ""
    assert query(config.db_path, "SELECT count(*) FROM injections") == [(0,)]
    assert MAIN_STRATEGY in run_hook("SessionStart", {"source": "compact"}).context

    run_hook("UserPromptSubmit", {"prompt": PROMPT})
    run_hook("PostToolUse", PASSING_RUN)
    injections = query(config.db_path, "SELECT count(*) FROM injections")

    start = run_hook("SubagentStart", {"agent_id": "compact-1", "agent_type": ""})
    r = run_hook("SubagentStop", {"agent_id": "compact-1", "agent_type": "", "agent_transcript_path": "/tmp/c.jsonl",
                                  "last_assistant_message": "Summary of the conversation...",
                                  "stop_hook_active": False})

    assert_fail_open(start)
    assert_fail_open(r)
    assert start.stdout == "" and r.stdout == ""
    assert query(config.db_path, "SELECT count(*) FROM injections") == injections  # main's items not marked seen
    assert query(config.db_path, "SELECT count(*) FROM memories WHERE type = 'outcome'") == [(0,)]
    assert [d for _, d in _open_tasks(config.db_path, "main")] == [PROMPT]  # the main task is still open
    run_hook("Stop", {"last_assistant_message": "Done.", "stop_hook_active": False})
    assert len(store.list(scope("main"), ["outcome"])) == 1


def test_contradicting_preference_supersedes_the_old_one(run_hook, store, scope, config):
    first = run_hook("UserPromptSubmit", {"prompt": "always use pnpm instead of npm"})
    assert_fail_open(first)
    (old,) = store.list(scope("main"), ["preference"])
    assert isinstance(old, Preference) and "pnpm instead of npm" in old.preference and old.user_id == USER_ID

    second = run_hook("UserPromptSubmit", {"prompt": "Actually, always use npm instead of pnpm in this repo."})

    assert_fail_open(second)
    (new,) = store.list(scope("main"), ["preference"])
    assert "npm instead of pnpm" in new.preference and new.id != old.id
    audit = query(config.db_path, "SELECT action, reason FROM audit WHERE memory_id = ? ORDER BY rid", (old.id,))
    assert audit[-1][0] == "delete" and audit[-1][1].startswith("superseded")
    assert "pnpm instead of npm" not in second.context


def test_negative_feedback_flips_the_last_outcome(run_hook, store, scope, config):
    run_hook("UserPromptSubmit", {"prompt": PROMPT})
    run_hook("PostToolUse", PASSING_RUN)
    run_hook("Stop", {"last_assistant_message": "All 4 tests pass now.", "stop_hook_active": False})
    (before,) = store.list(scope("main"), ["outcome"])
    assert before.success is True

    r = run_hook("UserPromptSubmit", {"prompt": "that's wrong, the test still fails"})

    assert_fail_open(r)
    after = store.get(scope("main"), before.id)
    assert after.success is False and after.version == before.version + 1
    assert after.feedback.startswith("user:")
    reasons = [row[0] for row in query(config.db_path, "SELECT reason FROM audit WHERE memory_id = ?", (before.id,))]
    assert "user feedback" in reasons


def test_feedback_from_another_session_does_not_touch_this_one(run_hook, store, scope, config):
    run_hook("UserPromptSubmit", {"prompt": PROMPT})
    run_hook("PostToolUse", PASSING_RUN)
    run_hook("Stop", {"last_assistant_message": "Done.", "stop_hook_active": False})

    run_hook("UserPromptSubmit", {"prompt": "that's wrong, the test still fails"}, session_id="other-session")

    (outcome,) = store.list(scope("main"), ["outcome"])
    assert outcome.success is True and not outcome.feedback.startswith("user")
    assert query(config.db_path, "SELECT count(*) FROM audit WHERE reason = 'user feedback'") == [(0,)]

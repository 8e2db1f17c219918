"""End-to-end checks of the harness itself: the real Claude Code CLI against ScriptedModel.

They also pin down the protocol facts alma-hooks relies on (see shared CLAUDE_CODE.md).
Hook events observed with 2.1.328 for a task delegated in the foreground
(``run_in_background: false``), each hook's stdin ``hook_event_name`` logged in order::

    SessionStart → UserPromptSubmit → PreToolUse(Agent) → SubagentStart(helena)
    → PreToolUse(Bash, agent_type=helena) → PostToolUse(Bash, agent_type=helena)
    → SubagentStop(helena) → PostToolUse(Agent) → Stop → SessionEnd

The Agent tool runs subagents in the *background* unless the call says
``run_in_background: false``: then PostToolUse(Agent) fires at launch with
``tool_response.status == "async_launched"`` (it may still be logged after SubagentStop
when the subagent is quick), and the subagent's completion fires UserPromptSubmit again
with a prompt starting ``<task-notification>``.  The model sees it either as a new turn
or, when the subagent finished before the main agent's next request, as a
``role: "system"`` message in that request.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from claude_api import Subagent, Text, ToolUse, all_text, tool_results
from claude_fixtures import claude_result, python_hook_command, run_claude

pytestmark = pytest.mark.claude

HOOK_EVENTS = (
    "SessionStart", "UserPromptSubmit", "PreToolUse", "PostToolUse", "PostToolUseFailure",
    "SubagentStart", "SubagentStop", "Stop", "SessionEnd",
)

# Appends its stdin event to argv[1]; each further "EVENT=TEXT" argument makes it
# answer that event with TEXT as additionalContext.
RECORDER = textwrap.dedent(
    """\
    import json, sys
    event = json.load(sys.stdin)
    with open(sys.argv[1], "a") as log:
        log.write(json.dumps(event) + "\\n")
    name = event["hook_event_name"]
    for spec in sys.argv[2:]:
        wanted, _, text = spec.partition("=")
        if wanted == name:
            print(json.dumps({"hookSpecificOutput": {"hookEventName": name, "additionalContext": text}}))
    """
)

HELENA_AGENT = textwrap.dedent(
    """\
    ---
    name: helena
    description: Helena runs the test suite and reports what failed.
    tools: Bash
    ---
    You are Helena, the project's tester. Run what you are asked and report briefly.
    """
)


def hooks_settings(commands: dict[str, str]) -> dict:
    """Project settings registering one command hook per event (matcher "*")."""
    return {
        "hooks": {
            event: [{"matcher": "*", "hooks": [{"type": "command", "command": command, "timeout": 10}]}]
            for event, command in commands.items()
        }
    }


def recording_settings(project: Path, *answers: str) -> tuple[dict, Path]:
    """Settings recording every hook event to a JSONL file, and that file's path."""
    script = project.parent / "recorder.py"
    script.write_text(RECORDER)
    log = project.parent / "events.jsonl"
    command = python_hook_command(script, str(log), *answers)
    return hooks_settings({event: command for event in HOOK_EVENTS}), log


def read_events(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def event_label(event: dict) -> str:
    """``PreToolUse(Bash@helena)``-style label of a hook event, for order assertions."""
    detail = [event.get("tool_name", ""), event.get("agent_type", "")]
    inner = "@".join(d for d in detail if d) if detail[0] else detail[1]
    return f"{event['hook_event_name']}({inner})" if inner else event["hook_event_name"]


def test_bash_tool_call_round_trip(claude_bin, claude_project, scripted_model):
    api = scripted_model(
        [ToolUse("Bash", {"command": "echo TOOL-OUTPUT-42", "description": "echo a marker"}), Text("done")]
    )

    result = claude_result(run_claude(claude_bin, claude_project, "run the echo", api))

    assert result["result"] == "done"
    assert api.errors == []
    main = api.conversation_requests("main")
    assert len(main) == 2
    assert "run the echo" in all_text(main[0])
    [tool_result] = tool_results(main[1])
    assert "TOOL-OUTPUT-42" in json.dumps(tool_result["content"])
    assert tool_result["is_error"] is False


def test_user_prompt_submit_context_reaches_the_model(claude_bin, claude_project, scripted_model):
    payload = {"hookSpecificOutput": {"hookEventName": "UserPromptSubmit", "additionalContext": "MARKER-123"}}
    settings = hooks_settings({"UserPromptSubmit": f"echo '{json.dumps(payload)}'"})
    api = scripted_model([Text("noted")])

    result = claude_result(run_claude(claude_bin, claude_project, "hello", api, settings=settings))

    assert result["result"] == "noted"
    [request] = api.requests
    assert api.requests_containing("MARKER-123") == [request]
    assert "UserPromptSubmit hook additional context: MARKER-123" in all_text(request)


def test_a_step_can_react_to_what_the_model_was_shown(claude_bin, claude_project, scripted_model):
    settings = hooks_settings(
        {"UserPromptSubmit": """echo '{"hookSpecificOutput": {"hookEventName": "UserPromptSubmit", "additionalContext": "strategy: use-make"}}'"""}
    )

    def choose(request: dict) -> ToolUse:
        command = "echo chose-make" if "strategy: use-make" in all_text(request) else "echo chose-default"
        return ToolUse("Bash", {"command": command, "description": "apply the strategy"})

    api = scripted_model([choose, Text("done")])

    claude_result(run_claude(claude_bin, claude_project, "build it", api, settings=settings))

    [tool_result] = tool_results(api.conversation_requests("main")[-1])
    assert tool_result["content"] == "chose-make"


def test_subagent_start_context_reaches_only_the_subagent(claude_bin, claude_project, scripted_model):
    (claude_project / ".claude" / "agents").mkdir(parents=True)
    (claude_project / ".claude" / "agents" / "helena.md").write_text(HELENA_AGENT)
    settings, log = recording_settings(claude_project, "SubagentStart=HELENA-MARKER")
    task = "HELENA-TASK-7f3: run the unit tests"
    api = scripted_model(
        [
            Subagent("helena", task, [ToolUse("Bash", {"command": "echo 3 passed", "description": "run tests"}), Text("helena: 3 passed")]),
            Text("main done"),
        ]
    )

    result = claude_result(run_claude(claude_bin, claude_project, "delegate the tests", api, settings=settings))

    assert result["result"] == "main done"
    assert api.errors == []
    helena, main = api.conversation_requests("helena"), api.conversation_requests("main")
    assert len(helena) == 2 and len(main) == 2
    assert all("HELENA-MARKER" in all_text(r) for r in helena)
    assert not any("HELENA-MARKER" in all_text(r) for r in main)
    assert all(r["system"] != main[0]["system"] for r in helena)  # the agent file's own prompt
    assert [t["name"] for t in helena[0]["tools"]] == ["Bash"]
    assert "helena: 3 passed" in json.dumps(tool_results(main[1])[-1]["content"])

    events = read_events(log)
    assert [event_label(e) for e in events] == [
        "SessionStart",
        "UserPromptSubmit",
        "PreToolUse(Agent)",
        "SubagentStart(helena)",
        "PreToolUse(Bash@helena)",
        "PostToolUse(Bash@helena)",
        "SubagentStop(helena)",
        "PostToolUse(Agent)",
        "Stop",
        "SessionEnd",
    ]
    by_name = {event_label(e): e for e in events}
    # SubagentStart carries no task: it is the prompt of the Agent call just before it.
    assert by_name["PreToolUse(Agent)"]["tool_input"]["prompt"] == task
    assert "prompt" not in by_name["SubagentStart(helena)"]
    assert by_name["SubagentStart(helena)"]["agent_id"] == by_name["SubagentStop(helena)"]["agent_id"]
    assert by_name["SubagentStop(helena)"]["last_assistant_message"] == "helena: 3 passed"
    agent_response = by_name["PostToolUse(Agent)"]["tool_response"]
    assert agent_response["agentType"] == "helena" and agent_response["status"] == "completed"


def test_background_subagent_reports_back_through_a_task_notification(claude_bin, claude_project, scripted_model):
    (claude_project / ".claude" / "agents").mkdir(parents=True)
    (claude_project / ".claude" / "agents" / "helena.md").write_text(HELENA_AGENT)
    settings, log = recording_settings(claude_project)
    launch = ToolUse("Agent", {"subagent_type": "helena", "description": "run tests", "prompt": "BG-TASK-91: run tests"})

    # Whether Helena finishes before the main agent's next request is a race: if she does,
    # her notification rides in that request as a role "system" message; if not, it comes
    # as a new turn afterwards.  Answer so that both paths end on the same text.
    def after_launch(request: dict) -> Text:
        return Text("helena reported" if "<task-notification>" in all_text(request) else "helena is on it")

    api = scripted_model([launch, after_launch, Text("helena reported")], subagents={"helena": [Text("helena: all green")]})

    result = claude_result(run_claude(claude_bin, claude_project, "delegate in background", api, settings=settings))

    assert result["result"] == "helena reported"
    assert api.errors == []
    assert len(api.conversation_requests("helena")) == 1
    events = read_events(log)
    [launched] = [e for e in events if event_label(e) == "PostToolUse(Agent)"]
    assert launched["tool_response"]["status"] == "async_launched"
    prompts = [e["prompt"] for e in events if e["hook_event_name"] == "UserPromptSubmit"]
    # the CLI was seen (once in CI) to append stray shell output after the -p prompt
    assert prompts[0].startswith("delegate in background")
    assert len(prompts) == 2 and prompts[1].startswith("<task-notification>")
    assert "helena: all green" in prompts[1]


def test_a_crashing_hook_does_not_stop_the_session(claude_bin, claude_project, scripted_model):
    crash = claude_project.parent / "crash.py"
    ran = claude_project.parent / "crash-ran"
    # An uncaught exception: traceback on stderr, exit code 1 (non-blocking per CLAUDE_CODE.md).
    crash.write_text(f"import pathlib\npathlib.Path({str(ran)!r}).touch()\nraise RuntimeError('HOOK-CRASH')\n")
    command = python_hook_command(crash)
    settings = hooks_settings({"UserPromptSubmit": command, "PreToolUse": command, "PostToolUse": command})
    api = scripted_model([ToolUse("Bash", {"command": "echo still-running", "description": "echo"}), Text("finished anyway")])

    proc = run_claude(claude_bin, claude_project, "carry on", api, settings=settings)

    assert ran.exists()  # the hook did run, and crashed
    assert claude_result(proc)["result"] == "finished anyway"
    assert api.errors == []
    [tool_result] = tool_results(api.requests[-1])
    assert tool_result["content"] == "still-running"
    assert api.requests_containing("HOOK-CRASH") == []

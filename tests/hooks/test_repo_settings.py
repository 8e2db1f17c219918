"""This repository's own `.claude/` uses alma-hooks: its commands run the real hook and capture."""

from __future__ import annotations

import json
import subprocess

from hooktools import REPO, make_payload, query


def test_repository_settings_register_every_event_and_capture(project, hook_env, config):
    settings = json.loads((REPO / ".claude" / "settings.json").read_text())
    shipped = json.loads((REPO / "hooks" / "hooks.json").read_text())["hooks"]
    assert set(settings["hooks"]) == set(shipped)
    command = settings["hooks"]["PostToolUse"][0]["hooks"][0]["command"]
    payload = make_payload("PostToolUse", project, {"tool_name": "Bash", "tool_input": {"command": "pytest -q"},
                                                     "tool_response": {"stdout": "3 passed"}, "tool_use_id": "t1"})
    env = {**hook_env, "CLAUDE_PROJECT_DIR": str(REPO)}
    proc = subprocess.run(["sh", "-c", command], input=json.dumps(payload).encode(), env=env, cwd=project,
                          capture_output=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout == b""
    assert query(config.db_path, "SELECT tool, input_summary FROM events") == [("Bash", "pytest -q")]
    assert (REPO / ".claude" / "agents" / "helena.md").read_text() == (REPO / "agents" / "helena.md").read_text()


def test_plugin_hooks_stand_down_when_settings_run_them(project, hook_env, config):
    (project / ".claude").mkdir(exist_ok=True)
    (project / ".claude" / "settings.json").write_text((REPO / ".claude" / "settings.json").read_text())
    payload = make_payload("PostToolUse", project, {"tool_name": "Bash", "tool_input": {"command": "ls"},
                                                     "tool_response": {"stdout": "a"}, "tool_use_id": "t2"})
    env = {**hook_env, "CLAUDE_PLUGIN_ROOT": str(REPO), "CLAUDE_PROJECT_DIR": str(project)}
    proc = subprocess.run([str(REPO / "hooks" / "alma-hook")], input=json.dumps(payload).encode(), env=env,
                          cwd=project, capture_output=True, timeout=60)
    assert proc.returncode == 0
    assert not config.db_path.exists() or query(config.db_path, "SELECT count(*) FROM events") == [(0,)]


def test_install_and_the_entry_agree_with_the_plugins_hooks_json():
    """The event table lives in hooks/hooks.json (the plugin), install.HOOK_EVENTS (settings) and the
    entry's own deadlines; they must not drift apart."""
    from alma_hooks.entry import DEADLINES
    from alma_hooks.install import HOOK_EVENTS

    shipped = json.loads((REPO / "hooks" / "hooks.json").read_text())["hooks"]
    table = {event: (groups[0].get("matcher"), groups[0]["hooks"][0]["timeout"]) for event, groups in shipped.items()}
    assert table == HOOK_EVENTS
    assert set(DEADLINES) == set(HOOK_EVENTS)
    for event, (_, timeout) in HOOK_EVENTS.items():
        assert DEADLINES[event] < timeout, event  # the hook gives up before Claude Code kills it

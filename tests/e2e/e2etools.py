"""Helpers of the end-to-end tests: read what the CLI reported and sent, open the hooks' DB, time hooks."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from claude_api import ScriptedModel, all_text
from claude_fixtures import claude_result

REPO_ROOT = Path(__file__).resolve().parents[2]
USER_ID = "e2e@example.com"
#: How the CLI spells an agent type per registration (a plugin's agents are namespaced; CLAUDE_CODE.md).
AGENT_TYPES = {"settings": "{}", "plugin": "alma-hooks:{}"}
REGISTRATIONS = ("settings", "plugin")

# "Hooks: PostToolUse:Bash [cmd] (plugin ...) finished with status 0 (302ms)" in --debug-file output;
# SessionEnd is logged without a duration.
_DEBUG_HOOK_LINE = re.compile(r"\] Hooks: (?P<event>[A-Za-z]+)(?::\S+)? \[.*\] .*finished with status "
                              r"(?P<status>-?\d+) \((?P<ms>\d+)ms\)")
_HOOK_CONTEXT = re.compile(r"(?P<event>[A-Za-z]+) hook additional context: (?P<text>.*?)(?=\n\n|\Z)", re.S)


@dataclass
class Session:
    """One finished ``claude -p`` run: the process, the scripted model, the CLI's debug log."""

    proc: subprocess.CompletedProcess[str]
    api: ScriptedModel
    debug_file: Path

    @property
    def result(self) -> dict[str, Any]:
        """The run's JSON result, asserting it exited 0."""
        return claude_result(self.proc)

    def requests(self, conversation: str = "main") -> list[dict]:
        return self.api.conversation_requests(conversation)

    def hook_runs(self) -> list[tuple[str, int, int]]:
        """(event, exit status, ms) of every command hook the CLI reports in its debug log."""
        return hook_runs(self.debug_file)


def hook_runs(debug_file: Path) -> list[tuple[str, int, int]]:
    if not debug_file.exists():
        return []
    return [(m["event"], int(m["status"]), int(m["ms"]))
            for m in map(_DEBUG_HOOK_LINE.search, debug_file.read_text(errors="replace").splitlines()) if m]


def system_entries(request: dict) -> list[str]:
    """Texts of the ``role: "system"`` entries of ``messages``: where hook context reaches the API."""
    return [all_text({"messages": [{"role": "user", "content": m.get("content", "")}]})
            for m in request.get("messages", []) if m.get("role") == "system"]


def hook_contexts(request: dict) -> dict[str, str]:
    """``{event: additionalContext}`` of the hook context blocks in a request's system entries."""
    return {m["event"]: m["text"] for text in system_entries(request) for m in _HOOK_CONTEXT.finditer(text)}


class Memory:
    """The hooks' own DB and scopes, resolved for the project as the hooks resolve them."""

    def __init__(self, project: Path, home: Path) -> None:
        from alma_hooks.config import load_config

        self.config = load_config(project, {**os.environ, "HOME": str(home)})

    def scope(self, agent: str = "main") -> Any:
        from alma_hooks.types import Scope

        return Scope(self.config.project_id, agent, self.config.user_id)

    def store(self) -> Any:
        """A store on the hooks' DB; use it in a ``with`` block, between CLI runs."""
        from alma_hooks.storage.sqlite import SQLiteStore

        return SQLiteStore(self.config.db_path, self.config.policy, actor="test")


def wait_for_embeddings(alma_home: Path, timeout_s: float = 30.0) -> None:
    """Poll the engine until it has embedded every pending memory (it does so between requests)."""
    from alma_hooks.daemon_client import request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        reply = request(alma_home, {"op": "ping"}, 2.0)
        if reply is None or not reply.get("pending"):
            return
        time.sleep(0.1)
    raise AssertionError(f"the engine still had memories to embed after {timeout_s:.0f} s")


TIMING_SHIM = """\
#!/bin/sh
# usage: sh timing-shim LOG CMD... : runs CMD on this hook's stdin, then appends "EVENT MS STATUS" to LOG
log=$1; shift
start=$(date +%s%N)
input=$(mktemp)
cat > "$input"
"$@" < "$input"
status=$?
end=$(date +%s%N)
event=$(grep -o '"hook_event_name": *"[A-Za-z]*"' "$input" | head -n 1 | sed 's/.*"\\([A-Za-z]*\\)"$/\\1/')
rm -f "$input"
echo "$event $(( (end - start) / 1000000 )) $status" >> "$log"
exit $status
"""


def wrap_hooks_with_timer(settings_path: Path, shim: Path, log: Path) -> None:
    """Rewrite every hook command of ``settings_path`` to run through the timing shim."""
    shim.write_text(TIMING_SHIM)
    settings = json.loads(settings_path.read_text())
    for groups in settings["hooks"].values():
        for group in groups:
            for hook in group["hooks"]:
                hook["command"] = f"sh {shlex.quote(str(shim))} {shlex.quote(str(log))} {hook['command']}"
    settings_path.write_text(json.dumps(settings, indent=2))


def read_timings(log: Path) -> list[tuple[str, int, int]]:
    """(event, ms, status) lines written by the timing shim."""
    if not log.exists():
        return []
    out = []
    for line in log.read_text().splitlines():
        event, ms, status = line.split()
        out.append((event, int(ms), int(status)))
    return out

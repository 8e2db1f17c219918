"""`alma-hooks demo`: a short scripted history replayed through the real hook entry points.

In a scratch project with its own data dir (your real memory is not touched),
Helena and Victor each work a few QA tasks: the JSON Claude Code would send
for every event goes to the real hook process. Then it shows what a new
prompt receives and what was learned.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .install import MARKER

#: (agent, task text, [(command, ok, output)])
HISTORY: list[tuple[str, str, list[tuple[str, bool, str]]]] = [
    ("helena", "Test the signup form validation errors", [
        ("npx playwright test tests/signup.spec.ts --headed", False,
         "Exit code 1\nTimeoutError: locator.click: Timeout 30000ms exceeded"),
        ("npx playwright test tests/signup.spec.ts --project=chromium", True, "6 passed (4.1s)")]),
    ("helena", "Test the checkout form validation errors for an empty postcode", [
        ("npx playwright test tests/checkout.spec.ts --headed", False,
         "Exit code 1\nTimeoutError: page.fill: Timeout 30000ms exceeded"),
        ("npx playwright test tests/checkout.spec.ts --project=chromium", True, "4 passed (3.2s)")]),
    ("helena", "Write tests for the login form validation messages", [
        ("npx playwright test tests/login.spec.ts --project=chromium", True, "5 passed (2.9s)")]),
    ("victor", "Test the /orders API pagination returns the right page sizes", [
        ("pytest tests/api/test_orders.py -k pagination --maxfail=1", True, "8 passed in 0.61s")]),
    ("victor", "Test the /users API pagination with page size limits", [
        ("curl -s localhost:8000/users?page=2", False, "Exit code 7\ncurl: (7) Failed to connect to localhost"),
        ("pytest tests/api/test_users.py -k pagination --maxfail=1", True, "5 passed in 0.40s")]),
    ("victor", "Check the /invoices API pagination links", [
        ("curl -s localhost:8000/invoices?page=3", False, "Exit code 7\ncurl: (7) Failed to connect to localhost"),
        ("pytest tests/api/test_invoices.py -k pagination --maxfail=1", True, "7 passed in 0.52s")]),
    ("victor", "Test pagination of the /products API", [
        ("pytest tests/api/test_products.py -k pagination --maxfail=1", True, "6 passed in 0.47s")]),
    ("helena", "Test the profile form validation for required fields", [
        ("npx playwright test tests/profile.spec.ts --project=chromium", True, "3 passed (2.2s)")]),
]
PREFERENCE_PROMPT = "From now on, always use pnpm instead of npm in this repo."
NEW_TASK = ("helena", "Test the newsletter signup form validation")


@dataclass
class DemoReport:
    project: Path
    home: Path
    hook_calls: int = 0
    hook_ms: list[float] = field(default_factory=list)
    injected: str = ""
    learned: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)


class _Session:
    """One Claude Code session's worth of hook calls."""

    def __init__(self, report: DemoReport, env: dict[str, str], sid: str) -> None:
        self.report, self.env, self.sid = report, env, sid

    def hook(self, event: str, **fields: Any) -> str:
        payload = {"session_id": self.sid, "transcript_path": "", "cwd": str(self.report.project),
                   "hook_event_name": event, "permission_mode": "default", **fields}
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-I", "-c", f"from {MARKER} import main; main()"],
                              input=json.dumps(payload), capture_output=True, text=True, env=self.env, timeout=60)
        self.report.hook_ms.append((time.perf_counter() - started) * 1000)
        self.report.hook_calls += 1
        if not proc.stdout.strip():
            return ""
        return str(json.loads(proc.stdout).get("hookSpecificOutput", {}).get("additionalContext", ""))


def _delegate(s: _Session, agent: str, task: str, steps: list[tuple[str, bool, str]], n: int) -> str:
    s.hook("UserPromptSubmit", prompt=f"Ask {agent} to: {task}")
    agent_type = f"alma-hooks:{agent}"
    tool_input = {"subagent_type": agent_type, "description": task[:40], "prompt": task}
    s.hook("PreToolUse", tool_name="Agent", tool_input=tool_input, tool_use_id=f"agent{n}")
    context = s.hook("SubagentStart", agent_id=f"a{n}", agent_type=agent_type)
    for i, (command, ok, output) in enumerate(steps):
        common = {"tool_name": "Bash", "tool_input": {"command": command}, "tool_use_id": f"t{n}-{i}",
                  "agent_id": f"a{n}", "agent_type": agent_type, "duration_ms": 900}
        if ok:
            s.hook("PostToolUse", tool_response={"stdout": output, "stderr": "", "interrupted": False}, **common)
        else:
            s.hook("PostToolUseFailure", error=output, is_interrupt=False, **common)
    s.hook("SubagentStop", agent_id=f"a{n}", agent_type=agent_type, stop_hook_active=False,
           last_assistant_message=f"Done: {steps[-1][2]}")
    s.hook("PostToolUse", tool_name="Agent", tool_input=tool_input, tool_response="{}", tool_use_id=f"agent{n}")
    s.hook("Stop", stop_hook_active=False, last_assistant_message="Done.")
    return context


def run_demo(echo: Callable[[str], None] = print, workdir: Path | None = None) -> DemoReport:
    """Replay the history, then show the slice a new task gets and what was stored."""
    from .daemon import start, stop

    root = Path(workdir or tempfile.mkdtemp(prefix="alma-demo-"))
    project, home = root / "shop", root / "alma-home"
    (project / ".git").mkdir(parents=True, exist_ok=True)  # a repository root, as Claude Code would see it
    report = DemoReport(project=project, home=home)
    env = {**os.environ, "ALMA_HOME": str(home), "ALMA_USER_ID": "demo@example.com", "HOME": str(root)}
    echo(f"Scratch project {project} (data in {home}); your own memory is not touched.")
    echo("Starting the warm engine (embedding model) ...")
    start(home)
    try:
        _Session(report, env, "demo-prefs").hook("UserPromptSubmit", prompt=PREFERENCE_PROMPT)
        for n, (agent, task, steps) in enumerate(HISTORY):
            _delegate(_Session(report, env, f"demo-{n}"), agent, task, steps, n)
            ok = "ok" if steps[-1][1] else "failed"
            echo(f"  {agent:<7} {task}  ({len(steps)} tool calls, {ok})")
        _wait_for_embeddings(home)
        s = _Session(report, env, "demo-new")
        agent, task = NEW_TASK
        s.hook("UserPromptSubmit", prompt=f"Ask {agent} to: {task}")
        s.hook("PreToolUse", tool_name="Agent", tool_use_id="new",
               tool_input={"subagent_type": f"alma-hooks:{agent}", "description": task, "prompt": task})
        report.injected = s.hook("SubagentStart", agent_id="new", agent_type=f"alma-hooks:{agent}")
    finally:
        stop(home)
    _collect(report, env)
    echo("")
    echo(f"A new task for {agent}: \"{task}\". Helena's context at SubagentStart:")
    echo("")
    echo(report.injected or "(nothing relevant yet)")
    echo("")
    echo("Learned so far:")
    for line in report.learned:
        echo(f"  {line}")
    by_agent = ", ".join(f"{a}: {n}" for a, n in sorted(report.stats.get("by_agent", {}).items()))
    ms = sorted(report.hook_ms)
    echo(f"\nStored {report.stats.get('memories', 0)} memories ({by_agent}), {report.stats.get('events', 0)} "
         f"tool events; {report.hook_calls} hook calls, median {ms[len(ms) // 2]:.0f} ms each.")
    return report


def _wait_for_embeddings(home: Path, timeout_s: float = 20.0) -> None:
    """Let the engine embed what was captured (it does so between requests)."""
    from .daemon_client import request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        reply = request(home, {"op": "ping"}, 2.0)
        if reply is None or not reply.get("pending"):
            return
        time.sleep(0.2)


def _collect(report: DemoReport, env: dict[str, str]) -> None:
    from .config import load_config
    from .storage.sqlite import SQLiteStore
    from .types import Scope

    config = load_config(report.project, env)
    with SQLiteStore(config.db_path, config.policy) as store:
        report.stats = store.stats()
        for agent in ("helena", "victor", "main"):
            scope = Scope(config.project_id, agent, config.user_id)
            for m in store.list(scope, ["heuristic", "anti_pattern", "preference"]):
                if m.agent == agent or agent == "main":  # shared items (agent "*") once, under main
                    report.learned.append(f"[{m.agent if m.agent != '*' else 'all agents'}] {m.type}: {m.text}")

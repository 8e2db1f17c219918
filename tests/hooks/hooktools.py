"""Helpers of the hook tests: run the real ``hooks/alma-hook`` on real JSON, read the DB, wait without sleeps."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw
import pytest

REPO = Path(__file__).resolve().parents[2]
HOOK = REPO / "hooks" / "alma-hook"
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
USER_ID = "tester@example.com"
SESSION = "sess-0001"
#: Every event hooks/hooks.json registers.
EVENTS = ("SessionStart", "UserPromptSubmit", "PreToolUse", "SubagentStart", "PostToolUse",
          "PostToolUseFailure", "Stop", "SubagentStop", "SessionEnd")
INJECT_EVENTS = ("SessionStart", "UserPromptSubmit", "SubagentStart")


@dataclass
class HookResult:
    """What Claude Code would see from one hook run."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> dict[str, Any] | None:
        """The parsed stdout (None when empty); fails the test when stdout is not a JSON object."""
        if not self.stdout.strip():
            return None
        parsed = json.loads(self.stdout)
        assert isinstance(parsed, dict), f"hook printed {type(parsed).__name__}, not an object"
        return parsed

    @property
    def context(self) -> str:
        """The injected ``additionalContext``, or ''."""
        out = self.output or {}
        return str(out.get("hookSpecificOutput", {}).get("additionalContext", ""))


def assert_fail_open(result: HookResult, event: str | None = None) -> None:
    """The hook contract: exit 0 (never 2), stdout empty or a well-formed hook reply."""
    assert result.returncode == 0, f"exit {result.returncode}; stderr: {result.stderr[-2000:]}"
    out = result.output
    if out is None:
        return
    assert set(out) <= {"hookSpecificOutput", "continue", "systemMessage", "suppressOutput"}, out.keys()
    spec = out.get("hookSpecificOutput")
    if spec is not None:
        assert isinstance(spec, dict)
        assert isinstance(spec.get("additionalContext"), str)
        assert spec.get("hookEventName") in INJECT_EVENTS
        if event is not None:
            assert spec["hookEventName"] == event
        assert len(spec["additionalContext"]) <= 10_000


def base_env(home: Path) -> dict[str, str]:
    """The environment of a hook: the caller's, minus any ALMA_*/Claude settings, plus the test's data dir."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ALMA_", "CLAUDE", "ANTHROPIC_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(ALMA_HOME=str(home), ALMA_USER_ID=USER_ID, ALMA_ENGINE_AUTOSTART="0")
    return env


def make_payload(event: str, project: Path, payload: dict[str, Any] | None = None,
                 session_id: str = SESSION) -> dict[str, Any]:
    """A payload shaped like the CLI's: the common fields, then the event's own."""
    body: dict[str, Any] = {
        "session_id": session_id,
        "transcript_path": str(project / ".claude" / f"{session_id}.jsonl"),
        "cwd": str(project),
        "hook_event_name": event,
        "permission_mode": "default",
    }
    body.update(payload or {})
    return body


def spawn_hook(stdin: bytes, *, cwd: Path, env: dict[str, str], timeout: float = 60) -> HookResult:
    """Run hooks/alma-hook once with ``stdin`` and wait for it."""
    started = time.monotonic()
    proc = subprocess.run([str(HOOK)], input=stdin, capture_output=True, cwd=cwd, env=env, timeout=timeout)
    return HookResult(proc.returncode, proc.stdout.decode("utf-8", "replace"),
                      proc.stderr.decode("utf-8", "replace"), time.monotonic() - started)


RunHook = Callable[..., HookResult]


def query(db: Path, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` on ``db``, read through a fresh read-only connection."""
    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        return list(conn.execute(sql, args))
    finally:
        conn.close()


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def wait_until(predicate: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.05) -> Any:
    """Poll ``predicate`` until it is truthy; fail the test after ``timeout_s`` (a bound, not a timing claim)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(every_s)


def percentiles(samples: list[float]) -> tuple[float, float]:
    """(median, p95) of ``samples``."""
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]
    return statistics.median(ordered), p95

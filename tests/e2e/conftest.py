"""Fixtures for end-to-end runs of alma-hooks inside the real Claude Code CLI.

Every test gets a scratch ``HOME`` (no user settings, plugins or credentials of the
machine), its own data dir (``ALMA_HOME``, from ``tests/conftest.py``), a fixed user id
and a git repository as the project. Our hooks are registered one of two ways:

* ``"settings"``: :func:`alma_hooks.install.install` into the project, as
  ``alma-hooks install`` does (hooks in ``.claude/settings.json``, Helena and Victor in
  ``.claude/agents/``);
* ``"plugin"``: ``--plugin-dir <repo root>``, as ``claude plugin install`` would load it
  (``hooks/hooks.json`` -> ``hooks/alma-hook``, which finds Python via ``ALMA_PYTHON``).

Hooks never start the warm engine on their own here (``ALMA_ENGINE_AUTOSTART=0``); a test
that wants it uses the ``warm_engine`` fixture.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from claude_api import ScriptedModel, all_text
from claude_fixtures import claude_result, run_claude

REPO_ROOT = Path(__file__).resolve().parents[2]
USER_ID = "e2e@example.com"
#: How a plugin's namespaced agent type is spelled by the CLI (CLAUDE_CODE.md, "Plugins").
AGENT_TYPES = {"settings": "{}", "plugin": "alma-hooks:{}"}
REGISTRATIONS = ("settings", "plugin")

# "Hooks: PostToolUse:Bash [cmd] (plugin ...) finished with status 0 (302ms)" in --debug-file output;
# SessionEnd is logged without a duration.
_DEBUG_HOOK_LINE = re.compile(r"\] Hooks: (?P<event>[A-Za-z]+)(?::\S+)? \[.*\] .*finished with status "
                              r"(?P<status>-?\d+) \((?P<ms>\d+)ms\)")


@pytest.fixture(autouse=True)
def hook_env(monkeypatch: pytest.MonkeyPatch, alma_home: Path) -> dict[str, str]:
    """What the CLI (and so every hook) inherits: this venv's Python and a fixed user id."""
    monkeypatch.setenv("ALMA_PYTHON", sys.executable)
    monkeypatch.setenv("ALMA_USER_ID", USER_ID)
    return {"ALMA_HOME": str(alma_home), "ALMA_PYTHON": sys.executable, "ALMA_USER_ID": USER_ID}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """The scratch ``HOME`` of the CLI and its hooks."""
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def project(claude_project: Path) -> Path:
    return claude_project.resolve()


@dataclass
class Session:
    """One finished ``claude -p`` run: the process, its JSON result and the scripted model."""

    proc: subprocess.CompletedProcess[str]
    api: ScriptedModel
    debug_file: Path

    @property
    def result(self) -> dict[str, Any]:
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


RunSession = Callable[..., Session]


@pytest.fixture
def run_session(claude_bin: Path, project: Path, home: Path, scripted_model: Callable[..., ScriptedModel],
                tmp_path: Path) -> RunSession:
    """``run_session(prompt, steps, via="settings"|"plugin", subagents=..., env=...)``: one CLI run.

    ``via="plugin"`` loads the repository as a plugin with ``--plugin-dir``; ``"settings"``
    expects the hooks installed in the project (see ``installed``). ``via=None`` adds nothing.
    Every run writes the CLI's debug log, which reports each hook's exit status and duration.
    """
    count = iter(range(1, 1000))

    def run(prompt: str, steps: Sequence[Any], *, via: str | None = "settings",
            subagents: dict[str, Sequence[Any]] | None = None, env: dict[str, str] | None = None,
            session_home: Path | None = None, timeout: float = 90) -> Session:
        api = scripted_model(steps, subagents=subagents)
        debug = tmp_path / f"claude-debug-{next(count)}.log"
        proc = run_claude(claude_bin, project, prompt, api, home=session_home or home, timeout=timeout,
                          plugin_dir=REPO_ROOT if via == "plugin" else None, env=env,
                          extra_args=["--debug-file", str(debug)])
        return Session(proc, api, debug)

    return run


@pytest.fixture
def installed(project: Path, home: Path) -> Path:
    """Our hooks and agents installed into the project as ``alma-hooks install`` does."""
    from alma_hooks.install import install

    report = install(project, "project", home=home)
    assert report.changed and sorted(report.agents) == ["helena", "victor"]
    return report.settings_path


@pytest.fixture
def register(request: pytest.FixtureRequest, project: Path, home: Path) -> Callable[[str], None]:
    """``register(via)``: install into settings for ``"settings"``; nothing to do for ``"plugin"``."""

    def do(via: str) -> None:
        if via == "settings":
            request.getfixturevalue("installed")

    return do


class Memory:
    """The hooks' own DB and scopes, as the hooks resolve them for the project."""

    def __init__(self, project: Path, home: Path) -> None:
        from alma_hooks.config import load_config

        self.config = load_config(project, {**os.environ, "HOME": str(home)})

    def scope(self, agent: str = "main") -> Any:
        from alma_hooks.types import Scope

        return Scope(self.config.project_id, agent, self.config.user_id)

    def store(self) -> Any:
        """A store on the hooks' DB; close it (``with``) before the next CLI run."""
        from alma_hooks.storage.sqlite import SQLiteStore

        return SQLiteStore(self.config.db_path, self.config.policy, actor="test")


@pytest.fixture
def memory(project: Path, home: Path) -> Memory:
    return Memory(project, home)


@pytest.fixture
def warm_engine(alma_home: Path) -> Iterator[dict[str, Any]]:
    """The warm engine (embedding model loaded) for this test's data dir; stopped at teardown."""
    from alma_hooks import daemon

    info = daemon.start(alma_home, wait_s=60)
    assert info, "the warm engine did not answer within 60 s"
    try:
        yield info
    finally:
        daemon.stop(alma_home)


def wait_for_embeddings(alma_home: Path, timeout_s: float = 30.0) -> None:
    """Poll the engine until it has embedded every pending memory (it does so between requests)."""
    import time

    from alma_hooks.daemon_client import request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        reply = request(alma_home, {"op": "ping"}, 2.0)
        if reply is None or not reply.get("pending"):
            return
        time.sleep(0.1)
    raise AssertionError("the engine still had memories to embed after %.0f s" % timeout_s)


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

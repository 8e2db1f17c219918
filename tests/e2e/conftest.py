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

import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from claude_api import ScriptedModel
from claude_fixtures import run_claude
from e2etools import REPO_ROOT, USER_ID, Memory, Session

RunSession = Callable[..., Session]


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
            timeout: float = 90) -> Session:
        api = scripted_model(steps, subagents=subagents)
        debug = tmp_path / f"claude-debug-{next(count)}.log"
        proc = run_claude(claude_bin, project, prompt, api, home=home, timeout=timeout,
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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slow end-to-end tests run only when asked for with ``-m``.

    The project's ``addopts`` deselect them, but ``-o addopts=''`` drops that: without this,
    a plain run of ``tests/e2e`` would spend minutes measuring hook times.
    """
    if config.option.markexpr:
        return
    here = Path(__file__).resolve().parent
    skip = pytest.mark.skip(reason="slow: run with -m slow")
    for item in items:
        if "slow" in item.keywords and here in item.path.resolve().parents:
            item.add_marker(skip)

"""Fixtures for the hook tests: the real ``hooks/alma-hook`` run as a subprocess on real JSON.

Every test gets its own data dir (``ALMA_HOME`` under ``tmp_path``) and a real git
repository as the project (``cwd`` of the hook and of the payload). Hooks started
by these fixtures never start the warm engine on their own
(``ALMA_ENGINE_AUTOSTART=0``): a test that wants the engine starts it and stops it.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hooktools import SESSION, HookResult, RunHook, base_env, make_payload, spawn_hook


@pytest.fixture
def alma_home(tmp_path: Path) -> Path:
    home = tmp_path / "alma-home"
    home.mkdir(mode=0o700)
    return home


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A real git repository, as Claude Code's working directory."""
    root = tmp_path / "shop-app"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True, capture_output=True)
    (root / "README.md").write_text("# shop-app\n")
    return root.resolve()


@pytest.fixture
def hook_env(alma_home: Path) -> dict[str, str]:
    return base_env(alma_home)


@pytest.fixture
def run_hook(project: Path, hook_env: dict[str, str]) -> RunHook:
    """``run_hook(event, payload)`` runs the real hook with real JSON; ``raw=`` sends bytes as they are."""

    def run(event: str, payload: dict[str, Any] | None = None, *, raw: bytes | None = None,
            session_id: str = SESSION, env: dict[str, str] | None = None, timeout: float = 60) -> HookResult:
        stdin = raw if raw is not None else json.dumps(make_payload(event, project, payload, session_id)).encode()
        return spawn_hook(stdin, cwd=project, env={**hook_env, **(env or {})}, timeout=timeout)

    return run


@pytest.fixture
def config(project: Path, hook_env: dict[str, str]):  # type: ignore[no-untyped-def]
    """The configuration the hooks resolve for ``project``."""
    from alma_hooks.config import load_config

    return load_config(project, hook_env)


@pytest.fixture
def store(config) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    """The hooks' own DB, opened in the test process (real SQLite, same file)."""
    from alma_hooks.storage.sqlite import SQLiteStore

    s = SQLiteStore(config.db_path, config.policy, actor="test")
    yield s
    s.close()


@pytest.fixture
def scope(config) -> Callable[[str], Any]:  # type: ignore[no-untyped-def]
    """``scope("helena")``: the scope a hook resolves for that agent in ``project``."""
    from alma_hooks.types import Scope

    return lambda agent="main": Scope(config.project_id, agent, config.user_id)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without any ``-m`` (e.g. ``-o addopts=''``), leave the slow and soak hook tests out rather than run them."""
    if config.option.markexpr:
        return
    here = Path(__file__).parent
    skip = pytest.mark.skip(reason="slow/soak test: select it with -m slow or -m soak")
    for item in items:
        heavy = item.get_closest_marker("slow") or item.get_closest_marker("soak")
        if heavy and here in Path(str(item.path)).parents:
            item.add_marker(skip)

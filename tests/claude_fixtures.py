"""Pytest fixtures for end-to-end runs of the real Claude Code CLI against :mod:`claude_api`.

Loaded from ``tests/conftest.py`` with ``pytest_plugins = ["claude_fixtures"]``.  The CLI
is the version pinned in ``tests/package.json``, installed by ``npm ci`` into
``tests/node_modules`` (untracked) on first use.  Run the suite with::

    .venv/bin/python -m pytest -m claude tests
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import pytest

from claude_api import ScriptedModel

TESTS_DIR = Path(__file__).resolve().parent
CLI_PACKAGE = "@anthropic-ai/claude-code"
NPM_CI_TIMEOUT = 600

# The environment of whoever runs pytest (possibly a Claude Code session itself) must not
# leak into the CLI under test: its API settings, its session markers, its hooks' vars.
_STRIPPED_ENV_PREFIXES = ("ANTHROPIC_", "CLAUDE", "OTEL_")


def pinned_version() -> str:
    """The CLI version pinned in ``tests/package.json``."""
    manifest = json.loads((TESTS_DIR / "package.json").read_text())
    return manifest["devDependencies"][CLI_PACKAGE]


def binary_path() -> Path:
    """Where ``npm ci`` puts the native CLI binary for this platform."""
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower(), platform.machine().lower()
    )
    system = {"linux": "linux", "darwin": "darwin"}.get(sys.platform, sys.platform)
    return TESTS_DIR / "node_modules" / "@anthropic-ai" / f"claude-code-{system}-{arch}" / "claude"


def installed_version(binary: Path) -> str | None:
    """``claude --version``'s version number, or None if the binary is missing or broken."""
    if not binary.is_file():
        return None
    try:
        out = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.split()[0] if out.split() else None


def _unavailable(reason: str) -> None:
    # In CI a missing CLI means the end-to-end suite silently stopped testing anything.
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"Claude Code CLI unavailable in CI: {reason}", pytrace=False)
    pytest.skip(f"Claude Code CLI unavailable: {reason}")


def ensure_claude_cli() -> Path:
    """Install the pinned CLI with ``npm ci`` unless already there; return the binary."""
    binary, version = binary_path(), pinned_version()
    if installed_version(binary) == version:
        return binary
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        _unavailable(f"node/npm not on PATH; needed to install {CLI_PACKAGE}@{version}")
    # --ignore-scripts: the package's postinstall only links node_modules/.bin/claude,
    # which we do not use, and npm's install-script policy may skip it anyway.
    proc = subprocess.run(
        [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
        cwd=TESTS_DIR, capture_output=True, text=True, timeout=NPM_CI_TIMEOUT,
    )
    if proc.returncode != 0:
        _unavailable(f"`npm ci` in {TESTS_DIR} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    found = installed_version(binary)
    if found != version:
        _unavailable(f"after `npm ci`, {binary} reports version {found!r}, expected {version}")
    return binary


@pytest.fixture(scope="session")
def claude_bin() -> Path:
    """Path of the pinned Claude Code binary, installed on first use."""
    return ensure_claude_cli()


def claude_env(api: ScriptedModel, home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for an offline CLI run against ``api`` with a scratch ``HOME``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_STRIPPED_ENV_PREFIXES)}
    # The CLI keeps task output and probes under $TMPDIR/claude-<uid>; keep them in the
    # scratch home so runs leave nothing in the machine's /tmp.
    tmp = home / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    env.update(
        TMPDIR=str(tmp),
        ANTHROPIC_BASE_URL=api.base_url,
        ANTHROPIC_API_KEY="sk-test",
        DISABLE_TELEMETRY="1",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        DISABLE_AUTOUPDATER="1",
        HOME=str(home),
    )
    env.update(extra or {})
    return env


def run_claude(
    claude_bin: Path,
    project_dir: Path,
    prompt: str,
    api: ScriptedModel,
    *,
    settings: Mapping | None = None,
    plugin_dir: Path | None = None,
    home: Path | None = None,
    allowed_tools: Sequence[str] = ("Bash", "Agent"),
    timeout: float = 60,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``claude -p PROMPT --output-format json`` in ``project_dir`` against ``api``.

    ``settings`` is written to ``<project>/.claude/settings.json``.  ``home`` (also the
    parent of ``TMPDIR``) defaults to ``<project>-home`` beside the project, so no user
    settings, plugins or credentials of the machine are seen.  ``env`` adds variables.  Raises ``subprocess.TimeoutExpired`` past
    ``timeout`` seconds.
    """
    project_dir = Path(project_dir)
    if settings is not None:
        (project_dir / ".claude").mkdir(parents=True, exist_ok=True)
        (project_dir / ".claude" / "settings.json").write_text(json.dumps(settings, indent=2))
    if home is None:
        home = project_dir.parent / f"{project_dir.name}-home"
    Path(home).mkdir(parents=True, exist_ok=True)
    args = [str(claude_bin), "-p", prompt, "--output-format", "json", *extra_args]
    if plugin_dir is not None:
        args += ["--plugin-dir", str(plugin_dir)]
    if allowed_tools:
        args += ["--allowedTools", *allowed_tools]  # variadic: keep it last
    return subprocess.run(
        args, cwd=project_dir, env=claude_env(api, Path(home), env),
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )


def claude_result(proc: subprocess.CompletedProcess[str]) -> dict:
    """The ``--output-format json`` result object of a run, asserting the run succeeded."""
    assert proc.returncode == 0, f"claude exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    try:
        return json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"claude printed no JSON result\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")


def python_hook_command(script: Path, *args: str) -> str:
    """A hook ``command`` running ``script`` with this interpreter."""
    return shlex.join([sys.executable, str(script), *args])


@pytest.fixture
def claude_project(tmp_path: Path) -> Path:
    """An empty git repository for the CLI to work in (``tmp_path / "project"``)."""
    project = tmp_path / "project"
    project.mkdir()
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    return project


@pytest.fixture
def scripted_model() -> Iterator[Callable[..., ScriptedModel]]:
    """Factory: ``scripted_model(steps, subagents=...)`` returns a started ScriptedModel,
    stopped at teardown."""
    started: list[ScriptedModel] = []

    def make(*args: object, **kwargs: object) -> ScriptedModel:
        model = ScriptedModel(*args, **kwargs)  # type: ignore[arg-type]
        model.start()
        started.append(model)
        return model

    yield make
    for model in started:
        model.stop()

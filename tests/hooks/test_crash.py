"""kill -9 of hook processes and of the warm engine at random points (issue 7, crash safety).

Each round is one task of Claude Code in a fresh session (prompt, three tool calls, the
end of the turn), run while a second session writes to the same DB; one writer of the
round is killed with SIGKILL, at a random SQL statement or at a random time. After every
round: ``PRAGMA integrity_check`` and the store's cross-table invariants hold
(``tests/dbcheck.py``: no memory without its FTS row, vectors or audit row, no half
task...), and once the spool is replayed every acknowledged hook (exit 0) has its row:
its task, its execution event, its outcome with the task closed.

A few kills run in the default suite (marker ``fault``); the full campaign (50 hook and
25 engine kills) under ``-m soak``, or through ``bench/reliability.py``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from crashtools import KILLPOINT, VENV_PYTHON, Tally, Writer, pick_kill, run_writer
from dbcheck import problems, quick_check
from figures import full_run, record
from hooktools import make_payload, pid_alive, query, wait_until

from alma_hooks.types import derived_id

pytestmark = pytest.mark.fault

#: One task: what a session sends, in order.
CYCLE = ("UserPromptSubmit", "PostToolUse", "PostToolUseFailure", "PostToolUse", "Stop")


def _fields(event: str, session: str, i: int) -> dict[str, Any]:
    return {
        "UserPromptSubmit": {"prompt": f"Fix the failing cart total test of {session}", "prompt_id": f"p-{session}"},
        "PostToolUse": {"tool_name": "Bash", "tool_use_id": f"{session}-t{i}",
                        "tool_input": {"command": f"pytest tests/test_cart.py -q -k case{i}"},
                        "tool_response": {"stdout": f"{i + 2} passed in 0.3s", "stderr": "", "interrupted": False},
                        "duration_ms": 300},
        "PostToolUseFailure": {"tool_name": "Bash", "tool_use_id": f"{session}-t{i}",
                               "tool_input": {"command": "pytest tests/test_cart.py -x"},
                               "error": "Exit code 1\nFAILED test_total - assert 9 == 10", "is_interrupt": False,
                               "duration_ms": 400},
        "Stop": {"last_assistant_message": "Fixed the cart total.", "stop_hook_active": False},
    }[event]


def _stdin(event: str, session: str, i: int, project: Path) -> bytes:
    return json.dumps(make_payload(event, project, _fields(event, session, i), session_id=session)).encode()


def _session(session: str, project: Path, env: dict[str, str], victim: int | None = None,
             kill: dict[str, Any] | None = None) -> list[tuple[str, Writer]]:
    """One task of one session; the hook at index ``victim`` is killed as ``kill`` says."""
    out = []
    for i, event in enumerate(CYCLE):
        how = kill if i == victim else {}
        out.append((event, run_writer("hook", [], env=env, cwd=project, stdin=_stdin(event, session, i, project),
                                      **(how or {}))))
    return out


def _task_id(session: str) -> str:
    return derived_id("task", session, "main", f"p-{session}")


def _missing(db: Path, session: str, runs: list[tuple[str, Writer]]) -> tuple[int, list[str]]:
    """(acknowledged hooks, what of theirs is not in the DB)."""
    acked, missing = 0, []
    tasks = {tid: (closed, outcome) for tid, closed, outcome in query(db, "SELECT id, closed_at, outcome_id FROM tasks")}
    events = {eid for (eid,) in query(db, "SELECT id FROM events")}
    memories = {mid for (mid,) in query(db, "SELECT id FROM memories WHERE type = 'outcome'")}
    task = _task_id(session)
    for i, (event, w) in enumerate(runs):
        if w.returncode != 0:
            continue
        acked += 1
        if event == "UserPromptSubmit" and task not in tasks:
            missing.append(f"{session}: task of an acknowledged prompt")
        elif event.startswith("PostToolUse") and derived_id("event", session, f"{session}-t{i}") not in events:
            missing.append(f"{session}: event {i} of an acknowledged {event}")
        elif event == "Stop" and task in tasks and not (tasks[task][0] and tasks[task][1] == task and task in memories):
            missing.append(f"{session}: outcome of an acknowledged Stop")
    return acked, missing


def _drain(project: Path, env: dict[str, str], home: Path) -> None:
    """Hooks replay the spool first thing: run read-only ones until it is empty."""
    for n in range(20):
        if not list((home / "spool").glob("*.json")):
            return
        run_writer("hook", [], env=env, cwd=project,
                   stdin=json.dumps(make_payload("SessionStart", project, {"source": "startup"},
                                                 session_id=f"drain-{n}")).encode())
    pytest.fail("the spool did not drain")


def _calibrate(project: Path, env: dict[str, str], tmp: Path) -> dict[str, tuple[int, float]]:
    """Statements and seconds of each event in a steady state (a DB that already exists)."""
    _session("calibrate-0", project, env)
    counts: dict[str, tuple[int, float]] = {}
    for i, event in enumerate(CYCLE):
        w = run_writer("hook", [], env=env, cwd=project, stdin=_stdin(event, "calibrate-1", i, project),
                       count_file=tmp / "statements")
        assert w.returncode == 0 and w.statements
        counts[event] = (max(counts.get(event, (0, 0.0))[0], w.statements), max(counts.get(event, (0, 0.0))[1], w.seconds))
    return counts


def _check_round(tally: Tally, db: Path, rounds: list[tuple[str, list[tuple[str, Writer]]]]) -> None:
    found = problems(db)
    if found:
        tally.integrity_failures += 1
        tally.problems += found
    for session, runs in rounds:
        for event, w in runs:
            assert w.returncode in (0, -signal.SIGKILL), f"{event} exited {w.returncode}: {w.stderr[-1500:]!r}"
            assert b"Traceback" not in w.stderr, w.stderr[-1500:]
        acked, missing = _missing(db, session, runs)
        tally.acknowledged += acked
        tally.recovered += acked - len(missing)
        tally.problems += missing


def _hook_campaign(kills: int, project: Path, env: dict[str, str], home: Path, tmp: Path, seed: int) -> Tally:
    rng = random.Random(seed)
    counts = _calibrate(project, env, tmp)
    db = home / "memory.db"
    tally = Tally("hook")
    with ThreadPoolExecutor(max_workers=2) as pool:
        while tally.kills < kills:
            n = tally.rounds
            victim = rng.randrange(len(CYCLE))
            statements, seconds = counts[CYCLE[victim]]
            kill = pick_kill(rng, statements, seconds)
            a = pool.submit(_session, f"crash-{n}", project, env, victim, kill)
            b = pool.submit(_session, f"bystander-{n}", project, env)
            rounds = [(f"crash-{n}", a.result()), (f"bystander-{n}", b.result())]
            tally.rounds += 1
            tally.kills += sum(1 for _, runs in rounds for _, w in runs if w.killed)
            _drain(project, env, home)
            _check_round(tally, db, rounds)
    return tally


def _assert_clean(tally: Tally) -> None:
    assert tally.integrity_failures == 0, tally.problems
    assert tally.recovered == tally.acknowledged, tally.problems
    assert not tally.problems


@pytest.mark.parametrize("kills", [
    pytest.param(6, id="6-kills"),
    pytest.param(50, id="50-kills", marks=pytest.mark.soak),
])
def test_kill_9_of_hooks_loses_nothing_acknowledged(kills, project, hook_env, alma_home, tmp_path, request):
    if kills < 50 and full_run():
        pytest.skip("the fault runner runs the 50-kill variant")
    tally = _hook_campaign(kills, project, hook_env, alma_home, tmp_path, seed=kills)
    record("crash", **tally.figures())
    print(f"\nhook kills: {tally.figures()}")
    _assert_clean(tally)


def test_kill_between_the_outcome_and_the_task_close_leaves_neither_half(project, hook_env, alma_home):
    """Every statement of a Stop hook is a kill point: the task is open without an outcome, or closed with it.

    (Found by this sweep: the outcome and the task's close were two transactions.)
    """
    db = alma_home / "memory.db"
    _session("warm-up", project, hook_env)
    states, n = set(), 0
    while True:
        n += 1
        session = f"sweep-{n}"
        for event, how in (("UserPromptSubmit", {}), ("Stop", {"kill_at": n})):
            w = run_writer("hook", [], env=hook_env, cwd=project, stdin=_stdin(event, session, 0, project), **how)
        assert problems(db) == [], f"killed before statement {n} of Stop"
        (closed, outcome), = query(db, "SELECT closed_at > 0, outcome_id FROM tasks WHERE id = ?", (_task_id(session),))
        states.add((closed, bool(outcome)))
        # the user's next prompt goes on normally: a new task of this session
        again = run_writer("hook", [], env=hook_env, cwd=project, stdin=json.dumps(make_payload(
            "UserPromptSubmit", project, {"prompt": "and the discount too", "prompt_id": f"next-{n}"},
            session_id=session)).encode())
        assert again.returncode == 0
        if not w.killed:
            break  # past the Stop hook's last statement
    assert n > 10
    assert states == {(False, False), (True, True)}, states
    record("crash", target="hook (every statement of Stop)", kills=n - 1, rounds=n, integrity_failures=0,
           acknowledged=1, recovered=1, lost=0)


# ---------------------------------------------------------------- the engine

def _ping(home: Path) -> dict[str, Any] | None:
    from alma_hooks.daemon_client import request

    return request(home, {"op": "ping"}, 1.0)


class EngineProcess:
    """The warm engine in the foreground (``daemon.serve``), so the test holds its pid."""

    def __init__(self, home: Path, env: dict[str, str], cwd: Path) -> None:
        self.home, self.env, self.cwd = home, env, cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, kill_at: int = 0, count_file: Path | None = None) -> None:
        env = dict(self.env, ALMA_ENGINE_AUTOSTART="0")
        env.pop("ALMA_TEST_KILL_AT", None)
        if kill_at:
            env["ALMA_TEST_KILL_AT"] = str(kill_at)
        if count_file is not None:
            env["ALMA_TEST_STATEMENTS"] = str(count_file)
        self.proc = subprocess.Popen([str(VENV_PYTHON), "-I", str(KILLPOINT), "engine"], env=env, cwd=self.cwd,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_until(lambda: self.proc.poll() is not None or _ping(self.home), 120, "the engine to answer")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> bool:
        """SIGKILL; True if it was still running."""
        if not self.alive():
            return False
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        return True

    def stop(self) -> None:
        from alma_hooks import daemon

        if self.alive():
            daemon.stop(self.home)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.proc is not None:
            assert not pid_alive(self.proc.pid)


@pytest.fixture
def engine(alma_home, hook_env, project):  # type: ignore[no-untyped-def]
    e = EngineProcess(alma_home, hook_env, project)
    yield e
    e.stop()
    e.kill()


def _engine_campaign(kills: int, engine: EngineProcess, project: Path, env: dict[str, str], home: Path,
                     tmp: Path, seed: int) -> Tally:
    rng = random.Random(seed)
    db = home / "memory.db"
    _session("warm-up", project, env)  # the DB exists: the engine opens it at start
    engine.start(count_file=tmp / "engine-startup")
    t0 = time.monotonic()
    _session("calibrate", project, env)
    cycle_s = time.monotonic() - t0
    engine.stop()
    total = int((tmp / "engine-startup").read_text())
    tally = Tally("engine")
    with ThreadPoolExecutor(max_workers=2) as pool:
        while tally.kills < kills:
            n = tally.rounds
            timer = None
            if rng.random() < 0.5:  # it kills itself before a random statement of its own
                engine.start(kill_at=rng.randint(1, total))
            else:  # killed from outside at a random moment of the round
                engine.start()
                timer = threading.Timer(rng.uniform(0.0, cycle_s), engine.kill)
                timer.start()
            a = pool.submit(_session, f"engine-{n}", project, env)
            b = pool.submit(_session, f"engine-bystander-{n}", project, env)
            rounds = [(f"engine-{n}", a.result()), (f"engine-bystander-{n}", b.result())]
            if timer is not None:
                timer.join()
            engine.kill()  # a kill point past the round's end still kills an engine with work pending
            tally.rounds += 1
            tally.kills += int(engine.proc.returncode == -signal.SIGKILL)
            assert not (home / "run" / "engine.sock").exists() or _ping(home) is None
            _drain(project, env, home)
            _check_round(tally, db, rounds)
            cache = home / "cache" / "embeddings.db"
            if cache.exists() and quick_check(cache) != "ok":
                tally.integrity_failures += 1
                tally.problems.append("the engine's query cache is damaged")
    # a killed engine leaves a stale socket; the next one starts and answers anyway
    engine.start()
    assert _ping(home) is not None
    return tally


@pytest.mark.parametrize("kills", [
    pytest.param(2, id="2-kills"),
    pytest.param(25, id="25-kills", marks=pytest.mark.soak),
])
def test_kill_9_of_the_engine_loses_nothing_acknowledged(kills, engine, project, hook_env, alma_home, tmp_path):
    if kills < 25 and full_run():
        pytest.skip("the fault runner runs the 25-kill variant")
    tally = _engine_campaign(kills, engine, project, hook_env, alma_home, tmp_path, seed=kills)
    record("crash", **tally.figures())
    print(f"\nengine kills: {tally.figures()}")
    _assert_clean(tally)
    # the engine started after the campaign embeds everything captured while engines were being killed
    wait_until(lambda: query(alma_home / "memory.db", "SELECT count(*) FROM memories WHERE embedding_pending = 1")
               == [(0,)], 120, "the new engine to embed the pending memories")
    assert problems(alma_home / "memory.db") == []

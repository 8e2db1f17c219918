"""Helpers of the crash campaign: real writer processes killed with SIGKILL, and what must survive.

Writers are started through ``tests/killpoint.py`` with the venv's interpreter, as
``hooks/alma-hook`` starts ``hooks/alma_hook.py`` (the ``sh`` wrapper is left out on
purpose: a SIGKILL of the wrapper would leave the Python writer running and finishing
its write, which is not a crash). Two kinds of kill:

- at a statement: ``ALMA_TEST_KILL_AT=N`` makes the writer SIGKILL itself just before
  its Nth SQL statement (between any two statements of a transaction, ``COMMIT`` included);
- at a time: the test sends SIGKILL after a random delay (wherever the writer is,
  inside SQLite's own page writes included).

"Acknowledged" is what Claude Code would have seen succeed: a hook that exited 0.
"""

from __future__ import annotations

import json
import random
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
KILLPOINT = REPO / "tests" / "killpoint.py"
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
KILLED = -9


@dataclass
class Writer:
    """One finished writer process."""

    returncode: int
    stdout: bytes
    stderr: bytes
    seconds: float
    statements: int | None = None

    @property
    def killed(self) -> bool:
        return self.returncode == KILLED


def run_writer(mode: str, args: list[str], *, env: dict[str, str], cwd: Path, stdin: bytes = b"",
               kill_at: int = 0, kill_after_s: float | None = None, kill_when: Callable[[], bool] | None = None,
               count_file: Path | None = None, timeout: float = 120) -> Writer:
    """Run ``killpoint.py MODE ARGS`` to its end or its kill.

    ``kill_after_s``: SIGKILL that long after the start, or after ``kill_when()`` first
    holds (polled) when it is given.
    """
    e = dict(env)
    e.pop("ALMA_TEST_KILL_AT", None)
    if kill_at:
        e["ALMA_TEST_KILL_AT"] = str(kill_at)
    if count_file is not None:
        e["ALMA_TEST_STATEMENTS"] = str(count_file)
        count_file.unlink(missing_ok=True)
    started = time.monotonic()
    proc = subprocess.Popen([str(VENV_PYTHON), "-I", str(KILLPOINT), mode, *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd, env=e)
    done = threading.Event()

    def killer() -> None:
        while kill_when is not None and not kill_when():
            if done.wait(0.005):
                return
        if not done.wait(kill_after_s):
            proc.kill()

    timer = threading.Thread(target=killer, daemon=True) if kill_after_s is not None else None
    if timer is not None:
        timer.start()
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    finally:
        done.set()
        if timer is not None:
            timer.join()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    statements = None
    if count_file is not None and count_file.exists():
        statements = int(count_file.read_text() or 0)
    return Writer(proc.returncode, out, err, time.monotonic() - started, statements)


@dataclass
class Tally:
    """What one campaign counted (reported by the fault runner)."""

    target: str
    kills: int = 0
    rounds: int = 0
    integrity_failures: int = 0
    acknowledged: int = 0
    recovered: int = 0
    problems: list[str] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        return {"target": self.target, "kills": self.kills, "rounds": self.rounds,
                "integrity_failures": self.integrity_failures, "acknowledged": self.acknowledged,
                "recovered": self.recovered, "lost": self.acknowledged - self.recovered,
                "problems": self.problems[:10]}


def pick_kill(rng: random.Random, statements: int, seconds: float) -> dict[str, Any]:
    """Half the kills at a random statement, half at a random time within the writer's usual run."""
    if rng.random() < 0.5:
        return {"kill_at": rng.randint(1, max(1, statements))}
    return {"kill_after_s": rng.uniform(0.0, max(0.05, seconds))}


def json_line(stdout: bytes) -> dict[str, Any]:
    return json.loads(stdout.decode().strip().splitlines()[-1])

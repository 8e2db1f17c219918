"""A full disk, for real: hooks fail open and keep their captures, the CLI says what to do (issue 7).

The full disk is a 16 MB tmpfs mounted for the test (``mount -t tmpfs -o size=16m``) and
filled to its last byte, so every write past it fails in the kernel with ENOSPC, as on a
full partition. That needs root (CAP_SYS_ADMIN); without it the fixture falls back to
``RLIMIT_FSIZE`` (set in the hook's and CLI's process, SIGXFSZ ignored), which makes a
file write past the limit fail with EFBIG: also kernel-enforced, but per file rather
than per filesystem, so the case "everything on the full disk" needs the tmpfs and is
skipped there. Which one ran is in the test output and in the fault runner's figures.
The mount is removed in the fixture's teardown, whatever happened.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dbcheck import problems
from figures import record
from hooktools import HOOK, HookResult, assert_fail_open, make_payload, query

pytestmark = pytest.mark.fault

#: room for a DB with vectors (sqlite-vec allocates a 1.5 MB chunk per partition)
SIZE = 16 * 1024 * 1024
#: RLIMIT_FSIZE of the fallback: below one WAL frame (4 KB page + header), above a spooled capture.
FSIZE_LIMIT = 4096
CLI = HOOK.parents[1] / ".venv" / "bin" / "alma-hooks"


@dataclass
class SmallFS:
    """A place whose disk can be made full and freed again."""

    root: Path
    kind: str  # "tmpfs" or "rlimit"
    full: bool = False

    def fill(self) -> None:
        """Take every free byte (tmpfs) or cap the size of every file a child writes (rlimit)."""
        self.full = True
        if self.kind != "tmpfs":
            return
        fd = os.open(self.root / "filler", os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
        try:
            size = 65536
            while size:  # unbuffered, halving on ENOSPC down to one byte: the disk ends up full to the byte
                try:
                    os.write(fd, b"\0" * size)
                except OSError as e:
                    assert e.errno == errno.ENOSPC
                    size //= 2
        finally:
            os.close(fd)
        assert shutil.disk_usage(self.root).free < 4096

    def free(self) -> None:
        self.full = False
        (self.root / "filler").unlink(missing_ok=True)

    def preexec(self) -> Callable[[], None] | None:
        if self.kind == "tmpfs" or not self.full:
            return None

        def limit() -> None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the writer instead of EFBIG
            resource.setrlimit(resource.RLIMIT_FSIZE, (FSIZE_LIMIT, FSIZE_LIMIT))

        return limit


def _mount_tmpfs(where: Path) -> bool:
    if os.geteuid() != 0 or os.environ.get("ALMA_TEST_DISK_FULL") == "rlimit":
        return False
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=0700", "tmpfs", str(where)],
                       capture_output=True)
    return r.returncode == 0


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[SmallFS]:
    root = tmp_path / "small-fs"
    root.mkdir(mode=0o700)
    if not _mount_tmpfs(root):
        print("\nfull disk: RLIMIT_FSIZE (mounting a tmpfs is not permitted here)")
        yield SmallFS(root, "rlimit")
        return
    print("\nfull disk: a 16 MB tmpfs filled to the last byte")
    try:
        yield SmallFS(root, "tmpfs")
    finally:
        if subprocess.run(["umount", str(root)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(root)], check=True)


def _hook(fs: SmallFS, event: str, project: Path, env: dict[str, str], fields: dict[str, Any],
          session: str = "disk-1") -> HookResult:
    import time

    stdin = json.dumps(make_payload(event, project, fields, session_id=session)).encode()
    started = time.monotonic()
    p = subprocess.run([str(HOOK)], input=stdin, capture_output=True, cwd=project, env=env, timeout=60,
                       preexec_fn=fs.preexec())
    return HookResult(p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace"),
                      time.monotonic() - started)


def _cli(fs: SmallFS, project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CLI), *args], capture_output=True, text=True, cwd=project, env=env, timeout=120,
                          preexec_fn=fs.preexec())


TASK = [
    ("UserPromptSubmit", {"prompt": "Fix the cart total rounding bug", "prompt_id": "p-disk"}),
    ("PostToolUse", {"tool_name": "Bash", "tool_use_id": "t-disk-1", "tool_input": {"command": "pytest -q"},
                     "tool_response": {"stdout": "12 passed in 0.4s", "stderr": "", "interrupted": False}}),
    ("PostToolUseFailure", {"tool_name": "Bash", "tool_use_id": "t-disk-2", "tool_input": {"command": "pytest -x"},
                            "error": "Exit code 1\nFAILED test_round - assert 9.99 == 10.0"}),
    ("Stop", {"last_assistant_message": "Fixed the rounding.", "stop_hook_active": False}),
]


def _assert_whole_task(db: Path) -> None:
    assert query(db, "SELECT count(*) FROM events WHERE session_id = 'disk-1'") == [(2,)]
    ((closed, outcome),) = query(db, "SELECT closed_at > 0, outcome_id FROM tasks WHERE session_id = 'disk-1'")
    assert closed and outcome
    assert query(db, "SELECT count(*) FROM memories WHERE id = ?", (outcome,)) == [(1,)]
    assert problems(db) == []


def _assert_one_line_error(r: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert r.returncode not in (0, 2) and "Traceback" not in r.stderr + r.stdout, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("Error: ") and all(f in line for f in fragments), line


def _spooled(*dirs: Path) -> list[Path]:
    return [p for d in dirs if d.exists() for p in d.glob("*.json")]


def _run_task_on_full_disk(fs: SmallFS, project: Path, env: dict[str, str]) -> list[HookResult]:
    results = []
    for event, fields in TASK:
        r = _hook(fs, event, project, env, fields)
        assert_fail_open(r, event if r.stdout else None)
        assert "Traceback" not in r.stderr and "Logging error" not in r.stderr, r.stderr[-2000:]
        results.append(r)
    return results


def test_db_on_a_full_disk_spools_captures_and_recovers_them(small_fs, project, hook_env, alma_home):
    env = {**hook_env, "ALMA_DB": str(small_fs.root / "memory.db")}
    db = small_fs.root / "memory.db"
    assert _hook(small_fs, "SessionStart", project, env, {"source": "startup"}).returncode == 0
    assert db.exists()
    small_fs.fill()

    _run_task_on_full_disk(small_fs, project, env)
    spooled = _spooled(alma_home / "spool")
    assert spooled, "the full disk refused the writes: the captures wait in the spool"
    log = (alma_home / "logs" / "hooks.log").read_text()
    assert "free disk space" in log

    says = ("is full", "free disk space") if small_fs.kind == "tmpfs" else ("free disk space",)
    _assert_one_line_error(_cli(small_fs, project, env, "remember", "Prices are rounded half-even"), *says)
    # SQLite in WAL mode cannot even read without room for its shared-memory file: one clear line too
    searched = _cli(small_fs, project, env, "search", "cart total", "--json")
    _assert_one_line_error(searched, "free disk space")

    small_fs.free()
    assert _hook(small_fs, "SessionStart", project, env, {"source": "startup"}, session="disk-2").returncode == 0
    assert _spooled(alma_home / "spool") == []
    _assert_whole_task(db)
    assert _cli(small_fs, project, env, "remember", "Prices are rounded half-even").returncode == 0
    record("disk_full", mode=small_fs.kind, case="db on the full disk", spooled=len(spooled), recovered=True)


def test_everything_on_a_full_disk_keeps_captures_in_the_fallback_spool(small_fs, project, hook_env, tmp_path):
    if small_fs.kind != "tmpfs":
        pytest.skip("needs a full filesystem (RLIMIT_FSIZE limits file sizes, not a disk)")
    home = small_fs.root / "alma-home"
    runtime = tmp_path / "runtime"  # $XDG_RUNTIME_DIR: a tmpfs of the user's on a real machine
    runtime.mkdir(mode=0o700)
    env = {**hook_env, "ALMA_HOME": str(home), "XDG_RUNTIME_DIR": str(runtime)}
    assert _hook(small_fs, "SessionStart", project, env, {"source": "startup"}).returncode == 0
    small_fs.fill()

    _run_task_on_full_disk(small_fs, project, env)
    fallback = [p for p in runtime.iterdir() if p.name.startswith("alma-spool-")]
    spooled = _spooled(*fallback)
    assert len(fallback) == 1 and spooled, "no room in ~/.alma: the captures wait in the runtime dir"
    assert oct(fallback[0].stat().st_mode & 0o777) == "0o700"
    assert all(oct(p.stat().st_mode & 0o777) == "0o600" for p in spooled)
    _assert_one_line_error(_cli(small_fs, project, env, "remember", "Prices are rounded half-even"),
                           "free disk space")

    small_fs.free()
    assert _hook(small_fs, "SessionStart", project, env, {"source": "startup"}, session="disk-2").returncode == 0
    assert _spooled(*fallback) == []
    _assert_whole_task(home / "memory.db")
    record("disk_full", mode=small_fs.kind, case="data dir on the full disk", spooled=len(spooled), recovered=True)


def test_the_fallback_spool_is_private_or_not_used(tmp_path, monkeypatch):
    from alma_hooks import spool

    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "runtime"))
    (tmp_path / "runtime").mkdir(mode=0o700)
    fallback = spool.fallback_dir(home)
    assert fallback is not None and fallback.parent == tmp_path / "runtime"
    fallback.mkdir(mode=0o755)
    fallback.chmod(0o755)  # someone else could read the captures there: refused
    assert not spool._private_dir(fallback)
    fallback.chmod(0o700)
    assert spool._private_dir(fallback)
    fallback.rmdir()
    fallback.symlink_to(tmp_path)  # a symlink planted in a shared tmpfs: refused
    assert not spool._private_dir(fallback)


def test_half_written_spool_files_of_killed_hooks_are_cleaned_up(alma_home):
    """A hook killed while spooling leaves a ``.tmp`` file: never acknowledged, removed once clearly stale."""
    from alma_hooks import spool

    kept = spool.put(alma_home, {"hook_event_name": "PostToolUse", "n": 1})
    stale, fresh = kept.parent / ".1-1.tmp", kept.parent / ".2-2.tmp"
    stale.write_text('{"hook_event_na')
    fresh.write_text('{"hook_event_na')
    old = stale.stat().st_mtime - spool.STALE_TMP_S - 1
    os.utime(stale, (old, old))
    assert list(spool.pending(alma_home)) == [kept]
    assert not stale.exists() and fresh.exists()

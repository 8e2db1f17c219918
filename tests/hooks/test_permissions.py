"""Every file alma-hooks leaves in the data dir is the user's only (issue 7, permissions).

A warm engine (socket, lock, query cache), a task through the hooks (DB, WAL), a capture
spooled under a locked DB, and the log: then every directory under the data dir must be
0700 and every file and socket 0600, whatever the umask of the processes was (022 here,
the usual default).
"""

from __future__ import annotations

import json
import os
import stat
from collections import Counter

import pytest
from figures import record
from hooktools import assert_fail_open, make_payload, spawn_hook
from test_crash import CYCLE, EngineProcess, _stdin
from test_fail_open import POST_TOOL, exclusive_lock

pytestmark = pytest.mark.fault


def test_every_file_and_directory_is_user_only(project, hook_env, alma_home):
    old = os.umask(0o022)
    engine = EngineProcess(alma_home, hook_env, project)
    try:
        engine.start()
        for i, event in enumerate(CYCLE):
            assert_fail_open(spawn_hook(_stdin(event, "perm", i, project), cwd=project, env=hook_env))
        with exclusive_lock(alma_home / "memory.db"):
            r = spawn_hook(json.dumps(make_payload("PostToolUse", project, POST_TOOL, session_id="perm")).encode(),
                           cwd=project, env=hook_env)
            assert_fail_open(r)
            modes = {p: stat.S_IMODE(os.lstat(p).st_mode) for p in [alma_home, *alma_home.rglob("*")]}
            kinds = {p: ("socket" if stat.S_ISSOCK(os.lstat(p).st_mode) else "dir" if p.is_dir() else "file")
                     for p in modes}
    finally:
        engine.stop()
        engine.kill()
        os.umask(old)

    names = {p.relative_to(alma_home).as_posix() for p in modes if p != alma_home}
    for expected in ("memory.db", "memory.db-wal", "logs/hooks.log", "run/engine.sock", "run/engine.lock",
                     "cache/embeddings.db"):
        assert expected in names, sorted(names)
    assert any(n.startswith("spool/") and n.endswith(".json") for n in names), sorted(names)
    wrong = {p.relative_to(alma_home).as_posix() or ".": oct(m) for p, m in modes.items()
             if m != (0o700 if kinds[p] == "dir" else 0o600)}
    record("permissions", paths=len(modes), by_kind=dict(Counter(f"{kinds[p]} {oct(m)}" for p, m in modes.items())),
           wrong=wrong)
    assert not wrong, wrong

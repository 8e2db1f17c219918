"""The whole secrets corpus in prompts, Bash commands and tool outputs through the real hooks (issue 7, secrets).

Every corpus entry (``tests/test_redact.py``) goes through UserPromptSubmit, PostToolUse
(command and output), PostToolUseFailure (the error) and Stop, once with the DB free and
once while another process holds its write lock (so the captures go through the spool),
with team sync enabled for the project (outbox rows in the same transactions). Then the
raw bytes of every file of the data dir (DB with its FTS5 index, WAL, spool, logs, the
outbox inside the DB) and of the project are searched for every secret, also lower-cased
and as its long alphanumeric runs (FTS5 tokens). The Cosmos side is
``tests/azure/test_secrets_corpus.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from figures import record
from hooktools import assert_fail_open, make_payload, query, spawn_hook
from secretscan import corpus, scan
from test_fail_open import exclusive_lock

pytestmark = pytest.mark.fault

BATCH = 6


def _task(texts: list[str], n: int) -> list[tuple[str, dict]]:
    joined = "\n".join(texts)
    return [
        ("UserPromptSubmit", {"prompt": f"Please check why this fails:\n{joined}", "prompt_id": f"p-{n}"}),
        ("PostToolUse", {"tool_name": "Bash", "tool_use_id": f"t-{n}-1", "tool_input": {"command": texts[0]},
                         "tool_response": {"stdout": joined, "stderr": texts[-1], "interrupted": False}}),
        ("PostToolUseFailure", {"tool_name": "Bash", "tool_use_id": f"t-{n}-2", "tool_input": {"command": joined},
                                "error": f"Exit code 1\n{joined}"}),
        ("Stop", {"last_assistant_message": f"Done; the logs said:\n{joined}", "stop_hook_active": False}),
    ]


def _run_tasks(entries: list[tuple[str, str, str, str]], project: Path, env: dict[str, str], tag: str,
               batch: int = BATCH) -> int:
    hooks = 0
    for n in range(0, len(entries), batch):
        texts = [text for _, text, _, _ in entries[n:n + batch]]
        for event, fields in _task(texts, n):
            r = spawn_hook(json.dumps(make_payload(event, project, fields, session_id=f"{tag}-{n}")).encode(),
                           cwd=project, env=env)
            assert_fail_open(r, event if r.stdout else None)
            hooks += 1
    return hooks


def test_no_secret_of_the_corpus_reaches_any_file(project, hook_env, alma_home, config):
    from alma_hooks.storage.replica import Replica
    from alma_hooks.storage.sqlite import SQLiteStore

    # No SQLite connection may stay open in this process while the scan reads the DB's files: closing
    # any descriptor of a file drops every POSIX lock the process holds on it, SQLite's included.
    with SQLiteStore(config.db_path, config.policy) as store:
        Replica(store).enable(config.project_id)  # outbox rows are written with every memory
    entries = corpus()
    secrets = [secret for _, _, secret, _ in entries]

    hooks = _run_tasks(entries, project, hook_env, "free")
    with exclusive_lock(config.db_path):
        hooks += _run_tasks(entries, project, hook_env, "locked", batch=len(entries))  # each hook waits 1.5 s
        spooled = list((alma_home / "spool").glob("*.json"))
        assert spooled, "the locked round went through the spool"
        files, size, found = scan([alma_home, project], secrets)
        assert not found, found
    assert_fail_open(spawn_hook(json.dumps(make_payload("SessionStart", project, {"source": "startup"},
                                                        session_id="replay")).encode(), cwd=project, env=hook_env))
    assert not list((alma_home / "spool").glob("*.json"))
    assert query(config.db_path, "SELECT count(*) FROM outbox") != [(0,)]
    stored = query(config.db_path, "SELECT count(*) FROM events")[0][0]
    assert stored == 2 * (-(-len(entries) // BATCH) + 1), "every capture stored, the spooled ones too"
    more_files, more_size, found_after = scan([alma_home, project], secrets)
    found += found_after
    record("secrets", corpus=len(entries), kinds=len({kind for _, _, _, kind in entries}), hooks=hooks,
           files_scanned=files + more_files, bytes_scanned=size + more_size, leaks=len(found))
    assert not found, found

"""What only the JSON-lines store has: its log format, crash leftovers and replay.

Behaviour shared with the other backends is in ``test_conformance.py``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from alma_hooks.errors import SchemaTooNew
from alma_hooks.storage.files import FileStore
from alma_hooks.types import ExecutionEvent, Heuristic, Scope

SCOPE = Scope("github.com/acme/shop", "main", "u1")


def heuristic(text: str) -> Heuristic:
    return Heuristic(project_id=SCOPE.project_id, condition=text, strategy="s")


def test_replay_rebuilds_the_state_last_record_wins(tmp_path: Path) -> None:
    with FileStore(tmp_path) as store:
        kept = store.add(SCOPE, heuristic("kept"))
        kept = store.update(SCOPE, dataclasses.replace(kept, condition="v2"))
        gone = store.add(SCOPE, heuristic("gone"))
        store.delete(SCOPE, gone.id, reason="test")
        store.set_embeddings("m", [(kept.id, [1.0] + [0.0] * 383)])
        gen = store.generation(SCOPE)
        exported = list(store.export())
    lines = [json.loads(line) for line in (tmp_path / "memories.jsonl").read_text().splitlines()]
    assert [r["op"] for r in lines] == ["put", "put", "put", "del", "vec"]
    with FileStore(tmp_path) as again:
        assert list(again.export()) == exported
        assert again.get(SCOPE, kept.id).condition == "v2"
        assert again.generation(SCOPE) == gen


def test_a_torn_last_line_is_skipped_and_later_writes_survive(tmp_path: Path) -> None:
    with FileStore(tmp_path) as store:
        first = store.add(SCOPE, heuristic("first"))
    with open(tmp_path / "memories.jsonl", "ab") as f:
        f.write(b'{"op":"put","memory":{"id":"half')  # a crash in the middle of an append
    with FileStore(tmp_path) as store:
        assert [m.id for m in store.list(SCOPE)] == [first.id]
        second = store.add(SCOPE, heuristic("second"))
    with FileStore(tmp_path) as store:
        assert {m.id for m in store.list(SCOPE)} == {first.id, second.id}


def test_events_append_across_instances(tmp_path: Path) -> None:
    one, two = FileStore(tmp_path), FileStore(tmp_path)
    try:
        one.add_event(SCOPE, ExecutionEvent(project_id=SCOPE.project_id, tool="Bash", id="e1", created_at=1.0))
        two.add_event(SCOPE, ExecutionEvent(project_id=SCOPE.project_id, tool="Edit", id="e2", created_at=2.0))
        assert [e.id for e in one.events(SCOPE)] == ["e1", "e2"]
    finally:
        one.close()
        two.close()


def test_a_newer_format_is_refused(tmp_path: Path) -> None:
    FileStore(tmp_path).close()
    (tmp_path / "meta.json").write_text(json.dumps({"format": 99}))
    with pytest.raises(SchemaTooNew):
        FileStore(tmp_path)


def test_a_record_that_no_longer_fits_its_type_is_skipped(tmp_path: Path) -> None:
    with FileStore(tmp_path) as store:
        kept = store.add(SCOPE, heuristic("kept"))
    with open(tmp_path / "memories.jsonl", "a") as f:
        f.write(json.dumps({"op": "put", "memory": {"type": "heuristic", "no_such_field": 1}}) + "\n")
        f.write(json.dumps({"op": "put", "memory": {"type": "no_such_type"}}) + "\n")
    with FileStore(tmp_path) as store:
        assert [m.id for m in store.list(SCOPE)] == [kept.id]

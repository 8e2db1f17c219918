"""The viewer's JSON API over a real SQLite store: scope, actions and their audit, bad requests.

The handlers are called directly (``ViewerAPI.get`` / ``post``), as the server calls them.
"""

from __future__ import annotations

import json

import pytest
from viewertools import USER, XSS, Seeded, seed

from alma_hooks.errors import BadRequest, NotFound, ScopeViolation
from alma_hooks.storage.sqlite import SQLiteStore
from alma_hooks.types import Scope
from alma_hooks.viewer.api import ViewerAPI, engine_embed


@pytest.fixture
def world(tmp_path, alma_home) -> Seeded:
    return seed(tmp_path, alma_home)


@pytest.fixture
def store(world: Seeded):
    s = SQLiteStore(world.config.db_path, world.config.policy, actor=f"ui:{USER}")
    yield s
    s.close()


@pytest.fixture
def api(world: Seeded, store: SQLiteStore) -> ViewerAPI:
    return ViewerAPI(store, world.config)


def everything_returned(api: ViewerAPI, project: str, agent: str = "main") -> str:
    """Every read route's answer for one scope, as one JSON string."""
    args = {"project": project, "agent": agent}
    answers = [api.get("memories", {**args, "limit": "500"}), api.get("audit", {**args, "limit": "500"}),
               api.get("injections", {**args, "limit": "500"}), api.get("curves", args), api.get("scopes", {})]
    for word in ("zanzibar", "invoices", "flaky", "immutable"):
        answers.append(api.get("memories", {**args, "q": word}))
    return json.dumps(answers)


# ---------------------------------------------------------------- scope

def test_a_viewer_of_project_a_never_returns_project_b(world: Seeded, api: ViewerAPI) -> None:
    a = world.config.project_id
    for agent in ("main", "helena", "victor"):
        seen = everything_returned(api, a, agent)
        # (the queries themselves are echoed back: look for B's id, text, project and session)
        assert world.b_memory.id not in seen and world.b_memory.text not in seen
        assert world.b_project not in seen and "session-b" not in seen
    with pytest.raises(ScopeViolation, match="shows project"):
        api.get("memories", {"project": world.b_project})
    for route in ("audit", "injections", "curves"):
        with pytest.raises(ScopeViolation):
            api.get(route, {"project": world.b_project})
    with pytest.raises(ScopeViolation):
        api.post("forget", {"project": world.b_project, "id": world.b_memory.id})
    with pytest.raises(NotFound):  # B's id asked for in A's scope
        api.get("memory", {"id": world.b_memory.id})
    with pytest.raises(NotFound):
        api.post("forget", {"id": world.b_memory.id})
    assert [p["project_id"] for p in api.get("scopes", {})["projects"]] == [a]


def test_with_all_projects_each_project_is_still_read_in_its_own_scope(world: Seeded, store) -> None:
    api = ViewerAPI(store, world.config, all_projects=True)
    projects = {p["project_id"]: p for p in api.get("scopes", {})["projects"]}
    assert set(projects) == {world.config.project_id, world.b_project}
    assert {a["agent"] for a in projects[world.config.project_id]["agents"]} == {"main", "helena"}
    assert projects[world.config.project_id]["shared"] == 2  # the knowledge and the preference of every agent
    b_items = api.get("memories", {"project": world.b_project})["items"]
    assert [m["id"] for m in b_items] == [world.b_memory.id]
    assert world.b_memory.id not in json.dumps(api.get("memories", {"project": world.config.project_id}))
    with pytest.raises(NotFound):
        api.get("memory", {"project": world.config.project_id, "id": world.b_memory.id})
    with pytest.raises(BadRequest, match="concrete"):
        api.get("memories", {"project": "*"})


def test_agents_see_their_own_memories_only(world: Seeded, api: ViewerAPI) -> None:
    helena = {m["id"] for m in api.get("memories", {"agent": "helena"})["items"]}
    main = {m["id"] for m in api.get("memories", {})["items"]}
    assert world.helena.id in helena and world.helena.id not in main
    assert world.heuristic.id in main and world.heuristic.id not in helena
    assert world.xss.id in main and world.xss.id in helena  # shared knowledge


# ---------------------------------------------------------------- reads

def test_memories_by_type_and_search(world: Seeded, api: ViewerAPI) -> None:
    heuristics = api.get("memories", {"type": "heuristic"})["items"]
    assert [m["id"] for m in heuristics] == [world.heuristic.id]
    h = heuristics[0]
    assert h["editable"] == ["condition", "strategy"] and h["fields"]["strategy"] == "bisect the failing commit"
    assert h["sources"] == len(world.outcomes) and h["confidence"] == 0.7
    found = api.get("memories", {"q": "flaky checkout test", "type": "heuristic"})
    assert found["query"] == "flaky checkout test" and found["items"][0]["id"] == world.heuristic.id
    assert found["items"][0]["score"] > 0
    assert api.get("memories", {"q": "emojis"})["items"][0]["id"] == world.preference.id
    assert api.get("memories", {"q": "qwertyuiop"})["items"] == []
    texts = [m["text"] for m in api.get("memories", {"type": "knowledge"})["items"]]
    assert texts == [XSS]  # stored and returned as it was; the page renders it as text


def test_memory_detail_evidence_and_confidence_over_time(world: Seeded, api: ViewerAPI) -> None:
    d = api.get("memory", {"id": world.heuristic.id})
    assert d["memory"]["id"] == world.heuristic.id
    assert [p["confidence"] for p in d["confidence"]] == [0.4, 0.55, 0.7]
    assert d["confidence"] == sorted(d["confidence"], key=lambda p: p["at"])
    by_id = {e["id"]: e for e in d["evidence"]}
    assert by_id[world.gone_id] == {"id": world.gone_id, "missing": True}
    live = [e for e in d["evidence"] if not e["missing"]]
    assert len(live) == 5 and sum(e["success"] for e in live) == 4
    assert any(e["error"] == "AssertionError: total 0" for e in live)
    assert [r["action"] for r in d["audit"]] == ["update", "update", "create"]
    ap = api.get("memory", {"id": world.anti_pattern.id})
    assert [e["id"] for e in ap["evidence"]] == [world.outcomes[1].id]
    assert api.get("memory", {"id": world.xss.id})["evidence"] == []


def test_injections_resolve_items_and_count_tokens(world: Seeded, api: ViewerAPI) -> None:
    d = api.get("injections", {})
    assert d["tokens"] == 98 and [r["event"] for r in d["items"]] == ["UserPromptSubmit", "SessionStart"]
    latest = d["items"][0]["items"]
    assert latest[0] == {"id": world.heuristic.id, "version": 3, "gone": False, "type": "heuristic",
                         "text": world.heuristic.text, "current_version": 3}
    assert latest[1]["id"] == world.gone_id and latest[1]["gone"] and latest[1]["current_version"] is None
    assert d["items"][1]["items"][0]["current_version"] == 3 and d["items"][1]["items"][0]["version"] == 1
    assert len(api.get("injections", {"limit": "1"})["items"]) == 1
    assert api.get("injections", {"agent": "helena"}) == {"project_id": world.config.project_id,
                                                          "agent": "helena", "items": [], "tokens": 0}


def test_audit_and_curves(world: Seeded, api: ViewerAPI) -> None:
    audit = api.get("audit", {"limit": "3"})["items"]
    assert len(audit) == 3 and all(r["project_id"] == world.config.project_id for r in audit)
    curve = api.get("curves", {"every": "2"})
    assert curve["every"] == "2 outcomes" and curve["outcomes"] == 6 and curve["heuristics_learned"] == 1
    assert api.get("curves", {})["every"] == "week"
    with pytest.raises(BadRequest, match="invalid curve step"):
        api.get("curves", {"every": "fortnight"})


@pytest.mark.parametrize("route,args,error", [
    ("memories", {"type": "bogus"}, "unknown memory type"),
    ("memories", {"limit": "lots"}, "whole number"),
    ("memories", {"limit": "0"}, "between 1 and"),
    ("memories", {"limit": "100000"}, "between 1 and"),
    ("memories", {"q": "x" * 5000}, "over 4000"),
    ("memory", {}, "'id' is missing"),
    ("audit", {"limit": "-1"}, "between 1 and"),
], ids=["type", "limit-word", "limit-zero", "limit-huge", "query-long", "id-missing", "audit-limit"])
def test_bad_reads_are_bad_requests(api: ViewerAPI, route: str, args: dict, error: str) -> None:
    with pytest.raises(BadRequest, match=error):
        api.get(route, args)


def test_unknown_routes_are_not_found(api: ViewerAPI) -> None:
    with pytest.raises(NotFound):
        api.get("nothing", {})
    with pytest.raises(NotFound):
        api.post("memories", {})  # a read route is no action


# ---------------------------------------------------------------- actions, audited by the store

def _audit(store: SQLiteStore, world: Seeded, memory_id: str) -> list[dict]:
    return store.audit_log(world.scope, memory_id=memory_id, with_snapshot=True)


def test_pin_and_unpin_are_audited(world: Seeded, api: ViewerAPI, store: SQLiteStore) -> None:
    out = api.post("pin", {"id": world.heuristic.id, "pinned": True})
    assert out["memory"]["pinned"] is True and store.get(world.scope, world.heuristic.id).pinned
    api.post("pin", {"id": world.heuristic.id, "pinned": False})
    rows = _audit(store, world, world.heuristic.id)
    assert [(r["action"], r["reason"], r["actor"]) for r in rows[:2]] == [
        ("update", "unpinned in the viewer", f"ui:{USER}"), ("update", "pinned in the viewer", f"ui:{USER}")]
    assert json.loads(rows[0]["snapshot"])["pinned"] is True
    with pytest.raises(BadRequest, match="true or false"):
        api.post("pin", {"id": world.heuristic.id, "pinned": "yes"})


def test_edit_changes_the_text_and_keeps_the_old_version(world: Seeded, api: ViewerAPI, store: SQLiteStore) -> None:
    out = api.post("edit", {"id": world.heuristic.id, "fields": {"strategy": "  bisect, then add a regression test "}})
    assert out["memory"]["fields"]["strategy"] == "bisect, then add a regression test"
    got = store.get(world.scope, world.heuristic.id)
    assert got.strategy == "bisect, then add a regression test" and got.version == 4
    row = _audit(store, world, world.heuristic.id)[0]
    assert row["reason"] == "edited in the viewer" and json.loads(row["snapshot"])["strategy"] == \
        "bisect the failing commit"
    assert api.get("memories", {"q": "regression"})["items"][0]["id"] == world.heuristic.id
    api.post("edit", {"id": world.anti_pattern.id, "fields": {"alternative": ""}})  # optional: may be emptied
    assert store.get(world.scope, world.anti_pattern.id).alternative == ""


@pytest.mark.parametrize("fields,error", [
    (None, "'fields' must be an object"),
    ({}, "'fields' must be an object"),
    ({"confidence": "1"}, "cannot be edited"),
    ({"strategy": 3}, "must be a string"),
    ({"strategy": "   "}, "cannot be empty"),
    ({"strategy": "x" * 4001}, "over 4000"),
], ids=["none", "empty", "counter", "not-text", "blank", "too-long"])
def test_bad_edits_change_nothing(world: Seeded, api: ViewerAPI, store: SQLiteStore, fields, error) -> None:
    before = store.get(world.scope, world.heuristic.id)
    with pytest.raises(BadRequest, match=error):
        api.post("edit", {"id": world.heuristic.id, "fields": fields})
    assert store.get(world.scope, world.heuristic.id) == before


def test_forget_deletes_with_an_audited_reason(world: Seeded, api: ViewerAPI, store: SQLiteStore) -> None:
    assert api.post("forget", {"id": world.xss.id, "reason": "outdated"}) == {"forgotten": world.xss.id,
                                                                            "type": "knowledge"}
    with pytest.raises(NotFound):
        store.get(world.scope, world.xss.id)
    row = _audit(store, world, world.xss.id)[0]
    assert (row["action"], row["reason"], row["actor"]) == ("delete", "viewer: outdated", f"ui:{USER}")
    assert json.loads(row["snapshot"])["fact"] == XSS  # what was forgotten stays restorable
    api.post("forget", {"id": world.preference.id})
    assert _audit(store, world, world.preference.id)[0]["reason"] == "viewer: forgotten in the viewer"
    with pytest.raises(NotFound):
        api.post("forget", {"id": world.xss.id})
    with pytest.raises(BadRequest, match="must be a string"):
        api.post("forget", {"id": world.heuristic.id, "reason": 7})
    with pytest.raises(BadRequest, match="over 4000"):
        api.post("forget", {"id": world.heuristic.id, "reason": "x" * 4001})


def test_another_agents_memory_cannot_be_changed_from_this_agent(world: Seeded, api: ViewerAPI) -> None:
    with pytest.raises(NotFound):
        api.post("pin", {"id": world.helena.id, "pinned": True})
    assert api.post("pin", {"agent": "helena", "id": world.helena.id, "pinned": True})["memory"]["pinned"]


def test_engine_embed_without_an_engine_is_none(tmp_path) -> None:
    assert engine_embed(tmp_path)("anything") is None


def test_scopes_lists_this_project_even_when_empty(tmp_path, alma_home) -> None:
    from alma_hooks.config import load_config

    config = load_config(tmp_path, {"ALMA_HOME": str(alma_home), "ALMA_USER_ID": USER, "HOME": str(tmp_path)})
    store = SQLiteStore(config.db_path, config.policy)
    try:
        api = ViewerAPI(store, config)
        assert api.get("scopes", {})["projects"] == [
            {"project_id": config.project_id, "shared": 0, "agents": [{"agent": "main", "memories": 0}]}]
        assert api.get("memories", {})["items"] == []
        assert Scope(config.project_id).project_id == api.get("memories", {})["project_id"]
    finally:
        store.close()

"""What the viewer's page can ask and do: one method per JSON route, over the store's scoped APIs.

Every read and write names one (project, agent) scope and goes through the store
with it, so the store's scope rule decides what is visible, exactly as for a hook
or the CLI. The only cross-scope call is :meth:`Store.scopes`, the admin listing
of projects and agents for the page's menus. A viewer opened for one project
refuses any other project (:class:`ScopeViolation`) before the store is asked.

Actions write through ``Store.update`` and ``Store.delete``, which audit them;
the store's actor names the viewer (``ui:<user>``).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..config import Config
from ..errors import AlmaError, BadRequest, NotFound, ScopeViolation
from ..learning import curves
from ..retrieval.search import Retriever
from ..storage.base import Store
from ..types import ANY, MAIN_AGENT, MEMORY_TYPES, Memory, Outcome, Scope

#: Fields of each type a person may edit in the page (the texts; counters stay learning's).
EDITABLE: dict[str, tuple[str, ...]] = {
    "heuristic": ("condition", "strategy"),
    "anti_pattern": ("pattern", "why", "alternative"),
    "preference": ("preference",),
    "knowledge": ("fact",),
    "outcome": ("task_description", "feedback"),
}
#: Fields that may be left empty by an edit.
OPTIONAL = frozenset({"alternative", "feedback"})
MAX_TEXT = 4000
MAX_LIMIT = 500
EVIDENCE_MAX = 50
ENGINE_TIMEOUT_S = 2.0
EmbedFn = Callable[[str], "Sequence[float] | None"]


def engine_embed(home: Path) -> EmbedFn:
    """Query vectors from the warm engine when it runs; ``None`` (search by words) when it does not.

    The viewer never loads the model itself: a page must answer at once.
    """
    from ..daemon_client import request
    from ..storage.migrations import EMBEDDING_DIM

    def embed(text: str) -> Sequence[float] | None:
        reply = request(home, {"op": "embed", "texts": [text]}, ENGINE_TIMEOUT_S)
        vectors = reply.get("vectors") if reply else None
        if isinstance(vectors, list) and len(vectors) == 1 and isinstance(vectors[0], list) \
                and len(vectors[0]) == EMBEDDING_DIM:
            return vectors[0]
        return None

    return embed


def memory_json(m: Memory) -> dict[str, Any]:
    """A memory as the page shows it: common fields, the type's own fields, what may be edited."""
    return {"id": m.id, "type": m.type, "text": m.text, "project_id": m.project_id, "agent": m.agent,
            "user_id": m.user_id, "domain": m.domain, "confidence": round(m.confidence, 4), "pinned": m.pinned,
            "version": m.version, "created_at": m.created_at, "updated_at": m.updated_at,
            "last_retrieved": m.last_retrieved, "sources": len(m.source_ids), "fields": m.payload(),
            "editable": list(EDITABLE.get(m.type, ()))}


def _text(body: Mapping[str, Any], key: str, default: str | None = None) -> str:
    value = body.get(key, default)
    if not isinstance(value, str):
        raise BadRequest(f"{key!r} must be a string" if key in body else f"{key!r} is missing")
    return value


def _limit(params: Mapping[str, Any], default: int) -> int:
    raw = params.get("limit", default)
    try:
        n = int(raw)
    except (TypeError, ValueError):
        raise BadRequest(f"limit must be a whole number, got {raw!r:.40}") from None
    if not 1 <= n <= MAX_LIMIT:
        raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}, got {n}")
    return n


class ViewerAPI:
    """The viewer's routes for one user: ``get(route, params)`` and ``post(route, body)`` return JSON-able dicts.

    With ``all_projects`` false, every call is confined to ``config.project_id``.
    One lock serialises store calls: the server answers on several threads, and
    one SQLite connection must not interleave two transactions.
    """

    def __init__(self, store: Store, config: Config, *, all_projects: bool = False,
                 embed: EmbedFn | None = None) -> None:
        self.store = store
        self.config = config
        self.all_projects = all_projects
        self.retriever = Retriever(store, config, embed=embed)
        self.lock = threading.Lock()
        self._get: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
            "scopes": self.scopes, "memories": self.memories, "memory": self.memory, "audit": self.audit,
            "injections": self.injections, "curves": self.curves}
        self._post: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
            "pin": self.pin, "edit": self.edit, "forget": self.forget}

    # ------------------------------------------------------------ dispatch
    def get(self, route: str, params: Mapping[str, Any]) -> dict[str, Any]:
        return self._call(self._get, route, params)

    def post(self, route: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._call(self._post, route, body)

    def _call(self, table: Mapping[str, Callable[[Mapping[str, Any]], dict[str, Any]]], route: str,
              args: Mapping[str, Any]) -> dict[str, Any]:
        handler = table.get(route)
        if handler is None:
            raise NotFound(f"no such API route: {route!r}")
        with self.lock:
            return handler(args)

    def scope(self, args: Mapping[str, Any]) -> Scope:
        """The one scope a request reads or writes: its project (this viewer's unless ``--all``) and agent."""
        project = _text(args, "project", self.config.project_id) or self.config.project_id
        agent = _text(args, "agent", MAIN_AGENT) or MAIN_AGENT
        if not self.all_projects and project != self.config.project_id:
            raise ScopeViolation(f"this viewer shows project {self.config.project_id} only",
                                 "start `alma-hooks ui --all` to see every project")
        if ANY in (project, agent):
            raise BadRequest("project and agent must be concrete names, not '*'")
        return Scope(project, agent, self.config.user_id)

    # ------------------------------------------------------------ reads
    def scopes(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """The projects and agents to choose from (the store's admin listing; no memory content)."""
        projects: dict[str, dict[str, int]] = {}
        shared: dict[str, int] = {}
        for s in self.store.scopes():
            if s.project_id == ANY or (not self.all_projects and s.project_id != self.config.project_id):
                continue
            agents = projects.setdefault(s.project_id, {})
            if s.agent == ANY:
                shared[s.project_id] = s.memories
            else:
                agents[s.agent] = s.memories
        projects.setdefault(self.config.project_id, {})
        listing = []
        for project, agents in sorted(projects.items()):
            agents.setdefault(MAIN_AGENT, 0)
            listing.append({"project_id": project, "shared": shared.get(project, 0),
                            "agents": [{"agent": a, "memories": n} for a, n in sorted(agents.items())]})
        return {"projects": listing, "current": self.config.project_id, "all_projects": self.all_projects,
                "user_id": self.config.user_id, "types": list(MEMORY_TYPES)}

    def _types(self, args: Mapping[str, Any]) -> list[str] | None:
        name = _text(args, "type", "")
        if not name:
            return None
        if name not in MEMORY_TYPES:
            raise BadRequest(f"unknown memory type {name!r}", f"use one of: {', '.join(MEMORY_TYPES)}")
        return [name]

    def memories(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """The scope's memories, newest first, or the best matches of ``q`` (the product's own search)."""
        scope, types, limit = self.scope(args), self._types(args), _limit(args, 100)
        query = _text(args, "q", "").strip()
        if len(query) > MAX_TEXT:
            raise BadRequest(f"the query is {len(query)} characters, over {MAX_TEXT}")
        if query:
            hits = self.retriever.search(scope, query, types=types, k=limit)
            items = [{**memory_json(h.memory), "score": round(h.score, 4)} for h in hits]
        else:
            items = [memory_json(m) for m in self.store.list(scope, types, limit=limit)]
        return {"project_id": scope.project_id, "agent": scope.agent, "query": query, "items": items}

    def memory(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """One memory with its evidence (the outcomes it was learned from), confidence over time, audit rows."""
        scope = self.scope(args)
        m = self.store.get(scope, _text(args, "id"))
        evidence = []
        if m.type in ("heuristic", "anti_pattern"):
            for sid in m.source_ids[-EVIDENCE_MAX:]:
                try:
                    o = self.store.get(scope, sid)
                except NotFound:
                    evidence.append({"id": sid, "missing": True})
                    continue
                if isinstance(o, Outcome):
                    evidence.append({"id": o.id, "missing": False, "success": o.success,
                                     "task_description": o.task_description, "strategy_used": o.strategy_used,
                                     "error": o.error, "timestamp": o.timestamp})
        history = [{"at": t, "confidence": round(c, 4)} for t, c in curves.confidence_history(self.store, scope, m)]
        audit = self.store.audit_log(scope, 100, memory_id=m.id)
        return {"memory": memory_json(m), "evidence": evidence, "confidence": history, "audit": audit}

    def audit(self, args: Mapping[str, Any]) -> dict[str, Any]:
        scope = self.scope(args)
        return {"project_id": scope.project_id, "agent": scope.agent,
                "items": self.store.audit_log(scope, _limit(args, 100))}

    def injections(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """What was injected into the scope's recent prompts: each slice's items (as they are now) and tokens."""
        scope = self.scope(args)
        rows = self.store.injection_log(scope, _limit(args, 50))
        known: dict[str, Memory | None] = {}
        out = []
        for row in rows:
            items = []
            for mid, version in row["items"]:
                if mid not in known:
                    try:
                        known[mid] = self.store.get(scope, mid)
                    except NotFound:
                        known[mid] = None
                m = known[mid]
                items.append({"id": mid, "version": version, "gone": m is None,
                              "type": m.type if m else "", "text": m.text if m else "",
                              "current_version": m.version if m else None})
            out.append({**row, "items": items})
        return {"project_id": scope.project_id, "agent": scope.agent, "items": out,
                "tokens": sum(r["tokens"] for r in rows)}

    def curves(self, args: Mapping[str, Any]) -> dict[str, Any]:
        scope = self.scope(args)
        try:
            every = curves.parse_every(_text(args, "every", "week"))
        except AlmaError as e:
            raise BadRequest(e.message, e.fix) from None
        return curves.learning_curve(self.store, scope, every).to_dict()

    # ------------------------------------------------------------ actions (audited by the store)
    def _target(self, body: Mapping[str, Any]) -> tuple[Scope, Memory]:
        scope = self.scope(body)
        return scope, self.store.get(scope, _text(body, "id"))

    def pin(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Pin (never forgotten by a pass, ranked first) or unpin a memory."""
        pinned = body.get("pinned")
        if not isinstance(pinned, bool):
            raise BadRequest("'pinned' must be true or false")
        scope, m = self._target(body)
        reason = "pinned in the viewer" if pinned else "unpinned in the viewer"
        return {"memory": memory_json(self.store.update(scope, dataclasses.replace(m, pinned=pinned),
                                                        reason=reason))}

    def edit(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Change a memory's text fields (see :data:`EDITABLE`); the store keeps the old version in the audit."""
        fields = body.get("fields")
        if not isinstance(fields, dict) or not fields:
            raise BadRequest("'fields' must be an object of field name -> new text")
        scope, m = self._target(body)
        allowed = EDITABLE.get(m.type, ())
        changes: dict[str, str] = {}
        for name, value in fields.items():
            if name not in allowed:
                raise BadRequest(f"field {name!r} of a {m.type} cannot be edited", f"edit one of: {', '.join(allowed)}")
            if not isinstance(value, str):
                raise BadRequest(f"field {name!r} must be a string")
            value = value.strip()
            if not value and name not in OPTIONAL:
                raise BadRequest(f"field {name!r} cannot be empty", "forget the memory instead")
            if len(value) > MAX_TEXT:
                raise BadRequest(f"field {name!r} is {len(value)} characters, over {MAX_TEXT}")
            changes[name] = value
        updated = self.store.update(scope, dataclasses.replace(m, **changes), reason="edited in the viewer")
        return {"memory": memory_json(updated)}

    def forget(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Delete a memory; the store writes its audit row (with a snapshot) in the same transaction."""
        reason = _text(body, "reason", "").strip() or "forgotten in the viewer"
        if len(reason) > MAX_TEXT:
            raise BadRequest(f"the reason is {len(reason)} characters, over {MAX_TEXT}")
        scope, m = self._target(body)
        self.store.delete(scope, m.id, reason=f"viewer: {reason}")
        return {"forgotten": m.id, "type": m.type}

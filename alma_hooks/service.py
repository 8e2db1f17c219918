"""What the CLI does, as library functions: open a project, remember, embed, search, import.

Each ``alma-hooks`` command is a few lines of option parsing over one of these
functions, and tests call them directly. Nothing here prints.

The embedding model is loaded lazily (numpy and onnxruntime cost ~0.3 s of
imports): :class:`EngineFirstEmbedder` asks the warm engine first, when one
runs, and loads the model in this process only when it does not answer.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from .config import Config, data_dir, load_config
from .errors import AlmaError, ScopeViolation
from .storage.sqlite import SQLiteStore
from .types import ANY, MEMORY_TYPES, TYPE_ALIASES, DomainKnowledge, Hit, Memory, Preference, Scope, memory_from_dict

#: ``remember --type`` choices: only curated memory is written by hand; the rest is learned.
REMEMBER_TYPES = ("knowledge", "preference")
MAX_TEXT = 4000
ENGINE_EMBED_TIMEOUT_S = 3.0
#: Bulk embedding (import, reembed) is done in-process: the engine is for queries and a few new rows.
ENGINE_MAX_TEXTS = 16


def open_project(cwd: Path | str | None = None, env: dict[str, str] | None = None) -> tuple[Config, SQLiteStore]:
    """The configuration and the open store of the project containing ``cwd``."""
    config = load_config(cwd, env)
    store = SQLiteStore(config.db_path, config.policy, actor=f"cli:{config.user_id}")
    return config, store


def scope_for(config: Config, agent: str = "main", user: str | None = None) -> Scope:
    """The caller's scope in this project; a bad agent name is a one-line error."""
    try:
        return Scope(config.project_id, agent, user or config.user_id)
    except ValueError as e:
        raise AlmaError(f"invalid agent {agent!r}: {e}", "use a name like main, helena or victor") from None


def _clean_text(text: str) -> str:
    text = text.strip()
    if not text:
        raise AlmaError("nothing to remember: TEXT is empty", 'e.g. alma-hooks remember "We deploy with make release"')
    if len(text) > MAX_TEXT:
        raise AlmaError(f"TEXT is {len(text)} characters, over the limit of {MAX_TEXT}",
                        "store one short fact per memory")
    return text


def remember(config: Config, store: SQLiteStore, text: str, type: str = "knowledge", agent: str | None = None,
             domain: str = "", user: str | None = None) -> Memory:
    """Store a curated fact (``knowledge``) or a standing instruction (``preference``).

    Knowledge belongs to every agent of the project unless ``agent`` is given;
    a preference belongs to the user (``user`` or the configured user id).
    The store checks the agent's domains and redacts secrets.
    """
    text = _clean_text(text)
    writer = scope_for(config, agent or "main", user)
    user_id = writer.user_id
    refusal = config.policy.check_write(writer.agent, domain) if type == "knowledge" else None
    if refusal:  # the store refuses it too; this says how to fix it from the command line
        raise ScopeViolation(f"not stored: {refusal}",
                             f"leave out --domain, pick another --agent, or add '{domain}' to agents.{writer.agent}."
                             "can_learn in .alma/config.yaml")
    if type == "knowledge":
        memory: Memory = DomainKnowledge(project_id=config.project_id, agent=agent or ANY, domain=domain,
                                         fact=text, confidence=0.9)
    elif type == "preference":
        memory = Preference(project_id=config.project_id, user_id=user_id, agent=agent or ANY, domain=domain,
                            category=domain or "general", preference=text, source="cli", confidence=0.9)
    else:
        raise AlmaError(f"unknown memory type {type!r} for remember", f"use one of: {', '.join(REMEMBER_TYPES)}")
    return store.add(writer, memory, reason="remembered via CLI")


def embed_pending(store: SQLiteStore, embedder: Any, batch: int = 64) -> int:
    """Embed every memory that has no vector yet; returns how many got one.

    The warm engine does this in the background; the CLI calls it when it is
    about to search or has just written, so nothing it stored is found by
    words only.
    """
    done = 0
    while True:
        pending = store.pending_embeddings(batch)
        if not pending:
            return done
        vectors = embedder.embed([text for _, text in pending])
        written = store.set_embeddings(embedder.model_id, [(mid, vec) for (mid, _), vec in zip(pending, vectors)])
        done += written
        if written == 0:  # rows deleted under us; do not spin
            return done


def reembed(store: SQLiteStore, embedder: Any) -> int:
    """Drop every vector and embed all memories again with ``embedder`` (model change or repair)."""
    store.reset_embeddings()
    return embed_pending(store, embedder)


def resolve_types(names: Sequence[str] | None) -> list[str] | None:
    """CLI type names (``knowledge``, ``anti-pattern``, ...) to stored type names; None means all."""
    if not names:
        return None
    out: list[str] = []
    for name in names:
        key = TYPE_ALIASES.get(name.lower())
        if key is None:
            raise AlmaError(f"unknown memory type {name!r}", f"use one of: {', '.join(sorted(MEMORY_TYPES))}")
        if key not in out:
            out.append(key)
    return out


def search(config: Config, store: SQLiteStore, query: str, agent: str = "main", types: Sequence[str] | None = None,
           k: int = 10, embedder: Any = None) -> list[Hit]:
    """The ``k`` memories of the caller's scope best matching ``query``, best first.

    Without an embedder the search is lexical only (what a hook does with no warm engine).
    """
    from .retrieval.search import Retriever

    if not query.strip():
        raise AlmaError("the search query is empty", 'e.g. alma-hooks search "how do we deploy?"')
    if k < 1:
        raise AlmaError(f"k must be at least 1, got {k}", "e.g. --k 5")
    embed = (lambda t: embedder.embed_one(t)) if embedder is not None else None
    retriever = Retriever(store, config, embed=embed)
    return retriever.search(scope_for(config, agent), query, types=resolve_types(types), k=k)


def hit_to_dict(hit: Hit) -> dict[str, Any]:
    """One search result as plain JSON data."""
    m = hit.memory
    return {"id": m.id, "type": m.type, "text": m.text, "score": round(hit.score, 4),
            "similarity": round(hit.similarity, 4), "agent": m.agent, "domain": m.domain,
            "confidence": round(m.confidence, 4), "project_id": m.project_id,
            "updated_at": m.updated_at}


# ---------------------------------------------------------------- export / import

def export_jsonl(store: SQLiteStore, out: TextIO, project_id: str | None) -> int:
    """Write memories (with vectors) as JSON lines; ``None`` exports every project. Returns the count."""
    n = 0
    for row in store.export(project_id):
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
        n += 1
    return n


@dataclass
class ImportResult:
    read: int
    written: int

    @property
    def skipped(self) -> int:
        return self.read - self.written


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Parse and validate an export file completely; the first bad line is an error naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise AlmaError(f"{path}: no such file", "give the path of a file made by `alma-hooks export`") from None
    except IsADirectoryError:
        raise AlmaError(f"{path} is a directory", "give the path of a file made by `alma-hooks export`") from None
    except UnicodeDecodeError:
        raise AlmaError(f"{path} is not UTF-8 text", "give a JSONL file made by `alma-hooks export`") from None
    except OSError as e:
        raise AlmaError(f"cannot read {path}: {e.strerror}", "check the file's permissions") from None
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(_validate_row(json.loads(line)))
        except (ValueError, TypeError, KeyError) as e:
            raise AlmaError(f"{path}:{number}: {_describe(e)}",
                            "nothing was imported; fix or remove that line (one exported memory per line)") from None
    return rows


def _describe(e: Exception) -> str:
    if isinstance(e, json.JSONDecodeError):
        return f"not valid JSON ({e.msg})"
    if isinstance(e, KeyError):
        return f"missing field {e.args[0]!r}"
    return str(e)


def _validate_row(row: Any) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise ValueError(f"expected a JSON object, got {type(row).__name__}")
    if "type" not in row:
        raise KeyError("type")
    if row["type"] not in MEMORY_TYPES:
        raise ValueError(f"unknown memory type {row['type']!r}")
    body = {k: v for k, v in row.items() if k not in ("embedding", "embedding_model")}
    try:
        memory = memory_from_dict(body)
    except TypeError as e:  # unknown or missing dataclass fields
        raise ValueError(f"not a {row['type']} memory: {e}") from None
    for f in dataclasses.fields(memory):
        if f.name in body and not _has_type(body[f.name], str(f.type)):
            raise ValueError(f"field {f.name!r} must be {f.type}, got {body[f.name]!r:.40}")
    if not memory.project_id or not isinstance(memory.project_id, str):
        raise ValueError("project_id must be a non-empty string")
    if not isinstance(memory.id, str) or not memory.id:
        raise ValueError("id must be a non-empty string")
    vec = row.get("embedding")
    if vec is not None:
        from .storage.migrations import EMBEDDING_DIM

        if not isinstance(vec, list) or len(vec) != EMBEDDING_DIM or not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) for x in vec):
            raise ValueError(f"embedding must be a list of {EMBEDDING_DIM} numbers or null")
    return row


_SCALARS = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,)}


def _has_type(value: Any, annotation: str) -> bool:
    """Whether a JSON value fits a dataclass field annotation (str, int, float, bool, list[str])."""
    if annotation == "list[str]":
        return isinstance(value, list) and all(isinstance(x, str) for x in value)
    kinds = _SCALARS.get(annotation)
    if kinds is None:
        return True
    if isinstance(value, bool) and bool not in kinds:
        return False
    return isinstance(value, kinds)


def import_jsonl(store: SQLiteStore, path: Path) -> ImportResult:
    """Import an export file in one transaction, after validating every line first."""
    rows = read_jsonl(path)
    written = store.import_(rows, reason=f"import from {path.name}")
    return ImportResult(read=len(rows), written=written)


# ---------------------------------------------------------------- embedder

class EngineFirstEmbedder:
    """Embeds through the warm engine when it answers, else with the model in this process.

    With an engine running, a CLI search never imports numpy or onnxruntime
    nor loads the model (~0.5 s). Bulk work (import, reembed) always runs
    in-process. ``model_id`` names the model that made the last vectors.
    """

    def __init__(self, home: Path | None = None, timeout_s: float = ENGINE_EMBED_TIMEOUT_S) -> None:
        self.home = home or data_dir()
        self.timeout_s = timeout_s
        self.model_id: str | None = None
        self.dim: int | None = None
        self._engine_model: str | None = None
        self._engine_ok = True
        self._local: Any = None

    def _engine_embed(self, texts: list[str]) -> list[list[float]] | None:
        from .daemon_client import request

        if self._engine_model is None:
            info = request(self.home, {"op": "ping"}, self.timeout_s)
            model = info.get("model") if info else None
            if not isinstance(model, str):
                self._engine_ok = False
                return None
            self._engine_model = model
        reply = request(self.home, {"op": "embed", "texts": texts}, self.timeout_s)
        vectors = reply.get("vectors") if reply else None
        if not isinstance(vectors, list) or len(vectors) != len(texts) or any(
                not isinstance(v, list) or not v or len(v) != len(vectors[0]) for v in vectors):
            self._engine_ok = False
            return None
        self.model_id, self.dim = self._engine_model, len(vectors[0]) if vectors else None
        return vectors

    def embed(self, texts: Sequence[str]) -> Any:
        texts = list(texts)
        if self._engine_ok and 0 < len(texts) <= ENGINE_MAX_TEXTS:
            vectors = self._engine_embed(texts)
            if vectors is not None:
                return vectors
        if self._local is None:
            from .embedding import get_embedder

            self._local = get_embedder()
        self.model_id, self.dim = self._local.model_id, self._local.dim
        return self._local.embed(texts)

    def embed_one(self, text: str) -> Any:
        return self.embed([text])[0]


def default_embedder() -> Any:
    """The embedder CLI commands use: the warm engine's model if one runs, else this process's."""
    return EngineFirstEmbedder()


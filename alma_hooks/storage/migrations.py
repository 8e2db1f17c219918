"""Numbered, append-only schema migrations of the SQLite store.

Each entry is applied once, in its own IMMEDIATE transaction together with
``PRAGMA user_version = <its number>``. Never edit a shipped migration: add the
next one. ``user_version`` above ``len(MIGRATIONS)`` means a newer alma-hooks
wrote the file, which :mod:`alma_hooks.storage.sqlite` refuses.
"""

from __future__ import annotations

EMBEDDING_DIM = 384

m001_memories = f"""
CREATE TABLE memories (
    rid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    project_id TEXT NOT NULL,
    agent TEXT NOT NULL,
    user_id TEXT NOT NULL DEFAULT '',
    domain TEXT NOT NULL DEFAULT '',
    text TEXT NOT NULL,
    payload TEXT NOT NULL,
    confidence REAL NOT NULL,
    pinned INTEGER NOT NULL DEFAULT 0,
    version INTEGER NOT NULL DEFAULT 1,
    origin TEXT NOT NULL DEFAULT '',
    source_ids TEXT NOT NULL DEFAULT '[]',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    last_retrieved REAL NOT NULL DEFAULT 0,
    embedding_pending INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX memories_scope ON memories(project_id, agent, type, updated_at);
CREATE INDEX memories_pending ON memories(embedding_pending) WHERE embedding_pending = 1;

CREATE VIRTUAL TABLE memories_fts USING fts5(
    text, content='memories', content_rowid='rid', tokenize='porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER memories_ai AFTER INSERT ON memories BEGIN
    INSERT INTO memories_fts(rowid, text) VALUES (new.rid, new.text);
END;
CREATE TRIGGER memories_ad AFTER DELETE ON memories BEGIN
    INSERT INTO memories_fts(memories_fts, rowid, text) VALUES ('delete', old.rid, old.text);
END;
CREATE TRIGGER memories_au AFTER UPDATE OF text ON memories BEGIN
    INSERT INTO memories_fts(memories_fts, rowid, text) VALUES ('delete', old.rid, old.text);
    INSERT INTO memories_fts(rowid, text) VALUES (new.rid, new.text);
END;

CREATE VIRTUAL TABLE memory_vec USING vec0(
    project_id TEXT PARTITION KEY,
    agent TEXT PARTITION KEY,
    type TEXT,
    user_id TEXT,
    embedding float[{EMBEDDING_DIM}] distance_metric=cosine
);

CREATE TABLE events (
    rid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    project_id TEXT NOT NULL,
    agent TEXT NOT NULL,
    session_id TEXT NOT NULL DEFAULT '',
    task_id TEXT NOT NULL DEFAULT '',
    tool TEXT NOT NULL,
    input_summary TEXT NOT NULL DEFAULT '',
    result_summary TEXT NOT NULL DEFAULT '',
    ok INTEGER NOT NULL,
    error TEXT NOT NULL DEFAULT '',
    duration_ms INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
CREATE INDEX events_scope ON events(project_id, agent, session_id, created_at);
CREATE INDEX events_task ON events(task_id);

CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    agent TEXT NOT NULL,
    user_id TEXT NOT NULL DEFAULT '',
    session_id TEXT NOT NULL,
    description TEXT NOT NULL,
    started_at REAL NOT NULL,
    closed_at REAL NOT NULL DEFAULT 0,
    outcome_id TEXT NOT NULL DEFAULT '',
    injected_ids TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX tasks_open ON tasks(project_id, agent, session_id, closed_at, started_at);

CREATE TABLE injections (
    rid INTEGER PRIMARY KEY,
    project_id TEXT NOT NULL,
    agent TEXT NOT NULL,
    session_id TEXT NOT NULL,
    event TEXT NOT NULL,
    items TEXT NOT NULL,
    tokens INTEGER NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX injections_session ON injections(project_id, agent, session_id);

CREATE TABLE audit (
    rid INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    memory_id TEXT NOT NULL,
    type TEXT NOT NULL,
    project_id TEXT NOT NULL,
    agent TEXT NOT NULL,
    action TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    snapshot TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_project ON audit(project_id, at);

CREATE TABLE generations (
    project_id TEXT NOT NULL,
    agent TEXT NOT NULL,
    gen INTEGER NOT NULL,
    PRIMARY KEY (project_id, agent)
) WITHOUT ROWID;

CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""

# Audit rows name the user, so one user's audit never shows another's preferences.
m002_audit_user = """
ALTER TABLE audit ADD COLUMN user_id TEXT NOT NULL DEFAULT '';
"""

# A memory's optional context (DomainKnowledge.context) is a second FTS5 column:
# bm25() weights it below the text (see SQLiteStore.lexical). Rebuilding the
# index re-reads every row from the content table, so nothing is lost.
m003_fts_context = """
ALTER TABLE memories ADD COLUMN context TEXT NOT NULL DEFAULT '';
DROP TRIGGER memories_ai;
DROP TRIGGER memories_ad;
DROP TRIGGER memories_au;
DROP TABLE memories_fts;
CREATE VIRTUAL TABLE memories_fts USING fts5(
    text, context, content='memories', content_rowid='rid', tokenize='porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER memories_ai AFTER INSERT ON memories BEGIN
    INSERT INTO memories_fts(rowid, text, context) VALUES (new.rid, new.text, new.context);
END;
CREATE TRIGGER memories_ad AFTER DELETE ON memories BEGIN
    INSERT INTO memories_fts(memories_fts, rowid, text, context) VALUES ('delete', old.rid, old.text, old.context);
END;
CREATE TRIGGER memories_au AFTER UPDATE OF text, context ON memories BEGIN
    INSERT INTO memories_fts(memories_fts, rowid, text, context) VALUES ('delete', old.rid, old.text, old.context);
    INSERT INTO memories_fts(rowid, text, context) VALUES (new.rid, new.text, new.context);
END;
INSERT INTO memories_fts(memories_fts) VALUES ('rebuild');
"""

MIGRATIONS: list[tuple[str, str]] = [
    ("m001_memories", m001_memories),
    ("m002_audit_user", m002_audit_user),
    ("m003_fts_context", m003_fts_context),
]

_names = [name for name, _ in MIGRATIONS]
if len(set(_names)) != len(_names):  # pragma: no cover - guards future edits
    raise RuntimeError("duplicate migration names")

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

# Team sync (alma_hooks.sync): the outbox of writes still owed to the team store,
# the worker's state (replica origin, per-project enable flag and change-feed
# continuation), and what this replica deleted or forgot, so a pulled older
# version does not bring it back. AUTOINCREMENT: a seq is never reused, so
# "acknowledged up to seq N" cannot swallow a row enqueued later.
m004_sync = """
CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    memory_id TEXT NOT NULL,
    project_id TEXT NOT NULL,
    op TEXT NOT NULL CHECK (op IN ('upsert', 'delete')),
    version INTEGER NOT NULL,
    enqueued_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    parked INTEGER NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX outbox_project ON outbox(project_id, parked, seq);
CREATE INDEX outbox_memory ON outbox(memory_id, seq);

CREATE TABLE sync_state (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;

CREATE TABLE sync_tombstones (
    memory_id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    updated_at REAL NOT NULL,
    origin TEXT NOT NULL DEFAULT '',
    forgotten INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
"""

# The coarse KNN index: one bit per dimension (sign), Hamming distance, type and
# user as partition keys too, so a search scans only the rows it may return (a
# metadata filter costs more per row than the Hamming distance itself); the
# float vector rides along as an auxiliary column for the exact re-rank of the
# few coarse candidates (a point lookup in memory_vec reads a whole chunk).
# Measured at 100k vectors: a float cosine scan costs ~90 ms CPU, this ~6 ms.
# memories_vocab exposes each FTS term's document count, so a lexical query can
# leave out terms so common that scoring their postings costs more than they tell.
m005_search_indexes = f"""
CREATE VIRTUAL TABLE memory_bits USING vec0(
    project_id TEXT PARTITION KEY,
    agent TEXT PARTITION KEY,
    type TEXT PARTITION KEY,
    user_id TEXT PARTITION KEY,
    embedding bit[{EMBEDDING_DIM}],
    +vector BLOB
);
INSERT INTO memory_bits(rowid, project_id, agent, type, user_id, embedding, vector)
    SELECT rowid, project_id, agent, type, user_id, vec_quantize_binary(embedding), embedding FROM memory_vec;

CREATE VIRTUAL TABLE memories_vocab USING fts5vocab(memories_fts, 'row');
"""

# Vectors move out of virtual tables into ``memory_vectors``, a plain table keyed
# by the memory's rid: the float32 vector (for the exact re-rank) and its sign
# code (vec_quantize_binary). Measured at 100k memories, reading 60 re-rank
# vectors cost ~33 ms through memory_bits' auxiliary column (a vtab lookup per
# row) and 0.5 ms from a plain table. A covering index lets a long-lived process
# load a partition's codes in one range scan (SQLiteStore.knn, CodeCache).
# memory_bits stays the KNN index of record, now maintained by triggers;
# memory_vec (floats in vec0, read only by rowid) is dropped, and so is every
# vector left behind by a deleted memory. vector_generations counts the vector
# writes of each partition, so a cache of codes knows when to reload.
m006_vectors = f"""
CREATE TABLE memory_vectors (
    rid INTEGER PRIMARY KEY,
    project_id TEXT NOT NULL,
    agent TEXT NOT NULL,
    type TEXT NOT NULL,
    user_id TEXT NOT NULL,
    code BLOB NOT NULL,
    embedding BLOB NOT NULL
);
CREATE INDEX memory_vectors_codes ON memory_vectors(project_id, agent, type, user_id, rid, code);
CREATE TABLE vector_generations (
    project_id TEXT NOT NULL,
    agent TEXT NOT NULL,
    type TEXT NOT NULL,
    user_id TEXT NOT NULL,
    gen INTEGER NOT NULL,
    PRIMARY KEY (project_id, agent, type, user_id)
) WITHOUT ROWID;

INSERT INTO memory_vectors(rid, project_id, agent, type, user_id, code, embedding)
    SELECT m.rid, m.project_id, m.agent, m.type, m.user_id, vec_quantize_binary(v.embedding), v.embedding
    FROM memory_vec v JOIN memories m ON m.rid = v.rowid;
DROP TABLE memory_vec;
DROP TABLE memory_bits;
CREATE VIRTUAL TABLE memory_bits USING vec0(
    project_id TEXT PARTITION KEY,
    agent TEXT PARTITION KEY,
    type TEXT PARTITION KEY,
    user_id TEXT PARTITION KEY,
    embedding bit[{EMBEDDING_DIM}]
);
INSERT INTO memory_bits(rowid, project_id, agent, type, user_id, embedding)
    SELECT rid, project_id, agent, type, user_id, vec_bit(code) FROM memory_vectors;
INSERT INTO vector_generations(project_id, agent, type, user_id, gen)
    SELECT DISTINCT project_id, agent, type, user_id, 1 FROM memory_vectors;

CREATE TRIGGER memory_vectors_ai AFTER INSERT ON memory_vectors BEGIN
    INSERT INTO memory_bits(rowid, project_id, agent, type, user_id, embedding)
        VALUES (new.rid, new.project_id, new.agent, new.type, new.user_id, vec_bit(new.code));
    INSERT INTO vector_generations(project_id, agent, type, user_id, gen)
        VALUES (new.project_id, new.agent, new.type, new.user_id, 1)
        ON CONFLICT DO UPDATE SET gen = gen + 1;
END;
CREATE TRIGGER memory_vectors_ad AFTER DELETE ON memory_vectors BEGIN
    DELETE FROM memory_bits WHERE rowid = old.rid;
    INSERT INTO vector_generations(project_id, agent, type, user_id, gen)
        VALUES (old.project_id, old.agent, old.type, old.user_id, 1)
        ON CONFLICT DO UPDATE SET gen = gen + 1;
END;
CREATE TRIGGER memories_vectors_ad AFTER DELETE ON memories BEGIN
    DELETE FROM memory_vectors WHERE rid = old.rid;
END;
"""

# The FTS index learns each memory's project: a third column holds one token,
# 'p' + the hex of the UTF-8 project id (any id is one token, and no word of a
# text can equal it), so a lexical search in a DB of many projects matches only
# the rows of the caller's project and of all projects ('*'). Ranking every
# project's rows first and filtering after cost ~100 ms at 1M memories across 10
# projects (the 200 best of all projects held ~20 of the caller's, so a second,
# joined pass ran). bm25() gives the column weight 0; the content is a view, so
# FTS5's 'rebuild' can read the column too.
_FTS_SCOPE = "'p' || hex({row}.project_id)"
m007_fts_scope = f"""
DROP TRIGGER memories_ai;
DROP TRIGGER memories_ad;
DROP TRIGGER memories_au;
DROP TABLE memories_fts;
CREATE VIEW memories_fts_source AS
    SELECT rid, text, context, {_FTS_SCOPE.format(row="memories")} AS scope FROM memories;
CREATE VIRTUAL TABLE memories_fts USING fts5(
    text, context, scope, content='memories_fts_source', content_rowid='rid',
    tokenize='porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER memories_ai AFTER INSERT ON memories BEGIN
    INSERT INTO memories_fts(rowid, text, context, scope)
        VALUES (new.rid, new.text, new.context, {_FTS_SCOPE.format(row="new")});
END;
CREATE TRIGGER memories_ad AFTER DELETE ON memories BEGIN
    INSERT INTO memories_fts(memories_fts, rowid, text, context, scope)
        VALUES ('delete', old.rid, old.text, old.context, {_FTS_SCOPE.format(row="old")});
END;
CREATE TRIGGER memories_au AFTER UPDATE OF text, context, project_id ON memories BEGIN
    INSERT INTO memories_fts(memories_fts, rowid, text, context, scope)
        VALUES ('delete', old.rid, old.text, old.context, {_FTS_SCOPE.format(row="old")});
    INSERT INTO memories_fts(rowid, text, context, scope)
        VALUES (new.rid, new.text, new.context, {_FTS_SCOPE.format(row="new")});
END;
INSERT INTO memories_fts(memories_fts) VALUES ('rebuild');
"""

# Document counts of FTS5 words, shared by every process (see SQLiteStore._document_counts):
# counting a common word reads its doclist (~3 ms for 60k rows), so a short-lived hook at 1M
# memories spent ~30 ms per prompt counting words the previous hook had counted. A row is
# valid while the memories grew by under 10% since ``rows_at``; only words some row holds.
m008_lexical_counts = """
CREATE TABLE IF NOT EXISTS lexical_counts (
    stem TEXT PRIMARY KEY,
    docs INTEGER NOT NULL,
    rows_at INTEGER NOT NULL
) WITHOUT ROWID;
"""

MIGRATIONS: list[tuple[str, str]] = [
    ("m001_memories", m001_memories),
    ("m002_audit_user", m002_audit_user),
    ("m003_fts_context", m003_fts_context),
    ("m004_sync", m004_sync),
    ("m005_search_indexes", m005_search_indexes),
    ("m006_vectors", m006_vectors),
    ("m007_fts_scope", m007_fts_scope),
    ("m008_lexical_counts", m008_lexical_counts),
]

_names = [name for name, _ in MIGRATIONS]
if len(set(_names)) != len(_names):  # pragma: no cover - guards future edits
    raise RuntimeError("duplicate migration names")

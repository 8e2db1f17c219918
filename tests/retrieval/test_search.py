"""Hybrid retrieval through ``Retriever`` on a real SQLite store with the real model.

Each test builds a fresh DB in ``tmp_path``; memories are written through the
store's ``add`` and embedded through ``set_embeddings`` (``embed_pending``).
"""

from __future__ import annotations

import time
from pathlib import Path

import apsw
import pytest

from alma_hooks.config import ScopePolicy, load_config
from alma_hooks.retrieval.cache import ResultCache
from alma_hooks.retrieval.search import Retriever
from alma_hooks.service import embed_pending
from alma_hooks.storage.migrations import MIGRATIONS
from alma_hooks.storage.sqlite import SQLiteStore, pack_vector, vec_extension_path
from alma_hooks.types import ANY, AntiPattern, DomainKnowledge, Heuristic, Memory, Outcome, Preference, Scope

PROJECT = "github.com/acme/shop"
USER = "dev@example.com"
MAIN = Scope(PROJECT, "main", USER)

# Project facts in topic clusters, so the nearest meaning is often a sibling:
# some questions hinge on an exact identifier (words tell siblings apart, the
# vector confuses them), others are paraphrases sharing no content word with
# their fact (meaning finds them, words do not).
FACTS = {
    "t4412": "SHOP-4412 tracks the invoice PDF rendering bug; the fix waits for the new template engine",
    "t4471": "SHOP-4471 tracks the dark mode toggle that resets after logout",
    "t4127": "SHOP-4127 tracks the slow product search on mobile",
    "e1001": "Billing error E1001 means the customer's VAT number failed validation",
    "e1010": "Billing error E1010 means the card on file has expired",
    "e1100": "Billing error E1100 means the billing address is incomplete",
    "ruff": "ruff replaces flake8 and isort here; its settings live in pyproject.toml",
    "eslint": "ESLint runs with the airbnb preset; rules are overridden in .eslintrc.cjs",
    "stylelint": "Stylelint checks the SCSS files; the config is .stylelintrc.json",
    "celery": "Celery workers consume the emails queue; restart them with make workers",
    "sqs": "The exports job reads from the SQS queue exports-prod with a 15 minute visibility timeout",
    "kafka": "Order events are published to the Kafka topic orders.v1 with the order id as key",
    "pgbouncer": "Use pgbouncer on port 6432 for app connections; 5432 is reserved for migrations",
    "replica": "Reports must query the read replica through the reporting connection, never the primary",
    "money": "Prices are stored as integer cents in bigint columns, never as floats",
    "freeze": "No deploys on Fridays after 2pm or in the last week of December",
    "rollback": "To undo a bad release run make rollback VERSION=<previous tag>; it redeploys the old image",
    "canary": "New versions go to the canary pool first and are promoted after 30 minutes without alerts",
    "secrets": "Copy .env.example to .env.local; never commit .env files, a pre-commit hook blocks them",
    "i18n": "User-facing strings go through gettext; translations are managed in Crowdin",
}
LEXICAL_QUESTIONS = [  # an identifier the question repeats
    ("what is SHOP-4471 about?", "t4471"),
    ("status of SHOP-4127?", "t4127"),
    ("billing returned E1010, what does it mean?", "e1010"),
    ("a customer got E1100 from billing", "e1100"),
]
TOPIC_QUESTIONS = [  # a few shared words, siblings close in meaning
    ("where do I change the ruff rules?", "ruff"),
    ("how do I tweak stylelint rules?", "stylelint"),
    ("which eslint preset do we extend?", "eslint"),
    ("the SQS exports job keeps reprocessing messages", "sqs"),
    ("what key do Kafka order events use?", "kafka"),
    ("my celery emails are stuck", "celery"),
]
SEMANTIC_QUESTIONS = [  # no shared content word
    ("What type should a price field be in Postgres?", "money"),
    ("Can I ship changes on a Friday afternoon?", "freeze"),
    ("The last release broke checkout; how do I go back?", "rollback"),
    ("Where do passwords for local development go?", "secrets"),
    ("Where do analytics queries have to run?", "replica"),
    ("how long before a new build reaches everyone?", "canary"),
]
ALL_QUESTIONS = LEXICAL_QUESTIONS + TOPIC_QUESTIONS + SEMANTIC_QUESTIONS


@pytest.fixture
def config(tmp_path: Path):
    env = {"ALMA_HOME": str(tmp_path / "home"), "ALMA_PROJECT_ID": PROJECT, "ALMA_USER_ID": USER,
           "ALMA_DB": str(tmp_path / "memory.db")}
    return load_config(tmp_path, env)


@pytest.fixture
def store(config):
    s = SQLiteStore(config.db_path, ScopePolicy.permissive())
    yield s
    s.close()


def add(store: SQLiteStore, memory: Memory, scope: Scope = MAIN) -> Memory:
    return store.add(scope, memory)


def knowledge(text: str, **kw) -> DomainKnowledge:
    return DomainKnowledge(project_id=PROJECT, agent=ANY, fact=text, **kw)


@pytest.fixture
def facts(store, embedder) -> dict[str, str]:
    """memory id -> fact key, all embedded."""
    ids = {add(store, knowledge(text)).id: key for key, text in FACTS.items()}
    embed_pending(store, embedder)
    return ids


def top1(hits) -> str | None:
    return hits[0].memory.id if hits else None


def test_hybrid_beats_either_list_alone(store, config, embedder, facts):
    retriever = Retriever(store, config, embed=lambda q: embedder.embed_one(q))
    right = {"hybrid": 0, "vector": 0, "lexical": 0}
    for question, key in ALL_QUESTIONS:
        qvec = embedder.embed_one(question)
        right["hybrid"] += facts.get(top1(retriever.search(MAIN, question, k=3))) == key
        right["vector"] += facts.get(top1(store.knn(MAIN, qvec, 3, ["knowledge"]))) == key
        right["lexical"] += facts.get(top1(store.lexical(MAIN, question, 3, ["knowledge"]))) == key
    assert right["hybrid"] >= len(ALL_QUESTIONS) - 1, right
    assert right["hybrid"] > right["vector"] and right["hybrid"] > right["lexical"], right


def test_lexical_only_mode_without_embedder_or_vectors(store, config):
    ids = {add(store, knowledge(text)).id: key for key, text in FACTS.items()}  # never embedded
    retriever = Retriever(store, config)  # no embedder: what a hook does with no warm engine
    for question, key in LEXICAL_QUESTIONS:
        assert ids.get(top1(retriever.search(MAIN, question, k=3))) == key, question
    sl = retriever.slice_for_prompt(MAIN, "billing keeps answering E1001 for this customer")
    assert [ids[i.memory.id] for i in sl.items][:1] == ["e1001"]


def test_min_score_keeps_irrelevant_memories_out_of_the_slice(store, config, embedder, facts):
    retriever = Retriever(store, config, embed=lambda q: embedder.embed_one(q))
    assert retriever.search(MAIN, "a recipe for banana bread with walnuts", k=5)  # ranked, yet...
    sl = retriever.slice_for_prompt(MAIN, "a recipe for banana bread with walnuts")
    assert not sl and sl.text == ""
    relevant = retriever.slice_for_prompt(MAIN, "Where are translations of UI strings managed?")
    assert any(facts[i.memory.id] == "i18n" for i in relevant.items)


def test_quotas_cap_items_per_type(store, config, embedder):
    for i, tool in enumerate(["pytest -x", "pytest -k", "pytest --lf", "pytest -q", "pytest -vv", "pytest --pdb"]):
        add(store, Heuristic(project_id=PROJECT, condition=f"a pytest run fails (variant {i})",
                             strategy=f"rerun the failing pytest test alone with {tool} and read the traceback",
                             successes=5, trials=6, confidence=0.8))
    embed_pending(store, embedder)
    retriever = Retriever(store, config, embed=lambda q: embedder.embed_one(q))
    sl = retriever.slice_for_prompt(MAIN, "the pytest run fails, how do I debug the failing test?")
    quota = config.get("retrieval.quotas")["heuristic"]
    assert sum(isinstance(i.memory, Heuristic) for i in sl.items) == quota


def test_near_duplicates_are_injected_once(store, config, embedder):
    a = add(store, knowledge("Run database migrations with make migrate before starting the API server"))
    b = add(store, knowledge("Run database migrations with make migrate before starting the API server."))
    add(store, knowledge("Seed the local database with make seed after migrating"))
    embed_pending(store, embedder)
    sl = Retriever(store, config, embed=lambda q: embedder.embed_one(q)).slice_for_prompt(
        MAIN, "how do I run the database migrations before starting the API?")
    ids = [i.memory.id for i in sl.items]
    assert (a.id in ids) != (b.id in ids), ids


def test_result_cache_is_dropped_when_the_scope_is_written(store, config):
    retriever = Retriever(store, config, cache=ResultCache())
    add(store, knowledge("Deploys go through make release"))
    first = retriever.search(MAIN, "walrus deploy", k=5)
    assert retriever.search(MAIN, "walrus deploy", k=5) is first  # served from the cache
    new = add(store, knowledge("The walrus service deploys with helm"))
    again = retriever.search(MAIN, "walrus deploy", k=5)
    assert again is not first and top1(again) == new.id


def test_retriever_never_returns_another_scopes_memories(store, config, embedder):
    helena = Scope(PROJECT, "helena", USER)
    other_project = Scope("github.com/acme/other", "main", USER)
    other_user = Scope(PROJECT, "main", "someone@example.com")
    mine = add(store, Heuristic(project_id=PROJECT, condition="the checkout form test flakes",
                                strategy="wait for network idle before clicking submit", confidence=0.8))
    leaks = [
        add(store, Heuristic(project_id=PROJECT, agent="helena", condition="the checkout form test flakes",
                             strategy="helena waits for network idle before clicking submit"), helena),
        add(store, AntiPattern(project_id=PROJECT, agent="helena", pattern="clicking checkout submit early",
                               why="the form is not ready"), helena),
        add(store, Outcome(project_id="github.com/acme/other", task_description="fix the flaky checkout form test",
                           success=True), other_project),
        add(store, Preference(project_id=PROJECT, user_id="someone@example.com",
                              preference="checkout form tests must use network idle waits"), other_user),
    ]
    embed_pending(store, embedder)
    query = "the checkout form test flakes when clicking submit"
    for embed in (None, lambda q: embedder.embed_one(q)):
        retriever = Retriever(store, config, embed=embed)
        seen = {h.memory.id for h in retriever.search(MAIN, query, k=50)}
        seen |= {i.memory.id for i in retriever.slice_for_prompt(MAIN, query).items}
        assert mine.id in seen
        assert not seen & {m.id for m in leaks}


def test_context_is_searched_but_not_embedded_or_shown(store, config, embedder):
    m = add(store, knowledge("Yes, every Friday at five, after the smoke tests pass",
                             context="Do we still run the release train weekly?"))
    add(store, knowledge("Smoke tests live in tests/smoke and take two minutes"))
    embed_pending(store, embedder)
    retriever = Retriever(store, config, embed=lambda q: embedder.embed_one(q))
    assert top1(retriever.search(MAIN, "when does the release train run?", k=3)) == m.id
    assert top1(store.lexical(MAIN, "release train", 3)) == m.id
    sl = retriever.slice_for_prompt(MAIN, "when does the release train run?")
    assert "every Friday at five" in sl.text and "release train" not in sl.text
    # the vector is the fact's alone
    (row,) = store.conn.execute("SELECT text, context FROM memories WHERE id = ?", (m.id,)).fetchall()
    assert row == (m.fact, m.context)
    assert [t for _, t in store.pending_embeddings()] == []


def test_context_update_reindexes_words(store, config):
    m = add(store, knowledge("Yes, on Fridays", context="When is the walrus release?"))
    assert top1(store.lexical(MAIN, "walrus", 3)) == m.id
    import dataclasses

    store.update(MAIN, dataclasses.replace(m, context="When is the narwhal release?"))
    assert store.lexical(MAIN, "walrus", 3) == []
    assert top1(store.lexical(MAIN, "narwhal", 3)) == m.id


def test_common_words_are_dropped_from_big_lexical_queries(store, monkeypatch):
    from alma_hooks.storage import sqlite

    for i in range(30):
        add(store, knowledge(f"deploy note {i}: the service restarts"))
    rare = add(store, knowledge("deploy the zebra service with helm"))
    monkeypatch.setattr(sqlite, "LEXICAL_POSTINGS_BUDGET", 5)
    match = store._match_expression("deploy zebra service")
    assert match == '"zebra"'  # 'deploy' and 'service' are in 31 rows each: over the budget
    assert top1(store.lexical(MAIN, "deploy zebra service", 3)) == rare.id



def test_document_counts_are_kept_for_the_next_process(store, config, monkeypatch):
    from alma_hooks.storage import sqlite

    for i in range(30):
        add(store, knowledge(f"deploy note {i}: the service restarts"))
    rare = add(store, knowledge("deploy the zebra service with helm"))
    monkeypatch.setattr(sqlite, "LEXICAL_POSTINGS_BUDGET", 5)
    assert store._match_expression("deploy zebra service walrus") == '"zebra"'
    saved = dict(store.conn.execute("SELECT stem, docs FROM lexical_counts").fetchall())
    assert saved == {"deploi": 31, "servic": 31, "zebra": 1}  # FTS5's porter stems; 'walrus' is in no row

    # another process (a hook lives for one prompt) reads them instead of counting: a count
    # rewritten here is what it goes by
    store.conn.execute("UPDATE lexical_counts SET docs = 1 WHERE stem = 'deploi'")
    other = SQLiteStore(config.db_path, ScopePolicy.permissive())
    try:
        assert other._match_expression("deploy zebra service") == '"deploy" OR "zebra"'
    finally:
        other.close()

    # once the memories grew by 10% (and 100 rows) a saved count is stale and counted again
    for i in range(110):
        add(store, knowledge(f"note {i}"))
    fresh = SQLiteStore(config.db_path, ScopePolicy.permissive())
    try:
        assert fresh._match_expression("deploy zebra service") == '"zebra"'
        assert top1(fresh.lexical(MAIN, "deploy zebra service", 3)) == rare.id
        assert dict(fresh.conn.execute("SELECT stem, docs FROM lexical_counts").fetchall())["deploi"] == 31
    finally:
        fresh.close()


def test_document_counts_never_wait_for_another_writer(store, config):
    add(store, knowledge("deploy the zebra service with helm"))
    waiting = SQLiteStore(config.db_path, ScopePolicy.permissive(), busy_timeout_ms=20_000)
    writer = apsw.Connection(str(config.db_path))
    try:
        writer.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        assert top1(waiting.lexical(MAIN, "zebra", 3))  # searched at once, the counts not saved
        assert time.monotonic() - started < 10  # (the busy timeout is 20 s)
        writer.execute("ROLLBACK")
        assert waiting.conn.execute("SELECT count(*) FROM lexical_counts").fetchone()[0] == 0
        assert waiting.conn.execute("PRAGMA busy_timeout").fetchone()[0] == 20_000
    finally:
        writer.close()
        waiting.close()

def test_binary_index_finds_exact_neighbours_in_a_large_partition(store, embedder):
    texts = [f"outcome {i}: fixed {w} in module {i % 17}" for i, w in
             enumerate(["the login form", "a flaky test", "the docker build", "slow queries", "type errors"] * 40)]
    mems = [add(store, Outcome(project_id=PROJECT, task_description=t, success=True)) for t in texts]
    embed_pending(store, embedder)
    q = embedder.embed_one("fix the flaky test")
    vecs = {m.id: v for m, v in zip(mems, embedder.embed([m.text for m in mems]))}
    exact = sorted(vecs, key=lambda i: -float(vecs[i] @ q))[:5]
    got = [h.memory.id for h in store.knn(MAIN, q, 5, ["outcome"])]
    assert got == exact


def test_upgrade_from_schema_two_keeps_memories_findable(tmp_path, embedder):
    path = tmp_path / "old.db"
    conn = apsw.Connection(str(path))
    conn.enable_load_extension(True)
    conn.load_extension(vec_extension_path())
    for number, (_, sql) in enumerate(MIGRATIONS[:2], start=1):
        conn.execute(sql)
        conn.execute(f"PRAGMA user_version = {number}")
    vec = embedder.embed_one("Deploys go through make release")
    conn.execute("INSERT INTO memories(id, type, project_id, agent, text, payload, confidence, created_at, "
                 "updated_at, embedding_pending) VALUES ('m1', 'knowledge', ?, '*', ?, ?, 0.9, 1, 1, 0)",
                 (PROJECT, "Deploys go through make release",
                  '{"fact": "Deploys go through make release", "source": "curated"}'))
    conn.execute("INSERT INTO memory_vec(rowid, project_id, agent, type, user_id, embedding) "
                 "VALUES (1, ?, '*', 'knowledge', '', ?)", (PROJECT, pack_vector(vec)))
    conn.close()
    store = SQLiteStore(path, ScopePolicy.permissive())
    try:
        assert store.schema_version() == len(MIGRATIONS)
        assert top1(store.lexical(MAIN, "release", 3)) == "m1"
        assert top1(store.knn(MAIN, embedder.embed_one("how do we deploy?"), 3)) == "m1"
    finally:
        store.close()
    again = SQLiteStore(path, ScopePolicy.permissive())  # a second open migrates nothing
    try:
        assert again.schema_version() == len(MIGRATIONS)
        assert top1(again.lexical(MAIN, "release", 3)) == "m1"
    finally:
        again.close()


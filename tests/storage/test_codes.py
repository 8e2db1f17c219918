"""The warm engine's in-memory codes (``SQLiteStore(warm=True)``) against sqlite-vec's KNN.

Real SQLite files; vectors are random unit vectors (the real model is not what
is under test here: the coarse pass and its cache are).
"""

from __future__ import annotations

import random
from pathlib import Path

import apsw
import pytest

from alma_hooks.storage.codes import CodeCache
from alma_hooks.storage.migrations import EMBEDDING_DIM, MIGRATIONS
from alma_hooks.storage.sqlite import SQLiteStore, pack_vector, vec_extension_path
from alma_hooks.types import Outcome, Scope

PROJECT = "github.com/acme/shop"
MAIN = Scope(PROJECT, "main", "dev@example.com")
MODEL = "test-model"


def unit(rng: random.Random, centre: list[float] | None = None, spread: float = 0.3) -> list[float]:
    v = [rng.gauss(0, 1) for _ in range(EMBEDDING_DIM)]
    if centre is not None:
        v = [c + spread * x / EMBEDDING_DIM ** 0.5 for c, x in zip(centre, v)]
    n = sum(x * x for x in v) ** 0.5
    return [x / n for x in v]


def fill(store: SQLiteStore, n: int, seed: int = 1, project: str = PROJECT) -> list[tuple[str, list[float]]]:
    """``n`` outcomes in clusters of similar vectors, all embedded."""
    rng = random.Random(seed)
    centres = [unit(rng) for _ in range(8)]
    made = []
    for i in range(n):
        m = store.add(Scope(project, "main", MAIN.user_id),
                      Outcome(project_id=project, task_description=f"task {seed}-{i}", success=True))
        made.append((m.id, unit(rng, centres[i % 8])))
    store.set_embeddings(MODEL, made)
    return made


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "memory.db"


def test_cached_and_sqlite_vec_coarse_passes_rank_alike(db: Path) -> None:
    """Same recall on tight clusters (75 near-duplicates each, beyond the 48 coarse candidates).

    Hamming distances are integers: the two passes may break ties at the candidate
    boundary differently, so they are compared by recall of the exact top 10.
    """
    plain = SQLiteStore(db)
    made = fill(plain, 600)
    cached = SQLiteStore(db, warm=True)
    rng = random.Random(9)
    recall = {"plain": 0, "cached": 0}
    try:
        for _ in range(20):
            q = unit(rng, made[rng.randrange(len(made))][1], 0.5)
            want = {i for i, _ in sorted(made, key=lambda m: -sum(a * b for a, b in zip(m[1], q)))[:10]}
            for name, store in (("plain", plain), ("cached", cached)):
                hits = store.knn(MAIN, q, 10, ["outcome"])
                assert [h.similarity for h in hits] == sorted((h.similarity for h in hits), reverse=True)
                recall[name] += len(want & {h.memory.id for h in hits})
    finally:
        plain.close()
        cached.close()
    assert recall["cached"] >= 0.75 * 200 and recall["plain"] >= 0.75 * 200
    assert abs(recall["cached"] - recall["plain"]) <= 0.03 * 200


def test_a_write_by_another_process_is_seen_at_the_next_search(db: Path) -> None:
    engine = SQLiteStore(db, warm=True)
    other = SQLiteStore(db)
    try:
        fill(other, 100)
        q = unit(random.Random(5))
        assert len(engine.knn(MAIN, q, 200, ["outcome"])) == 100
        m = other.add(MAIN, Outcome(project_id=PROJECT, task_description="new", success=True))
        other.set_embeddings(MODEL, [(m.id, q)])
        hits = engine.knn(MAIN, q, 1, ["outcome"])
        assert hits[0].memory.id == m.id and hits[0].similarity == pytest.approx(1.0, abs=1e-5)
        other.delete(MAIN, m.id, reason="test")
        assert m.id not in {h.memory.id for h in engine.knn(MAIN, q, 200, ["outcome"])}
    finally:
        engine.close()
        other.close()


def test_refresh_reloads_only_partitions_that_changed(db: Path) -> None:
    engine = SQLiteStore(db, warm=True)
    other = SQLiteStore(db)
    try:
        assert engine.refresh_codes() == 0  # nothing held yet
        fill(other, 50)
        q = unit(random.Random(2))
        engine.knn(MAIN, q, 5)
        assert engine.refresh_codes() == 0  # nothing changed since
        m = other.add(MAIN, Outcome(project_id=PROJECT, task_description="one more", success=True))
        other.set_embeddings(MODEL, [(m.id, q)])
        assert engine.refresh_codes() == 1
        held = {key: part for key, part in engine.codes._parts.items()}
        assert len(held[(PROJECT, "main", "outcome", "")].rids) == 51
    finally:
        engine.close()
        other.close()


def test_appends_rewrites_and_deletes_by_another_process_all_reach_the_cache(db: Path) -> None:
    """Appended vectors are read alone; a rewritten or deleted one makes the partition reload whole."""
    engine = SQLiteStore(db, warm=True)
    other = SQLiteStore(db)
    rng = random.Random(8)
    try:
        made = fill(other, 80)
        engine.knn(MAIN, unit(rng), 5, ["outcome"])
        # appended: two new memories embedded in order
        news = [other.add(MAIN, Outcome(project_id=PROJECT, task_description=f"new {i}", success=True))
                for i in range(2)]
        vecs = [unit(rng) for _ in news]
        other.set_embeddings(MODEL, [(m.id, v) for m, v in zip(news, vecs)])
        for m, v in zip(news, vecs):
            assert engine.knn(MAIN, v, 1, ["outcome"])[0].memory.id == m.id
        # rewritten in place: an older memory gets another vector under the same rid
        old_id, _ = made[3]
        fresh = unit(rng)
        other.set_embeddings(MODEL, [(old_id, fresh)])
        hit = engine.knn(MAIN, fresh, 1, ["outcome"])[0]
        assert hit.memory.id == old_id and hit.similarity == pytest.approx(1.0, abs=1e-5)
        # deleted
        other.delete(MAIN, news[1].id, reason="test")
        assert news[1].id not in {h.memory.id for h in engine.knn(MAIN, vecs[1], 100, ["outcome"])}
        assert len(engine.codes._parts[(PROJECT, "main", "outcome", "")].rids) == 81
    finally:
        engine.close()
        other.close()


def test_cached_codes_never_cross_scopes(db: Path) -> None:
    engine = SQLiteStore(db, warm=True)
    try:
        ours = {i for i, _ in fill(engine, 60, seed=1)}
        theirs = {i for i, _ in fill(engine, 60, seed=2, project="github.com/acme/billing")}
        q = unit(random.Random(3))
        found = {h.memory.id for h in engine.knn(MAIN, q, 1000)}
        assert found == ours and not found & theirs
    finally:
        engine.close()


def test_the_cache_holds_at_most_max_rows_codes(db: Path) -> None:
    store = SQLiteStore(db)
    try:
        for p in range(4):
            fill(store, 30, seed=p, project=f"p{p}")
        cache = CodeCache(max_rows=70)
        for p in range(4):
            key = (f"p{p}", "main", "outcome", "")
            gen = store._vector_generations(Scope(f"p{p}", "main", ""))[key]
            query = unit(random.Random(p))
            assert len(cache.nearest(store.conn, key, gen, b"\0" * (EMBEDDING_DIM // 8), query, 5)) == 5
        assert cache.held() == [("p2", "main", "outcome", ""), ("p3", "main", "outcome", "")]
        assert cache._rows == 60
    finally:
        store.close()


def test_schema_5_vectors_move_to_memory_vectors(tmp_path: Path) -> None:
    """m006: floats and codes leave the virtual tables; a vector whose memory is gone is dropped, and so is
    a coarse row left without its exact twin (found by the crash campaign's invariant check)."""
    path = tmp_path / "v5.db"
    conn = apsw.Connection(str(path))
    conn.enable_load_extension(True)
    conn.load_extension(vec_extension_path())
    for number, (_, sql) in enumerate(MIGRATIONS[:5], start=1):
        conn.execute(sql)
        conn.execute(f"PRAGMA user_version = {number}")
    rng = random.Random(4)
    vecs = [unit(rng) for _ in range(3)]
    for rid, v in enumerate(vecs, start=1):
        if rid < 3:  # rid 3's memory was deleted, its vector left behind
            conn.execute("INSERT INTO memories(rid, id, type, project_id, agent, text, payload, confidence, "
                         "created_at, updated_at, embedding_pending) VALUES (?, ?, 'outcome', ?, 'main', ?, ?, "
                         "0.5, 1, 1, 0)", (rid, f"m{rid}", PROJECT, f"task {rid}",
                                           f'{{"task_description": "task {rid}", "success": true}}'))
        for table in ("memory_vec", "memory_bits"):
            extra = ", vector" if table == "memory_bits" else ""
            value = "vec_quantize_binary(?), ?" if table == "memory_bits" else "?"
            args = (pack_vector(v), pack_vector(v)) if table == "memory_bits" else (pack_vector(v),)
            conn.execute(f"INSERT INTO {table}(rowid, project_id, agent, type, user_id, embedding{extra}) "
                         f"VALUES (?, ?, 'main', 'outcome', '', {value})", (rid, PROJECT, *args))
    # what pulls of earlier versions left: a coarse row alone, of a memory gone
    conn.execute("INSERT INTO memory_bits(rowid, project_id, agent, type, user_id, embedding, vector) "
                 "VALUES (4, ?, 'main', 'outcome', '', vec_quantize_binary(?), ?)",
                 (PROJECT, pack_vector(vecs[0]), pack_vector(vecs[0])))
    conn.close()
    store = SQLiteStore(path)
    try:
        assert store.schema_version() == len(MIGRATIONS)
        assert [r for (r,) in store.conn.execute("SELECT rid FROM memory_vectors ORDER BY rid")] == [1, 2]
        assert store.conn.execute("SELECT count(*) FROM memory_bits").fetchone()[0] == 2
        hits = store.knn(MAIN, vecs[1], 1)
        assert hits[0].memory.id == "m2" and hits[0].similarity == pytest.approx(1.0, abs=1e-5)
        store.delete(MAIN, "m2", reason="test")  # the trigger takes its vector and code along
        assert store.conn.execute("SELECT count(*) FROM memory_vectors").fetchone()[0] == 1
        assert store.conn.execute("SELECT count(*) FROM memory_bits").fetchone()[0] == 1
    finally:
        store.close()


def test_a_warm_store_checkpoints_when_asked_not_inside_a_commit(db: Path) -> None:
    warm = SQLiteStore(db, warm=True)
    try:
        assert warm.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        fill(warm, 600)
        warm.checkpoint()
        # every frame was written with no checkpoint in between: past the 1,000 pages at which a
        # commit would have checkpointed (and the next writer restarted the WAL), all copied now
        _, frames, copied = warm.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert frames > 1000 and copied == frames
    finally:
        warm.close()
    cold = SQLiteStore(db)
    assert cold.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
    cold.close()

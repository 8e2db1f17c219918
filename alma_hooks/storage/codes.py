"""The vectors of the KNN partitions, held in memory by a long-lived process (the warm engine).

sqlite-vec 0.1.9 keeps the k best of a brute-force scan by selection, O(n * k):
over the 38k codes of one partition at 100k memories, ``k = 1`` costs 0.8 ms
and ``k = 60`` 2.9 ms, so a search over every type's partitions spent ~6 ms in
the coarse pass alone; the exact re-rank then read a few hundred scattered
1.5 KB vectors from the DB (7-9 ms when they are not in a cache: the kernel of
the development machine keeps almost no page cache). Here a partition's sign
codes and unit vectors live in numpy arrays: Hamming distances over the codes,
the candidates by ``argpartition`` (O(n)), their exact cosine by one product.
About 1.6 KB a memory; at most ``max_rows`` memories are held, the least
recently used partitions leaving first.

A partition is reloaded when its count in ``vector_generations`` (bumped by
triggers on every vector written or deleted, by any process) moved since it
was loaded. When everything since is appended vectors (the usual case: a new
memory embedded), only those are read: the generation moved by exactly the
number of vectors above the highest rid held, which no mix with a deletion or
a rewrite can produce. The generation is read before the rows, so a cache can
be older than it says, never newer, and an older one is reloaded at the next
look.

numpy is imported here only, never on a hook's import path.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, NamedTuple

import numpy as np

from .migrations import EMBEDDING_DIM

#: Partition key of ``memory_bits``: (project_id, agent, type, user_id).
Key = tuple[str, str, str, str]
_WORDS = EMBEDDING_DIM // 64
_SELECT = ("SELECT rid, code, embedding FROM memory_vectors WHERE project_id = ? AND agent = ? AND type = ? "
           "AND user_id = ? AND rid > ? ORDER BY rid")


class _Partition(NamedTuple):
    gen: int
    rids: Any  # int64[n], ascending
    codes: Any  # uint64[EMBEDDING_DIM / 64, n]: one row per 64-bit word of the codes
    units: Any  # float32[n, EMBEDDING_DIM]: the vectors scaled to length 1 (zero stays zero)


class CodeCache:
    """Nearest rids per partition, from codes and vectors kept in memory."""

    def __init__(self, max_rows: int = 300_000) -> None:
        self.max_rows = max_rows
        self._parts: OrderedDict[Key, _Partition] = OrderedDict()
        self._rows = 0

    def nearest(self, conn: Any, key: Key, gen: int, code: bytes, query: Any, m: int) -> dict[int, float]:
        """Cosine distance of the ``m`` memories of partition ``key`` whose codes are closest to ``code``.

        ``query`` is the float32 query vector; memories with a zero vector have no
        cosine and are left out, as sqlite-vec leaves them out.
        """
        part = self._get(conn, key, gen)
        n = len(part.rids)
        if n > m:
            q = np.frombuffer(code, dtype="<u8")
            # word by word over contiguous columns: 6x faster than a row-wise sum over (n, 6)
            ham = np.bitwise_count(part.codes[0] ^ q[0]).astype(np.uint16)
            for word in range(1, _WORDS):
                ham += np.bitwise_count(part.codes[word] ^ q[word])
            idx = np.argpartition(ham, m)[:m]
        else:
            idx = np.arange(n)
        norm = float(np.linalg.norm(query))
        if norm == 0.0 or not len(idx):
            return {}
        units = part.units[idx]
        sims = units @ (np.asarray(query, dtype=np.float32) / norm)
        alive = units.any(axis=1)
        return {int(r): 1.0 - float(s) for r, s, a in zip(part.rids[idx], sims, alive) if a}

    def refresh(self, conn: Any, gens: dict[Key, int]) -> int:
        """Bring the held partitions whose generation moved up to date (idle work of the engine)."""
        stale = [k for k, p in self._parts.items() if gens.get(k, 0) != p.gen]
        for key in stale:
            self._load(conn, key, gens.get(key, 0))
        return len(stale)

    def held(self) -> list[Key]:
        return list(self._parts)

    def _get(self, conn: Any, key: Key, gen: int) -> _Partition:
        part = self._parts.get(key)
        if part is None or part.gen != gen:
            return self._load(conn, key, gen)
        self._parts.move_to_end(key)
        return part

    def _load(self, conn: Any, key: Key, gen: int) -> _Partition:
        old = self._parts.pop(key, None)
        if old is not None:
            self._rows -= len(old.rids)
            top = int(old.rids[-1]) if len(old.rids) else 0
            new = conn.execute(_SELECT, (*key, top)).fetchall()
            part = _append(old, gen, new) if gen - old.gen == len(new) else _build(gen, conn.execute(
                _SELECT, (*key, -1)).fetchall())
        else:
            part = _build(gen, conn.execute(_SELECT, (*key, -1)).fetchall())
        self._parts[key] = part
        self._rows += len(part.rids)
        while self._rows > self.max_rows and len(self._parts) > 1:
            _, evicted = self._parts.popitem(last=False)
            self._rows -= len(evicted.rids)
        return part


def _arrays(rows: list[Any]) -> tuple[Any, Any, Any]:
    rids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    codes = np.frombuffer(b"".join(r[1] for r in rows), dtype="<u8").reshape(len(rows), _WORDS).T.copy()
    vecs = np.frombuffer(b"".join(r[2] for r in rows), dtype="<f4").reshape(len(rows), EMBEDDING_DIM)
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    units = np.divide(vecs, norms, out=np.zeros_like(vecs), where=norms > 0)
    return rids, codes, units


def _build(gen: int, rows: list[Any]) -> _Partition:
    return _Partition(gen, *_arrays(rows))


def _append(old: _Partition, gen: int, rows: list[Any]) -> _Partition:
    if not rows:
        return old._replace(gen=gen)
    rids, codes, units = _arrays(rows)
    return _Partition(gen, np.concatenate([old.rids, rids]), np.concatenate([old.codes, codes], axis=1),
                      np.concatenate([old.units, units]))

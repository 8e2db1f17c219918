"""Sign codes of the KNN partitions, held in memory by a long-lived process (the warm engine).

sqlite-vec 0.1.9 keeps the k best of a brute-force scan by selection, O(n * k):
over the 38k codes of one partition at 100k memories, ``k = 1`` costs 0.8 ms
and ``k = 60`` 2.9 ms, so a search over every type's partitions spent ~6 ms in
the coarse pass alone. Here the same Hamming distances come from numpy over
codes loaded once (56 bytes a memory) and the candidates from
``argpartition``, O(n): ~1 ms for every partition of that scope.

A partition is reloaded when its count in ``vector_generations`` (bumped by
triggers on every vector written or deleted, by any process) differs from the
one it was loaded at; the generation is read before the codes, so a cache can
only be older than it says, never newer, and an older one is reloaded at the
next look. Memory is bounded: least recently used partitions go first once
more than ``max_rows`` codes are held.

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


class _Partition(NamedTuple):
    gen: int
    rids: Any  # int64[n]
    codes: Any  # uint64[EMBEDDING_DIM / 64, n]: one row per 64-bit word of the codes


class CodeCache:
    """Hamming-nearest rids per partition, from codes kept in memory."""

    def __init__(self, max_rows: int = 2_000_000) -> None:
        self.max_rows = max_rows
        self._parts: OrderedDict[Key, _Partition] = OrderedDict()
        self._rows = 0

    def nearest(self, conn: Any, key: Key, gen: int, code: bytes, m: int) -> list[int]:
        """The rids of the ``m`` codes of partition ``key`` closest to ``code`` (any order)."""
        part = self._get(conn, key, gen)
        n = len(part.rids)
        if n <= m:
            return part.rids.tolist()
        q = np.frombuffer(code, dtype="<u8")
        # word by word over contiguous columns: 6x faster than a row-wise sum over (n, 6)
        dist = np.bitwise_count(part.codes[0] ^ q[0]).astype(np.uint16)
        for word in range(1, _WORDS):
            dist += np.bitwise_count(part.codes[word] ^ q[word])
        return part.rids[np.argpartition(dist, m)[:m]].tolist()

    def refresh(self, conn: Any, gens: dict[Key, int]) -> int:
        """Reload the held partitions whose generation moved (idle work of the engine); returns how many."""
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
        rows = conn.execute("SELECT rid, code FROM memory_vectors WHERE project_id = ? AND agent = ? AND type = ? "
                            "AND user_id = ? ORDER BY rid", key).fetchall()
        rids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        codes = np.frombuffer(b"".join(r[1] for r in rows), dtype="<u8").reshape(len(rows), _WORDS).T.copy()
        old = self._parts.pop(key, None)
        self._rows -= 0 if old is None else len(old.rids)
        part = self._parts[key] = _Partition(gen, rids, codes)
        self._rows += len(rids)
        while self._rows > self.max_rows and len(self._parts) > 1:
            _, evicted = self._parts.popitem(last=False)
            self._rows -= len(evicted.rids)
        return part

"""Hybrid retrieval: KNN inside the scope + FTS5 BM25, fused, scored, de-duplicated, packed.

This module is imported by hook processes, so it stays stdlib-only: the query
vector comes from an ``embed`` callable (the warm engine or the in-process
model) or is absent, in which case retrieval is lexical only.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..config import Config
from ..storage.base import Store
from ..types import MEMORY_TYPES, Hit, Memory, MemorySlice, Scope
from .budget import DEFAULT_BUDGET, clamp_budget, render_slice
from .cache import ResultCache
from .scoring import Weights, final_score, fuse

EmbedFn = Callable[[str], "Sequence[float] | None"]

#: Function words that carry no topic; dropped from the lexical query only.
STOPWORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below between both
but by can could did do does doing down during each few for from further had has have having he her here hers
herself him himself his how i if in into is it its itself just let me more most my myself no nor not now of off
on once only or other our ours ourselves out over own same she should so some such than that the their theirs
them themselves then there these they this those through to too under until up very was we were what when where
which while who whom why will with would you your yours yourself yourselves please thanks thank hey hi ok okay
also get got go going want wants need needs make made like
""".split())
_WORD = re.compile(r"[\w][\w'.-]*")

#: Candidates taken from each list (KNN per type; BM25 twice that across types) before fusion.
#: LoCoMo dev R@5 is the same with 20 and 50; fewer candidates cost less to load.
POOL = 20
#: Share of the fused ranking score given to the lexical list when both lists answer.
#: Tuned on LoCoMo dev (turn retrieval) under the constraint of the paraphrase set of
#: tests/test_search_quality.py (40 facts, questions sharing few words with them);
#: 0.65-0.75 is a plateau on both, see README "Benchmarks".
LEXICAL_WEIGHT = 0.7
#: MiniLM cosine of unrelated text is ~0.1-0.3: below this a vector match adds nothing to the ranking.
VECTOR_FLOOR = 0.3


def lexical_query(text: str) -> str:
    """The words of ``text`` worth matching: no stopwords, no one-letter tokens (kept if nothing else is left)."""
    words = [w.strip("'.-") for w in _WORD.findall(text.lower())]
    kept = [w for w in words if len(w) > 1 and w not in STOPWORDS]
    return " ".join(kept or words)


#: Runs of letters and digits: FTS5's unicode61 splits words the same way ("pytest-xdist", "test_cart.py").
_ALNUM = re.compile(r"[^\W_]+")


def _s_stem(w: str) -> str:
    """Harman's S-stemmer: plural endings only ('queries' -> 'query', 'runs' -> 'run'), never a wrong merge."""
    if len(w) > 4 and w.endswith("ies") and not w.endswith(("eies", "aies")):
        return w[:-3] + "y"
    if len(w) > 3 and w.endswith("es") and not w.endswith(("aes", "ees", "oes")):
        return w[:-1]
    if len(w) > 3 and w.endswith("s") and not w.endswith(("us", "ss")):
        return w[:-1]
    return w


def _stems(text: str) -> set[str]:
    """Lower-case words without stopwords, plurals folded (enough to count shared words)."""
    return {_s_stem(w) for w in _ALNUM.findall(text.lower()) if w not in STOPWORDS}


def lexical_relevance(coverage: float, bm25: float, top_bm25: float) -> float:
    """Absolute lexical relevance in [0, 1]: share of query words present, blended with relative BM25.

    BM25 alone is relative to the corpus (in a small DB every shared word has
    an IDF near zero), so the coverage of the query's words gives the absolute
    part of the signal.
    """
    relative = bm25 / top_bm25 if top_bm25 > 0 else 0.0
    return 0.7 * coverage + 0.3 * relative * coverage ** 0.5


@dataclass
class Signals:
    """What each list says about one candidate.

    ``lexical`` and ``vector`` are relative to this query's best candidate
    (they rank); ``relevance`` is absolute (it gates: ``min_score``).
    """

    memory: Memory
    similarity: float | None = None
    bm25: float | None = None
    lexical: float = 0.0
    vector: float = 0.0
    relevance: float = 0.0


def fusion_signals(query_stems: set[str], vec_hits: Sequence[Hit], lex_hits: Sequence[Hit]) -> dict[str, Signals]:
    """Per-candidate signals of the union of the KNN and BM25 candidate lists, normalised for fusion.

    - lexical = BM25 / best BM25 of the query, times the share of query words
      the memory (with its context) holds: a memory matching one incidental
      word of a paraphrased question cannot outrank one close in meaning.
    - vector = cosine stretched so the query's best candidate is 1 and
      :data:`VECTOR_FLOOR` (MiniLM's "unrelated") is 0.
    A candidate missing from a list gets 0 from it.
    """
    out: dict[str, Signals] = {}
    for h in vec_hits:
        out[h.memory.id] = Signals(h.memory, similarity=h.similarity)
    for h in lex_hits:
        out.setdefault(h.memory.id, Signals(h.memory)).bm25 = h.score
    top_sim = max((h.similarity for h in vec_hits), default=0.0)
    top_bm25 = max((h.score for h in lex_hits), default=0.0)
    for s in out.values():
        lex_rel = None
        if s.bm25 is not None and top_bm25 > 0:
            words = _stems(f"{s.memory.text} {s.memory.search_context}")
            coverage = len(query_stems & words) / len(query_stems) if query_stems else 0.0
            s.lexical = s.bm25 / top_bm25 * coverage
            lex_rel = lexical_relevance(coverage, s.bm25, top_bm25)
        if s.similarity is not None and top_sim > VECTOR_FLOOR:
            s.vector = max(0.0, (s.similarity - VECTOR_FLOOR) / (top_sim - VECTOR_FLOOR))
        s.relevance = fuse(s.similarity, lex_rel)
    return out


def _tokens(text: str) -> set[str]:
    return {w for w in _ALNUM.findall(text.lower()) if w not in STOPWORDS}


def near_duplicate(a: Memory, b: Memory, threshold: float = 0.8) -> bool:
    """Two memories saying the same thing (word-set Jaccard above ``threshold``)."""
    ta, tb = _tokens(a.text), _tokens(b.text)
    if not ta or not tb:
        return a.text.strip() == b.text.strip()
    return len(ta & tb) / len(ta | tb) >= threshold


class _Embedding:
    """A query's vector computed on a thread of its own (onnxruntime and apsw both release the GIL).

    An error in ``embed`` is raised by :meth:`result`, in the caller's thread.
    """

    def __init__(self, embed: EmbedFn, text: str) -> None:
        import threading

        self._embed, self._text = embed, text
        self._value: Sequence[float] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="alma-embed", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._embed(self._text)
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread by result()
            self._error = e

    def result(self) -> Sequence[float] | None:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


@dataclass
class Retriever:
    """Ranks the memories of one scope for a query."""

    store: Store
    config: Config
    embed: EmbedFn | None = None
    cache: ResultCache | None = None
    now: Callable[[], float] = time.time
    weights: Weights = field(init=False)

    def __post_init__(self) -> None:
        self.weights = Weights.from_config(self.config.get("retrieval.weights"))
        self.half_life = float(self.config.get("retrieval.recency_half_life_days", 30))
        self.k = int(self.config.get("retrieval.k", 8))
        self.min_score = float(self.config.get("retrieval.min_score", 0.25))
        self.lexical_weight = float(self.config.get("retrieval.lexical_weight", LEXICAL_WEIGHT))

    def search(self, scope: Scope, query: str, *, types: Sequence[str] | None = None, k: int = 10,
               vector: Sequence[float] | None = None) -> list[Hit]:
        """Visible memories for ``query``, best first; ``Hit.score`` is the final score."""
        types = list(types or MEMORY_TYPES)
        key = (query, k, tuple(types), vector is None and self.embed is None)
        generation = self.store.generation(scope) if self.cache is not None else 0
        if self.cache is not None:
            cached = self.cache.get(scope, key, generation)
            if cached is not None:
                return cached
        hits = self._search(scope, query, types, k, vector)
        if self.cache is not None:
            self.cache.put(scope, key, generation, hits)
        return hits

    def _search(self, scope: Scope, query: str, types: list[str], k: int,
                vector: Sequence[float] | None) -> list[Hit]:
        # per type: enough for k hits of one type, or a fair share of k across types
        pool = max(POOL, self.k, k if len(types) == 1 else -(-2 * k // len(types)))
        embedding = None
        if vector is None and self.embed is not None and query.strip():
            embedding = _Embedding(self.embed, query)  # the model runs while SQLite ranks by words
        lq = lexical_query(query)
        lex_hits = self.store.lexical(scope, lq, 2 * pool, types)
        if embedding is not None:
            vector = embedding.result()
        vec_hits = self.store.knn(scope, vector, pool, types) if vector is not None else []
        signals = fusion_signals(_stems(lq), vec_hits, lex_hits)
        # the lexical weight applies when both lists have something to say; alone, a list decides
        wl = self.lexical_weight if vec_hits and lex_hits else (1.0 if lex_hits else 0.0)
        now = self.now()
        hits = []
        for s in signals.values():
            rank_rel = wl * s.lexical + (1 - wl) * s.vector
            hits.append(Hit(s.memory, final_score(s.memory, rank_rel, now, self.weights, self.half_life),
                            s.similarity if s.similarity is not None else 0.0, s.relevance))
        hits.sort(key=lambda h: -h.score)
        return hits[:k]

    def slice_for_prompt(self, scope: Scope, prompt: str, *, budget: int | None = None,
                         exclude: dict[str, int] | None = None,
                         vector: Sequence[float] | None = None) -> MemorySlice:
        """The memory slice for a task prompt: relevant items, per-type quotas, under the token budget."""
        budget = clamp_budget(self.config.budget_tokens if budget is None else budget)
        hits = self.search(scope, prompt, k=4 * self.k, vector=vector)
        chosen = self._select(hits, exclude or {}, relevant_only=True)
        return render_slice(chosen, budget)

    def digest(self, scope: Scope, *, budget: int | None = None, exclude: dict[str, int] | None = None) -> MemorySlice:
        """The SessionStart digest: the most trusted heuristics, warnings and preferences, no query."""
        budget = clamp_budget(int(self.config.get("retrieval.digest_tokens", 300)) if budget is None else budget)
        now = self.now()
        hits = [Hit(m, final_score(m, 0.5, now, self.weights, self.half_life))
                for m in self.store.list(scope, ["heuristic", "anti_pattern", "preference"], limit=200)]
        hits.sort(key=lambda h: -h.score)
        return render_slice(self._select(hits, exclude or {}, relevant_only=False), budget)

    def _select(self, hits: list[Hit], exclude: dict[str, int], *, relevant_only: bool) -> list[Hit]:
        quotas = dict(self.config.get("retrieval.quotas") or {})
        chosen: list[Hit] = []
        for hit in hits:
            m = hit.memory
            if exclude.get(m.id) == m.version:
                continue  # already injected in this session and unchanged
            if relevant_only and hit.relevance < self.min_score:
                continue
            if quotas.get(m.type, 3) <= sum(1 for c in chosen if c.memory.type == m.type):
                continue
            if any(near_duplicate(m, c.memory) for c in chosen):
                continue
            chosen.append(hit)
        return chosen


__all__ = ["Retriever", "lexical_query", "near_duplicate", "DEFAULT_BUDGET"]

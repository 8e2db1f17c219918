"""LoCoMo evidence retrieval: does the product find the turns a question is about?

Usage::

    python bench/locomo.py [--data DIR] [--json] [--k 5,10] [--limit-questions N]
                           [--conversations 26,30] [--no-context] [--cv]

Protocol (``DIR/README.md``): each conversation is its own haystack, here its
own project scope in a fresh SQLite DB in a temporary directory. Every turn is
one memory: a ``DomainKnowledge`` whose fact is ``"Speaker: text"`` (plus
``[shares <blip_caption>]`` when the turn shared a photo), written through the
store's real ``add`` path, embedded with the real model through
``set_embeddings`` (``service.embed_pending``). The session's date becomes the
memory's ``created_at``/``updated_at``, as a real memory carries the time it
was written; it is not put into the text. The turn before it in the same
session is the memory's ``context`` (``DomainKnowledge.context``: matched by
full-text search at a lower weight, not embedded, never shown), as any caller
storing conversation or document snippets can do; ``--no-context`` leaves it
empty.

For each question of categories 1-4 with evidence, three rankings take the top
k turns: ``engine`` is the product's own ``Retriever.search`` (the path the
hooks and ``alma-hooks search`` use), ``vector`` plain KNN (``store.knn``) and
``lexical`` plain FTS5 BM25 of the raw question (``store.lexical``).
recall@k is the share of the question's evidence turns among them, averaged
over questions (pooled over conversations); MRR is of the first evidence turn.
Evidence ids are split on ``;``/``,``/spaces (the data has ``"D8:6; D9:17"``);
ids that name no turn are dropped and counted.

``--cv`` cross-validates the one tuned knob, the lexical weight of the fusion:
for every split of the conversations into 3 to tune on and 2 to check, the
weight best on the 3 (from a small grid) is scored on the 2.

Embeddings are cached (text hash + model id, the product's ``EmbeddingCache``)
in ``$TMPDIR/alma-bench/embeddings.db``; ``--no-cache`` embeds everything anew.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from alma_hooks.config import load_config  # noqa: E402
from alma_hooks.retrieval.cache import EmbeddingCache  # noqa: E402
from alma_hooks.retrieval.search import Retriever  # noqa: E402
from alma_hooks.service import embed_pending  # noqa: E402
from alma_hooks.storage.sqlite import SQLiteStore  # noqa: E402
from alma_hooks.types import ANY, DomainKnowledge, Scope  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "locomo-dev"
RANKINGS = ("engine", "vector", "lexical")
CV_GRID = (0.5, 0.6, 0.7, 0.8)


@dataclasses.dataclass
class Turn:
    dia_id: str
    text: str
    context: str
    when: float


@dataclasses.dataclass
class Question:
    text: str
    category: int
    evidence: list[str]


@dataclasses.dataclass
class Conversation:
    name: str
    turns: list[Turn]
    questions: list[Question]
    dropped_evidence: int


def parse_date(text: str) -> float:
    """'1:56 pm on 8 May, 2023' -> epoch seconds (0.0 when unreadable)."""
    for fmt in ("%I:%M %p on %d %B, %Y", "%I:%M %p on %d %b, %Y"):
        try:
            return datetime.strptime(text.strip(), fmt).timestamp()
        except ValueError:
            continue
    return 0.0


def turn_text(turn: dict[str, Any]) -> str:
    text = f"{turn['speaker']}: {turn['text']}"
    if turn.get("blip_caption"):
        text += f" [shares {turn['blip_caption']}]"
    return text


def load_conversation(path: Path, *, with_context: bool = True) -> Conversation:
    d = json.loads(path.read_text())
    sessions = sorted(int(m.group(1)) for k in d if (m := re.fullmatch(r"session_(\d+)", k)))
    turns: list[Turn] = []
    for s in sessions:
        when = parse_date(str(d.get(f"session_{s}_date_time", "")))
        previous = ""
        for raw in d[f"session_{s}"]:
            text = turn_text(raw)
            turns.append(Turn(raw["dia_id"], text, previous if with_context else "", when))
            previous = text
    ids = {t.dia_id for t in turns}
    questions, dropped = [], 0
    for q in d.get("qa", []):
        if q.get("category") not in (1, 2, 3, 4):
            continue
        evidence: list[str] = []
        for e in q.get("evidence") or []:
            for x in re.split(r"[;,\s]+", str(e)):
                if not x:
                    continue
                if x not in ids:
                    dropped += 1
                elif x not in evidence:
                    evidence.append(x)
        if evidence:
            questions.append(Question(str(q["question"]), int(q["category"]), evidence))
    return Conversation(path.stem, turns, questions, dropped)


class CachedEmbedder:
    """The real model behind the product's persisted embedding cache (text hash + model id)."""

    def __init__(self, cache_path: Path | None) -> None:
        from alma_hooks.embedding import get_embedder

        self.model = get_embedder()
        self.model_id = self.model.model_id
        self.cache = EmbeddingCache(cache_path, self.model_id, capacity=100_000)
        self.seconds = 0.0

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        from alma_hooks.retrieval.cache import text_key

        missing = [t for t in dict.fromkeys(texts) if not self.cache.has(text_key(t, self.model_id))]
        started = time.perf_counter()
        fresh = dict(zip(missing, self.model.embed(missing))) if missing else {}
        self.seconds += time.perf_counter() - started
        return [self.cache.get_or_compute(t, lambda x: fresh[x] if x in fresh else self.model.embed([x])[0])
                for t in texts]

    def embed_one(self, text: str) -> list[float]:
        return self.embed([text])[0]


@dataclasses.dataclass
class Haystack:
    """One conversation loaded into its own store and scope."""

    conv: Conversation
    store: SQLiteStore
    scope: Scope
    config: Any
    ids: dict[str, str]  # memory id -> dia_id


def build(conv: Conversation, workdir: Path, embedder: CachedEmbedder) -> Haystack:
    project = f"locomo-{conv.name}"
    env = {"ALMA_HOME": str(workdir / "home"), "ALMA_PROJECT_ID": project, "ALMA_USER_ID": "bench",
           "ALMA_DB": str(workdir / f"{conv.name}.db")}
    config = load_config(workdir, env)
    store = SQLiteStore(config.db_path, config.policy, actor="bench")
    scope = Scope(config.project_id, "main", config.user_id)
    ids = {}
    for t in conv.turns:
        m = store.add(scope, DomainKnowledge(project_id=config.project_id, agent=ANY, fact=t.text, context=t.context,
                                             created_at=t.when, updated_at=t.when, confidence=0.9),
                      reason="locomo turn")
        ids[m.id] = t.dia_id
    embed_pending(store, embedder)
    return Haystack(conv, store, scope, config, ids)


def rank_all(h: Haystack, embedder: CachedEmbedder, k: int, limit: int | None,
             lexical_weight: float | None = None) -> dict[str, list[list[str]]]:
    """dia_ids of the top ``k`` per question, for each ranking."""
    retriever = Retriever(h.store, h.config, embed=embedder.embed_one)
    if lexical_weight is not None:
        retriever.lexical_weight = lexical_weight
    out: dict[str, list[list[str]]] = {r: [] for r in RANKINGS}
    for q in h.conv.questions[:limit]:
        qvec = embedder.embed_one(q.text)
        out["engine"].append([h.ids[x.memory.id] for x in retriever.search(h.scope, q.text, k=k, vector=qvec)])
        out["vector"].append([h.ids[x.memory.id] for x in h.store.knn(h.scope, qvec, k, ["knowledge"])])
        out["lexical"].append([h.ids[x.memory.id] for x in h.store.lexical(h.scope, q.text, k, ["knowledge"])])
    return out


def score(ranked: list[list[str]], questions: Sequence[Question], ks: Sequence[int]) -> dict[str, float]:
    """Sums (not means) of recall@k and reciprocal ranks, so conversations pool by question."""
    sums = {f"r@{k}": 0.0 for k in ks} | {"mrr": 0.0}
    for got, q in zip(ranked, questions):
        ev = set(q.evidence)
        for k in ks:
            sums[f"r@{k}"] += len(ev & set(got[:k])) / len(ev)
        sums["mrr"] += next((1 / (i + 1) for i, g in enumerate(got) if g in ev), 0.0)
    return sums


def pooled(parts: Sequence[tuple[dict[str, float], int]]) -> dict[str, float]:
    n = sum(c for _, c in parts) or 1
    keys = parts[0][0].keys() if parts else ()
    return {key: round(sum(s[key] for s, _ in parts) / n, 4) for key in keys}


def cross_validate(stacks: Sequence[Haystack], embedder: CachedEmbedder, ks: Sequence[int],
                   limit: int | None) -> list[dict[str, Any]]:
    """Tune the lexical weight on 3 conversations, check it on the other 2, for every split."""
    kmax = max(ks)
    table = {}  # (stack index, weight) -> (sums, n)
    for i, h in enumerate(stacks):
        qs = h.conv.questions[:limit]
        for w in CV_GRID:
            ranked = rank_all(h, embedder, kmax, limit, lexical_weight=w)["engine"]
            table[i, w] = (score(ranked, qs, ks), len(qs))
    splits = []
    for train in itertools.combinations(range(len(stacks)), 3):
        test = [i for i in range(len(stacks)) if i not in train]
        best = max(CV_GRID, key=lambda w: pooled([table[i, w] for i in train])[f"r@{ks[0]}"])
        splits.append({"tune": [stacks[i].conv.name for i in train], "check": [stacks[i].conv.name for i in test],
                       "lexical_weight": best, f"tune_r@{ks[0]}": pooled([table[i, best] for i in train])[f"r@{ks[0]}"],
                       f"check_r@{ks[0]}": pooled([table[i, best] for i in test])[f"r@{ks[0]}"]})
    return splits


def run(data: Path, ks: Sequence[int], *, limit: int | None = None, only: Sequence[str] = (),
        with_context: bool = True, cv: bool = False, cache: bool = True) -> dict[str, Any]:
    files = sorted(data.glob("conv-*.json"))
    if only:
        files = [f for f in files if f.stem.split("-")[-1] in only or f.stem in only]
    if not files:
        raise SystemExit(f"no conv-*.json under {data}")
    cache_path = Path(tempfile.gettempdir()) / "alma-bench" / "embeddings.db" if cache else None
    embedder = CachedEmbedder(cache_path)
    started = time.perf_counter()
    result: dict[str, Any] = {}
    per_conv: dict[str, Any] = {}
    parts: dict[str, list[tuple[dict[str, float], int]]] = {r: [] for r in RANKINGS}
    with tempfile.TemporaryDirectory(prefix="alma-locomo-") as tmp:
        stacks = []
        for f in files:
            conv = load_conversation(f, with_context=with_context)
            h = build(conv, Path(tmp), embedder)
            stacks.append(h)
            qs = conv.questions[:limit]
            ranked = rank_all(h, embedder, max(ks), limit)
            per_conv[conv.name] = {"turns": len(conv.turns), "questions": len(qs),
                                   "dropped_evidence_ids": conv.dropped_evidence}
            for r in RANKINGS:
                sums = score(ranked[r], qs, ks)
                parts[r].append((sums, len(qs)))
                per_conv[conv.name][r] = pooled([(sums, len(qs))])
        for r in RANKINGS:
            result[r] = pooled(parts[r])
        if cv and len(stacks) >= 5:
            splits = cross_validate(stacks, embedder, ks, limit)
            key = f"check_r@{ks[0]}"
            result["cross_validation"] = {
                "grid": list(CV_GRID), "splits": splits,
                "mean_check": round(sum(s[key] for s in splits) / len(splits), 4),
                "mean_tune": round(sum(s[f"tune_r@{ks[0]}"] for s in splits) / len(splits), 4)}
        for h in stacks:
            h.store.close()
    embedder.cache.close()
    result["conversations"] = per_conv
    result["questions"] = sum(c for _, c in parts["engine"])
    result["context"] = with_context
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["embedding_seconds"] = round(embedder.seconds, 1)
    return result


def print_table(result: dict[str, Any], ks: Sequence[int]) -> None:
    cols = [f"r@{k}" for k in ks] + ["mrr"]
    print(f"LoCoMo evidence retrieval: {result['questions']} questions, "
          f"{len(result['conversations'])} conversations, context={'on' if result['context'] else 'off'}")
    print(f"{'ranking':<10}" + "".join(f"{c:>8}" for c in cols))
    for r in RANKINGS:
        print(f"{r:<10}" + "".join(f"{result[r][c]:>8.3f}" for c in cols))
    print()
    print(f"{'conversation':<14}{'turns':>6}{'qs':>5}" + "".join(f"{r + ' r@' + str(ks[0]):>16}" for r in RANKINGS))
    for name, c in result["conversations"].items():
        print(f"{name:<14}{c['turns']:>6}{c['questions']:>5}"
              + "".join(f"{c[r][f'r@{ks[0]}']:>16.3f}" for r in RANKINGS))
    cv = result.get("cross_validation")
    if cv:
        print()
        print(f"cross-validation of the lexical weight (grid {cv['grid']}), tune on 3, check on 2:")
        for s in cv["splits"]:
            print(f"  tune {','.join(s['tune']):<28} w={s['lexical_weight']:<4} "
                  f"tune r@{ks[0]} {s[f'tune_r@{ks[0]}']:.3f}  check {','.join(s['check']):<20} "
                  f"r@{ks[0]} {s[f'check_r@{ks[0]}']:.3f}")
        print(f"  mean: tune {cv['mean_tune']:.3f}, check {cv['mean_check']:.3f}")
    print(f"\n{result['seconds']} s ({result['embedding_seconds']} s embedding)")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of conv-*.json (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--k", default="5,10", help="cut-offs, comma-separated (default: 5,10)")
    p.add_argument("--limit-questions", type=int, default=None, help="first N questions per conversation")
    p.add_argument("--conversations", default="", help="only these, e.g. 26,30")
    p.add_argument("--no-context", action="store_true", help="index each turn without the turn before it")
    p.add_argument("--cv", action="store_true", help="cross-validate the lexical weight (3 tune / 2 check)")
    p.add_argument("--no-cache", action="store_true", help="do not use the persisted embedding cache")
    args = p.parse_args(argv)
    ks = sorted({int(x) for x in args.k.split(",") if x.strip()})
    only = [x.strip() for x in args.conversations.split(",") if x.strip()]
    result = run(args.data, ks, limit=args.limit_questions, only=only, with_context=not args.no_context,
                 cv=args.cv, cache=not args.no_cache)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result, ks)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Ranking: how relevant, recent, successful and trusted a memory is.

Pure functions over memories and numbers; stdlib only (runs in hook processes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..config import settings_from
from ..types import AntiPattern, Heuristic, Memory, Outcome

DAY = 86400.0


@dataclass(frozen=True)
class Weights:
    """Weights of the final score; relevance dominates so nothing irrelevant ranks high."""

    similarity: float = 0.55
    recency: float = 0.15
    success: float = 0.15
    confidence: float = 0.15

    @classmethod
    def from_config(cls, d: dict[str, float] | None) -> Weights:
        return settings_from(cls, d)  # type: ignore[no-any-return]


def recency(memory: Memory, now: float, half_life_days: float) -> float:
    """1.0 for a memory validated or updated just now, halving every ``half_life_days``."""
    when = max(memory.updated_at, getattr(memory, "last_validated", 0.0) or 0.0)
    age_days = max(0.0, now - when) / DAY
    return 0.5 ** (age_days / max(half_life_days, 1e-6))


def success_rate(memory: Memory) -> float:
    """Laplace-smoothed success rate where a memory carries evidence; 0.5 where it has none."""
    if isinstance(memory, Heuristic):
        return (memory.successes + 1) / (memory.trials + 2)
    if isinstance(memory, Outcome):
        return 0.75 if memory.success else 0.25
    if isinstance(memory, AntiPattern):
        # an anti-pattern is evidence of failure seen often: more sightings, more useful a warning
        return 1 - 0.5 / (1 + memory.occurrence_count)
    return 0.5


def effective_confidence(memory: Memory, now: float, half_life_days: float) -> float:
    """Confidence after decay: a learned memory's halves every ``half_life_days`` since its last validation."""
    if not isinstance(memory, (Heuristic, AntiPattern)):
        return memory.confidence
    age_days = max(0.0, now - memory.last_validated) / DAY
    return memory.confidence * 0.5 ** (age_days / max(half_life_days, 1e-6))


def wilson_lower_bound(successes: int, trials: int, z: float = 1.96) -> float:
    """Lower bound of the 95% Wilson interval: '2 of 2' (0.34) ranks below '40 of 45' (0.77)."""
    if trials <= 0:
        return 0.0
    p = successes / trials
    denom = 1 + z * z / trials
    centre = p + z * z / (2 * trials)
    margin = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    return max(0.0, (centre - margin) / denom)


def final_score(memory: Memory, relevance: float, now: float, weights: Weights, half_life_days: float) -> float:
    """The ranking score of a memory already judged relevant (relevance in [0, 1])."""
    return (weights.similarity * relevance
            + weights.recency * recency(memory, now, half_life_days)
            + weights.success * success_rate(memory)
            + weights.confidence * max(0.0, min(1.0, memory.confidence)))


def fuse(similarity: float | None, lexical: float | None) -> float:
    """Relevance in [0, 1] from cosine similarity and a normalised lexical score (either may be absent).

    Both signals are first put on one scale: cosine of MiniLM is ~0.1 for
    unrelated and ~0.5+ for related text, so it is stretched from [0.1, 0.7];
    the lexical score arrives already in [0, 1]. Agreement of the two is
    rewarded by taking the larger plus a share of the smaller.
    """
    s = None if similarity is None else max(0.0, min(1.0, (similarity - 0.1) / 0.6))
    if s is None and lexical is None:
        return 0.0
    if s is None:
        return lexical or 0.0
    if lexical is None:
        return s
    hi, lo = max(s, lexical), min(s, lexical)
    return min(1.0, hi + 0.35 * lo)

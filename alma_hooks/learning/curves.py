"""Learning curves: how an agent's success rate and its heuristics changed over time.

Read only, through the store's scoped APIs, one (project, agent) scope at a time:

- outcomes: the agent's live outcomes, plus those that forgetting (or a person)
  removed, from the snapshot their delete audit row keeps, so a curve does not
  lose its start when old outcomes are pruned;
- heuristics: their audit rows; ``create`` is one learned, ``delete`` one retired
  (by learning, forgetting or a person: the heuristic stopped being injected).

Time buckets are UTC days or weeks (starting on Monday), from the first event to
``now``; ``every=N`` makes one bucket of each N consecutive outcomes instead.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import AlmaError
from ..storage.base import Store
from ..types import ANY, Memory, Scope

DAY = 86400.0
PERIODS = {"day": DAY, "week": 7 * DAY}
#: 1970-01-05, the first Monday after the epoch: week buckets start on Mondays (UTC).
_MONDAY = 4 * DAY
#: Enough rows for any real history; the store applies it after its filters.
_ALL = 10_000_000
SPARK = "▁▂▃▄▅▆▇█"


@dataclass
class Bucket:
    """One step of a curve: what happened in ``[start, end)``."""

    start: float
    end: float
    outcomes: int = 0
    successes: int = 0
    learned: int = 0
    retired: int = 0

    @property
    def success_rate(self) -> float | None:
        return self.successes / self.outcomes if self.outcomes else None

    def to_dict(self) -> dict[str, Any]:
        rate = self.success_rate
        return {"start": self.start, "end": self.end, "outcomes": self.outcomes, "successes": self.successes,
                "success_rate": None if rate is None else round(rate, 4),
                "heuristics_learned": self.learned, "heuristics_retired": self.retired}


@dataclass
class Curve:
    """The learning curve of one agent in one project."""

    project_id: str
    agent: str
    every: str
    buckets: list[Bucket] = field(default_factory=list)

    @property
    def outcomes(self) -> int:
        return sum(b.outcomes for b in self.buckets)

    @property
    def successes(self) -> int:
        return sum(b.successes for b in self.buckets)

    @property
    def learned(self) -> int:
        return sum(b.learned for b in self.buckets)

    @property
    def retired(self) -> int:
        return sum(b.retired for b in self.buckets)

    def to_dict(self) -> dict[str, Any]:
        return {"project_id": self.project_id, "agent": self.agent, "every": self.every,
                "outcomes": self.outcomes, "successes": self.successes,
                "heuristics_learned": self.learned, "heuristics_retired": self.retired,
                "buckets": [b.to_dict() for b in self.buckets]}


def parse_every(value: str | int) -> str | int:
    """``day``, ``week`` or a whole number of outcomes per bucket; anything else is an :class:`AlmaError`."""
    text = str(value).strip().lower()
    if text in PERIODS:
        return text
    if text.isdigit() and 0 < int(text) <= 100_000:
        return int(text)
    raise AlmaError(f"invalid curve step {value!r}", "use day, week, or a number of outcomes such as 10")


def outcome_history(store: Store, scope: Scope) -> list[tuple[float, bool]]:
    """(time, success) of every outcome of the scope's agent, oldest first, removed ones included."""
    seen: dict[str, tuple[float, bool]] = {}
    for row in store.audit_log(scope, _ALL, types=["outcome"], actions=["delete"], with_snapshot=True):
        try:
            snap = json.loads(row["snapshot"])
            seen[row["memory_id"]] = (float(snap.get("timestamp") or snap["created_at"]), bool(snap["success"]))
        except (ValueError, KeyError, TypeError):
            continue  # a row without a usable snapshot adds nothing to the curve
    for m in store.list(scope, ["outcome"], limit=_ALL):
        if m.agent == scope.agent:
            seen[m.id] = (float(getattr(m, "timestamp", 0.0) or m.created_at), bool(getattr(m, "success", False)))
    return sorted(seen.values())


def heuristic_history(store: Store, scope: Scope) -> tuple[list[float], list[float]]:
    """Times the scope's agent learned a heuristic, and times one was retired, oldest first."""
    learned, retired = [], []
    for row in store.audit_log(scope, _ALL, types=["heuristic"], actions=["create", "delete"]):
        if row["agent"] != scope.agent:
            continue
        (learned if row["action"] == "create" else retired).append(float(row["at"]))
    return sorted(learned), sorted(retired)


def confidence_history(store: Store, scope: Scope, memory: Memory) -> list[tuple[float, float]]:
    """(time, confidence) of each version of a visible memory, oldest first.

    Every update audit row keeps the memory as it was before the update, so its
    snapshot's ``updated_at`` and ``confidence`` are one earlier point; the memory
    as it is now is the last point.
    """
    points = []
    for row in store.audit_log(scope, _ALL, memory_id=memory.id, actions=["update"], with_snapshot=True):
        try:
            snap = json.loads(row["snapshot"])
            points.append((float(snap["updated_at"]), float(snap["confidence"])))
        except (ValueError, KeyError, TypeError):
            continue
    points.append((memory.updated_at, memory.confidence))
    return sorted(points)


def _period_start(t: float, period: str) -> float:
    step = PERIODS[period]
    offset = _MONDAY if period == "week" else 0.0
    return (t - offset) // step * step + offset


def _time_buckets(times: Sequence[float], period: str, now: float) -> list[Bucket]:
    step = PERIODS[period]
    start = _period_start(min(times), period)
    last = _period_start(max(now, max(times)), period)
    buckets = []
    while start <= last:
        buckets.append(Bucket(start, start + step))
        start += step
    return buckets


def _count_buckets(outcomes: Sequence[tuple[float, bool]], others: Sequence[float], n: int, now: float) -> list[Bucket]:
    starts = [outcomes[i][0] for i in range(0, len(outcomes), n)] or [min(others)]
    starts[0] = min([starts[0], *others])
    ends = [*starts[1:], max(now, *(t for t, _ in outcomes), *others) + 1e-6]
    return [Bucket(s, e) for s, e in zip(starts, ends)]


def _find(buckets: Sequence[Bucket], t: float) -> Bucket:
    for b in reversed(buckets):
        if t >= b.start:
            return b
    return buckets[0]


def learning_curve(store: Store, scope: Scope, every: str | int = "week", now: float | None = None) -> Curve:
    """The curve of ``scope``'s agent: success rate, heuristics learned and retired, per bucket."""
    learned, retired = heuristic_history(store, scope)
    return build_curve(scope.project_id, scope.agent, outcome_history(store, scope), learned, retired, every,
                       time.time() if now is None else now)


def build_curve(project_id: str, agent: str, outcomes: Sequence[tuple[float, bool]], learned: Sequence[float],
                retired: Sequence[float], every: str | int, now: float) -> Curve:
    """Bucket a history (outcomes oldest first) into a :class:`Curve`; no history, no buckets."""
    every = parse_every(every)
    curve = Curve(project_id, agent, every if isinstance(every, str) else f"{every} outcomes")
    times = [*(t for t, _ in outcomes), *learned, *retired]
    if not times:
        return curve
    if isinstance(every, str):
        curve.buckets = _time_buckets(times, every, now)
    else:
        curve.buckets = _count_buckets(outcomes, [*learned, *retired], every, now)
    for i, (t, ok) in enumerate(outcomes):
        b = curve.buckets[i // every] if isinstance(every, int) else _find(curve.buckets, t)
        b.outcomes += 1
        b.successes += int(ok)
    for t in learned:
        _find(curve.buckets, t).learned += 1
    for t in retired:
        _find(curve.buckets, t).retired += 1
    return curve


def project_curves(store: Store, project_id: str | None, user_id: str = "", every: str | int = "week",
                   now: float | None = None) -> list[Curve]:
    """One curve per agent of ``project_id`` (``None``: of every project) that has any history."""
    curves = []
    for pair in store.scopes():
        if ANY in (pair.project_id, pair.agent) or (project_id is not None and pair.project_id != project_id):
            continue
        curve = learning_curve(store, Scope(pair.project_id, pair.agent, user_id), every, now)
        if curve.buckets:
            curves.append(curve)
    return curves


# ---------------------------------------------------------------- terminal rendering

def sparkline(rates: Sequence[float | None]) -> str:
    """One character per rate in [0, 1]: ``▁`` for 0 up to ``█`` for 1, ``·`` where there is none."""
    return "".join("·" if r is None else SPARK[min(len(SPARK) - 1, int(r * (len(SPARK) - 1) + 0.5))] for r in rates)


def counts_line(counts: Sequence[int]) -> str:
    """One character per count: ``·`` for none, the digit up to 9, ``+`` above."""
    return "".join("·" if c == 0 else str(c) if c < 10 else "+" for c in counts)


def format_curves(curves: Sequence[Curve], last: int = 12) -> list[str]:
    """Lines for the terminal: per curve a success sparkline and heuristics learned/retired, newest ``last`` buckets."""
    if not curves:
        return ["No learning history yet (an outcome is recorded when a task ends)."]
    every = curves[0].every
    lines = [f"Learning curves, one step per {every} (last {last}); success {SPARK[0]} 0% .. {SPARK[-1]} 100%, "
             "· no outcomes:"]
    many_projects = len({c.project_id for c in curves}) > 1
    width = max(len(c.agent) for c in curves)
    for c in curves:
        shown = c.buckets[-last:]
        rates = [b.success_rate for b in shown]
        known = [r for r in rates if r is not None]
        trend = f"{known[0]:.0%} -> {known[-1]:.0%}" if known else "no outcomes"
        name = f"{c.agent:<{width}}"
        if many_projects:
            lines.append(f"  {c.project_id}")
        lines.append(f"  {name}  success  {sparkline(rates)}  {trend} ({c.outcomes} outcomes, "
                     f"{c.successes / c.outcomes:.0%} overall)" if c.outcomes else
                     f"  {name}  success  {sparkline(rates)}  {trend}")
        lines.append(f"  {'':<{width}}  learned  {counts_line([b.learned for b in shown])}  "
                     f"+{c.learned} heuristics")
        lines.append(f"  {'':<{width}}  retired  {counts_line([b.retired for b in shown])}  -{c.retired}")
    return lines

"""Forgetting, so memory never grows without bound: decay, staleness, pruning, event retention.

- Decay: a learned memory's effective confidence halves every
  ``forgetting.half_life_days`` since it was last validated
  (:func:`effective_confidence`; ranking uses it too). Nothing is rewritten
  for decay, so it never compounds.
- Staleness: learned memories (heuristics, anti-patterns, outcomes) neither
  retrieved nor validated for ``stale_days`` are removed.
- Pruning: learned memories whose effective confidence fell under
  ``min_confidence``, then the weakest beyond ``max_per_type`` per project,
  agent and type. Pinned memories are always kept; preferences and curated
  knowledge are never removed here (only by an explicit ``forget``).
- Retention: raw execution events of closed tasks older than
  ``event_retention_days`` (their outcome has been learned from).
Every removal goes through ``Store.delete`` (audited) or, for events, one audit note.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..config import Config
from ..retrieval.scoring import effective_confidence
from ..storage.base import Store
from ..types import Memory, Scope

DAY = 86400.0
LEARNED = ("heuristic", "anti_pattern", "outcome")


@dataclass
class ForgetReport:
    removed: list[tuple[str, str, str]] = field(default_factory=list)  # (id, type, reason)
    events_pruned: int = 0
    dry_run: bool = False

    def summary(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        return f"{verb} {len(self.removed)} memories and {self.events_pruned} old events"


def plan(memories: list[Memory], config: Config, now: float) -> list[tuple[Memory, str]]:
    """Which memories to remove, and why, without touching the store."""
    half_life = float(config.get("forgetting.half_life_days", 30))
    stale_s = float(config.get("forgetting.stale_days", 90)) * DAY
    min_conf = float(config.get("forgetting.min_confidence", 0.05))
    cap = int(config.get("forgetting.max_per_type", 500))
    doomed: dict[str, tuple[Memory, str]] = {}
    survivors: dict[str, list[Memory]] = {}
    for m in memories:
        if m.pinned or m.type not in LEARNED:
            continue
        last_active = max(m.updated_at, m.last_retrieved, getattr(m, "last_validated", 0.0))
        conf = effective_confidence(m, now, half_life)
        if now - last_active > stale_s:
            doomed[m.id] = (m, f"stale: unused for {(now - last_active) / DAY:.0f} days")
        elif m.type != "outcome" and conf < min_conf:
            doomed[m.id] = (m, f"confidence decayed to {conf:.3f} < {min_conf}")
        else:
            survivors.setdefault(f"{m.agent}/{m.type}", []).append(m)
    for group in survivors.values():
        if len(group) <= cap:
            continue
        group.sort(key=lambda m: (effective_confidence(m, now, half_life), m.updated_at), reverse=True)
        for m in group[cap:]:
            doomed[m.id] = (m, f"over the cap of {cap} per type")
    return list(doomed.values())


def run(store: Store, config: Config, scope: Scope, *, dry_run: bool = False, now: float | None = None) -> ForgetReport:
    """One forgetting pass over the memories of ``scope`` (its project and agent)."""
    now = time.time() if now is None else now
    report = ForgetReport(dry_run=dry_run)
    own = [m for m in store.list(scope, list(LEARNED), limit=1_000_000) if m.agent == scope.agent]
    for memory, reason in plan(own, config, now):
        report.removed.append((memory.id, memory.type, reason))
        if not dry_run:
            store.delete(scope, memory.id, reason=f"forgetting: {reason}")
    before = now - float(config.get("forgetting.event_retention_days", 14)) * DAY
    report.events_pruned = store.prune_events(scope, before, dry_run=dry_run)
    return report

"""Learning from outcomes: heuristics from repeated successes, anti-patterns from repeated failures.

The protocol, run after every closed task (``learn_from_outcome``):

1. scope: the agent must be configured and the task's domain (``domains.classify``)
   must be one it may learn; ``unclassified`` tasks are never learned from;
2. occurrences: the cluster of similar outcomes (same domain, task text similar
   by embedding cosine, or by word overlap when no embedder is at hand);
3. per strategy in the cluster, successes and trials (the strategy's key drops
   paths and values, so two runs of the same approach match);
4. a heuristic only when the best-supported strategy of the cluster (highest
   Wilson bound) has >= ``min_occurrences_for_heuristic`` successes and works
   more often than not; an existing heuristic of the cluster is reinforced, or
   replaced by a better strategy, but never overwritten when its confidence is
   high: the conflict is recorded for ``alma-hooks review``; a heuristic that
   now fails more often than it works is retired (audited delete);
5. an anti-pattern when a strategy failed >= ``min_failures_for_anti_pattern``
   times, fails more often than it works, and another one that works more often
   than not succeeded after it; one that now works more often than not is retired.
   Creating and retiring leave the tie in between alone, so one more outcome
   does not flip a memory back and forth.

Clusters are anchored on each new outcome, so one anchored at the edge of a
task type also holds a neighbouring type's outcomes. Hence: a memory "of the
cluster" is one learned mostly from the cluster's outcomes (a neighbouring
type's heuristic that shares a few outcomes is left alone), and an outcome
creates or swaps in only memories about a strategy it tried itself (or, for
a warning, the alternative that worked, unless a heuristic recommends the
strategy the warning would be about).

Counts are recomputed from the cluster each time, so learning is idempotent
and an outcome corrected by user feedback simply changes the counts.
Confidence is the Wilson lower bound of successes over trials.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .. import logs
from ..config import Config
from ..retrieval.scoring import wilson_lower_bound
from ..storage.base import Store
from ..types import AntiPattern, Heuristic, Memory, Outcome, Scope
from .domains import UNCLASSIFIED, classify

log = logs.get("alma_hooks.learning")

EmbedMany = Callable[[Sequence[str]], "Sequence[Sequence[float]] | None"]
LEXICAL_SIMILARITY = 0.34
SAME_DOMAIN_BONUS = 0.08
MAX_CLUSTER_SCAN = 400
_WORD = re.compile(r"[a-z0-9][a-z0-9_+#-]*")
_STOP = frozenset("a an the and or of to in on for with is are be it this that please can you fix make "
                  "add test tests check".split())
_WORDISH = re.compile(r"^[A-Za-z][A-Za-z:_-]*$")


@dataclass
class LearnResult:
    domain: str = UNCLASSIFIED
    refused: str = ""
    cluster: int = 0
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)


def strategy_key(strategy: str) -> str:
    """The approach of a strategy line without its paths and values.

    'Bash: npx playwright test tests/a.spec.ts --retries=0 -> Edit: file_path=x' -> 'bash npx playwright test --retries > edit'
    """
    keys: list[str] = []
    for step in re.split(r" → | -> ", strategy):
        tool, _, arg = step.partition(": ")
        tool = tool.strip().lower()
        if tool == "bash":
            key = " ".join(["bash", *_command_shape(arg)])
        elif tool in ("agent", "task"):
            key = f"agent {arg.split(':')[-2 if arg.count(':') > 1 else 0].strip()}" if arg else "agent"
        else:
            key = tool
        if key and key != "…" and (not keys or keys[-1] != key):
            keys.append(key)
    return " > ".join(keys)


_SETUP = frozenset(("cd", "pushd", "export", "source", ".", "set"))
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def _command_shape(command: str, skip_setup: bool = True) -> list[str]:
    """The program, its subcommands and its flag names: what makes an approach, not its arguments.

    Setup before the real command ('cd web &&', 'export X=1;', 'CI=1 npx ...') is skipped:
    every strategy run from a subdirectory would otherwise have the same shape, 'cd'.
    """
    shape: list[str] = []
    seen_flag = False
    skipping = False
    for w in command.replace(";", " ; ").split():
        if w in ("&&", "||", ";", "|"):
            if skipping or not shape:
                skipping = False
                continue
            break  # the first command of a pipeline says enough
        if skipping:
            continue
        if skip_setup and not shape and (w in _SETUP or _ASSIGNMENT.match(w)):
            skipping = w in _SETUP  # a setup command's arguments go too; an assignment is one word
            continue
        if w.startswith("-"):
            seen_flag = True
            shape.append(w.split("=", 1)[0])
        elif not seen_flag and len(shape) < 3 and _WORDISH.match(w):
            shape.append(w)
    if not shape and skip_setup:
        return _command_shape(command, skip_setup=False)  # nothing but setup: that is the approach
    return shape[:6]


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP}


def jaccard(a: str, b: str) -> float:
    wa, wb = _words(a), _words(b)
    return len(wa & wb) / len(wa | wb) if wa and wb else 0.0


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


def similar_outcomes(store: Store, scope: Scope, outcome: Outcome, *, threshold: float,
                     embed: EmbedMany | None = None, refused: Sequence[str] = (UNCLASSIFIED,)) -> list[Outcome]:
    """Outcomes of this scope whose tasks are similar to ``outcome``'s (itself included).

    Similarity of the task text decides, not the domain label: keyword
    classification of paraphrases is noisy ("form test" vs "test"), and a
    domain split would scatter one family of tasks over several clusters.
    Outcomes in a domain the agent may not learn never join.
    """
    pool = [m for m in store.list(scope, ["outcome"], limit=MAX_CLUSTER_SCAN)
            if isinstance(m, Outcome) and m.id != outcome.id and m.domain not in refused]
    similar: list[Outcome] = [outcome]
    if not pool:
        return similar
    vectors = embed([outcome.task_description, *(m.task_description for m in pool)]) if embed else None
    def close_enough(m: Outcome, sim: float, cut: float) -> bool:
        # the task type counts too: the same domain lowers the bar a little
        return sim >= cut or (bool(outcome.domain) and m.domain == outcome.domain and sim >= cut - SAME_DOMAIN_BONUS)

    if vectors is not None and len(vectors) == len(pool) + 1:
        anchor = vectors[0]
        similar += [m for m, v in zip(pool, vectors[1:]) if close_enough(m, _cosine(anchor, v), threshold)]
    else:
        similar += [m for m in pool
                    if close_enough(m, jaccard(outcome.task_description, m.task_description), LEXICAL_SIMILARITY)]
    return similar


@dataclass
class _Tally:
    successes: int = 0
    failures: int = 0
    strategy: str = ""
    description: str = ""
    last_error: str = ""
    first_failure: float = math.inf
    last_success: float = 0.0
    ids: list[str] = field(default_factory=list)

    @property
    def trials(self) -> int:
        return self.successes + self.failures


def tally(cluster: Sequence[Outcome]) -> dict[str, _Tally]:
    """Successes and failures per strategy key in a cluster."""
    out: dict[str, _Tally] = {}
    for o in sorted(cluster, key=lambda o: o.timestamp):
        if o.success and o.failed_strategy:  # what failed before the success is a failure of its own
            _count(out, o.failed_strategy, dataclasses.replace(o, success=False))
        _count(out, o.strategy_used, o)
    return out


def _count(out: dict[str, _Tally], strategy: str, o: Outcome) -> None:
    key = strategy_key(strategy)
    if key:
        t = out.setdefault(key, _Tally())
        t.ids.append(o.id)
        if o.success:
            t.successes += 1
            t.last_success = o.timestamp
            t.strategy, t.description = strategy, o.task_description
        else:
            t.failures += 1
            t.first_failure = min(t.first_failure, o.timestamp)
            t.last_error = o.error or o.feedback or t.last_error
            if not t.strategy:
                t.strategy, t.description = strategy, o.task_description


def _clip(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _condition(domain: str, description: str) -> str:
    return f"{domain.replace('_', ' ')} tasks like \"{_clip(description, 140)}\""


def learn_from_outcome(store: Store, config: Config, scope: Scope, outcome: Outcome, *,
                       embed: EmbedMany | None = None, now: float | None = None) -> LearnResult:
    """Run the learning protocol for one closed task (see the module docstring)."""
    now = time.time() if now is None else now
    result = LearnResult()
    profile = config.policy.profile(scope.agent)
    if profile is None:
        result.refused = f"agent {scope.agent!r} is not configured to learn"
        log.info("learning skipped: %s", result.refused)
        return result
    # the task says what it is about; the steps (full of "test", "npm", ...) only break a tie with nothing
    domain = outcome.domain or classify(outcome.task_description, profile)
    if domain == UNCLASSIFIED:
        domain = classify(f"{outcome.task_description} {outcome.strategy_used}", profile)
    result.domain = domain
    if domain == UNCLASSIFIED:
        return result
    refusal = profile.check_domain(domain)
    if refusal:
        result.refused = refusal
        log.info("learning refused: %s", refusal)
        return result
    if outcome.domain != domain:
        outcome = store.update(scope, dataclasses.replace(outcome, domain=domain), reason="classified")  # type: ignore[assignment]
    cluster = similar_outcomes(store, scope, outcome, threshold=float(config.get("learning.outcome_similarity", 0.45)),
                               embed=embed, refused=(UNCLASSIFIED, *profile.cannot_learn))
    result.cluster = len(cluster)
    tallies = tally(cluster)
    ids = {o.id for o in cluster}
    # what this outcome tried: only those strategies can gain a new memory from it
    tried = {k for k in (strategy_key(outcome.strategy_used), strategy_key(outcome.failed_strategy)) if k}
    _learn_heuristic(store, config, scope, domain, tallies, ids, tried, profile.min_occurrences_for_heuristic,
                     now, result)
    _learn_anti_patterns(store, config, scope, domain, tallies, ids, tried, now, result)
    return result


def _existing(store: Store, scope: Scope, mtype: str, domain: str, ids: set[str]) -> list[Memory]:
    """Memories of ``mtype`` learned from any outcome of this cluster."""
    return [m for m in store.list(scope, [mtype], limit=1000) if ids.intersection(m.source_ids)]


def _works(t: _Tally) -> bool:
    """The strategy works more often than not on these tasks."""
    return t.successes > t.failures


def _mostly_from(m: Memory, ids: set[str]) -> bool:
    """At least half of what ``m`` was learned from is in this cluster."""
    return 2 * len(ids.intersection(m.source_ids)) >= len(set(m.source_ids))


def _best(tallies: dict[str, _Tally], min_occ: int) -> tuple[str, _Tally] | None:
    """The cluster's best-supported strategy (Wilson bound) if it has earned a heuristic, else None.

    While a strategy with better support has fewer than ``min_occ`` successes,
    the cluster is undecided: a heuristic for the runner-up would steer every
    later task away from the strategy that looks better.
    """
    ranked = sorted(tallies.items(), key=lambda kv: (wilson_lower_bound(kv[1].successes, kv[1].trials),
                                                      kv[1].successes), reverse=True)
    if not ranked:
        return None
    key, t = ranked[0]
    return (key, t) if t.successes >= min_occ and _works(t) else None


def _learn_heuristic(store: Store, config: Config, scope: Scope, domain: str, tallies: dict[str, _Tally],
                     ids: set[str], tried: set[str], min_occ: int, now: float, result: LearnResult) -> None:
    best = _best(tallies, min_occ)
    if best is not None and best[0] not in tried:
        # The outcome is about another strategy: it may weaken or retire heuristics, but
        # not create or swap one. A cluster anchored on a task at the edge of its type
        # would otherwise hand a neighbouring type's best strategy to this type's heuristic.
        best = None
    high = float(config.get("learning.high_confidence", 0.7))
    kept: Heuristic | None = None  # this cluster's heuristic of the best strategy, once there is one
    conflict = False
    for h in _existing(store, scope, "heuristic", domain, ids):
        assert isinstance(h, Heuristic)
        own = tallies.get(h.strategy_key)
        if best is not None and h.strategy_key == best[0]:
            if kept is None:
                kept = h
                _update_heuristic(store, scope, h, h.strategy_key, best[1], now, result, "reinforced")
            continue
        if not _mostly_from(h, ids):
            continue  # a neighbouring task type's heuristic: its own cluster decides about it
        if h.confidence >= high and best is not None:
            reason = (f"conflict: {h.id} ({h.strategy}, conf {h.confidence:.2f}) vs {best[1].strategy} "
                      f"({best[1].successes}/{best[1].trials})")
            store.note(scope, h, "conflict", reason)
            result.conflicts.append(h.id)
            conflict = True
            if own is not None:
                _update_heuristic(store, scope, h, h.strategy_key, own, now, result, "reinforced")
            continue
        better = best is not None and (own is None or wilson_lower_bound(best[1].successes, best[1].trials)
                                       > wilson_lower_bound(own.successes, own.trials))
        if better and kept is None:
            assert best is not None
            kept = _update_heuristic(store, scope, h, best[0], best[1], now, result, "replaced by a better strategy")
        elif better or (own is not None and own.failures > own.successes):
            why = "superseded by a better strategy" if better else f"retired: worked {own.successes} of {own.trials} times"  # type: ignore[union-attr]
            store.delete(scope, h.id, reason=why)
            result.updated.append(h.id)
        elif own is not None:
            _update_heuristic(store, scope, h, h.strategy_key, own, now, result, "reinforced")
    if best is None or kept is not None or conflict:
        return
    key, t = best
    h = Heuristic(project_id=scope.project_id, agent=scope.agent, domain=domain,
                  condition=_condition(domain, t.description), strategy=_clip(t.strategy, 300), strategy_key=key,
                  occurrence_count=t.successes, successes=t.successes, trials=t.trials,
                  confidence=wilson_lower_bound(t.successes, t.trials), last_validated=now, source_ids=t.ids[-50:])
    store.add(scope, h, reason=f"{t.successes} similar successful outcomes")
    result.created.append(h.id)


def _update_heuristic(store: Store, scope: Scope, h: Heuristic, key: str, t: _Tally, now: float,
                      result: LearnResult, reason: str) -> Heuristic:
    replaced = key != h.strategy_key
    changed = dataclasses.replace(
        h, strategy_key=key, strategy=_clip(t.strategy, 300) if replaced else h.strategy,
        condition=_condition(h.domain, t.description) if replaced else h.condition,
        occurrence_count=t.successes, successes=t.successes, trials=t.trials,
        confidence=wilson_lower_bound(t.successes, t.trials), last_validated=now,
        source_ids=list(dict.fromkeys([*(() if replaced else h.source_ids), *t.ids]))[-50:])
    if changed != h:
        result.updated.append(h.id)
        return store.update(scope, changed, reason=reason)  # type: ignore[return-value]
    return h


def _recommended(store: Store, scope: Scope) -> set[str]:
    return {m.strategy_key for m in store.list(scope, ["heuristic"], limit=1000) if isinstance(m, Heuristic)}


def _learn_anti_patterns(store: Store, config: Config, scope: Scope, domain: str, tallies: dict[str, _Tally],
                         ids: set[str], tried: set[str], now: float, result: LearnResult) -> None:
    min_fail = int(config.get("learning.min_failures_for_anti_pattern", 2))
    existing: dict[str, AntiPattern] = {}
    for m in sorted(_existing(store, scope, "anti_pattern", domain, ids),
                    key=lambda m: len(ids.intersection(m.source_ids))):
        if isinstance(m, AntiPattern) and _mostly_from(m, ids):  # else another task type's warning
            existing[m.strategy_key] = m  # the one learned most from this cluster wins
    for key, t in tallies.items():
        old = existing.get(key)
        if old is not None and _works(t):
            store.delete(scope, old.id, reason=f"retired: worked {t.successes} of {t.trials} times")
            result.updated.append(old.id)
            continue
        if t.failures < min_fail or t.failures <= t.successes:
            continue  # a strategy that works as often as it fails is no anti-pattern
        better = [(k, o) for k, o in tallies.items()
                  if k != key and _works(o) and o.last_success >= t.first_failure]
        if not better:
            if old is not None and old.alternative:  # the alternative stopped working: do not keep suggesting it
                store.update(scope, dataclasses.replace(old, alternative=""), reason="alternative no longer works")
                result.updated.append(old.id)
            continue
        alt_key, alt = max(better, key=lambda kv: (wilson_lower_bound(kv[1].successes, kv[1].trials), kv[0]))
        why = _clip(t.last_error, 160) or f"it failed {t.failures} of {t.trials} times"
        fields = dict(pattern=f"{_clip(t.strategy, 160)} (on tasks like \"{_clip(t.description, 80)}\")",
                      why=why, alternative=_clip(alt.strategy, 160), occurrence_count=t.failures,
                      confidence=wilson_lower_bound(t.failures, t.trials), last_validated=now)
        if old is None:
            if key not in tried and (alt_key not in tried or key in _recommended(store, scope)):
                # First-hand evidence only (see _learn_heuristic): the outcome tried the strategy, or it
                # is the alternative that worked, and then not against a strategy a heuristic recommends.
                continue
            ap = AntiPattern(project_id=scope.project_id, agent=scope.agent, domain=domain, strategy_key=key,
                             source_ids=t.ids[-50:], **fields)  # type: ignore[arg-type]
            store.add(scope, ap, reason=f"failed {t.failures}x, then {alt_key!r} worked")
            result.created.append(ap.id)
        else:
            changed = dataclasses.replace(old, source_ids=list(dict.fromkeys([*old.source_ids, *t.ids]))[-50:],
                                          **fields)  # type: ignore[arg-type]
            if (changed.occurrence_count, changed.alternative, changed.why) != (
                    old.occurrence_count, old.alternative, old.why):
                store.update(scope, changed, reason="seen again")
                result.updated.append(old.id)

"""The sync worker's one retry policy (the Cosmos SDK's own retries are switched off, see ``cosmos.py``).

- 429: wait what the service asked for (``x-ms-retry-after-ms``), capped.
- 408, 449, 5xx, timeouts and dropped connections: capped exponential backoff
  with jitter (half fixed, half random, so a crowd of replicas spreads out).
- Bounded: after ``max_attempts`` the call fails with :class:`Exhausted` and the
  item stays queued for the next run.
- Anything else is not retried here: the caller decides (poison, conflict, fatal).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Verdict:
    """What a failure means: ``retry`` (transient), ``poison`` (this item will never go through),
    ``fatal`` (nothing will: credentials, permissions), ``conflict`` (lost a race: re-read),
    ``missing`` (no such item)."""

    kind: str
    message: str
    retry_after_s: float | None = None
    status: int | None = None


class Exhausted(Exception):
    """A transient failure outlasted the retry budget."""

    def __init__(self, verdict: Verdict, attempts: int) -> None:
        super().__init__(f"{verdict.message} (gave up after {attempts} attempts)")
        self.verdict = verdict
        self.attempts = attempts


@dataclass
class RetryStats:
    """Counted across threads: how often the policy retried and how long it waited."""

    retries: int = 0
    throttled: int = 0
    waited_s: float = 0.0
    waits: list[float] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, wait: float, throttled: bool) -> None:
        with self._lock:
            self.retries += 1
            self.throttled += int(throttled)
            self.waited_s += wait
            self.waits.append(wait)


@dataclass
class RetryPolicy:
    """Bounded retries of transient failures; ``sleep`` and ``rand`` are injectable for tests."""

    classify: Callable[[BaseException], Verdict]
    max_attempts: int = 6
    base_s: float = 0.2
    cap_s: float = 10.0
    max_retry_after_s: float = 30.0
    sleep: Callable[[float], None] = time.sleep
    rand: Callable[[], float] = random.random
    stats: RetryStats = field(default_factory=RetryStats)

    def delay(self, attempt: int, verdict: Verdict) -> float:
        """Seconds to wait before attempt ``attempt + 1``."""
        if verdict.retry_after_s is not None:
            # honour the service's hint (never less), plus a little jitter so throttled replicas do not return in step
            hint = min(self.max_retry_after_s, max(0.0, verdict.retry_after_s))
            return hint + self.rand() * min(0.1, hint * 0.1 + 0.01)
        exp = min(self.cap_s, self.base_s * (2 ** (attempt - 1)))
        return exp / 2 + self.rand() * exp / 2

    def call(self, fn: Callable[[], T]) -> T:
        """``fn()``, retried while it fails transiently; other failures propagate unchanged."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return fn()
            except Exception as e:  # noqa: BLE001 - classified below; non-transient ones re-raised as they are
                verdict = self.classify(e)
                if verdict.kind != "retry":
                    raise
                if attempt >= self.max_attempts:
                    raise Exhausted(verdict, attempt) from e
                wait = self.delay(attempt, verdict)
                self.stats.record(wait, verdict.status == 429)
                self.sleep(wait)

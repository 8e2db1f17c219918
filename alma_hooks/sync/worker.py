"""The sync worker: push the outbox to the team store, pull the team's changes back.

Push, per outbox entry (the newest row of one memory), retried as a whole:
read the document (point read), and if the team store already holds this key
or a newer one, do nothing; else create it (409 → someone else did: re-read)
or replace it only if its ETag is still the one read (412 → re-read). A
first version skips the read and tries the create at once (409 → the same
read-compare). So
replaying a batch after a crash changes nothing, two replicas racing on one
memory end with the larger ``(version, updated_at, origin)`` everywhere, and a
row leaves the outbox only after the store acknowledged it.

Pull: read the change feed of this project's partition from the persisted
continuation; each page is merged (:meth:`Replica.apply_remote`) and the new
continuation saved in one SQLite transaction, so a crash re-reads at most one
page, and merging it again changes nothing.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..config import KEYVAULT_PREFIX, Config, settings_from
from ..errors import AlmaError, ConfigError, SecretInConfig, SyncUnavailable
from ..storage.replica import MergeResult, OutboxEntry, Replica, feed_key
from ..storage.sqlite import SQLiteStore
from . import cosmos
from .cosmos import RaceLost, TeamStore, doc_key, from_doc, to_doc
from .keyvault import KeyVaultResolver
from .retry import Exhausted, RetryPolicy

log = logging.getLogger("alma_hooks.sync")
#: How often one item may lose a create/replace race before it counts as a transient failure.
MAX_RACES = 5
FATAL_FIX = ("check azure.cosmos_endpoint, the key behind azure.cosmos_key (Key Vault) and the account's "
             "firewall; then run `alma-hooks sync run` again (nothing queued was lost)")


@dataclass(frozen=True)
class SyncSettings:
    """``azure.sync.*`` of the configuration."""

    batch_size: int = 50
    concurrency: int = 8
    page_size: int = 100
    timeout_s: float = 10.0
    max_attempts: int = 6
    interval_s: float = 30.0

    @classmethod
    def from_config(cls, config: Config) -> SyncSettings:
        return settings_from(cls, config.get("azure.sync"))  # type: ignore[no-any-return]


@dataclass
class PushReport:
    written: int = 0      # the team store took our version
    unchanged: int = 0    # it already had this version, or a newer one (replay, or another replica won)
    dropped: int = 0      # queued, but forgotten locally before it was pushed: nothing to send
    parked: int = 0       # poison: refused by the store for good, kept with its error
    failed: int = 0       # transient failures outlasted the retries: still queued
    error: str = ""


@dataclass
class PullReport:
    pages: int = 0
    read: int = 0
    unreadable: int = 0   # documents that are not memories of any version we know
    merge: MergeResult = field(default_factory=MergeResult)
    error: str = ""


@dataclass
class RunReport:
    project_id: str
    push: PushReport
    pull: PullReport
    retries: int = 0
    throttled: int = 0
    waited_s: float = 0.0
    requests: int = 0
    request_charge: float = 0.0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.push.error or self.pull.error)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ok"] = self.ok
        return d


class SyncWorker:
    """Moves one project's memories between the local replica and the team store."""

    def __init__(self, store: SQLiteStore, team: TeamStore, project_id: str, *,
                 settings: SyncSettings | None = None, policy: RetryPolicy | None = None,
                 accept_model: str | None = None) -> None:
        self.replica = Replica(store)
        self.team = team
        self.project_id = project_id
        self.settings = settings or SyncSettings()
        self.policy = policy or RetryPolicy(cosmos.classify, max_attempts=self.settings.max_attempts)
        self.accept_model = accept_model

    # ------------------------------------------------------------ push
    def push(self, *, retry_parked: bool = False) -> PushReport:
        """Push every queued write of the project, batch by batch, until the outbox is empty or the store fails."""
        report = PushReport()
        if retry_parked:
            self.replica.unpark(self.project_id)
        with ThreadPoolExecutor(max(1, self.settings.concurrency), thread_name_prefix="alma-sync") as pool:
            while True:
                entries = self.replica.batch(self.project_id, self.settings.batch_size)
                if not entries:
                    return report
                results = list(pool.map(self._push_guarded, entries))
                # acknowledged rows leave the outbox now, whatever happened to the rest of the batch
                self.replica.done([e for e, outcome, _ in results if outcome in ("written", "unchanged", "dropped")],
                                  self.project_id)
                fatal = ""
                for entry, outcome, message in results:
                    if outcome in ("written", "unchanged", "dropped"):
                        setattr(report, outcome, getattr(report, outcome) + 1)
                    elif outcome == "poison":
                        log.warning("sync: parked %s: %s", entry.memory_id, message)
                        self.replica.failed(entry, message, park=True)
                        report.parked += 1
                    elif outcome == "failed":
                        self.replica.failed(entry, message, park=False)
                        report.failed += 1
                        report.error = report.error or message
                    else:
                        fatal = fatal or message
                if fatal:
                    raise SyncUnavailable(f"the team store refused the worker: {fatal}", FATAL_FIX)
                if report.failed:
                    return report  # the store is unwell: leave the rest queued for the next run

    def _push_guarded(self, entry: OutboxEntry) -> tuple[OutboxEntry, str, str]:
        try:
            return entry, self.policy.call(lambda: push_one(self.team, entry)), ""
        except Exhausted as e:
            return entry, "failed", str(e)
        except Exception as e:  # noqa: BLE001 - classified: poison parks the item, anything else stops the run
            verdict = cosmos.classify(e)
            return entry, ("poison" if verdict.kind == "poison" else "fatal"), verdict.message

    # ------------------------------------------------------------ pull
    def pull(self, *, full: bool = False) -> PullReport:
        """Merge the team's changes of this project since the last pull (from the beginning with ``full``)."""
        report = PullReport()
        if full:
            self.replica.set_state(feed_key(self.project_id), None)
        try:
            self.policy.call(lambda: self._pull_pages(report))
        except Exhausted as e:
            report.error = str(e)
        except AlmaError:
            raise  # the local replica's own errors (busy, read-only) say what they are
        except Exception as e:  # noqa: BLE001 - turned into one explained error below
            verdict = cosmos.classify(e)
            # refused credentials need a fix outside; anything else (a continuation the service no longer
            # accepts, a recreated container) is cured by reading the feed from the beginning
            fix = FATAL_FIX if verdict.status in (401, 403) else "run `alma-hooks sync run --full` to read the feed anew"
            raise SyncUnavailable(f"pulling from the team store failed: {verdict.message}", fix) from e
        return report

    def _pull_pages(self, report: PullReport) -> None:
        # restarts from the persisted continuation on every attempt: at most one page is read twice
        continuation = self.replica.state(feed_key(self.project_id))
        for docs, next_continuation in self.team.change_pages(self.project_id, continuation,
                                                              self.settings.page_size):
            changes = []
            for doc in docs:
                change = from_doc(doc)
                if change is None:
                    report.unreadable += 1
                else:
                    changes.append(change)
            state = {feed_key(self.project_id): next_continuation} if next_continuation else None
            report.merge.add(self.replica.apply_remote(self.project_id, changes, accept_model=self.accept_model,
                                                       state=state))
            report.pages += 1
            report.read += len(docs)

    # ------------------------------------------------------------ both
    def run_once(self, *, retry_parked: bool = False, full: bool = False) -> RunReport:
        """One push then one pull; a transient failure of either is in the report, never raised."""
        started = time.perf_counter()
        charge0, requests0 = self.team.charges.total, self.team.charges.requests
        stats = self.policy.stats
        retries0, throttled0, waited0 = stats.retries, stats.throttled, stats.waited_s
        push = self.push(retry_parked=retry_parked)
        pull = self.pull(full=full)
        return RunReport(self.project_id, push, pull, stats.retries - retries0, stats.throttled - throttled0,
                         round(stats.waited_s - waited0, 3), self.team.charges.requests - requests0,
                         round(self.team.charges.total - charge0, 2), round(time.perf_counter() - started, 3))


def push_one(team: TeamStore, entry: OutboxEntry) -> str:
    """Bring one entry to the team store; ``written``, ``unchanged`` (already there or older) or ``dropped``."""
    if entry.op == "upsert" and entry.memory is None:
        return "dropped"  # forgotten (or moved) before it was pushed: forgetting stays local
    doc = to_doc(entry)
    key = entry.key
    # A first version is nearly always new to the team store (ids are random): create it in one
    # request. If it exists (409: a replay of our own unacknowledged push), fall back to read-compare.
    create_first = entry.op == "upsert" and key is not None and key[0] == 1
    for _ in range(MAX_RACES):
        remote = None
        if not create_first:
            remote = team.read(entry.project_id, entry.memory_id)
            if remote is not None and key is not None and doc_key(remote) >= key:
                return "unchanged"
        try:
            if remote is None:
                team.create(doc)
            else:
                team.replace(doc, remote["_etag"])
            return "written"
        except Exception as e:
            if cosmos.classify(e).kind not in ("conflict", "missing"):
                raise
            # lost a race with another replica (or our own earlier, unacknowledged attempt): look again
            create_first = False
    raise RaceLost(f"{entry.memory_id} kept changing under us ({MAX_RACES} races)")


# ---------------------------------------------------------------- wiring for the CLI

def require_azure(config: Config) -> None:
    """Sync needs ``storage: azure`` and a Cosmos endpoint and key reference."""
    if config.get("storage") != "azure":
        raise ConfigError("team sync needs `storage: azure` in .alma/config.yaml",
                          "set storage: azure and azure.cosmos_endpoint / azure.cosmos_key (see README: Team scale)")
    if not config.get("azure.cosmos_endpoint"):
        raise ConfigError("azure.cosmos_endpoint is not set",
                          "set it to https://<account>.documents.azure.com:443/ in .alma/config.yaml")
    key_ref = config.get("azure.cosmos_key")
    if not key_ref:
        raise ConfigError("azure.cosmos_key is not set",
                          "store the account key in Key Vault and set azure.cosmos_key: keyvault://<vault>/<secret>")
    if not str(key_ref).startswith(KEYVAULT_PREFIX):
        raise SecretInConfig("azure.cosmos_key holds a plaintext secret",
                             "store it in Azure Key Vault and write keyvault://<vault>/<secret-name> instead")


def open_team_store(config: Config, *, resolver: KeyVaultResolver | None = None,
                    policy: RetryPolicy | None = None, **connect_options: Any) -> TeamStore:
    """Resolve the Cosmos key from Key Vault (in memory only) and connect, with the worker's retries."""
    require_azure(config)
    settings = SyncSettings.from_config(config)
    resolver = resolver or KeyVaultResolver(config)
    key = resolver.resolve(str(config.get("azure.cosmos_key")))
    policy = policy or RetryPolicy(cosmos.classify, max_attempts=settings.max_attempts)
    try:
        return policy.call(lambda: TeamStore.connect(
            str(config.get("azure.cosmos_endpoint")), key.reveal(), str(config.get("azure.database", "alma")),
            str(config.get("azure.container", "memories")), timeout_s=settings.timeout_s, **connect_options))
    except Exhausted as e:
        raise SyncUnavailable(f"cannot reach the team store: {e}", FATAL_FIX) from e
    except Exception as e:  # noqa: BLE001 - the SDK's many errors become one explained line
        raise SyncUnavailable(f"cannot open the team store: {cosmos.classify(e).message}", FATAL_FIX) from e


class WorkerLock:
    """One sync worker per database and project at a time (an advisory file lock beside the DB)."""

    def __init__(self, db_path: Path, project_id: str) -> None:
        digest = hashlib.sha1(f"{db_path}\0{project_id}".encode()).hexdigest()[:16]
        self.path = Path(db_path).with_name(f".sync-{digest}.lock")
        self._fd: int | None = None

    def __enter__(self) -> WorkerLock:
        fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SyncUnavailable("another `alma-hooks sync run` is working on this project's database",
                                  "wait for it, or stop it; its queue is the same as yours") from None
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def run(worker: SyncWorker, *, once: bool, retry_parked: bool = False, full: bool = False,
        on_report: Callable[[RunReport], None] | None = None, sleep: Callable[[float], None] = time.sleep,
        rounds: int | None = None) -> RunReport:
    """Run rounds of push + pull: one with ``once``, else until interrupted (or ``rounds`` rounds)."""
    done = 0
    while True:
        report = worker.run_once(retry_parked=retry_parked and done == 0, full=full and done == 0)
        done += 1
        if on_report is not None:
            on_report(report)
        if once or (rounds is not None and done >= rounds):
            return report
        sleep(worker.settings.interval_s)

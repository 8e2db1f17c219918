"""Shared by the viewer tests: a seeded project on a real SQLite file, and plain HTTP requests."""

from __future__ import annotations

import dataclasses
import http.client
import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alma_hooks.config import Config, load_config
from alma_hooks.storage.sqlite import SQLiteStore
from alma_hooks.types import AntiPattern, DomainKnowledge, Heuristic, Outcome, Preference, Scope

USER = "tester@example.com"
XSS = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"> deploy with make release'
DAY = 86400.0


def git_repo(path: Path, remote: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    subprocess.run(["git", "-C", str(path), "remote", "add", "origin", remote], check=True)
    return path


@dataclass
class Seeded:
    """Project A (``shop``) with every kind of memory, and project B (``billing``) that must never show."""

    config: Config
    project: Path
    heuristic: Heuristic
    outcomes: list[Outcome]
    anti_pattern: AntiPattern
    xss: DomainKnowledge
    preference: Preference
    helena: Heuristic
    b_memory: DomainKnowledge
    b_project: str
    gone_id: str = ""
    ids: dict[str, str] = field(default_factory=dict)

    @property
    def scope(self) -> Scope:
        return Scope(self.config.project_id, "main", USER)


def seed(tmp_path: Path, home: Path) -> Seeded:
    """Write the test world through the store, as hooks and the CLI would."""
    project = git_repo(tmp_path / "shop", "git@github.com:Acme/Shop.git")
    env = {"ALMA_HOME": str(home), "ALMA_USER_ID": USER, "HOME": str(tmp_path)}
    config = load_config(project, env)
    b_config = load_config(git_repo(tmp_path / "billing", "https://github.com/acme/billing.git"), env)
    store = SQLiteStore(config.db_path, config.policy, actor="seed")
    try:
        pid = config.project_id
        main = Scope(pid, "main", USER)
        now = time.time()
        outcomes = []
        for i, ok in enumerate([False, True, True, True, False, True]):
            t = now - (6 - i) * 4 * DAY
            outcomes.append(store.add(main, Outcome(
                project_id=pid, domain="debugging", task_description=f"fix the flaky checkout test, round {i}",
                success=ok, strategy_used="bisect the failing commit" if ok else "rerun until green",
                error="" if ok else "AssertionError: total 0", timestamp=t, created_at=t, updated_at=t)))
        h = store.add(main, Heuristic(
            project_id=pid, domain="debugging", condition="debugging tasks like \"fix the flaky checkout test\"",
            strategy="bisect the failing commit", strategy_key="bisect", occurrence_count=3, successes=3, trials=4,
            confidence=0.4, source_ids=[o.id for o in outcomes]))
        for conf in (0.55, 0.7):
            h = store.update(main, dataclasses.replace(h, confidence=conf), reason="reinforced")
        gone = outcomes[0]
        store.delete(main, gone.id, reason="forgetting: stale")
        ap = store.add(main, AntiPattern(project_id=pid, domain="debugging", pattern="rerun until green",
                                         why="it hides the race", alternative="bisect the failing commit",
                                         source_ids=[outcomes[1].id]))
        xss = store.add(main, DomainKnowledge(project_id=pid, fact=XSS))
        pref = store.add(main, Preference(project_id=pid, user_id=USER, preference="No emojis in commit messages"))
        helena = Scope(pid, "helena", USER)
        hh = store.add(helena, Heuristic(project_id=pid, agent="helena", domain="form_testing",
                                         condition="forms with many required fields", strategy="happy path first"))
        store.record_injection(main, "session-1", "SessionStart", [(h.id, 1), (pref.id, 1)], 61, now - 120)
        store.record_injection(main, "session-1", "UserPromptSubmit", [(h.id, 3), (gone.id, 1)], 37, now - 60)
        b = Scope(b_config.project_id, "main", USER)
        bm = store.add(b, DomainKnowledge(project_id=b_config.project_id,
                                          fact="zanzibar invoices are immutable once sent"))
        store.record_injection(b, "session-b", "SessionStart", [(bm.id, 1)], 12, now)
    finally:
        store.close()
    return Seeded(config, project, h, outcomes, ap, xss, pref, hh, bm, b_config.project_id, gone.id)


def request(port: int, method: str, path: str, *, headers: dict[str, str] | None = None,
            body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request to 127.0.0.1:port; (status, headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        res = conn.getresponse()
        return res.status, {k.lower(): v for k, v in res.getheaders()}, res.read()
    finally:
        conn.close()


def post_json(port: int, path: str, data: Any, token: str | None, **extra: str) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json", **extra}
    if token:
        headers["X-Alma-Token"] = token
    status, _, raw = request(port, "POST", path, headers=headers, body=json.dumps(data).encode())
    return status, json.loads(raw)

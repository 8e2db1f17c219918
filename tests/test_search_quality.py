"""Retrieval quality end to end: ``remember`` 40 project facts, then ``search --json`` paraphrased questions.

The questions share few words with the fact they ask about, and several facts
share a topic with each one (deploys, databases, tests, APIs), so the right
fact must win on meaning against realistic distractors. Runs the real model.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from alma_hooks import embedding
from alma_hooks.cli import main

FACTS = {
    # build and tooling
    "build": "Build the frontend bundle with `pnpm run build:web`; webpack was replaced by Vite in 2023",
    "lint": "Run `ruff check --fix` and `ruff format` before committing; CI rejects unformatted Python",
    "node-version": "The repo pins Node 20 in .nvmrc; run `nvm use` first or the lockfile install fails",
    "docker-dev": "Local development runs in docker compose; `make up` starts Postgres, Redis and the API",
    "env-vars": "Copy .env.example to .env.local; never commit .env files, the pre-commit hook blocks them",
    "codegen": "After changing openapi.yaml run `make codegen` to regenerate the TypeScript API client",
    # deploys and releases
    "deploy-prod": "Production deploys go through `make release`, which tags the commit and triggers the GitHub Actions pipeline",
    "deploy-staging": "Every merge to main is deployed to staging automatically within about ten minutes",
    "rollback": "To undo a bad release run `make rollback VERSION=<previous tag>`; it redeploys the old image",
    "freeze": "No deploys on Fridays after 2pm or during the last week of December (change freeze)",
    "feature-flags": "New features ship dark behind LaunchDarkly flags named team.feature-name",
    "migrations-deploy": "Database migrations run as a separate Kubernetes job before the new pods start",
    # database conventions
    "db-naming": "Database tables use snake_case plural names like order_items, columns are snake_case too",
    "db-timestamps": "Every table has created_at and updated_at timestamptz columns filled by triggers",
    "db-money": "Money is stored as integer cents in bigint columns, never as floats or numeric",
    "db-softdelete": "Customer records are soft-deleted with a deleted_at column; hard deletes only through the GDPR job",
    "db-uuid": "Primary keys are UUIDv7 generated in the application, not serial integers",
    "db-alembic": "Schema changes are Alembic migrations; autogenerate, then review the file by hand before committing",
    "db-readreplica": "Reports must query the read replica through the `reporting` connection, never the primary",
    # testing conventions
    "test-run": "Run the fast unit tests with `pytest -q`; the slow integration suite needs `-m slow`",
    "test-fixtures": "Test data comes from factory_boy factories in tests/factories.py, not from JSON fixture files",
    "test-e2e": "End-to-end browser tests use Playwright and run against the staging environment nightly",
    "test-flaky": "Flaky tests get the @pytest.mark.quarantine marker and a ticket; they are skipped in CI",
    "test-coverage": "Pull requests must keep line coverage of the backend at or above 85 percent",
    "test-time": "Tests freeze time with time-machine; never call sleep in a test",
    "test-db": "Each test runs in a transaction that is rolled back, so tests can run in parallel with xdist",
    # API quirks
    "api-declined": "The payments provider returns HTTP 200 with an error object for declined cards, never a 4xx",
    "api-ratelimit": "The shipping carrier API allows 10 requests per second; the client retries 429s with jitter",
    "api-pagination": "Our public API paginates with opaque cursors in the `next` field; page numbers are not supported",
    "api-auth": "Internal services authenticate with short-lived JWTs from the auth service, valid for 5 minutes",
    "api-versioning": "Breaking API changes need a new /v2 path; /v1 stays supported for twelve months",
    "api-webhooks": "Incoming webhooks are verified with an HMAC-SHA256 signature in the X-Signature header",
    "api-timezones": "All API timestamps are ISO 8601 in UTC; the frontend converts to the user's local time",
    # team process
    "pr-review": "Every pull request needs one approval from a code owner listed in CODEOWNERS",
    "commit-style": "Commit messages follow Conventional Commits, e.g. feat(cart): add coupon field",
    "branching": "Branch names are <ticket>-<short-description>, e.g. SHOP-123-fix-cart-total",
    "oncall": "The on-call engineer is paged through PagerDuty; incidents get a postmortem within 3 days",
    "logging": "Use structlog with JSON output; never log full card numbers or email addresses",
    "i18n": "User-facing strings go through gettext; translations are managed in Crowdin",
    "cache": "Product pages are cached in Redis for 5 minutes; invalidate with the `cache:bust` management command",
}

QUESTIONS = [
    ("The last deploy broke checkout; how do I go back to the old build?", "rollback"),
    ("Can I push changes out on a Friday afternoon?", "freeze"),
    ("How should I name a new SQL table?", "db-naming"),
    ("What type should a price field be in Postgres?", "db-money"),
    ("Is it okay to remove a customer row permanently?", "db-softdelete"),
    ("How do I make fake model instances in tests?", "test-fixtures"),
    ("A test passes locally but fails sometimes in CI, what's the process?", "test-flaky"),
    ("The card charge endpoint said OK but the payment did not go through, why?", "api-declined"),
    ("We keep getting throttled by the delivery partner's service", "api-ratelimit"),
    ("How do I get the next batch of items from a list endpoint?", "api-pagination"),
    ("How long is a service-to-service token good for?", "api-auth"),
    ("How do I format my git commit message?", "commit-style"),
    ("I edited the OpenAPI spec, what else has to change?", "codegen"),
    ("How do I run the whole stack locally?", "docker-dev"),
    ("Which connection should an analytics query use?", "db-readreplica"),
    ("Where do secrets for local development go?", "env-vars"),
    ("Is it fine to use sleep to wait for a timer in a test?", "test-time"),
    ("What should the name of my branch look like?", "branching"),
]

#: Questions that hinge on a developer abbreviation the model does not expand
#: ("prod" is not "production" to MiniLM, nor "PR" "pull request"). A known
#: gap of the retrieval path, kept as strict xfails so a fix (e.g. query
#: expansion of common abbreviations) turns them into failures asking for
#: the marker to go.
ABBREVIATION_QUESTIONS = [
    ("How do we roll out to prod?", "deploy-prod"),
    ("Who has to sign off on my PR before it can be merged?", "pr-review"),
]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, embedder) -> Path:
    repo = tmp_path / "shop"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "remote", "add", "origin", "git@github.com:Acme/Shop.git"], check=True)
    monkeypatch.chdir(repo)
    monkeypatch.setenv("ALMA_USER_ID", "tester@example.com")
    monkeypatch.setattr(embedding, "_EMBEDDER", embedder)
    return repo


def _overlap(a: str, b: str) -> float:
    words = lambda s: {w for w in re.findall(r"[a-z0-9]+", s.lower()) if len(w) > 3}  # noqa: E731
    wa, wb = words(a), words(b)
    return len(wa & wb) / max(1, len(wa))


def test_questions_share_few_words_with_their_fact():
    """Guard for the test itself: the questions are paraphrases, not keyword lookups."""
    assert len(FACTS) >= 40 and len(QUESTIONS) >= 15
    for question, key in QUESTIONS + ABBREVIATION_QUESTIONS:
        assert _overlap(question, FACTS[key]) <= 0.4, question


def remember_all(runner: CliRunner) -> dict[str, str]:
    """``remember`` every fact; returns memory id -> fact key."""
    ids = {}
    for key, fact in FACTS.items():
        r = runner.invoke(main, ["remember", fact, "--json"], catch_exceptions=False)
        assert r.exit_code == 0, r.output
        ids[json.loads(r.stdout)["id"]] = key
    return ids


def ranked_keys(runner: CliRunner, ids: dict[str, str], question: str) -> list[str]:
    r = runner.invoke(main, ["search", question, "--json", "--k", "3"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return [ids[row["id"]] for row in json.loads(r.stdout)]


def test_right_fact_ranks_first_for_paraphrased_questions(project):
    runner = CliRunner()
    ids = remember_all(runner)
    misses = []
    for question, expected in QUESTIONS:
        ranked = ranked_keys(runner, ids, question)
        if not ranked or ranked[0] != expected:
            misses.append(f"{question!r}: expected {expected}, got {ranked}")
    hit_rate = 1 - len(misses) / len(QUESTIONS)
    print(f"top-1 {hit_rate:.0%} of {len(QUESTIONS)} questions; misses:", *misses, sep="\n  ")
    assert hit_rate >= 0.9, "\n".join(misses)


@pytest.mark.xfail(strict=True, reason="MiniLM does not expand developer abbreviations (prod, PR)")
def test_abbreviations_known_gap(project):
    runner = CliRunner()
    ids = remember_all(runner)
    ranked = {question: ranked_keys(runner, ids, question)[0] for question, _ in ABBREVIATION_QUESTIONS}
    assert ranked == {question: expected for question, expected in ABBREVIATION_QUESTIONS}

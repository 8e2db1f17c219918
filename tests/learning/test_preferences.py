"""Standing-instruction detection: precision and recall over a labelled set, plus focused cases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alma_hooks.learning.preferences import CATEGORIES, DetectedPreference, detect_preference, same_subject

DATA = Path(__file__).resolve().parents[1] / "data" / "preference_prompts.jsonl"


def _rows() -> list[dict]:
    with DATA.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _detect(prompt: str) -> DetectedPreference:
    found = detect_preference(prompt)
    assert found is not None, f"no preference found in {prompt!r}"
    return found


# --------------------------------------------------------------------------- the labelled set


def test_labelled_set_is_large_balanced_and_well_formed():
    rows = _rows()
    positives = [r for r in rows if r["is_preference"]]
    assert len(rows) >= 220
    assert len({r["prompt"] for r in rows}) == len(rows), "duplicate prompts"
    assert 0.4 <= len(positives) / len(rows) <= 0.6
    assert all(r["category"] in CATEGORIES for r in positives)
    # Positives must not all be phrased one way.
    openings = {r["prompt"].split()[0].lower().strip(",") for r in positives}
    assert len(openings) >= 15


def test_precision_and_recall_over_the_labelled_set(capsys):
    tp = fp = fn = 0
    category_hits = 0
    false_positives, misses = [], []
    for row in _rows():
        found = detect_preference(row["prompt"])
        if row["is_preference"] and found:
            tp += 1
            category_hits += found.category == row["category"]
        elif row["is_preference"]:
            fn += 1
            misses.append(row["prompt"])
        elif found:
            fp += 1
            false_positives.append((row["prompt"], found.preference))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    category_agreement = category_hits / tp if tp else 0.0
    with capsys.disabled():
        print(
            f"\npreference detection: precision={precision:.3f} recall={recall:.3f} "
            f"(tp={tp} fp={fp} fn={fn}) category agreement={category_agreement:.3f}"
        )
    assert precision >= 0.95, f"false positives: {false_positives}"
    assert recall >= 0.80, f"missed: {misses}"
    assert category_agreement >= 0.85


def test_every_statement_is_detected_again_unchanged():
    # The UserPromptSubmit handler re-reads stored statements with detect_preference to find
    # the ones a new preference supersedes, so a statement must survive that round trip.
    broken = []
    for row in _rows():
        found = detect_preference(row["prompt"])
        if found is None:
            continue
        again = detect_preference(found.preference)
        if again is None or (again.preference, again.subject) != (found.preference, found.subject):
            broken.append((found.preference, again))
    assert not broken


# --------------------------------------------------------------------------- the statement

STATEMENTS = [
    ("btw always use pnpm instead of npm in this repo, thanks", "Always use pnpm instead of npm"),
    ("no, use pnpm not npm", "Use pnpm instead of npm"),
    (
        "From now on, use uv for installing Python packages instead of pip.",
        "Use uv for installing Python packages instead of pip",
    ),
    ("I prefer tabs over spaces.", "Prefer tabs over spaces"),
    ("Don't ever use var in JavaScript.", "Never use var in JavaScript"),
    ("Please stop using relative imports.", "Stop using relative imports"),
    ("I'd rather you use httpx than requests for new code.", "Use httpx rather than requests for new code"),
    (
        "I'd rather have early returns than deeply nested if blocks.",
        "Prefer early returns over deeply nested if blocks",
    ),
    ("I like terse commit messages better.", "Prefer terse commit messages"),
    ("I hate when you use nested ternaries, please don't.", "Never use nested ternaries"),
    ("Don't use emojis. Ever.", "Don't use emojis, ever"),
    ("Make sure you always run `make fmt` before you commit.", "Always run `make fmt` before you commit"),
    ("We always use UUIDs for primary keys here.", "Always use UUIDs for primary keys here"),
    ("In this repo we use Tailwind classes, not inline styles.", "Use Tailwind classes, not inline styles"),
    (
        "Fix the login bug in auth.ts. Also, never use console.log in committed code.",
        "Never use console.log in committed code",
    ),
    ("Keep lines under 100 characters going forward.", "Always keep lines under 100 characters"),
    ("no no, use kubectl apply, not kubectl create", "Use kubectl apply instead of kubectl create"),
    ("- never push directly to main", "Never push directly to main"),
]


@pytest.mark.parametrize(
    "prompt, expected",
    STATEMENTS,
    ids=[
        "btw-always-thanks", "no-use-x-not-y", "from-now-on", "i-prefer", "dont-ever", "please-stop",
        "id-rather-you", "id-rather-have", "i-like-better", "i-hate-when-you", "ever-as-own-sentence",
        "make-sure-you-always", "we-always-use", "in-this-repo-we-use", "second-sentence", "trailing-marker",
        "correction-with-comma", "markdown-bullet",
    ],
)
def test_statement_is_a_clean_instruction(prompt, expected):
    assert _detect(prompt).preference == expected


@pytest.mark.parametrize(
    "prompt, subject",
    [
        ("btw always use pnpm instead of npm in this repo, thanks", "pnpm|npm"),
        ("don't use emojis in code", "emoji"),
        ("Never use emojis in commit messages or code comments.", "emoji"),
        ("Prefer composition over inheritance.", "composition|inheritance"),
        ("Please stop using relative imports.", "relative import"),
        ("Don't use moment.js, use date-fns instead.", "moment.js"),
    ],
    ids=["swap", "dont-use", "never-use-in", "prefer-over", "stop-using", "dotted-name-kept"],
)
def test_subject_key(prompt, subject):
    assert _detect(prompt).subject == subject


@pytest.mark.parametrize(
    "prompt, category",
    [
        ("always use pnpm", "tooling"),
        ("don't use emojis in code", "style"),
        ("Never mock the database in integration tests.", "testing"),
        ("I prefer verbose output.", "communication"),
        ("Never push directly to main.", "workflow"),
        ("Always use UTC for timestamps.", "general"),
    ],
    ids=CATEGORIES,
)
def test_category(prompt, category):
    assert _detect(prompt).category == category


# --------------------------------------------------------------------------- what is not a preference

LONG_LOG = "\n".join(f"12:00:{i:02d} INFO worker {i} ok" for i in range(90))

NOT_PREFERENCES = [
    ("use pnpm to install lodash", "one-off-task"),
    ("don't worry about the CSS for now", "dont-worry"),
    ("always-on feature flag needs a test", "always-compound"),
    ("should I always use pnpm?", "question"),
    ("do you prefer tabs?", "question-prefer"),
    ("the docs say never use eval", "reported"),
    ("my coworker prefers tabs", "third-person"),
    ("// always returns null", "code-comment"),
    ("error: never type", "log-line"),
    ("ALWAYS_RETRY=true", "env-var"),
    ("if it fails, use npm instead", "conditional"),
    ("prefer-const lint rule fails", "lint-rule-name"),
    ("Change the copy to 'Always keep me signed in'.", "quoted-text"),
    ("Use npm instead of yarn for this one install.", "one-off-marker"),
    ("Use the v2 endpoint instead of v1 in fetchUsers().", "code-location"),
    ("Make it always show the first tab by default.", "code-behaviour"),
    ("I prefer the second approach.", "choice-between-options"),
    ("Stop using the fallback and show me the real error.", "specific-thing"),
    ("Never mind, revert that change.", "never-mind"),
    ("Always getting a 401 after the token refresh.", "not-a-verb"),
    ("```\n# always use pnpm\nnpm install\n```", "inside-code-fence"),
    ("<task-notification>\n<summary>always use pnpm</summary>\n</task-notification>", "task-notification"),
    (f"Here is the log:\n{LONG_LOG}\nAlways use pnpm instead of npm.\n{LONG_LOG}\nWhat broke?", "long-prompt-middle"),
    ("", "empty"),
]


@pytest.mark.parametrize("prompt", [p for p, _ in NOT_PREFERENCES], ids=[i for _, i in NOT_PREFERENCES])
def test_not_a_preference(prompt):
    assert detect_preference(prompt) is None


def test_long_prompt_still_reads_its_last_sentence():
    prompt = f"Here is the log:\n{LONG_LOG}\nFix it. From now on, never edit the config on the server directly."
    assert len(prompt) > 2000
    assert _detect(prompt).preference == "Never edit the config on the server directly"


# --------------------------------------------------------------------------- same_subject

SAME_SUBJECT = [
    ("always use npm", "no, use pnpm instead of npm", True, "npm-then-pnpm"),
    ("Always use jest for unit tests.", "no, use vitest instead of jest", True, "test-runner-swap"),
    ("I prefer tabs over spaces.", "Always indent with spaces.", True, "tabs-vs-spaces"),
    ("don't use emojis in code", "Never use emojis in commit messages.", True, "emojis-twice"),
    ("Always use single quotes for strings.", "From now on, use double quotes for strings.", True, "quote-style"),
    ("I prefer verbose output.", "I prefer terse output.", True, "verbosity"),
    ("Use poetry instead of pipenv.", "From now on use uv instead of pip.", True, "python-package-manager"),
    ("Always run the tests before committing.", "Never mock the database in integration tests.", False, "tests-vs-db"),
    ("always use pnpm", "Never push directly to main.", False, "unrelated"),
    ("Never use snapshot tests for UI components.", "Always run the tests before committing.", False, "kinds-of-test"),
]


@pytest.mark.parametrize(
    "older, newer, expected",
    [(a, b, e) for a, b, e, _ in SAME_SUBJECT],
    ids=[i for *_, i in SAME_SUBJECT],
)
def test_same_subject(older, newer, expected):
    a, b = _detect(older), _detect(newer)
    assert same_subject(a, b) is expected
    assert same_subject(b, a) is expected
    # As the hook does it: the older one comes back from the store as its statement.
    stored = _detect(a.preference)
    assert same_subject(stored, b) is expected

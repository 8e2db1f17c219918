"""From raw tool calls to an outcome: summaries, test-runner results, success, strategy, feedback.

Stdlib only: this runs in the PostToolUse and Stop hook processes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..patterns import lazy
from ..redact import redact_head
from ..types import ExecutionEvent

MAX_SUMMARY = 400

# "5 passed, 1 failed in 0.3s" (pytest), "Tests: 1 failed, 4 passed, 5 total" (jest),
# "12 passing", "2 failing" (mocha), "ok 3 / FAIL" (go), "test result: FAILED. 3 passed; 1 failed" (cargo)
# The count and its word share a line: "Exit code 1\nFAILED: ..." is no "1 failed".
_COUNT = lazy(r"(\d+)[ \t]+(passed|passing|failed|failing|errors?|error(?:ed)?)\b", re.I)
_FAIL_WORDS = lazy(r"\b(FAILED|FAIL:|Traceback \(most recent call last\)|AssertionError|"
                         r"npm ERR!|error TS\d+|SyntaxError|ModuleNotFoundError|command not found)\b")
_EXIT = lazy(r"^Exit code (\d+)", re.M)

NEGATIVE_FEEDBACK = lazy(
    r"^\s*(no[,.!]|nope|wrong|that'?s (?:wrong|not (?:it|right|what))|(?:it|this|that) (?:still )?"
    r"(?:doesn'?t|does not|didn'?t|did not) work|still (?:broken|failing|fails)|(?:it|that|this) broke|"
    r"revert (?:that|it|this)|undo (?:that|it|this))", re.I)
POSITIVE_FEEDBACK = lazy(
    r"^\s*(thanks?|thank you|great|perfect|works|it works|that works|that worked|nice|lgtm|looks good|awesome|"
    r"excellent|well done|good job)\b", re.I)


def _clip(text: str, limit: int = MAX_SUMMARY) -> str:
    # redacted before its lines are joined and it is cut: a secret cut in half, or a `password:` line run
    # into the next one, no longer matches its rule (the store redacts again, but too late for those)
    text = " ".join(redact_head(text, 4 * limit).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def summarize_input(tool: str, tool_input: Any) -> str:
    """A one-line summary of what a tool was asked to do."""
    if not isinstance(tool_input, dict):
        return _clip(str(tool_input or ""))
    if tool == "Bash":
        return _clip(str(tool_input.get("command", "")))
    if tool in ("Agent", "Task"):
        return _clip(f"{tool_input.get('subagent_type', '')}: {tool_input.get('description', '')}")
    for key in ("file_path", "path", "pattern", "url", "query", "notebook_path"):
        if key in tool_input:
            return _clip(f"{key}={tool_input[key]}")
    return _clip(json.dumps(tool_input, ensure_ascii=False, default=str))


def summarize_result(tool: str, response: Any) -> str:
    """A one-line summary of a tool's result: a test summary when there is one, else the output's tail."""
    if isinstance(response, dict):
        text = "\n".join(str(response.get(k) or "") for k in ("stdout", "stderr", "content", "output", "result"))
        if not text.strip():
            text = json.dumps(response, ensure_ascii=False, default=str)[:4000]
    else:
        text = str(response or "")
    if len(text) > 200_000:
        text = text[:100_000] + "\n" + text[-100_000:]
    tests = test_summary(text)
    if tests:
        return _clip(tests)
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    tail = redact_head("\n".join(lines[-3:]), 4 * MAX_SUMMARY)  # before the lines run into one
    return _clip(" | ".join(ln for ln in tail.splitlines() if ln.strip()))


def test_summary(text: str) -> str:
    """'3 passed, 1 failed' from test-runner output, or '' when there is none."""
    counts: dict[str, int] = {}
    for n, word in _COUNT.findall(text[-20_000:]):
        key = "passed" if word.lower().startswith("pass") else "failed"
        counts[key] = int(n)  # the last summary line wins
    return ", ".join(f"{counts[k]} {k}" for k in ("passed", "failed") if k in counts)


@dataclass(frozen=True)
class Verdict:
    success: bool
    evidence: str


def infer_success(events: Sequence[ExecutionEvent], last_message: str = "") -> Verdict:
    """Did the task work? The last test run decides; else failing calls at the end; else the final message."""
    for e in reversed(events):
        summary = test_summary(e.result_summary + " " + e.error)
        if summary:
            failed = re.search(r"(\d+) failed", summary)
            ok = e.ok and not (failed and int(failed.group(1)) > 0)
            return Verdict(ok, f"last test run: {summary}")
    if events:
        last = events[-1]
        if not last.ok:
            return Verdict(False, f"last call failed: {_clip(last.error or last.result_summary, 120)}")
    msg = last_message.lower()
    if re.search(r"\b(couldn'?t|could not|unable to|failed to|didn'?t work|not able to|blocked)\b", msg):
        return Verdict(False, "the agent reported failure")
    if events and sum(1 for e in events if not e.ok) > len(events) / 2:
        return Verdict(False, "most calls failed")
    return Verdict(True, "finished without errors" if events else "answered without tools")


STEP_SEPARATOR = " → "
#: Room for a command with an env prefix, a path and its flags: the flags, often last, are
#: what tells two approaches apart (learning.heuristics.strategy_key reads this text).
STEP_CHARS = 160


def strategy_summary(events: Sequence[ExecutionEvent], limit: int = 6) -> str:
    """The steps of a task as a short line, e.g. 'Bash: npm test → Edit: file_path=a.ts → Bash: npm test'.

    Consecutive repeats are merged; reading-only tools are left out when other steps exist.
    """
    steps: list[str] = []
    for e in events:
        step = f"{e.tool}: {_clip(e.input_summary, STEP_CHARS)}" if e.input_summary else e.tool
        if not steps or steps[-1] != step:
            steps.append(step)
    acting = [s for s in steps if not s.startswith(("Read", "Glob", "Grep", "LS", "TodoWrite"))]
    steps = acting or steps
    if len(steps) > limit:
        steps = steps[: limit // 2] + ["…"] + steps[-(limit - limit // 2):]
    return STEP_SEPARATOR.join(steps)


def split_attempts(events: Sequence[ExecutionEvent], success: bool) -> tuple[str, str]:
    """(what worked, what failed before it) for a successful task; (all steps, "") for a failed one.

    A task that succeeded after failing calls holds two lessons: the calls that
    failed are an approach that did not work, the rest is the one that did.
    """
    if not success:
        return strategy_summary(events), ""
    worked = [e for e in events if e.ok]
    failed = [e for e in events if not e.ok]
    return strategy_summary(worked or events), strategy_summary(failed)


def classify_feedback(prompt: str) -> int:
    """+1 when a prompt opens by approving the last answer, -1 when it opens by rejecting it, else 0."""
    head = prompt.strip()[:120]
    if NEGATIVE_FEEDBACK.search(head):
        return -1
    if POSITIVE_FEEDBACK.search(head):
        return 1
    return 0

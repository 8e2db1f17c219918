"""One handler per Claude Code hook event: the contract between the client and alma-hooks.

``handle(payload)`` takes the hook's stdin JSON and returns the JSON to print
(or None). It runs in the hook process (lexical retrieval, capture) and in
the warm engine (with an embedder), so it imports nothing heavy: the query
embedding arrives as the ``embed`` callable.

Events handled (see CLAUDE_CODE.md for what each receives):

=====================  ==============================================================
SessionStart           digest of top heuristics and preferences (<= digest budget)
UserPromptSubmit       feedback on the last task, preference capture, open a task, slice
PreToolUse (Agent)     remember the subagent's task text for its SubagentStart
SubagentStart          the subagent's own slice, from its task text
PostToolUse(+Failure)  append an execution event (redacted, no embedding)
Stop / SubagentStop    close the task into an outcome, then learning
SessionEnd             housekeeping (forgetting pass, spool replay)
=====================  ==============================================================
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import logs
from .config import Config, load_config
from .learning.outcomes import (classify_feedback, infer_success, split_attempts, summarize_input,
                                summarize_result)
from .redact import redact, redact_head
from .storage.base import Store
from .types import ExecutionEvent, MAIN_AGENT, MemorySlice, Outcome, Preference, Scope, Task, derived_id, new_id

log = logs.get("alma_hooks.events")

#: Texts -> vectors, or None when no embedder answers (then retrieval and learning go lexical).
EmbedFn = Callable[[Sequence[str]], "Sequence[Sequence[float]] | None"]
#: Asks the warm engine for a slice: (context, event, query) -> rendered text, or None to do it here.
RemoteFn = Callable[["Context", str, str], "str | None"]
MAX_TASK_TEXT = 2000
INJECT_EVENTS = ("SessionStart", "UserPromptSubmit", "SubagentStart")


def agent_name(agent_type: Any) -> str:
    """The memory scope of a Claude Code agent type: 'alma-hooks:helena' -> 'helena'; none -> 'main'."""
    if not isinstance(agent_type, str) or not agent_type.strip():
        return MAIN_AGENT
    return agent_type.strip().rsplit(":", 1)[-1].lower() or MAIN_AGENT


class TooLate(Exception):
    """A slice finished after the hook that asked for it stopped waiting (that hook injected its own)."""


@dataclass
class Context:
    """Everything a handler needs, resolved once per event."""

    payload: dict[str, Any]
    config: Config
    store: Store
    scope: Scope
    session_id: str
    embed: EmbedFn | None = None
    remote: RemoteFn | None = None
    #: ``time.monotonic()`` after which the hook that sent the event to the engine stops waiting: a
    #: slice finished later is not recorded as injected (:class:`TooLate`), or its items would be
    #: kept out of the rest of the session without the agent ever having seen them.
    deadline: float | None = None

    def for_agent(self, agent: str) -> Context:
        scope = Scope(self.scope.project_id, agent, self.scope.user_id)
        return Context(self.payload, self.config, self.store, scope, self.session_id, self.embed, self.remote,
                       self.deadline)


def _inject(event: str, text: str) -> dict[str, Any] | None:
    return {"hookSpecificOutput": {"hookEventName": event, "additionalContext": text}} if text else None


def _single(embed: EmbedFn | None) -> Callable[[str], Sequence[float] | None] | None:
    if embed is None:
        return None

    def one(text: str) -> Sequence[float] | None:
        vectors = embed([text])
        return vectors[0] if vectors else None

    return one


def _record(ctx: Context, event: str, sl: MemorySlice) -> None:
    if not sl:
        return
    late = time.monotonic() - ctx.deadline if ctx.deadline is not None else 0.0
    if late > 0:
        raise TooLate(f"{event} slice ready {late:.2f} s after the hook stopped waiting")
    items = [(i.memory.id, i.memory.version) for i in sl.items]
    ctx.store.record_injection(ctx.scope, ctx.session_id, event, items, sl.tokens, time.time())
    ctx.store.touch(ctx.scope, [i for i, _ in items], time.time())


def inject_text(ctx: Context, event: str, query: str) -> str:
    """The slice for ``query`` (the digest when empty), recorded as injected; from the engine when it answers."""
    embed = ctx.embed
    if ctx.remote is not None:
        text = ctx.remote(ctx, event, query)
        if text is not None:
            return text
        embed = None  # the engine did not answer: do not wait for it again, go lexical
    from .retrieval.search import Retriever

    retriever = Retriever(ctx.store, ctx.config, _single(embed))
    seen = ctx.store.injected(ctx.scope, ctx.session_id)
    sl = retriever.slice_for_prompt(ctx.scope, query, exclude=seen) if query.strip() else retriever.digest(
        ctx.scope, exclude=seen)
    _record(ctx, event, sl)
    return sl.text


# ---------------------------------------------------------------- handlers

def session_start(ctx: Context) -> dict[str, Any] | None:
    return _inject("SessionStart", inject_text(ctx, "SessionStart", ""))


def user_prompt_submit(ctx: Context) -> dict[str, Any] | None:
    prompt = ctx.payload.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip() or prompt.lstrip().startswith("<task-notification>"):
        return None
    _apply_feedback(ctx, prompt)
    _capture_preference(ctx, prompt)
    prompt_key = ctx.payload.get("prompt_id") or prompt
    ctx.store.open_task(ctx.scope, Task(project_id=ctx.scope.project_id, agent=ctx.scope.agent,
                                        session_id=ctx.session_id, description=redact_head(prompt, MAX_TASK_TEXT),
                                        id=derived_id("task", ctx.session_id, ctx.scope.agent, prompt_key)))
    return _inject("UserPromptSubmit", inject_text(ctx, "UserPromptSubmit", prompt))


def pre_tool_use(ctx: Context) -> None:
    """Keep the task text of a subagent launch for its SubagentStart (the CLI sends no text there)."""
    if ctx.payload.get("tool_name") not in ("Agent", "Task"):
        return None
    tool_input = ctx.payload.get("tool_input") or {}
    if not isinstance(tool_input, dict):
        return None
    sub = ctx.for_agent(agent_name(tool_input.get("subagent_type") or "general-purpose"))
    text = redact_head(str(tool_input.get("prompt") or tool_input.get("description") or ""), MAX_TASK_TEXT)
    if text.strip():
        key = ctx.payload.get("tool_use_id") or text
        sub.store.open_task(sub.scope, Task(project_id=sub.scope.project_id, agent=sub.scope.agent,
                                            session_id=ctx.session_id, description=text,
                                            id=derived_id("task", ctx.session_id, sub.scope.agent, key)))
    return None


def subagent_start(ctx: Context) -> dict[str, Any] | None:
    if not str(ctx.payload.get("agent_type") or "").strip():
        return None  # internal subagents (/compact): not a task; injecting would mark main's items as seen
    task = ctx.store.current_task(ctx.scope, ctx.session_id)
    return _inject("SubagentStart", inject_text(ctx, "SubagentStart", task.description if task else ""))


def _duration_ms(value: Any) -> int:
    """The payload's duration as an int SQLite can store: 0 when absent, wrong, infinite or beyond a day."""
    if not isinstance(value, (int, float)) or value != value or not 0 <= value <= 86_400_000:
        return 0  # a huge int or float would overflow SQLite's 64-bit INTEGER and lose the capture
    return int(value)


def post_tool_use(ctx: Context) -> None:
    p = ctx.payload
    tool = str(p.get("tool_name") or "unknown")
    failed = p.get("hook_event_name") == "PostToolUseFailure"
    response = p.get("tool_response")
    error = str(p.get("error") or "") if failed else ""
    if isinstance(response, dict) and response.get("interrupted"):
        failed, error = True, error or "interrupted"
    task = ctx.store.current_task(ctx.scope, ctx.session_id)
    duration = p.get("duration_ms")
    tool_use_id = p.get("tool_use_id")
    event = ExecutionEvent(
        id=derived_id("event", ctx.session_id, tool_use_id) if tool_use_id else new_id(),
        project_id=ctx.scope.project_id, agent=ctx.scope.agent, session_id=ctx.session_id,
        task_id=task.id if task else "", tool=tool[:100],
        input_summary=summarize_input(tool, p.get("tool_input")),
        result_summary=summarize_result(tool, error if failed and response is None else response),
        ok=not failed, error=summarize_result(tool, error) if error else "",
        duration_ms=_duration_ms(duration))
    ctx.store.add_event(ctx.scope, event)
    return None


def stop(ctx: Context) -> None:
    """Close the open task of this agent into an outcome and learn from it."""
    if ctx.payload.get("hook_event_name") == "SubagentStop" and not str(ctx.payload.get("agent_type") or "").strip():
        return None  # internal subagents (/compact) are not tasks
    task = ctx.store.current_task(ctx.scope, ctx.session_id)
    if task is None:
        return None
    if ctx.config.policy.profile(ctx.scope.agent) is None:  # agents.default: null: unlisted agents learn nothing
        ctx.store.close_task(ctx.scope, task.id, "", time.time())
        return None
    events = ctx.store.events(ctx.scope, task_id=task.id)
    last_message = str(ctx.payload.get("last_assistant_message") or "")
    verdict = infer_success(events, last_message)
    worked, failed = split_attempts(events, verdict.success)
    outcome = Outcome(
        id=task.id,  # one outcome per task, even if this event is handled twice
        project_id=ctx.scope.project_id, agent=ctx.scope.agent, task_description=task.description,
        success=verdict.success, strategy_used=worked, failed_strategy=failed, feedback=verdict.evidence,
        duration_ms=int((time.time() - task.started_at) * 1000), session_id=ctx.session_id,
        error=next((e.error for e in reversed(events) if not e.ok and e.error), "")[:400],
        source_ids=[e.id for e in events][-50:], confidence=0.5)
    stored = ctx.store.close_task_with_outcome(ctx.scope, task.id, outcome, time.time(), reason="task closed")
    _learn(ctx, stored)
    return None


def session_end(ctx: Context) -> None:
    _housekeeping(ctx)
    return None


HANDLERS: dict[str, Callable[[Context], dict[str, Any] | None]] = {
    "SessionStart": session_start,
    "UserPromptSubmit": user_prompt_submit,
    "PreToolUse": pre_tool_use,
    "SubagentStart": subagent_start,
    "PostToolUse": post_tool_use,
    "PostToolUseFailure": post_tool_use,
    "Stop": stop,
    "SubagentStop": stop,
    "SessionEnd": session_end,
}


# ---------------------------------------------------------------- helpers

def _apply_feedback(ctx: Context, prompt: str) -> None:
    """'that's wrong' / 'works, thanks' right after a task corrects or confirms its outcome."""
    vote = classify_feedback(prompt)
    if not vote:
        return
    recent = [m for m in ctx.store.list(ctx.scope, ["outcome"], limit=5)
              if isinstance(m, Outcome) and m.session_id == ctx.session_id]
    if not recent:
        return
    last = recent[0]
    success = vote > 0
    if last.success != success or not last.feedback.startswith("user"):
        import dataclasses

        updated = dataclasses.replace(last, success=success, feedback=f"user: {redact_head(prompt, 200)}")
        ctx.store.update(ctx.scope, updated, reason="user feedback")
        _learn(ctx, updated)


def _capture_preference(ctx: Context, prompt: str) -> None:
    # imported here: its regexes cost ~10-20 ms at import, and only this event needs them
    from .learning.preferences import detect_preference, same_subject

    found = detect_preference(prompt)
    if found is None:
        return
    user_scope = ctx.scope
    for old in ctx.store.list(user_scope, ["preference"], limit=500):
        if not isinstance(old, Preference) or old.user_id != user_scope.user_id:
            continue
        if old.preference.lower() == found.preference.lower():
            return  # already known
        prev = detect_preference(old.preference)
        if prev is not None and same_subject(prev, found):
            ctx.store.delete(user_scope, old.id, reason=f"superseded by: {found.preference}")
    ctx.store.add(user_scope, Preference(project_id=user_scope.project_id, user_id=user_scope.user_id,
                                         category=found.category, preference=found.preference,
                                         source="prompt", confidence=0.9), reason="stated in a prompt")


def _learn(ctx: Context, outcome: Outcome) -> None:
    try:
        from .learning import heuristics
    except ImportError:  # learning protocols not installed in this build
        return
    heuristics.learn_from_outcome(ctx.store, ctx.config, ctx.scope, outcome, embed=ctx.embed)


def _housekeeping(ctx: Context) -> None:
    try:
        from .learning import forgetting
    except ImportError:
        return
    forgetting.run(ctx.store, ctx.config, ctx.scope)


# ---------------------------------------------------------------- dispatch

def make_context(payload: dict[str, Any], *, store_factory: Callable[[Config], Store],
                 embed: EmbedFn | None = None, remote: RemoteFn | None = None,
                 env: dict[str, str] | None = None, deadline: float | None = None) -> Context | None:
    """Resolve config, scope and store for a payload; None when alma-hooks is disabled here."""
    cwd = payload.get("cwd")
    config = load_config(Path(cwd) if isinstance(cwd, str) and cwd else None, env)
    if not config.get("enabled", True):
        return None
    agent = agent_name(payload.get("agent_type"))
    scope = Scope(config.project_id, agent, config.user_id)
    session = str(payload.get("session_id") or "")
    return Context(payload, config, store_factory(config), scope, session, embed, remote, deadline)


def handle(ctx: Context) -> dict[str, Any] | None:
    """Run the handler of ``ctx.payload['hook_event_name']``; unknown events do nothing."""
    handler = HANDLERS.get(str(ctx.payload.get("hook_event_name")))
    return handler(ctx) if handler else None

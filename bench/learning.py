"""Learning benchmark: do Claude Code subagents get better at a project with alma-hooks?

Usage::

    python bench/learning.py [--json] [--episodes 300] [--seed 7] [--scenario FILE] [--families N]

A simulated main agent delegates QA tasks to Helena (frontend) or Victor
(backend). Every episode is one delegated task, sent to the REAL hook entry
(``hooks/alma-hook`` as a subprocess, stdin JSON shaped like Claude Code's)
in the order Claude Code sends it::

    SessionStart -> UserPromptSubmit ("Ask Helena to ...") -> PreToolUse(Agent)
    -> SubagentStart (the subagent reads its additionalContext) -> PostToolUse /
    PostToolUseFailure per Bash command -> SubagentStop -> PostToolUse(Agent)
    -> Stop -> SessionEnd

The subagent picks one of its task family's candidate strategies: the one a
``## Heuristics`` line of its injected context recommends (matched by command
shape: program, subcommands, flag names), never one listed under ``## Avoid``,
an ``instead ...`` alternative of a warning when no heuristic applies, else a
seeded random pick. Success is drawn from the strategy's hidden probability
with one seeded uniform number per episode, shared by both arms.

Two arms over the same task sequence and the same random numbers:
``with_memory`` (a scratch ``ALMA_HOME``, a warm engine started by
``alma_hooks.daemon.start`` and stopped at the end) and ``without_memory``
(``ALMA_DISABLED=1``: the product loads its config and does nothing). The
figures are success rates over the last ``window`` episodes (100 for 300).

Cross-agent bleed counts (a) episodes whose subagent context holds text that
belongs only to the other agent's families (its task texts, its commands)
and (b) stored memories of one agent's scope holding the other's content.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
HOOK = REPO / "hooks" / "alma-hook"
DEFAULT_SCENARIO = Path(__file__).resolve().parent / "scenarios" / "default.json"
USER_ID = "qa-bench@example.com"
PROMPT_TEMPLATES = ("Ask {Agent} to take this: {task}", "Ask {agent} to handle it. {task}",
                    "{Agent}, please: {task}", "Delegate to {Agent}: {task}")
HOOK_TIMEOUT_S = 60.0
#: Shorter strings are too generic to prove where a text came from.
MIN_MARKER = 16


# ---------------------------------------------------------------- scenario

@dataclass(frozen=True)
class Step:
    """One Bash command of a strategy, with its output on success and on failure."""

    cmd: str
    out: str = ""
    fail: str = ""


@dataclass(frozen=True)
class Strategy:
    name: str
    p: float  # hidden success probability
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class Family:
    """A kind of task one agent gets again and again, in varied wording."""

    name: str
    agent: str
    description: str
    tasks: tuple[str, ...]
    strategies: tuple[Strategy, ...]
    vars: dict[str, tuple[str, ...]] = field(default_factory=dict)
    pass_message: str = "Done: the checks pass."
    fail_message: str = "I could not get the checks to pass."


@dataclass(frozen=True)
class Scenario:
    name: str
    families: tuple[Family, ...]
    subagent_types: dict[str, str]

    def agents(self) -> list[str]:
        return sorted({f.agent for f in self.families})

    def subset(self, n: int | None) -> Scenario:
        """The first ``n`` families, alternating agents so both are present (for smoke runs)."""
        if not n or n >= len(self.families):
            return self
        by_agent: dict[str, list[Family]] = {}
        for f in self.families:
            by_agent.setdefault(f.agent, []).append(f)
        picked: list[Family] = []
        while len(picked) < n:
            for fams in by_agent.values():
                if fams and len(picked) < n:
                    picked.append(fams.pop(0))
        return Scenario(self.name, tuple(picked), self.subagent_types)


def load_scenario(path: Path | str = DEFAULT_SCENARIO) -> Scenario:
    """Read a scenario file (JSON, or YAML when it ends in .yaml/.yml) and check its shape."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml"):
        import yaml

        raw = yaml.safe_load(text)
    else:
        raw = json.loads(text)
    families = []
    for f in raw["families"]:
        strategies = tuple(
            Strategy(str(s["name"]), float(s["p"]),
                     tuple(Step(str(st["cmd"]), str(st.get("out", "")), str(st.get("fail", ""))) for st in s["steps"]))
            for s in f["strategies"])
        fam = Family(name=str(f["name"]), agent=str(f["agent"]), description=str(f.get("description") or f["name"]),
                     tasks=tuple(str(t) for t in f["tasks"]), strategies=strategies,
                     vars={k: tuple(str(x) for x in v) for k, v in (f.get("vars") or {}).items()},
                     pass_message=str(f.get("pass_message") or Family.pass_message),
                     fail_message=str(f.get("fail_message") or Family.fail_message))
        if len(fam.strategies) < 2 or not fam.tasks or any(not s.steps for s in fam.strategies):
            raise ValueError(f"{path}: family {fam.name!r} needs tasks and >= 2 strategies with steps")
        families.append(fam)
    agents = raw.get("agents") or {}
    types = {a: str((agents.get(a) or {}).get("subagent_type") or f"alma-hooks:{a}") for a in {f.agent for f in families}}
    return Scenario(str(raw.get("name") or path.stem), tuple(families), types)


def _fill(template: str, values: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), template)


# ---------------------------------------------------------------- the simulated subagent

_FLAG = re.compile(r"^-")
_LEAD_WORD = re.compile(r"^[A-Za-z][\w:.-]*$")


_ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_]\w*=")


def command_shape(command: str) -> tuple[str, ...]:
    """What makes a command an approach, as an agent reads it: program, subcommands, flag names.

    'npx playwright test tests/e2e/a.spec.ts --project=chromium' -> ('npx', 'playwright', 'test', '--project').
    Leading words stop at the first path, value or flag; values after flags are ignored; a
    leading 'cd DIR &&' and 'VAR=value' prefixes are setup, not the approach.
    """
    shape: list[str] = []
    leading = True
    words = command.replace(";", " ; ").split()
    while words and words[0] == "cd":  # 'cd apps/web && npx ...'
        cut = next((i for i, w in enumerate(words) if w in ("&&", ";")), len(words) - 1)
        words = words[cut + 1:]
    for word in words:
        if word in ("|", "&&", "||", ";"):
            leading = True  # a pipeline's next program is part of the approach
            continue
        if leading and not shape and _ENV_ASSIGNMENT.match(word):
            continue
        if _FLAG.match(word):
            leading = False
            shape.append(word.split("=", 1)[0])
        elif leading and _LEAD_WORD.match(word) and "." not in word and "/" not in word:
            shape.append(word)
        else:
            leading = False
    return tuple(shape)


def _commands_in(segment: str) -> tuple[list[tuple[str, ...]], bool]:
    """The Bash command shapes of a rendered strategy 'Bash: a → Bash: b', and whether it was cut ('…')."""
    segment = segment.strip()
    cut = segment.endswith("…")
    shapes = []
    for step in _STEP_SEPARATOR.split(segment):
        step = step.strip()
        if not step.startswith("Bash:"):
            continue
        cmd = step[len("Bash:"):].strip()
        if cmd.endswith("…"):
            cmd = " ".join(cmd[:-1].split()[:-1])  # the last word may be cut in the middle
            cut = True
        shapes.append(command_shape(cmd))
    return shapes, cut


def match_strategy(segment: str, strategies: Sequence[Strategy]) -> int | None:
    """Index of the candidate strategy a rendered strategy text names, or None (none or ambiguous).

    Same commands in the same order with the same shapes; a text cut short ('…')
    names the candidate whose commands start like it.
    """
    shown, cut = _commands_in(segment)
    if not shown or not any(shown):
        return None
    found = []
    for i, s in enumerate(strategies):
        own = [command_shape(st.cmd) for st in s.steps]
        if cut:
            if len(own) < len(shown) or any(a != b for a, b in zip(own, shown[:-1])):
                continue
            last, mine = shown[-1], own[len(shown) - 1]
            if len(last) >= 2 and mine[: len(last)] == last or (len(shown) > 1 and not last):
                found.append(i)
        elif own == shown:
            found.append(i)
    return found[0] if len(found) == 1 else None


def _sections(context: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    current = ""
    for line in context.splitlines():
        if line.startswith("## "):
            current = line[3:].strip().lower()
        elif line.startswith("- ") and current:
            out.setdefault(current, []).append(line[2:])
    return out


_STEP_SEPARATOR = re.compile(r" → | -> ")
_EVIDENCE = re.compile(r"\s*\((?:[^()]*successes, )?conf [\d.]+\)\s*$")
_SEEN = re.compile(r"\s*\(seen \d+x\)\s*$")
_ON_TASKS = re.compile(r"\s*\(on tasks like .*$")


def read_context(context: str) -> tuple[list[str], list[str], list[str]]:
    """(recommended strategies, avoided strategies, suggested alternatives) as rendered strategy texts."""
    sec = _sections(context)
    recommended, avoided, alternatives = [], [], []
    for line in sec.get("heuristics", []):
        at = line.find("Bash:")
        if at >= 0:
            recommended.append(_EVIDENCE.sub("", line[at:]))
    for line in sec.get("avoid", []):
        line = _SEEN.sub("", line)
        pattern, _, rest = line.partition(" fails because ")
        avoided.append(_ON_TASKS.sub("", pattern))
        if "; instead " in rest:
            alternatives.append(rest.rsplit("; instead ", 1)[1])
    return recommended, avoided, alternatives


def choose_strategy(context: str, family: Family, rng: random.Random) -> tuple[int, str]:
    """The simulated subagent's pick: (strategy index, why: heuristic | alternative | random)."""
    recommended, avoided_text, alternatives = read_context(context)
    avoided = {i for t in avoided_text if (i := match_strategy(t, family.strategies)) is not None}
    allowed = [i for i in range(len(family.strategies)) if i not in avoided] or list(range(len(family.strategies)))
    for text in recommended:
        i = match_strategy(text, family.strategies)
        if i is not None and i in allowed:
            return i, "heuristic"
    for text in alternatives:
        i = match_strategy(text, family.strategies)
        if i is not None and i in allowed:
            return i, "alternative"
    return rng.choice(allowed), "random"


# ---------------------------------------------------------------- bleed detection

def _norm(text: str) -> str:
    from alma_hooks.retrieval.budget import quote_memory_text

    return quote_memory_text(text, 10_000).lower()


def agent_markers(scenario: Scenario) -> dict[str, set[str]]:
    """Per agent, strings that can only come from its own families (task openings, command texts)."""
    raw: dict[str, set[str]] = {a: set() for a in scenario.agents()}
    for f in scenario.families:
        for t in f.tasks:
            raw[f.agent].add(_norm(_static(t))[:40])
        for s in f.strategies:
            for st in s.steps:
                raw[f.agent].add(_norm(_static(st.cmd)))
    out: dict[str, set[str]] = {}
    for agent, marks in raw.items():
        others = " \n ".join(m for a, ms in raw.items() if a != agent for m in ms)
        out[agent] = {m for m in marks if len(m) >= MIN_MARKER and m not in others}
    return out


def _static(template: str) -> str:
    """The longest part of a template without placeholders."""
    return max(re.split(r"\{\w+\}", template), key=lambda part: len(part.strip())).strip()


def foreign_content(text: str, agent: str, markers: dict[str, set[str]]) -> list[str]:
    """Markers of agents other than ``agent`` found in ``text``."""
    low = _norm(text)
    return sorted(m for a, ms in markers.items() if a != agent for m in ms if m in low)


# ---------------------------------------------------------------- hooks

@dataclass
class HookStats:
    seconds: list[float] = field(default_factory=list)
    failures: int = 0


class HookClient:
    """Runs the real ``hooks/alma-hook`` for one project and data dir, as Claude Code would."""

    def __init__(self, project: Path, env: dict[str, str]) -> None:
        self.project = project
        self.env = env
        self.stats = HookStats()

    def send(self, event: str, session: str, fields: dict[str, Any]) -> str:
        """Run the hook on one event; the injected additionalContext ('' when none)."""
        payload = {"session_id": session,
                   "transcript_path": str(self.project / ".claude" / "projects" / f"{session}.jsonl"),
                   "cwd": str(self.project), "hook_event_name": event, "permission_mode": "default", **fields}
        started = time.monotonic()
        proc = subprocess.run([str(HOOK)], input=json.dumps(payload).encode(), capture_output=True,
                              cwd=self.project, env=self.env, timeout=HOOK_TIMEOUT_S)
        self.stats.seconds.append(time.monotonic() - started)
        if proc.returncode != 0:
            self.stats.failures += 1
            return ""
        out = proc.stdout.decode("utf-8", "replace").strip()
        if not out:
            return ""
        try:
            spec = json.loads(out).get("hookSpecificOutput") or {}
        except (ValueError, AttributeError):
            self.stats.failures += 1
            return ""
        return str(spec.get("additionalContext") or "")


# ---------------------------------------------------------------- episodes

@dataclass(frozen=True)
class Plan:
    """What happens in episode i, identical in both arms."""

    index: int
    family: Family
    task: str
    values: dict[str, str]
    prompt: str
    draw: float  # success when draw < p of the chosen strategy
    pick_seed: int


@dataclass
class EpisodeResult:
    index: int
    family: str
    agent: str
    strategy: str
    how: str
    success: bool
    best: bool
    subagent_tokens: int
    episode_tokens: int
    foreign: list[str]


def plan_episodes(scenario: Scenario, episodes: int, seed: int) -> list[Plan]:
    rng = random.Random(seed)
    plans = []
    for i in range(episodes):
        fam = rng.choice(scenario.families)
        values = {k: rng.choice(v) for k, v in sorted(fam.vars.items())}
        task = _fill(rng.choice(fam.tasks), values)
        agent = fam.agent
        prompt = rng.choice(PROMPT_TEMPLATES).format(agent=agent, Agent=agent.capitalize(), task=task)
        plans.append(Plan(i, fam, task, values, prompt, rng.random(), rng.randrange(2**31)))
    return plans


def _bash_events(strategy: Strategy, values: dict[str, str], success: bool, agent_fields: dict[str, str],
                 rng: random.Random) -> Iterator[tuple[str, dict[str, Any]]]:
    """PostToolUse / PostToolUseFailure payloads of a strategy's commands; a failure stops at the last step."""
    last = len(strategy.steps) - 1
    for n, step in enumerate(strategy.steps):
        cmd = _fill(step.cmd, values)
        base = {**agent_fields, "tool_name": "Bash", "tool_use_id": f"toolu_{uuid.uuid4().hex[:24]}",
                "tool_input": {"command": cmd, "description": f"Run {cmd.split()[0]}"},
                "duration_ms": rng.randint(300, 90_000)}
        if n == last and not success:
            error = f"Exit code {1 if 'curl' not in cmd else 22}\n{_fill(step.fail or 'failed', values)}"
            yield "PostToolUseFailure", {**base, "error": error, "is_interrupt": False}
            return
        yield "PostToolUse", {**base, "tool_response": {"stdout": _fill(step.out, values), "stderr": "",
                                                        "interrupted": False, "isImage": False,
                                                        "noOutputExpected": not step.out}}


def run_episode(hooks: HookClient, scenario: Scenario, plan: Plan, markers: dict[str, set[str]],
                estimate: Callable[[str], int]) -> EpisodeResult:
    """One delegated task, event by event, as Claude Code sends it."""
    fam = plan.family
    session = str(uuid.UUID(int=random.Random(plan.pick_seed).getrandbits(128)))
    sub_type = scenario.subagent_types.get(fam.agent, f"alma-hooks:{fam.agent}")
    agent_id = f"a{uuid.uuid4().hex[:16]}"
    agent_input = {"subagent_type": sub_type, "description": fam.description, "prompt": plan.task}
    agent_use = f"toolu_{uuid.uuid4().hex[:24]}"
    tokens = 0
    tokens += estimate(hooks.send("SessionStart", session, {"source": "startup"}))
    tokens += estimate(hooks.send("UserPromptSubmit", session, {"prompt": plan.prompt}))
    hooks.send("PreToolUse", session, {"tool_name": "Agent", "tool_input": agent_input, "tool_use_id": agent_use})
    context = hooks.send("SubagentStart", session, {"agent_id": agent_id, "agent_type": sub_type})
    sub_tokens = estimate(context)
    rng = random.Random(plan.pick_seed)
    pick, how = choose_strategy(context, fam, rng)
    strategy = fam.strategies[pick]
    success = plan.draw < strategy.p
    agent_fields = {"agent_id": agent_id, "agent_type": sub_type}
    for event, fields in _bash_events(strategy, plan.values, success, agent_fields, rng):
        hooks.send(event, session, fields)
    final = fam.pass_message if success else fam.fail_message
    hooks.send("SubagentStop", session, {**agent_fields, "last_assistant_message": final, "stop_hook_active": False,
                                         "agent_transcript_path": str(hooks.project / ".claude" / f"{agent_id}.jsonl")})
    report = {"status": "completed", "agentType": sub_type, "totalToolUseCount": len(strategy.steps),
              "content": [{"type": "text", "text": final}]}
    hooks.send("PostToolUse", session, {"tool_name": "Agent", "tool_input": agent_input, "tool_use_id": agent_use,
                                        "tool_response": report, "duration_ms": rng.randint(20_000, 240_000)})
    hooks.send("Stop", session, {"last_assistant_message": f"{fam.agent.capitalize()} reports: {final}",
                                 "stop_hook_active": False})
    hooks.send("SessionEnd", session, {"reason": "other"})
    best = strategy.p >= max(s.p for s in fam.strategies)
    return EpisodeResult(plan.index, fam.name, fam.agent, strategy.name, how, success, best, sub_tokens,
                         sub_tokens + tokens, foreign_content(context, fam.agent, markers))


# ---------------------------------------------------------------- arms

def _hook_env(home: Path, *, disabled: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ALMA_", "CLAUDE", "ANTHROPIC_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(ALMA_HOME=str(home), ALMA_USER_ID=USER_ID, ALMA_ENGINE_AUTOSTART="0")
    if disabled:
        env["ALMA_DISABLED"] = "1"
    return env


def make_project(root: Path) -> Path:
    """A scratch git repository standing in for the user's project."""
    project = root / "shop"
    (project / ".claude").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(project)], check=True, capture_output=True)
    subprocess.run(["git", "-C", str(project), "remote", "add", "origin", "git@github.com:example/shop.git"],
                   check=True, capture_output=True)
    return project


@contextmanager
def warm_engine(home: Path, env: dict[str, str]) -> Iterator[dict[str, Any] | None]:
    """The warm engine for ``home`` (started with the hooks' identity), stopped on the way out."""
    from alma_hooks import daemon

    saved = {k: os.environ.get(k) for k in ("ALMA_HOME", "ALMA_USER_ID", "ALMA_ENGINE_AUTOSTART")}
    os.environ.update({k: env[k] for k in saved})
    try:
        info = daemon.start(home, wait_s=60.0)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    try:
        yield info
    finally:
        daemon.stop(home, wait_s=10.0)


@dataclass
class Arm:
    name: str
    results: list[EpisodeResult]
    seconds: float
    hook_seconds: list[float]
    hook_failures: int
    engine: dict[str, Any] | None = None
    db_bleed: list[str] = field(default_factory=list)
    learned: dict[str, dict[str, int]] = field(default_factory=dict)


def run_arm(scenario: Scenario, plans: Sequence[Plan], root: Path, *, memory: bool,
            progress: Callable[[str], None] | None = None) -> Arm:
    """All episodes of one arm in a fresh project and data dir."""
    from alma_hooks.retrieval.budget import estimate_tokens

    name = "with_memory" if memory else "without_memory"
    base = root / name
    project = make_project(base)
    home = base / "alma-home"
    env = _hook_env(home, disabled=not memory)
    hooks = HookClient(project, env)
    markers = agent_markers(scenario)
    started = time.monotonic()
    results: list[EpisodeResult] = []
    arm = Arm(name, results, 0.0, hooks.stats.seconds, 0)
    with ExitStack() as stack:
        arm.engine = stack.enter_context(warm_engine(home, env)) if memory else None
        for plan in plans:
            results.append(run_episode(hooks, scenario, plan, markers, estimate_tokens))
            if progress and (plan.index + 1) % 25 == 0:
                tail = results[-25:]
                progress(f"{name}: {plan.index + 1}/{len(plans)} episodes, last 25: "
                         f"{sum(r.success for r in tail) / len(tail):.0%} success, "
                         f"{sum(r.how != 'random' for r in tail)} guided, {time.monotonic() - started:.0f} s")
    arm.seconds = time.monotonic() - started
    arm.hook_failures = hooks.stats.failures
    if memory:
        arm.db_bleed, arm.learned = inspect_db(home / "memory.db", markers)
    return arm


def inspect_db(db: Path, markers: dict[str, set[str]]) -> tuple[list[str], dict[str, dict[str, int]]]:
    """Stored memories of one agent's scope holding another agent's content; counts per agent and type."""
    import apsw

    if not db.exists():
        return [], {}
    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        rows = list(conn.execute("SELECT id, type, agent, text FROM memories"))
    finally:
        conn.close()
    bleed, learned = [], {}
    for mid, mtype, agent, text in rows:
        learned.setdefault(agent, Counter())[mtype] += 1
        if agent in markers and foreign_content(text, agent, markers):
            bleed.append(f"{agent}/{mtype}/{mid}")
    return bleed, {a: dict(c) for a, c in sorted(learned.items())}


# ---------------------------------------------------------------- report

def _rate(results: Sequence[EpisodeResult], hit: Callable[[EpisodeResult], bool] = lambda r: r.success
          ) -> float | None:
    """Share of ``results`` that are a hit (by default: successes), or None when there are none."""
    return round(sum(1 for r in results if hit(r)) / len(results), 4) if results else None


def _best(r: EpisodeResult) -> bool:
    return r.best


def _injected(r: EpisodeResult) -> bool:
    return r.subagent_tokens > 0


def _pcts(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0, "p95": 0, "max": 0}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]
    return {"p50": statistics.median(ordered), "p95": p95, "max": ordered[-1]}


def default_window(episodes: int) -> int:
    return min(100, max(1, episodes // 3))


def report(scenario: Scenario, episodes: int, seed: int, window: int, on: Arm, off: Arm, wall: float) -> dict[str, Any]:
    last_on, last_off = on.results[-window:], off.results[-window:]
    per_agent = {}
    for agent in scenario.agents():
        a_on = [r for r in last_on if r.agent == agent]
        a_off = [r for r in last_off if r.agent == agent]
        per_agent[agent] = {"with_memory": _rate(a_on), "without_memory": _rate(a_off), "episodes": len(a_on),
                            "best_strategy_share": _rate(a_on, _best)}
    bleed_episodes = [r.index for r in on.results if r.foreign]
    with_m, without_m = _rate(last_on) or 0.0, _rate(last_off) or 0.0
    ceiling = statistics.mean(max(s.p for s in r_fam.strategies)
                              for r_fam in (next(f for f in scenario.families if f.name == r.family) for r in last_on))
    hooks_all = on.hook_seconds + off.hook_seconds
    return {
        "scenario": scenario.name,
        "episodes": episodes,
        "seed": seed,
        "window": window,
        "with_memory": with_m,
        "without_memory": without_m,
        "delta_pp": round(100 * (with_m - without_m), 1),
        "ceiling": round(ceiling, 4),
        "per_agent": per_agent,
        "bleed": len(bleed_episodes) + len(on.db_bleed),
        "bleed_counts": {"episodes": len(bleed_episodes), "db_rows": len(on.db_bleed)},
        "bleed_episodes": bleed_episodes[:20],
        "bleed_db_rows": on.db_bleed[:20],
        "tokens": {"subagent": _pcts([r.subagent_tokens for r in on.results]),
                   "per_episode": _pcts([r.episode_tokens for r in on.results]),
                   "subagent_injected_share": _rate(on.results, _injected)},
        "choices": dict(Counter(r.how for r in last_on)),
        "best_strategy_share": {"with_memory": _rate(last_on, _best), "without_memory": _rate(last_off, _best)},
        "curve": {arm.name: [_rate(arm.results[i:i + 50]) for i in range(0, len(arm.results), 50)]
                  for arm in (on, off)},
        "learned": on.learned,
        "hooks": {"runs": len(hooks_all), "failures": on.hook_failures + off.hook_failures,
                  "ms": {k: round(v * 1000, 1) for k, v in _pcts(hooks_all).items()},
                  "ms_with_memory": {k: round(v * 1000, 1) for k, v in _pcts(on.hook_seconds).items()}},
        "engine": bool(on.engine),
        "wall_time_s": {"with_memory": round(on.seconds, 1), "without_memory": round(off.seconds, 1),
                        "total": round(wall, 1)},
    }


def run_benchmark(scenario: Scenario | Path | str = DEFAULT_SCENARIO, *, episodes: int = 300, seed: int = 7,
                  families: int | None = None, window: int | None = None, workdir: Path | None = None,
                  parallel: bool = True, keep: bool = False,
                  progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run both arms and return the report (see the module docstring).

    ``parallel`` runs the memory-disabled arm in a second thread: it does not
    depend on the other arm and its hooks do almost nothing. ``keep`` leaves
    the scratch projects and data dirs (path in the report's ``workdir``).
    """
    if not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario)
    scenario = scenario.subset(families)
    window = window or default_window(episodes)
    plans = plan_episodes(scenario, episodes, seed)
    root = Path(tempfile.mkdtemp(prefix="alma-learning-", dir=workdir))
    started = time.monotonic()
    cpu_before = _children_cpu()
    load_before = os.getloadavg()[0]
    try:
        arms: dict[str, Arm] = {}
        errors: list[BaseException] = []

        def off_arm() -> None:
            try:
                arms["off"] = run_arm(scenario, plans, root, memory=False, progress=progress)
            except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
                errors.append(e)

        worker = threading.Thread(target=off_arm, name="without-memory")
        if parallel:
            worker.start()
        arms["on"] = run_arm(scenario, plans, root, memory=True, progress=progress)
        if parallel:
            worker.join()
        else:
            off_arm()
        if errors:
            raise errors[0]
        result = report(scenario, episodes, seed, window, arms["on"], arms["off"], time.monotonic() - started)
        result["wall_time_s"]["hook_cpu"] = round(_children_cpu() - cpu_before, 1)
        # hooks are short subprocesses: their wall time depends on what else the machine runs
        result["machine"] = {"cpus": os.cpu_count(), "load_avg_1m": [round(load_before, 1),
                                                                     round(os.getloadavg()[0], 1)]}
        if keep:
            result["workdir"] = str(root)
        return result
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def _children_cpu() -> float:
    """CPU seconds of finished child processes (the hooks; not the detached engine)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _print_human(r: dict[str, Any]) -> None:
    print(f"alma-hooks learning benchmark: scenario {r['scenario']}, {r['episodes']} episodes per arm, "
          f"seed {r['seed']}, last {r['window']} episodes")
    print(f"  success with memory    {r['with_memory']:.1%}")
    print(f"  success without memory {r['without_memory']:.1%}   ({r['delta_pp']:+.1f} pp; best strategy every time: "
          f"{r['ceiling']:.1%})")
    def pct(x: float | None, digits: int = 1) -> str:
        return "n/a" if x is None else f"{x:.{digits}%}"

    for agent, a in r["per_agent"].items():
        print(f"  {agent:8s} with {pct(a['with_memory'])}  without {pct(a['without_memory'])}  "
              f"({a['episodes']} episodes, best strategy chosen {pct(a['best_strategy_share'], 0)})")
    print(f"  cross-agent bleed      {r['bleed']} (episodes {r['bleed_counts']['episodes']}, "
          f"DB rows {r['bleed_counts']['db_rows']})")
    t = r["tokens"]
    print(f"  injected tokens        subagent p50 {t['subagent']['p50']} p95 {t['subagent']['p95']} "
          f"max {t['subagent']['max']}; per episode p50 {t['per_episode']['p50']} p95 {t['per_episode']['p95']} "
          f"max {t['per_episode']['max']}")
    print(f"  choices (last window)  {r['choices']}")
    print(f"  success per 50         with {r['curve']['with_memory']}")
    print(f"                         without {r['curve']['without_memory']}")
    print(f"  learned                {r['learned']}")
    h = r["hooks"]
    print(f"  hooks                  {h['runs']} runs, {h['failures']} failed, p50 {h['ms']['p50']} ms, "
          f"p95 {h['ms']['p95']} ms (with memory: p50 {h['ms_with_memory']['p50']} ms, "
          f"p95 {h['ms_with_memory']['p95']} ms)")
    if r.get("workdir"):
        print(f"  kept                   {r['workdir']}")
    w = r["wall_time_s"]
    print(f"  wall time              {w['total']} s (with memory {w['with_memory']} s, without {w['without_memory']} s; "
          f"hook CPU {w.get('hook_cpu')} s)")
    if r.get("machine"):
        print(f"  machine                {r['machine']['cpus']} CPUs, load average {r['machine']['load_avg_1m']} "
              "(start, end)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--episodes", type=int, default=300, help="episodes per arm (default 300)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--scenario", type=Path, default=DEFAULT_SCENARIO, help="scenario file (JSON or YAML)")
    parser.add_argument("--families", type=int, default=None, help="use only the first N families (smoke runs)")
    parser.add_argument("--window", type=int, default=None, help="episodes at the end to score (default 100)")
    parser.add_argument("--sequential", action="store_true", help="run the two arms one after the other")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument("--keep", action="store_true", help="keep the scratch projects and DBs (path printed)")
    args = parser.parse_args(argv)
    progress = None if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    result = run_benchmark(args.scenario, episodes=args.episodes, seed=args.seed, families=args.families,
                           window=args.window, parallel=not args.sequential, keep=args.keep,
                           progress=progress)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print_human(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

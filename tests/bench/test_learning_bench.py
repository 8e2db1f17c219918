"""The learning benchmark (bench/learning.py): its simulated agent, bleed detection, and a smoke run.

The smoke run drives the real hook entry (subprocesses) and a real warm engine,
so it is marked slow: ``pytest -m slow tests/bench``.
"""

from __future__ import annotations

import importlib.util
import json
import random
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from alma_hooks.retrieval.budget import render_slice
from alma_hooks.types import AntiPattern, Heuristic, Hit

REPO = Path(__file__).resolve().parents[2]


def _load_bench():
    name = "alma_bench_learning"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / "learning.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


bench = _load_bench()


@pytest.fixture(scope="module")
def scenario():
    return bench.load_scenario()


def _family(scenario, name):
    return next(f for f in scenario.families if f.name == name)


def _context(*memories) -> str:
    """The context as the product renders it for these memories."""
    return render_slice([Hit(m, 1.0 - i / 10) for i, m in enumerate(memories)], 1000).text


def _heuristic(strategy: str) -> Heuristic:
    return Heuristic(project_id="p", agent="helena", condition='testing tasks like "run the checkout e2e spec"',
                     strategy=strategy, successes=4, trials=5, confidence=0.38)


def _anti_pattern(pattern: str, alternative: str = "") -> AntiPattern:
    return AntiPattern(project_id="p", agent="helena", pattern=f'{pattern} (on tasks like "checkout spec")',
                       why="7 passed, 1 failed", alternative=alternative, occurrence_count=3)


def test_default_scenario_shape(scenario):
    assert len(scenario.families) == 12
    assert {f.agent for f in scenario.families} == {"helena", "victor"}
    for f in scenario.families:
        assert 5 <= len(f.tasks) <= 8, f.name
        assert len(set(f.tasks)) == len(f.tasks), f.name
        assert 3 <= len(f.strategies) <= 4, f.name
        probs = sorted(s.p for s in f.strategies)
        assert probs[-1] >= 0.8 and all(0.15 <= p <= 0.5 for p in probs[:-1]), f.name
        shapes = [tuple(bench.command_shape(st.cmd) for st in s.steps) for s in f.strategies]
        assert len(set(shapes)) == len(shapes), f"{f.name}: two strategies look the same to the agent"
        for s in f.strategies:
            assert s.steps[-1].fail, f"{f.name}/{s.name}: the last step needs a failure output"


def test_plan_is_deterministic_and_shared_by_both_arms(scenario):
    a = bench.plan_episodes(scenario, 40, seed=7)
    b = bench.plan_episodes(scenario, 40, seed=7)
    assert [(p.family.name, p.task, p.draw) for p in a] == [(p.family.name, p.task, p.draw) for p in b]
    assert "{" not in "".join(p.task for p in a)
    assert [p.task for p in a] != [p.task for p in bench.plan_episodes(scenario, 40, seed=8)]


def test_agent_follows_a_rendered_heuristic(scenario):
    fam = _family(scenario, "checkout_e2e")
    good = fam.strategies[0]
    shown = " → ".join(f"Bash: {bench._fill(st.cmd, {'spec': 'checkout.spec.ts'})}" for st in good.steps)
    context = _context(_heuristic(shown))
    assert "## Heuristics" in context
    pick, how = bench.choose_strategy(context, fam, random.Random(1))
    assert (fam.strategies[pick].name, how) == (good.name, "heuristic")


def test_agent_ignores_a_heuristic_for_other_commands(scenario):
    fam = _family(scenario, "checkout_e2e")
    context = _context(_heuristic("Bash: pytest tests/api/test_orders.py -k cursor --maxfail=1 -p no:randomly"))
    picks = {bench.choose_strategy(context, fam, random.Random(seed)) for seed in range(40)}
    assert {how for _, how in picks} == {"random"}
    assert len({pick for pick, _ in picks}) == len(fam.strategies)


def test_agent_avoids_a_rendered_anti_pattern_and_takes_its_alternative(scenario):
    fam = _family(scenario, "checkout_e2e")
    bad = fam.strategies[2]
    good = fam.strategies[0]
    bad_text = f"Bash: {bench._fill(bad.steps[0].cmd, {'spec': 'cart.spec.ts'})}"
    good_text = " → ".join(f"Bash: {bench._fill(st.cmd, {'spec': 'cart.spec.ts'})}" for st in good.steps)
    only_avoid = _context(_anti_pattern(bad_text))
    picks = {fam.strategies[bench.choose_strategy(only_avoid, fam, random.Random(s))[0]].name for s in range(60)}
    assert bad.name not in picks and len(picks) == len(fam.strategies) - 1
    with_alternative = _context(_anti_pattern(bad_text, good_text))
    pick, how = bench.choose_strategy(with_alternative, fam, random.Random(3))
    assert (fam.strategies[pick].name, how) == (good.name, "alternative")


def test_avoid_wins_over_a_heuristic_for_the_same_strategy(scenario):
    fam = _family(scenario, "checkout_e2e")
    text = f"Bash: {bench._fill(fam.strategies[1].steps[0].cmd, {'spec': 'a.spec.ts'})}"
    context = _context(_heuristic(text), _anti_pattern(text))
    for seed in range(30):
        pick, how = bench.choose_strategy(context, fam, random.Random(seed))
        assert pick != 1 and how == "random"


def test_a_cut_strategy_text_still_names_its_candidate(scenario):
    fam = _family(scenario, "checkout_e2e")
    shown = "Bash: npm run build --workspace=web → Bash: npx playwright test tests/e2e/checkout.spec.ts --proj…"
    assert fam.strategies[bench.match_strategy(shown, fam.strategies)].name == "build-then-chromium-trace"
    assert bench.match_strategy("Bash: npx playwright test tests/e2e/x.spec.ts…", fam.strategies) is None  # ambiguous


def test_bleed_detector_sees_the_other_agents_content_and_only_that(scenario):
    markers = bench.agent_markers(scenario)
    victor_cmd = bench._fill(_family(scenario, "orders_api_pagination").strategies[0].steps[0].cmd, {"name": "cursor"})
    victor_task = _family(scenario, "auth_token_expiry").tasks[0]
    helena_cmd = bench._fill(_family(scenario, "checkout_e2e").strategies[0].steps[1].cmd, {"spec": "a.spec.ts"})
    leaked = _context(_heuristic(f"Bash: {victor_cmd}"))
    assert bench.foreign_content(leaked, "helena", markers)
    assert bench.foreign_content(f"- {victor_task[:60]}", "helena", markers)
    assert not bench.foreign_content(_context(_heuristic(f"Bash: {helena_cmd}")), "helena", markers)
    assert bench.foreign_content(_context(_heuristic(f"Bash: {helena_cmd}")), "victor", markers)
    every_task = " ".join(t for f in scenario.families if f.agent == "helena" for t in f.tasks)
    assert not bench.foreign_content(every_task, "helena", markers)


@pytest.fixture
def short_tmp():
    """A scratch dir with a short path: the engine's Unix socket path must stay under ~107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="alb-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.slow
def test_smoke_run_drives_the_real_hooks(short_tmp):
    result = bench.run_benchmark(episodes=30, seed=7, families=3, workdir=short_tmp)
    json.dumps(result)  # --json prints it
    for key in ("with_memory", "without_memory"):
        assert isinstance(result[key], float) and 0.0 <= result[key] <= 1.0
    assert result["bleed"] == 0, (result["bleed_episodes"], result["bleed_db_rows"])
    assert set(result["per_agent"]) == {"helena", "victor"}
    for figures in result["per_agent"].values():
        assert {"with_memory", "without_memory", "episodes"} <= set(figures)
    tokens = result["tokens"]
    for kind in ("subagent", "per_episode"):
        assert set(tokens[kind]) == {"p50", "p95", "max"}
    assert 0 < tokens["subagent"]["max"] <= 1000  # something was injected, under the default budget
    assert result["engine"] is True
    assert result["hooks"]["failures"] == 0 and result["hooks"]["runs"] >= 2 * 30 * 9  # at least 9 events per episode
    assert result["learned"]["helena"]["outcome"] > 0 and result["learned"]["victor"]["outcome"] > 0
    assert set(result["wall_time_s"]) >= {"with_memory", "without_memory", "total"}
    assert not list(short_tmp.iterdir()), "scratch projects and data dirs are removed"

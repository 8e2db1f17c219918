"""Latency of the hot path: retrieval in-process and the whole UserPromptSubmit hook process.

Usage::

    python bench/latency.py [--json] [--sizes 1000,10000,100000] [--million]
                            [--queries 50] [--hook-runs 20] [--embed-max 2000]

For each size a fresh DB holds that many synthetic memories of one project,
in coding-agent vocabulary (templates combining tasks, tools, files,
frameworks, errors and strategies), spread like a real project's: mostly
outcomes, then heuristics, knowledge, anti-patterns and preferences; 70% of
the main agent, the rest of two subagents; written over the last 180 days.
They are inserted through the store's ``import_`` (the product's bulk path:
redaction, scope policy, audit, FTS5 and vec0 indexes).

Vectors: up to ``--embed-max`` memories every text is embedded with the real
model. Above it, a sample of ``--sample`` texts is embedded and every memory
gets a synthetic unit vector clustered around one of the sample's real
vectors (Gaussian noise, re-normalised), so the index sees a realistic
distribution without embedding 100k or 1M texts; the output says which.

Measured per size:

- ``search``: ``Retriever.search(scope, prompt, k=10, vector=...)`` with the
  prompt's vector precomputed (the warm engine's path minus the model call),
  on a store opened as the engine opens it (``warm=True``) after
  ``--warmup`` other prompts (a running engine's caches are warm);
- ``slice``: ``Retriever.slice_for_prompt`` (search, quotas, packing);
- ``lexical slice``: the same without a vector (a hook with no engine);
- ``hook none`` / ``hook warm``: whole-process wall time of the real
  ``hooks/alma-hook`` subprocess for UserPromptSubmit, with no engine
  (``ALMA_ENGINE_AUTOSTART=0``) and with a warm engine
  (``alma_hooks.daemon.start``), every prompt new (the engine embeds it);
- ``tokens``: tokens (``estimate_tokens``) of the additionalContext the hook
  injected, against the configured budget.

``--million`` adds one DB of 1,000,000 memories across 10 projects (100k
each, synthetic vectors, written interleaved as several projects' sessions
would be) and measures in one project's scope. Targets (not
asserted): retrieval p95 <= 10 ms at 100k in one project, <= 30 ms at 1M
across 10; hook p95 <= 40 ms warm, <= 120 ms with no engine; tokens never
above the budget.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from alma_hooks.config import ScopePolicy, load_config  # noqa: E402
from alma_hooks.retrieval.budget import estimate_tokens  # noqa: E402
from alma_hooks.retrieval.search import Retriever  # noqa: E402
from alma_hooks.storage.sqlite import SQLiteStore  # noqa: E402
from alma_hooks.types import ANY, AntiPattern, DomainKnowledge, Heuristic, Memory, Outcome, Preference, Scope  # noqa: E402

HOOK = REPO / "hooks" / "alma-hook"
USER = "dev@example.com"
AGENTS = (("main", 0.7), ("helena", 0.15), ("victor", 0.15))
TYPES = (("outcome", 0.55), ("heuristic", 0.15), ("knowledge", 0.12), ("anti_pattern", 0.1), ("preference", 0.08))

TASKS = ["fix the flaky checkout test", "add pagination to the orders endpoint", "migrate the users table to UUID keys",
         "refactor the cart reducer", "speed up the CI pipeline", "add a retry to the payment webhook handler",
         "upgrade React to the next major version", "fix the login redirect loop", "add rate limiting to the API",
         "write an e2e test for the signup form", "debug the memory leak in the worker", "add an index for slow reports",
         "fix the timezone bug in invoices", "split the settings page into tabs", "add OpenTelemetry tracing",
         "fix the broken Docker build", "make the search endpoint case-insensitive", "remove the deprecated v1 routes",
         "add a feature flag for the new onboarding", "fix the N+1 query on the dashboard",
         "validate the address form fields", "cache product pages in Redis", "fix the type errors after the upgrade",
         "rotate the API keys used by the sync job", "add dark mode to the header component"]
FILES = ["src/api/routes/orders.py", "tests/test_checkout.py", "frontend/src/components/CartSummary.tsx",
         "src/models/user.py", "alembic/versions/20240611_uuid_keys.py", "frontend/src/pages/Settings.tsx",
         "src/workers/sync.py", "docker/Dockerfile.api", ".github/workflows/ci.yml", "src/services/payments.py",
         "frontend/src/hooks/useCart.ts", "tests/e2e/signup.spec.ts", "src/db/session.py", "src/api/auth.py",
         "frontend/vite.config.ts", "src/reports/queries.sql", "infra/k8s/api-deployment.yaml",
         "src/invoices/render.py", "frontend/src/store/cartSlice.ts", "pyproject.toml", "package.json",
         "src/search/index.py", "tests/conftest.py", "src/api/middleware/ratelimit.py", "Makefile"]
FRAMEWORKS = ["FastAPI", "Django", "React", "Next.js", "SQLAlchemy", "Alembic", "Playwright", "Jest", "pytest",
              "Celery", "Redis", "Postgres", "Kubernetes", "Terraform", "GraphQL", "Vite", "Redux Toolkit",
              "TypeScript", "Pydantic", "Docker Compose", "GitHub Actions", "OpenTelemetry", "Stripe", "Tailwind"]
TOOLS = ["pytest -x -q", "npm test", "pnpm run build", "ruff check --fix", "mypy --strict", "docker compose up",
         "git bisect", "make migrate", "alembic upgrade head", "npx playwright test", "jest --watch",
         "vitest run", "kubectl logs", "terraform plan", "curl -v", "psql -c 'EXPLAIN ANALYZE'", "py-spy top",
         "npm ci", "gh run view --log", "redis-cli monitor"]
ERRORS = ["ModuleNotFoundError: No module named 'app.settings'",
          "TypeError: Cannot read properties of undefined (reading 'map')",
          "IntegrityError: duplicate key value violates unique constraint \"users_email_key\"",
          "AssertionError: expected status 200, got 422", "TimeoutError: locator.click: Timeout 30000ms exceeded",
          "connect ECONNREFUSED 127.0.0.1:5432", "error: Incompatible types in assignment",
          "RecursionError: maximum recursion depth exceeded", "OOMKilled: container exceeded memory limit",
          "HTTP 429 Too Many Requests from the payments API", "SyntaxError: Unexpected token '<' in JSON",
          "ImportError: cannot import name 'Mapped' from 'sqlalchemy.orm'", "Hydration failed: text content mismatch",
          "DeadlockDetected: deadlock detected while updating orders", "ERR_MODULE_NOT_FOUND: vite.config.ts",
          "KeyError: 'DATABASE_URL'", "flake: test passed on retry 2 of 3", "exit code 137 in the test job"]
STRATEGIES = ["run the failing test alone with -x and read the full traceback first",
              "add a regression test that reproduces the bug before changing code",
              "mock the HTTP client at the boundary instead of patching internals",
              "use factory fixtures instead of JSON fixture files", "wait for network idle before clicking",
              "pin the dependency version and regenerate the lockfile", "bisect between the last green and red commit",
              "check the migration on a copy of production data first", "add the missing index and compare EXPLAIN plans",
              "wrap the write in a transaction with retries on deadlock", "read the container logs before restarting",
              "split the change into a schema migration and a data backfill", "use data-testid selectors, not CSS classes",
              "batch the queries with selectinload", "set the environment variable in .env.test",
              "increase the timeout only after profiling the slow step", "run the type checker on the changed files"]
PREFERENCES = ["no emojis in code or commit messages", "use type hints on every public function",
               "prefer small focused pull requests", "always run the linter before committing",
               "write commit messages in the imperative mood", "use pnpm, never npm, in the frontend",
               "keep functions under fifty lines", "explain the plan before editing many files",
               "never force-push to main", "use f-strings, not format()", "prefer pytest parametrize over loops",
               "put SQL in .sql files, not inline strings"]


def pick(rng: random.Random, weighted: Sequence[tuple[str, float]]) -> str:
    return rng.choices([w for w, _ in weighted], [p for _, p in weighted])[0]


def make_memory(rng: random.Random, project: str, when: float) -> Memory:
    """One realistic memory of ``project`` (type and agent drawn like a real project's mix)."""
    c = rng.choice
    mtype = pick(rng, TYPES)
    agent = pick(rng, AGENTS)
    ticket = f"SHOP-{rng.randint(100, 9999)}"
    common: dict[str, Any] = {"project_id": project, "created_at": when, "updated_at": when}
    if mtype == "outcome":
        ok = rng.random() < 0.7
        return Outcome(agent=agent, task_description=f"{c(TASKS)} in {c(FILES)} ({c(FRAMEWORKS)}, {ticket})",
                       success=ok, strategy_used=f"{c(TOOLS)}; {c(STRATEGIES)}",
                       error="" if ok else c(ERRORS), confidence=0.5, **common)
    if mtype == "heuristic":
        trials = rng.randint(3, 40)
        return Heuristic(agent=agent, condition=f"{c(TASKS).split(' ', 1)[1]} with {c(FRAMEWORKS)} in {c(FILES)}",
                         strategy=f"{c(STRATEGIES)} (`{c(TOOLS)}`)", occurrence_count=trials,
                         successes=rng.randint(trials // 2, trials), trials=trials, last_validated=when,
                         confidence=round(rng.uniform(0.4, 0.95), 2), **common)
    if mtype == "anti_pattern":
        return AntiPattern(agent=agent, pattern=f"running `{c(TOOLS)}` on {c(FILES)} before {c(STRATEGIES)}",
                           why=c(ERRORS), alternative=c(STRATEGIES), occurrence_count=rng.randint(2, 12),
                           last_validated=when, confidence=round(rng.uniform(0.4, 0.9), 2), **common)
    if mtype == "knowledge":
        return DomainKnowledge(agent=ANY, fact=f"{c(FILES)} is built with {c(FRAMEWORKS)}; run `{c(TOOLS)}` to check "
                                              f"it ({ticket})", confidence=0.9, **common)
    return Preference(agent=ANY, user_id=USER, category="style", preference=f"{c(PREFERENCES)} ({ticket})",
                      source="prompt", confidence=0.9, **common)


def make_prompts(rng: random.Random, n: int) -> list[str]:
    """Task prompts a developer types, in the same vocabulary (none states a preference)."""
    forms = ["Can you {task}? It's in {file}.", "{error} when I run {tool} - please look into it",
             "The {fw} part of {file} is broken: {error}", "Let's {task} using {fw}",
             "{task}, and make sure {tool} passes afterwards", "Why does {tool} fail with {error} after my change to {file}?"]
    out = []
    for i in range(n):
        out.append(rng.choice(forms).format(task=rng.choice(TASKS), file=rng.choice(FILES), fw=rng.choice(FRAMEWORKS),
                                            tool=rng.choice(TOOLS), error=rng.choice(ERRORS)) + f" (#{i})")
    return out


# ---------------------------------------------------------------- vectors

class Vectors:
    """Real embeddings for small sets; clustered synthetic unit vectors around real ones for large sets."""

    def __init__(self, embed_max: int, sample: int, seed: int) -> None:
        from alma_hooks.embedding import get_embedder

        self.model = get_embedder()
        self.embed_max = embed_max
        self.sample = sample
        self.seed = seed
        self.centres: Any = None
        self.embed_seconds = 0.0

    def embed(self, texts: Sequence[str]) -> Any:
        started = time.perf_counter()
        out = self.model.embed(list(texts))
        self.embed_seconds += time.perf_counter() - started
        return out

    def for_texts(self, texts: Sequence[str], rng: random.Random, total: int) -> tuple[Any, str]:
        """Vectors of one batch of a set of ``total`` memories."""
        import numpy as np

        if total <= self.embed_max:
            return self.embed(texts), "real (every text embedded)"
        if self.centres is None:
            self.centres = self.embed(rng.sample(list(texts), min(self.sample, len(texts))))
        nrng = np.random.default_rng(self.seed + len(texts))
        idx = nrng.integers(0, len(self.centres), len(texts))
        noise = nrng.normal(scale=0.035, size=(len(texts), self.centres.shape[1])).astype(np.float32)
        vecs = self.centres[idx] + noise
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        return vecs.astype(np.float32), f"synthetic, clustered around {len(self.centres)} real embeddings"


# ---------------------------------------------------------------- building

def build_db(path: Path, projects: Sequence[str], per_project: int, vectors: Vectors, seed: int,
             batch: int = 20_000) -> str:
    """Fill ``path`` with ``per_project`` memories in each of ``projects``; returns how vectors were made.

    Several projects are written in turns of 2,000 memories, so their rows interleave.
    """
    rng = random.Random(seed)
    now = time.time()
    store = SQLiteStore(path, ScopePolicy.permissive(), actor="bench")
    how = ""
    turn = batch if len(projects) == 1 else 2_000
    done = dict.fromkeys(projects, 0)
    try:
        while any(n < per_project for n in done.values()):
            for project in projects:
                n = min(turn, per_project - done[project])
                if n <= 0:
                    continue
                mems = [make_memory(rng, project, now - rng.uniform(0, 180 * 86400)) for _ in range(n)]
                vecs, how = vectors.for_texts([m.text for m in mems], rng, per_project * len(projects))
                rows = []
                for m, v in zip(mems, vecs):
                    d = m.to_dict()
                    d["embedding"] = v
                    d["embedding_model"] = vectors.model.model_id
                    rows.append(d)
                store.import_(rows, reason="bench")
                done[project] += n
    finally:
        store.close()
    return how


# ---------------------------------------------------------------- measuring

def percentiles(xs: Sequence[float]) -> dict[str, float]:
    if not xs:
        return {"p50": 0.0, "p95": 0.0, "max": 0.0, "n": 0}
    s = sorted(xs)
    p95 = s[min(len(s) - 1, int(round(0.95 * (len(s) - 1))))]
    return {"p50": round(statistics.median(s), 2), "p95": round(p95, 2), "max": round(s[-1], 2), "n": len(s)}


def in_process(path: Path, project: str, prompts: Sequence[str], qvecs: Any, config: Any,
               warmup: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    # the store as the engine opens it (KNN codes held in memory), warmed by other prompts first,
    # as a long-running engine is: the OS page cache and the codes of the scope are loaded
    store = SQLiteStore(path, config.policy, actor="bench", warm=True)
    scope = Scope(project, "main", USER)
    retriever = Retriever(store, config)  # no embedder, no result cache: every call does the work
    res: dict[str, Any] = {}
    try:
        for p, v in warmup:
            retriever.slice_for_prompt(scope, p, vector=[float(x) for x in v])
        for name, call in (
                ("search", lambda p, v: retriever.search(scope, p, k=10, vector=v)),
                ("slice", lambda p, v: retriever.slice_for_prompt(scope, p, vector=v)),
                ("lexical_slice", lambda p, v: retriever.slice_for_prompt(scope, p))):
            times, cpu = [], []
            for i, (p, v) in enumerate(zip(prompts, qvecs)):
                vec = [float(x) for x in v]
                started, cpu_started = time.perf_counter(), time.process_time()
                call(p, vec)
                if i >= 3:
                    times.append((time.perf_counter() - started) * 1000)
                    cpu.append((time.process_time() - cpu_started) * 1000)
            res[name] = percentiles(times)
            res[name + "_cpu"] = percentiles(cpu)
        tokens = [retriever.slice_for_prompt(scope, p, vector=[float(x) for x in v]).tokens
                  for p, v in zip(prompts[:20], qvecs[:20])]
        res["slice_tokens"] = percentiles([float(t) for t in tokens])
    finally:
        store.close()
    return res


def hook_env(home: Path, db: Path, project: str, autostart: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALMA_")}
    env.update(ALMA_HOME=str(home), ALMA_DB=str(db), ALMA_PROJECT_ID=project, ALMA_USER_ID=USER,
               ALMA_ENGINE_AUTOSTART="1" if autostart else "0")
    return env


def run_hooks(home: Path, db: Path, project: str, cwd: Path, prompts: Sequence[str], *, warm: bool,
              budget: int) -> dict[str, Any]:
    """Wall time and injected tokens of UserPromptSubmit through the real hook entry script."""
    env = hook_env(home, db, project, autostart=False)
    import resource

    times: list[float] = []
    cpu: list[float] = []
    tokens: list[float] = []
    for i, prompt in enumerate(prompts):
        payload = {"session_id": f"bench-{'warm' if warm else 'none'}-{i}", "transcript_path": "",
                   "cwd": str(cwd), "hook_event_name": "UserPromptSubmit", "prompt": prompt}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        proc = subprocess.run([str(HOOK)], input=json.dumps(payload).encode(), env=env, capture_output=True,
                              timeout=30)
        ms = (time.perf_counter() - started) * 1000
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if i >= 2:  # the first runs warm the OS page cache (and the engine's store)
            times.append(ms)
            cpu.append((after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1000)
        text = ""
        if proc.stdout.strip():
            text = json.loads(proc.stdout)["hookSpecificOutput"]["additionalContext"]
        tokens.append(float(estimate_tokens(text)))
    over = sum(1 for t in tokens if t > budget)
    return {"wall_ms": percentiles(times), "cpu_ms": percentiles(cpu), "tokens": percentiles(tokens),
            "over_budget": over,
            "empty": sum(1 for t in tokens if t == 0)}


def with_engine(home: Path, db: Path, project: str, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` while a warm engine (started like SessionStart starts it) serves ``home``."""
    from alma_hooks import daemon

    saved = dict(os.environ)
    os.environ.update(hook_env(home, db, project, autostart=False))
    try:
        if not daemon.start(home, wait_s=60.0):
            raise RuntimeError("the engine did not start")
        return fn()
    finally:
        daemon.stop(home)
        os.environ.clear()
        os.environ.update(saved)


def measure_size(label: str, projects: Sequence[str], per_project: int, args: argparse.Namespace,
                 vectors: Vectors, workdir: Path, prompts: Sequence[str], qvecs: Any) -> dict[str, Any]:
    home = workdir / f"home-{label}"
    home.mkdir()
    db = home / "memory.db"
    cwd = workdir / f"proj-{label}"
    cwd.mkdir()
    started = time.perf_counter()
    how = build_db(db, projects, per_project, vectors, args.seed)
    build_s = time.perf_counter() - started
    project = projects[0]
    config = load_config(cwd, hook_env(home, db, project, autostart=False))
    row: dict[str, Any] = {"memories": per_project * len(projects), "projects": len(projects), "vectors": how,
                           "build_s": round(build_s, 1), "db_mb": round(db.stat().st_size / 1e6, 1)}
    warm = list(zip(prompts[len(prompts) - args.warmup:], qvecs[args.queries:]))
    row.update(in_process(db, project, prompts[:args.queries], qvecs[:args.queries], config, warm))
    if args.hook_runs:
        hp = prompts[args.queries:args.queries + args.hook_runs + 2]
        row["hook_none"] = run_hooks(home, db, project, cwd, hp, warm=False, budget=config.budget_tokens)
        hp = prompts[args.queries + args.hook_runs + 2:args.queries + 2 * args.hook_runs + 4]
        row["hook_warm"] = with_engine(home, db, project, lambda: run_hooks(
            home, db, project, cwd, hp, warm=True, budget=config.budget_tokens))
        row["budget"] = config.budget_tokens
    return row


def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    vectors = Vectors(args.embed_max, args.sample, args.seed)
    prompts = make_prompts(rng, args.queries + 2 * args.hook_runs + 4 + args.warmup)
    qvecs = vectors.embed(prompts[:args.queries] + prompts[len(prompts) - args.warmup:])
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    result: dict[str, Any] = {"sizes": {}, "load_average": os.getloadavg()[0], "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="alma-latency-") as tmp:
        for n in sizes:
            result["sizes"][str(n)] = measure_size(str(n), ["bench/app"], n, args, vectors, Path(tmp), prompts, qvecs)
        if args.million:
            projects = [f"bench/app{i}" for i in range(10)]
            result["sizes"]["1000000"] = measure_size("1000000", projects, 100_000, args, vectors, Path(tmp),
                                                      prompts, qvecs)
    result["load_average_end"] = os.getloadavg()[0]
    return result


def fmt(p: dict[str, float]) -> str:
    return f"{p['p50']:.1f}/{p['p95']:.1f}"


def print_table(result: dict[str, Any]) -> None:
    print(f"latency (ms, p50/p95); {result['cpus']} CPUs, load average {result['load_average']:.1f} at start, "
          f"{result['load_average_end']:.1f} at end")
    head = ["memories", "projects", "search", "slice", "lex slice", "hook none", "hook warm", "tokens p50/p95/max"]
    print("".join(f"{h:>{w}}" for h, w in zip(head, (10, 9, 13, 13, 13, 13, 13, 20))))
    for row in result["sizes"].values():
        cells = [str(row["memories"]), str(row["projects"]), fmt(row["search"]), fmt(row["slice"]),
                 fmt(row["lexical_slice"])]
        if "hook_none" in row:
            t = row["hook_warm"]["tokens"]
            cells += [fmt(row["hook_none"]["wall_ms"]), fmt(row["hook_warm"]["wall_ms"]),
                      f"{t['p50']:.0f}/{t['p95']:.0f}/{t['max']:.0f}"]
        else:
            cells += ["-", "-", "-"]
        print("".join(f"{c:>{w}}" for c, w in zip(cells, (10, 9, 13, 13, 13, 13, 13, 20))))
    print("CPU time of the same calls (ms, p50/p95; the hook's is the process's own, not the engine's):")
    for row in result["sizes"].values():
        line = (f"{row['memories']:>10}{row['projects']:>9}{fmt(row['search_cpu']):>13}{fmt(row['slice_cpu']):>13}"
                f"{fmt(row['lexical_slice_cpu']):>13}")
        if "hook_none" in row:
            line += f"{fmt(row['hook_none']['cpu_ms']):>13}{fmt(row['hook_warm']['cpu_ms']):>13}"
        print(line)
    print()
    for row in result["sizes"].values():
        extra = ""
        if "hook_none" in row:
            over = row["hook_none"]["over_budget"] + row["hook_warm"]["over_budget"]
            extra = (f"; budget {row['budget']}, over budget {over}, empty slices "
                     f"{row['hook_none']['empty']} (none) / {row['hook_warm']['empty']} (warm)")
        print(f"{row['memories']:>9} memories: vectors {row['vectors']}; built in {row['build_s']} s, "
              f"{row['db_mb']} MB{extra}")
    print("targets: retrieval p95 <= 10 ms at 100k (one project), <= 30 ms at 1M (10 projects); "
          "hook p95 <= 40 ms warm, <= 120 ms with no engine; tokens <= budget")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--sizes", default="1000,10000,100000", help="memories per project (default: %(default)s)")
    p.add_argument("--million", action="store_true", help="also 1M memories across 10 projects")
    p.add_argument("--queries", type=int, default=50, help="in-process queries per size")
    p.add_argument("--hook-runs", type=int, default=20, help="hook processes per size and mode (0: skip)")
    p.add_argument("--warmup", type=int, default=50, help="other prompts sliced first, in-process (a warm engine)")
    p.add_argument("--embed-max", type=int, default=2000, help="embed every text up to this many memories")
    p.add_argument("--sample", type=int, default=1000, help="real embeddings behind synthetic vectors")
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args(argv)
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

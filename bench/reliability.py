"""The fault runner: the reliability suite of issue 7 in full, and a table of what it measured.

Usage::

    .venv/bin/python bench/reliability.py [--json] [--quick] [-- PYTEST_ARGS...]

Runs ``pytest -m "fault or soak"`` over ``tests/`` with the large sizes (the tests'
soak variants: 8 sessions x 1,000 events, 100 kill -9s across hooks, engine and sync
worker, 10,000 scope queries over 100k memories, 1,000 fuzz cases of hook stdin and 500
of CLI arguments; the small default-run variants skip). ``--quick`` runs the default
suite's fault subset instead (a few minutes). Each test appends what it counted to a
JSON-lines file (``tests/figures.py``); this script prints them as one table, or as one
JSON object with ``--json``. pytest's own output goes to stderr. Exit status: pytest's.

The full run takes ~45-60 minutes on 2 shared cores (most of it the 8,000 hook
processes and the 10,000 queries). Needs root for the tmpfs of the disk-full tests
(else they use RLIMIT_FSIZE and say so) and Node.js for the Cosmos DB stand-in.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def run_suite(quick: bool, extra: Sequence[str]) -> tuple[int, dict[str, Any], list[dict[str, Any]]]:
    """Run pytest; returns (exit code, its summary, the figures the tests recorded)."""
    with tempfile.TemporaryDirectory(prefix="alma-reliability-") as tmp:
        figures_file = Path(tmp) / "figures.jsonl"
        env = dict(os.environ, RELIABILITY_FIGURES=str(figures_file))
        env.pop("RELIABILITY_FULL_RUN", None)
        if not quick:
            env["RELIABILITY_FULL_RUN"] = "1"
        # the default suite's fault subset, or every fault and soak test with the soak sizes
        marks = "fault and not soak and not slow" if quick else "fault or soak"
        cmd = [sys.executable, "-m", "pytest", "tests", "-m", marks, "-p", "no:cacheprovider", "-q", *extra]
        print(f"$ {' '.join(cmd)}", file=sys.stderr, flush=True)
        started = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
        tail: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stderr.write(line)
            tail = (tail + [line])[-50:]
        code = proc.wait()
        summary = _summary(tail)
        summary["seconds"] = round(time.monotonic() - started)
        summary["command"] = " ".join(cmd[1:])
        figures = [json.loads(x) for x in figures_file.read_text().splitlines()] if figures_file.exists() else []
    return code, summary, figures


def _summary(lines: Sequence[str]) -> dict[str, Any]:
    counts: dict[str, Any] = {}
    for line in reversed(lines):
        found = re.findall(r"(\d+) (passed|failed|skipped|deselected|errors?|xfailed|xpassed)", line)
        if found and (" in " in line):
            counts = {word: int(n) for n, word in found}
            break
    return counts


def collect(figures: list[dict[str, Any]]) -> dict[str, Any]:
    """The recorded figures, grouped by what they measure."""
    by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for f in figures:
        by[f.pop("name")].append(f)
    crash = by.get("crash", [])
    totals = {k: sum(int(c.get(k, 0)) for c in crash)
              for k in ("kills", "integrity_failures", "acknowledged", "recovered", "lost")}
    fuzz = {f["target"]: f for f in by.get("fuzz", [])}
    return {
        "concurrency": by.get("concurrency", []),
        "crash": {"campaigns": crash, **totals},
        "disk_full": by.get("disk_full", []),
        "broken_env": by.get("broken_env", []),
        "fuzz": fuzz,
        "secrets": by.get("secrets", []) + by.get("secrets_cosmos", []),
        "scope": by.get("scope", []),
        "scope_pull": by.get("scope_pull", []),
        "permissions": by.get("permissions", []),
    }


def _rate(ok: int, n: int) -> str:
    return f"{ok}/{n} ({100.0 * ok / n:.1f}%)" if n else "-"


def print_table(result: dict[str, Any]) -> None:
    f = result["figures"]
    rows: list[tuple[str, str]] = []
    for c in f["concurrency"]:
        rows.append((f"concurrency {c['workers']} x {c['events_per_session']} events",
                     f"hooks {_rate(c['exit0'], c['hooks_sent'])} exit 0; tool events sent/stored "
                     f"{c['tool_events_sent']}/{c['tool_events_stored']}; tasks/outcomes {c['tasks_sent']}/"
                     f"{c['outcomes_stored']}; 'database is locked' {c['locked_messages']}; "
                     f"hook p50/p95 {c['p50_ms']}/{c['p95_ms']} ms; spooled {c['spooled_then_replayed']}"))
    crash = f["crash"]
    for c in crash["campaigns"]:
        rows.append((f"kill -9: {c['target']}",
                     f"kills {c['kills']} in {c['rounds']} rounds; integrity failures {c['integrity_failures']}; "
                     f"acknowledged {c['acknowledged']}, recovered {c['recovered']}, lost {c['lost']}"))
    rows.append(("kill -9: total", f"kills {crash['kills']}; integrity failures {crash['integrity_failures']}; "
                                   f"acknowledged {crash['acknowledged']}, recovered {crash['recovered']}, "
                                   f"lost {crash['lost']}"))
    for d in f["disk_full"]:
        rows.append((f"disk full ({d['mode']})", f"{d['case']}: hooks exit 0, {d['spooled']} captures spooled, "
                                                 f"recovered {d['recovered']}"))
    for b in f["broken_env"]:
        rows.append((f"broken env: {b['condition']}",
                     f"hooks {_rate(b['exit0'], b['hooks'])} exit 0, spooled {b['spooled']}, recovered "
                     f"{b['recovered']}; CLI remember: {b['cli_remember'][:70]}"))
    for target, z in f["fuzz"].items():
        ok = z.get("exit0", z.get("no_traceback", 0))
        rows.append((f"fuzz: {target}", f"{z['cases']} cases, {_rate(ok, z['cases'])} "
                                        f"{'exit 0' if 'exit0' in z else 'without a traceback'}"))
    for s in f["secrets"]:
        if "files_scanned" in s:
            rows.append(("secrets at rest (hooks)", f"corpus {s['corpus']} entries ({s['kinds']} kinds), {s['hooks']} "
                                                    f"hooks, {s['files_scanned']} files / {s['bytes_scanned']:,} "
                                                    f"bytes scanned: {s['leaks']} leaks"))
        else:
            rows.append(("secrets to Cosmos and back", f"corpus {s['corpus']} entries, {s['documents']} documents: "
                                                       f"{s['leaks']} leaks"))
    for s in f["scope"]:
        rows.append((f"scope: {s['memories']:,} memories",
                     f"{s['projects']} projects x {s['agents']} agents x {s['users']} users; {s['queries']:,} "
                     f"queries, {s['results_checked']:,} results checked: bleed {s['bleed']}; paths "
                     + ", ".join(f"{k} {v:,}" for k, v in s["by_path"].items())))
    for s in f["scope_pull"]:
        rows.append(("scope: sync pull", f"{s['projects']} projects, {s['pulled']} documents pulled, "
                                         f"{s['dropped_other_project']} of other projects dropped: bleed {s['bleed']}"))
    for p in f["permissions"]:
        rows.append(("permissions", f"{p['paths']} paths: " + ", ".join(f"{k} x{v}" for k, v in p["by_kind"].items())
                     + f"; wrong {len(p['wrong'])}"))
    t = result["pytest"]
    rows.append(("tests", ", ".join(f"{v} {k}" for k, v in t.items() if isinstance(v, int) and k != "seconds")
                 + f" in {t['seconds']} s ({t['command']})"))
    width = max(len(k) for k, _ in rows)
    print(f"{'figure':<{width}}  measured")
    print(f"{'-' * width}  {'-' * 60}")
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quick", action="store_true", help="the default suite's fault subset (small sizes)")
    p.add_argument("pytest_args", nargs="*", help="passed to pytest (after --)")
    args = p.parse_args(argv)
    code, summary, figures = run_suite(args.quick, args.pytest_args)
    result = {"ok": code == 0, "mode": "quick" if args.quick else "full", "pytest": summary,
              "figures": collect(figures), "load_average": os.getloadavg()[0], "cpus": os.cpu_count()}
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)
    return code


if __name__ == "__main__":
    sys.exit(main())

"""Smoke runs of the retrieval benchmarks on tiny inputs: they run end to end and print what they promise.

Slow (the real model, hook subprocesses, a warm engine): ``pytest -m slow tests/bench``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LOCOMO = REPO.parent / "shared" / "data" / "locomo-dev"

pytestmark = pytest.mark.slow


def run(*args: str, timeout: float = 600) -> dict:
    proc = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


@pytest.mark.skipif(not (LOCOMO / "conv-30.json").exists(), reason="LoCoMo dev data not beside the repo")
def test_locomo_one_conversation(tmp_path):
    out = run("bench/locomo.py", "--json", "--conversations", "30", "--limit-questions", "20", "--no-cache")
    for ranking in ("engine", "vector", "lexical"):
        assert set(out[ranking]) == {"r@5", "r@10", "mrr"}
        assert all(0.0 <= v <= 1.0 for v in out[ranking].values())
    assert out["questions"] == 20
    assert out["engine"]["r@5"] >= out["vector"]["r@5"]


def test_latency_small(tmp_path):
    out = run("bench/latency.py", "--json", "--sizes", "200", "--hook-runs", "5", "--queries", "10")
    row = out["sizes"]["200"]
    assert row["memories"] == 200 and row["search"]["n"] > 0 and row["slice"]["n"] > 0
    for mode in ("hook_none", "hook_warm"):
        assert row[mode]["wall_ms"]["n"] == 3
        assert row[mode]["over_budget"] == 0
        assert row[mode]["tokens"]["max"] <= row["budget"]

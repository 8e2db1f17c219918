"""The randomised scope workload of ``test_scope_workload.py``: 100k memories over 6 projects x 4 agents x 3 users.

Built once per test session. Building takes ~40-50 s on this kind of machine, so
``conftest.py`` starts it in a subprocess (``python scope_workload.py OUT_DIR``) as
soon as collection shows a test that needs it, and the session fixture only waits for
it: the build overlaps the tests that run before. The DB is written through the store's
bulk path (``import_``: redaction, audit, FTS5 and both vector indexes) with the texts
of ``bench/latency.py`` and synthetic vectors clustered around real MiniLM embeddings of
128 of them (as the latency benchmark does above 2,000 memories); then a random write
workload changes texts, moves knowledge between one agent and the whole project, and
deletes. The ground truth (who owns each memory) is saved beside the DB as JSON.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from alma_hooks.config import ScopePolicy
from alma_hooks.storage.sqlite import SQLiteStore
from alma_hooks.types import ANY, Memory, Scope

REPO = Path(__file__).resolve().parents[2]
CLI = REPO / ".venv" / "bin" / "alma-hooks"
#: 100,400 written: the random writes delete ~200, so over 100,000 remain
N_MEMORIES = 100_400
PROJECTS = [f"github.com/team{i}/service{i}" for i in range(6)]
AGENTS = ["main", "helena", "victor", "reviewer"]
USERS = ["ann@example.com", "bob@example.com", "cho@example.com"]
#: Scopes that hold nothing of their own: everything they get back is a bleed.
STRANGERS = (["github.com/nobody/else"], ["intern"], ["eve@example.com"])
CENTRES = 128
TEXT_FIELD = {"knowledge": "fact", "outcome": "task_description", "heuristic": "condition",
              "anti_pattern": "pattern", "preference": "preference"}


def bench_latency() -> Any:
    spec = importlib.util.spec_from_file_location("bench_latency", REPO / "bench" / "latency.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _place(m: Memory, rng: random.Random) -> Memory:
    """The memory in a random scope that its type allows."""
    project = rng.choice(PROJECTS)
    if m.type == "preference":
        return dataclasses.replace(m, project_id=ANY if rng.random() < 0.2 else project, user_id=rng.choice(USERS),
                                   agent=ANY if rng.random() < 0.7 else rng.choice(AGENTS))
    agent = ANY if m.type == "knowledge" and rng.random() < 0.5 else rng.choice(AGENTS)
    return dataclasses.replace(m, project_id=project, agent=agent, user_id="")


def visible(owner: tuple[str, str, str], scope: Scope) -> bool:
    """``Memory.visible_to``, restated here from the ground truth (not from what the store returns)."""
    project, agent, user = owner
    return project in (scope.project_id, ANY) and agent in (scope.agent, ANY) and user in ("", scope.user_id)


@dataclass
class Workload:
    path: Path
    owner: dict[str, tuple[str, str, str]]
    centre_of: dict[str, int]
    centres: np.ndarray
    texts: dict[str, str]
    build_s: float
    writes: Counter[str] = field(default_factory=Counter)


def build(path: Path, embedder: Any, seed: int = 11) -> Workload:
    bench = bench_latency()
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    started = time.perf_counter()
    now = time.time()
    sample = [bench.make_memory(rng, PROJECTS[0], now).text for _ in range(CENTRES)]
    centres = np.asarray(embedder.embed(sample), dtype=np.float32)
    owner: dict[str, tuple[str, str, str]] = {}
    centre_of: dict[str, int] = {}
    texts: dict[str, str] = {}
    store = SQLiteStore(path, ScopePolicy.permissive(), actor="workload")
    try:
        batch = N_MEMORIES // 5
        for _ in range(N_MEMORIES // batch):
            mems = [_place(bench.make_memory(rng, PROJECTS[0], now - rng.uniform(0, 180 * 86400)), rng)
                    for _ in range(batch)]
            idx = nrng.integers(0, CENTRES, batch)
            vecs = centres[idx] + nrng.normal(scale=0.035, size=(batch, centres.shape[1])).astype(np.float32)
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
            rows = []
            for m, v, c in zip(mems, vecs, idx):
                d = m.to_dict()
                d["embedding"], d["embedding_model"] = v, embedder.model_id
                rows.append(d)
                owner[m.id] = (m.project_id, m.agent, m.user_id)
                centre_of[m.id] = int(c)
                texts[m.id] = m.text
            assert store.import_(rows, reason="workload") == batch
        wl = Workload(path, owner, centre_of, centres, texts, 0.0)
        _random_writes(store, wl, rng, 400)
    finally:
        store.close()
    wl.build_s = time.perf_counter() - started
    return wl


def _writer(owner: tuple[str, str, str], rng: random.Random) -> Scope:
    project, agent, user = owner
    return Scope(project if project != ANY else rng.choice(PROJECTS), agent if agent != ANY else "main", user)


def _random_writes(store: SQLiteStore, wl: Workload, rng: random.Random, n: int) -> None:
    """Texts changed (their vectors dropped), knowledge moved between one agent and all, deletes."""
    ids = list(wl.owner)
    for _ in range(n):
        mid = rng.choice(ids)
        if mid not in wl.owner:
            continue
        scope = _writer(wl.owner[mid], rng)
        m = store.get(scope, mid)
        op = rng.choice(["retext", "move", "delete"]) if m.type == "knowledge" else rng.choice(["retext", "delete"])
        if op == "retext":
            new_text = f"{getattr(m, TEXT_FIELD[m.type])} (revised {rng.randint(1, 10**6)})"
            m = store.update(scope, dataclasses.replace(m, **{TEXT_FIELD[m.type]: new_text}))
            wl.texts[mid] = m.text
        elif op == "move":
            to = rng.choice([a for a in AGENTS if a != m.agent]) if m.agent == ANY else ANY
            scope = Scope(m.project_id, m.agent if m.agent != ANY else to, "")
            m = store.update(scope, dataclasses.replace(m, agent=to))
            wl.owner[mid] = (m.project_id, m.agent, m.user_id)
        else:
            store.delete(scope, mid, reason="workload")
            del wl.owner[mid]
            del wl.texts[mid]
        wl.writes[op] += 1


def save(wl: Workload, path: Path) -> None:
    path.write_text(json.dumps({"db": str(wl.path), "owner": wl.owner, "centre_of": wl.centre_of,
                                "centres": wl.centres.tolist(), "texts": wl.texts, "build_s": wl.build_s,
                                "writes": dict(wl.writes)}))


def load(path: Path) -> Workload:
    d = json.loads(path.read_text())
    return Workload(Path(d["db"]), {k: tuple(v) for k, v in d["owner"].items()}, d["centre_of"],
                    np.asarray(d["centres"], dtype=np.float32), d["texts"], d["build_s"], Counter(d["writes"]))


class Build:
    """The build subprocess of one test session (started by ``conftest.py``, removed at the session's end)."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="alma-scope-workload-"))
        self.log = open(self.dir / "build.log", "wb")
        self.proc = subprocess.Popen([sys.executable, __file__, str(self.dir)], stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self._result: Workload | None = None

    def result(self, timeout_s: float = 1800) -> Workload:
        if self._result is None:
            code = self.proc.wait(timeout_s)
            assert code == 0, (self.dir / "build.log").read_text()[-3000:]
            self._result = load(self.dir / "truth.json")
        return self._result

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


WORKLOAD_BUILD = pytest.StashKey[Build]()


def main(out: Path) -> int:
    from alma_hooks.embedding import OnnxMiniLM

    os.nice(5)  # a background build: the tests running meanwhile come first

    model = OnnxMiniLM()
    model.load()
    wl = build(out / "memory.db", model)
    save(wl, out / "truth.tmp")
    (out / "truth.tmp").rename(out / "truth.json")  # present means complete
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))

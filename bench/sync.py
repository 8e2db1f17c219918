"""Team sync throughput on loopback: push (outbox → Cosmos) and pull (change feed → replica), items/s.

Usage::

    python bench/sync.py [--items 2000] [--concurrency 8] [--batch 50] [--page 100] [--json]

What runs: the real worker (``alma_hooks.sync.worker``) and the real ``azure-cosmos``
client against ``@vercel/cosmosdb-server`` (the npm stand-in of the Azure tests,
``npm ci`` into ``tests/azure/node_modules`` on first use), through the tests' loopback
proxy (``tests/azure/cosmos_proxy.py``) with no faults: the proxy supplies the
change-feed continuation the stand-in lacks and keeps client connections alive (the
stand-in closes every connection, and a new client TLS connection costs ~80 ms here
in CA-store loading alone). Memories are synthetic DomainKnowledge items with a
~120-character text and a 384-d vector, as ``sync run`` sends them after embedding.

What it cannot say: the stand-in is a single Node process holding everything in
memory, one TLS handshake per proxied request; it charges a flat 1 RU per request
whatever the size, so the request units printed are an *estimate* from document
size (see README "Team scale (Azure)"), not a measurement. Real Cosmos adds network
round trips (~1-5 ms in-region, far more across regions) and enforces provisioned RU/s.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "azure"))
warnings.filterwarnings("ignore", message="Unverified HTTPS request")

from azure_tls import make_cert  # noqa: E402
from cosmos_proxy import CosmosProxy  # noqa: E402
from cosmos_standin import CosmosStandIn  # noqa: E402

from alma_hooks.storage.replica import Replica  # noqa: E402
from alma_hooks.storage.sqlite import SQLiteStore  # noqa: E402
from alma_hooks.sync import cosmos  # noqa: E402
from alma_hooks.sync.cosmos import TeamStore, from_doc, to_doc  # noqa: E402
from alma_hooks.sync.worker import SyncSettings, SyncWorker  # noqa: E402
from alma_hooks.types import ANY, DomainKnowledge, Scope  # noqa: E402

PROJECT = "github.com/acme/bench"
MODEL = "all-MiniLM-L6-v2-int8"
WORDS = ("deploy release staging database migration index cache retry timeout queue worker test fixture "
         "selector login form field api endpoint token header schema version rollback feature flag").split()


def unit_vector(rng: random.Random, dim: int = 384) -> list[float]:
    v = [rng.gauss(0, 1) for _ in range(dim)]
    n = sum(x * x for x in v) ** 0.5
    return [x / n for x in v]


def fill(store: SQLiteStore, n: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    scope = Scope(PROJECT, "main", "bench@example.com")
    ids = []
    for i in range(n):
        text = f"#{i}: " + " ".join(rng.choice(WORDS) for _ in range(16))
        ids.append(store.add(scope, DomainKnowledge(project_id=PROJECT, agent=ANY, fact=text, confidence=0.8)).id)
    store.set_embeddings(MODEL, [(mid, unit_vector(rng)) for mid in ids])


def doc_sizes(store: SQLiteStore, sample: int = 200) -> list[int]:
    entries = Replica(store).batch(PROJECT, sample)
    return [len(json.dumps(to_doc(e)).encode()) for e in entries]


def run(items: int, concurrency: int, batch: int, page: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="alma-sync-bench-"))
    server = CosmosStandIn(work / "cosmos.log").start()
    proxy = CosmosProxy(server.port, *make_cert(work / "tls")).start()
    key = base64.b64encode(os.urandom(64)).decode()
    settings = SyncSettings(batch_size=batch, concurrency=concurrency, page_size=page, timeout_s=30.0)
    try:
        a = SQLiteStore(work / "a.db")
        fill(a, items)
        Replica(a).enable(PROJECT)
        sizes = doc_sizes(a)
        team_a = TeamStore.connect(proxy.url, key, "bench", "memories", connection_verify=False)
        push_worker = SyncWorker(a, team_a, PROJECT, settings=settings, accept_model=MODEL)
        t0 = time.perf_counter()
        pushed = push_worker.push()
        push_s = time.perf_counter() - t0
        push_requests = team_a.charges.requests
        assert pushed.written == items and not pushed.error, pushed

        b = SQLiteStore(work / "b.db")
        Replica(b).enable(PROJECT)
        team_b = TeamStore.connect(proxy.url, key, "bench", "memories", connection_verify=False)
        pull_worker = SyncWorker(b, team_b, PROJECT, settings=settings, accept_model=MODEL)
        t0 = time.perf_counter()
        pulled = pull_worker.pull()
        pull_s = time.perf_counter() - t0
        assert pulled.merge.applied == items and not pulled.error, pulled

        docs = team_b.query_all()
        c = SQLiteStore(work / "c.db")
        changes = [from_doc(d) for d in docs]
        t0 = time.perf_counter()
        for i in range(0, len(changes), page):
            Replica(c).apply_remote(PROJECT, changes[i:i + page], accept_model=MODEL)
        merge_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        Replica(a).conn.execute("INSERT INTO outbox(memory_id, project_id, op, version, enqueued_at) "
                                "SELECT id, project_id, 'upsert', version, 0 FROM memories")
        replay = push_worker.push()
        replay_s = time.perf_counter() - t0
        assert replay.unchanged == items, replay
        return {
            "items": items, "concurrency": concurrency, "batch": batch, "page": page,
            "push_items_per_s": round(items / push_s, 1), "push_s": round(push_s, 2),
            "push_requests": push_requests, "replay_requests": team_a.charges.requests - push_requests,
            "replay_items_per_s": round(items / replay_s, 1),
            "pull_items_per_s": round(items / pull_s, 1), "pull_s": round(pull_s, 2), "pull_pages": pulled.pages,
            "merge_only_items_per_s": round(items / merge_s, 1),
            "doc_bytes_median": int(statistics.median(sizes)), "doc_bytes_max": max(sizes),
            "standin_charge_per_request": round(team_a.charges.total / max(1, team_a.charges.requests), 2),
            "note": "loopback stand-in via the test proxy; RU are not measured (flat 1 per request) - see README",
        }
    finally:
        proxy.stop()
        server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--page", type=int, default=100)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    result = run(args.items, args.concurrency, args.batch, args.page)
    if args.json:
        print(json.dumps(result))
        return
    print(f"sync on loopback ({result['note']})")
    print(f"  push:   {result['push_items_per_s']:>7} items/s  ({result['items']} items in {result['push_s']} s, "
          f"{result['push_requests']} requests: new items are created in one request, "
          f"concurrency {result['concurrency']}, batches of {result['batch']})")
    print(f"  replay: {result['replay_items_per_s']:>7} items/s  (the same outbox again after a crash: "
          f"{result['replay_requests']} requests, a refused create + a read each, nothing written)")
    print(f"  pull:   {result['pull_items_per_s']:>7} items/s  ({result['pull_pages']} change-feed pages of "
          f"{result['page']}, merged into a second SQLite replica)")
    print(f"  merge:  {result['merge_only_items_per_s']:>7} items/s  (the pull's SQLite side alone: redact, insert, "
          f"FTS and vector index, no network)")
    print(f"  document size: median {result['doc_bytes_median']} B, max {result['doc_bytes_max']} B "
          f"(memory + base64 float32 vector)")


if __name__ == "__main__":
    cosmos  # noqa: B018 - imported so a missing azure-cosmos fails here, before the stand-in starts
    main()

"""The whole secrets corpus on its way to Cosmos DB and back (issue 7, secrets): nothing on the wire, at rest, or pulled.

Replica A stores every corpus text as memories (redacted by the store) and one row the
way an older version could have left it (unredacted, written straight into SQLite); the
worker pushes; the bytes every request carried, the documents Cosmos holds, and replica
B's files after its pull are searched for every secret (``tests/secretscan.py``).
"""

from __future__ import annotations

import json

import pytest
from conftest import PROJECT
from figures import record
from secretscan import corpus, leaks

from alma_hooks.types import ANY, DomainKnowledge

pytestmark = [pytest.mark.azure, pytest.mark.fault]


def test_no_secret_of_the_corpus_reaches_cosmos_or_another_replica(make_replica, team, proxy):
    entries = corpus()
    secrets = [secret for _, _, secret, _ in entries]
    a, b = make_replica("a"), make_replica("b")
    for _, text, _, _ in entries:
        a.store.add(a.scope(), DomainKnowledge(project_id=PROJECT, agent=ANY, fact=text))
    old = a.store.add(a.scope(), DomainKnowledge(project_id=PROJECT, agent=ANY, fact="placeholder"))
    everything = "\n".join(text for _, text, _, _ in entries)
    a.store.conn.execute("UPDATE memories SET text = ?, payload = ? WHERE id = ?",
                         (everything, json.dumps({**old.payload(), "fact": everything}), old.id))

    assert a.worker().run_once().push.written == len(entries) + 1
    assert b.worker().run_once().pull.merge.applied == len(entries) + 1
    wire = leaks(proxy.sent_bytes(), secrets)
    stored = leaks(json.dumps(team.query_all()).encode(), secrets)
    b.store.close()  # (reading a DB's files while this process holds a connection to it would drop its locks)
    pulled = [s for suffix in ("", "-wal") if (p := b.store.path.with_name(b.store.path.name + suffix)).exists()
              for s in leaks(p.read_bytes(), secrets)]
    record("secrets_cosmos", corpus=len(entries), documents=len(entries) + 1, leaks=len(wire) + len(stored) + len(pulled))
    assert not wire and not stored and not pulled, (wire, stored, pulled)

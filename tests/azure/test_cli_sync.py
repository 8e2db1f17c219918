"""``alma-hooks sync enable|status|run|disable`` in-process (click's CliRunner), against the stand-ins.

``open_team_store`` is wrapped with the two test seams (static Key Vault token, TLS
verification off for loopback); the commands are otherwise the production ones.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from conftest import PROJECT, resolver_for
from cosmos_proxy import is_write

from alma_hooks.cli import main
from alma_hooks.sync import worker
from alma_hooks.types import ANY, DomainKnowledge

pytestmark = pytest.mark.azure


@pytest.fixture
def cli(monkeypatch):
    real = worker.open_team_store
    monkeypatch.setattr(worker, "open_team_store",
                        lambda config, **kw: real(config, resolver=resolver_for(config), connection_verify=False, **kw))

    def invoke(*args: str):
        return CliRunner().invoke(main, list(args), catch_exceptions=False)

    return invoke


def test_enable_run_status_disable(make_replica, cli, team):
    a = make_replica("a", enable=False)
    for i in range(3):
        a.store.add(a.scope(), DomainKnowledge(project_id=PROJECT, agent=ANY, fact=f"fact {i}"))
    root = str(a.root)

    off = cli("sync", "run", "--once", "--project-dir", root)
    assert off.exit_code == 8 and "sync enable" in off.output

    on = cli("sync", "enable", "--project-dir", root)
    assert on.exit_code == 0 and "3 memories queued" in on.output
    assert "already on" in cli("sync", "enable", "--project-dir", root).output

    status = json.loads(cli("sync", "status", "--json", "--project-dir", root).output)
    assert (status["enabled"], status["pending"], status["storage"]) == (True, 3, "azure")

    run = cli("sync", "run", "--once", "--no-embed", "--json", "--project-dir", root)
    assert run.exit_code == 0, run.output
    report = json.loads(run.output.strip().splitlines()[-1])
    assert report["ok"] and report["push"]["written"] == 3 and report["requests"] >= 4
    assert len(team.query_all()) == 3

    text = cli("sync", "run", "--once", "--no-embed", "--project-dir", root)
    assert text.exit_code == 0 and "push: 0 written" in text.output and "RU" in text.output

    assert "0 queued" in cli("sync", "status", "--project-dir", root).output
    assert "Sync off" in cli("sync", "disable", "--project-dir", root).output


def test_run_exits_8_when_the_store_stays_down(make_replica, cli, proxy):
    a = make_replica("a", max_attempts=2)
    a.store.add(a.scope(), DomainKnowledge(project_id=PROJECT, agent=ANY, fact="x"))
    proxy.add_fault("status", is_write, times=1000, status=503)
    result = cli("sync", "run", "--once", "--no-embed", "--project-dir", str(a.root))
    assert result.exit_code == 8 and "still queued after errors" in result.output
    assert a.replica.status(PROJECT)["pending"] == 1


def test_run_embeds_pending_memories_so_vectors_travel(make_replica, cli, team):
    a = make_replica("a")
    a.store.add(a.scope(), DomainKnowledge(project_id=PROJECT, agent=ANY, fact="we deploy with make release"))
    assert cli("sync", "run", "--once", "--project-dir", str(a.root)).exit_code == 0
    [doc] = team.query_all()
    assert doc["embedding"] and doc["embedding_model"] == "all-MiniLM-L6-v2-int8"

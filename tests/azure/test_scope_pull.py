"""Team-sync pull under a random multi-project workload: a page of another project is dropped (issue 7, scope).

Every replica of the test shares one Cosmos container, and the stand-in serves the change
feed of the whole container whatever partition was asked for (see ``cosmos_standin.py``),
so each pull really reads the other projects' documents: the replica must drop them.
Forged documents are mixed in too: one filed under this project whose memory says
another, one of this project whose envelope says another.
"""

from __future__ import annotations

import random

import pytest
from dbcheck import problems
from figures import record

from alma_hooks.types import ANY, DomainKnowledge, Heuristic, Preference

pytestmark = [pytest.mark.azure, pytest.mark.fault]

PROJECTS = [f"github.com/acme/app{i}" for i in range(4)]
AGENTS = ["main", "helena", "victor"]


def _random_memory(rng: random.Random, replica, i: int):  # type: ignore[no-untyped-def]
    project = replica.config.project_id
    kind = rng.choice(["knowledge", "heuristic", "preference"])
    agent = rng.choice(AGENTS)
    if kind == "knowledge":
        return agent, DomainKnowledge(project_id=project, agent=rng.choice([ANY, agent]),
                                      fact=f"{project} fact {i}: the cart service retries three times")
    if kind == "heuristic":
        agent = rng.choice(["main", "helena"])  # testing_strategies is theirs, not victor's
        return agent, Heuristic(project_id=project, agent=agent, domain="testing_strategies",
                                condition=f"{project} flaky test {i}", strategy="rerun the failing test alone first")
    return agent, Preference(project_id=project, user_id=replica.scope().user_id, agent=ANY,
                             preference=f"{project} preference {i}: small pull requests", category="style")


def test_pull_never_imports_another_projects_memories(make_replica, team):
    rng = random.Random(7)
    replicas = [make_replica(f"r{i}", project_id=p) for i, p in enumerate(PROJECTS)]
    written = {p: set() for p in PROJECTS}
    for i in range(160):
        r = rng.choice(replicas)
        agent, m = _random_memory(rng, r, i)
        written[r.config.project_id].add(r.store.add(r.scope(agent), m).id)
    for r in replicas:
        assert r.worker().run_once().push.written == len(written[r.config.project_id])
    # forged: filed under app0 with a memory of app1, and a memory of app0 whose envelope says app1
    theirs = DomainKnowledge(project_id=PROJECTS[1], agent=ANY, fact="forged: app1 secret plans")
    team.container.create_item({"id": theirs.id, "project_id": PROJECTS[0], "version": 1,
                                "updated_at": theirs.updated_at, "origin": "mallory", "deleted": False,
                                "memory": {**theirs.to_dict(), "origin": "mallory"}, "schema": 1})
    ours = DomainKnowledge(project_id=PROJECTS[0], agent=ANY, fact="forged: filed under app1")
    team.container.create_item({"id": ours.id, "project_id": PROJECTS[1], "version": 1, "updated_at": ours.updated_at,
                                "origin": "mallory", "deleted": False,
                                "memory": {**ours.to_dict(), "origin": "mallory"}, "schema": 1})

    dropped = pulled = bleed = 0
    for r in replicas:
        project = r.config.project_id
        report = r.worker().run_once(full=True)
        assert report.ok
        pulled += report.pull.read
        dropped += report.pull.merge.other_project
        rows = r.store.conn.execute("SELECT id, project_id FROM memories").fetchall()
        bleed += sum(1 for _, p in rows if p != project)
        assert {mid for mid, _ in rows} == written[project], "exactly this project's memories"
        assert problems(r.store.path) == []
    others = sum(len(ids) for ids in written.values())
    assert dropped >= len(PROJECTS) * others - others, "every replica read and dropped the other projects' pages"
    record("scope_pull", projects=len(PROJECTS), memories=others + 2, pulled=pulled, dropped_other_project=dropped,
           bleed=bleed)
    assert bleed == 0

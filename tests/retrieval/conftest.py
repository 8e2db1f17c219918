"""Start the scope workload's 100k-memory build in a subprocess as soon as a collected test needs it.

The build (~40-50 s) then overlaps the tests that run before ``tests/retrieval``; the
session fixture ``workload`` waits for it. The subprocess and its files are removed at
the end of the session, however it ends.
"""

from __future__ import annotations

import pytest
from scope_workload import WORKLOAD_BUILD, Build


def pytest_collection_finish(session: pytest.Session) -> None:
    if any("workload" in getattr(item, "fixturenames", ()) for item in session.items):
        session.config.stash[WORKLOAD_BUILD] = Build()


def pytest_sessionfinish(session: pytest.Session) -> None:
    build = session.config.stash.get(WORKLOAD_BUILD, None)
    if build is not None:
        build.close()

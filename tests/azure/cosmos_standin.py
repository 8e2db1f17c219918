"""The Cosmos DB stand-in: ``@vercel/cosmosdb-server``, pinned in ``tests/azure/package.json``.

Installed with ``npm ci`` into ``tests/azure/node_modules`` on first use (as
``claude_fixtures.py`` does for the Claude Code CLI) and started on 127.0.0.1
with the self-signed certificate it ships (expired in 2021: clients connect with
``connection_verify=False``). With azure-cosmos 4.17.1 it serves database and
container creation, create/replace/upsert/read/delete of items, ETag ``if-match``
(412 when stale), cross-partition queries and the change feed "from the
beginning". It does not serve queries with ``partition_key=``, transactional
batch or ``VectorDistance``, ignores the partition scope of a change feed,
cannot continue a change feed (see ``cosmos_proxy.py``), answers a point read of a
missing item with 500, does not check the account key, and reports a flat
request charge of 1 for every request.

Without node/npm the Azure tests skip on a developer machine and fail under
``CI=true``: in CI a missing stand-in must never look like a passing suite.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

AZURE_TESTS = Path(__file__).resolve().parent
PACKAGE = "@vercel/cosmosdb-server"
NPM_CI_TIMEOUT = 600


def pinned_version() -> str:
    return json.loads((AZURE_TESTS / "package.json").read_text())["devDependencies"][PACKAGE]


def server_dir() -> Path:
    return AZURE_TESTS / "node_modules" / "@vercel" / "cosmosdb-server"


def unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"Cosmos DB stand-in unavailable in CI: {reason} (install Node.js 18+ and npm: apt-get install "
                    "nodejs npm, or https://nodejs.org)", pytrace=False)
    pytest.skip(f"Cosmos DB stand-in unavailable: {reason}")


def installed_version() -> str | None:
    manifest = server_dir() / "package.json"
    try:
        return json.loads(manifest.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def ensure_installed() -> Path:
    """``npm ci`` the pinned stand-in unless it is already there; return its CLI script."""
    version = pinned_version()
    if installed_version() != version:
        npm = shutil.which("npm")
        if npm is None or shutil.which("node") is None:
            unavailable(f"node/npm not on PATH; needed to install {PACKAGE}@{version}")
        proc = subprocess.run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=AZURE_TESTS,
                              capture_output=True, text=True, timeout=NPM_CI_TIMEOUT)
        if proc.returncode != 0:
            unavailable(f"`npm ci` in {AZURE_TESTS} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        if installed_version() != version:
            unavailable(f"after `npm ci`, {PACKAGE} is {installed_version()!r}, expected {version}")
    if shutil.which("node") is None:
        unavailable("node is not on PATH")
    return server_dir() / "lib" / "cli.js"


class CosmosStandIn:
    """One ``cosmosdb-server`` process on 127.0.0.1 (this process starts it and stops it)."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self, timeout_s: float = 30.0) -> CosmosStandIn:
        cli = ensure_installed()
        self.port = _free_port()
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([shutil.which("node") or "node", str(cli), "--host", "127.0.0.1",
                                      "-p", str(self.port)], stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if b"Ready to accept" in self.log_path.read_bytes():
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        unavailable(f"cosmosdb-server did not start: {self.log_path.read_text(errors='replace')[-2000:]}")
        return self

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

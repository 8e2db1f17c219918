"""Fixtures for the Azure tests: real azure-cosmos / azure-keyvault-secrets / azure-identity clients
against loopback stand-ins.

- ``cosmos_server``: ``@vercel/cosmosdb-server`` (npm, pinned), one process per session;
- ``proxy``: ``cosmos_proxy.CosmosProxy`` in front of it, one per test (faults, shims, recording);
- ``keyvault``: ``keyvault_standin.KeyVaultStandIn``, holding the Cosmos key as ``cosmos-key``;
- ``make_replica``: a project directory with ``.alma/config.yaml`` (storage: azure) and its own
  SQLite replica; every replica of a test shares one fresh Cosmos container.

What is a stand-in and what it cannot show is said in each stand-in module's docstring.
Run: ``.venv/bin/python -m pytest -m azure tests/azure``.
"""

from __future__ import annotations

import base64
import itertools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azure_tls import make_cert
from cosmos_proxy import CosmosProxy
from cosmos_standin import CosmosStandIn
from keyvault_standin import CLIENT_OPTIONS, KeyVaultStandIn, StaticCredential

from alma_hooks.config import Config, load_config
from alma_hooks.storage.replica import Replica
from alma_hooks.storage.sqlite import SQLiteStore
from alma_hooks.sync import worker as sync_worker
from alma_hooks.sync.cosmos import TeamStore
from alma_hooks.sync.keyvault import KeyVaultResolver
from alma_hooks.sync.retry import RetryPolicy
from alma_hooks.types import Scope

PROJECT = "github.com/acme/shop"
OTHER_PROJECT = "github.com/acme/billing"
USER = "alice@example.com"
DATABASE = "alma-test"
MODEL = "all-MiniLM-L6-v2-int8"
_containers = itertools.count(1)

AZURE_TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # urllib3 warns on every unverified HTTPS request; verification is off on purpose for the loopback stand-ins
    for item in items:
        if AZURE_TESTS in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.filterwarnings("ignore:Unverified HTTPS request"))


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def cosmos_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CosmosStandIn]:
    server = CosmosStandIn(tmp_path_factory.mktemp("cosmos") / "server.log").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def cosmos_key() -> str:
    """A random account key: the stand-in does not check it, but the SDK signs every request with it."""
    return base64.b64encode(os.urandom(64)).decode()


@pytest.fixture
def proxy(cosmos_server: CosmosStandIn, tls_cert: tuple[Path, Path]) -> Iterator[CosmosProxy]:
    p = CosmosProxy(cosmos_server.port, *tls_cert).start()
    yield p
    p.stop()


@pytest.fixture
def keyvault(tls_cert: tuple[Path, Path], cosmos_key: str) -> Iterator[KeyVaultStandIn]:
    kv = KeyVaultStandIn(*tls_cert, secrets={"cosmos-key": cosmos_key}).start()
    yield kv
    kv.stop()


@pytest.fixture
def container_name() -> str:
    return f"memories-{os.getpid()}-{next(_containers)}"


def resolver_for(config: Config) -> KeyVaultResolver:
    """The real resolver with the two test seams: a static token and TLS verification off."""
    return KeyVaultResolver(config, credential=StaticCredential(), client_options=CLIENT_OPTIONS)


_open_team_store = sync_worker.open_team_store  # the real one, even while a test wraps the module's


def open_team(config: Config, policy: RetryPolicy | None = None) -> TeamStore:
    return _open_team_store(config, resolver=resolver_for(config), policy=policy, connection_verify=False)


@dataclass
class TestReplica:
    """One machine of the team: its project dir, config and SQLite replica."""

    __test__ = False
    name: str
    root: Path
    config: Config
    store: SQLiteStore
    _team: TeamStore | None = None

    @property
    def replica(self) -> Replica:
        return Replica(self.store)

    def scope(self, agent: str = "main") -> Scope:
        return Scope(self.config.project_id, agent, USER)

    def team(self) -> TeamStore:
        """This replica's client, opened once (Key Vault read, container created if missing)."""
        if self._team is None:
            self._team = open_team(self.config)
        return self._team

    def worker(self, team: TeamStore | None = None, policy: RetryPolicy | None = None,
               accept_model: str | None = MODEL) -> sync_worker.SyncWorker:
        team = team or self.team()
        settings = sync_worker.SyncSettings.from_config(self.config)
        return sync_worker.SyncWorker(self.store, team, self.config.project_id, settings=settings,
                                      policy=policy, accept_model=accept_model)


def write_config(root: Path, *, project_id: str, db_path: Path, endpoint: str, kv_template: str, container: str,
                 extra: str = "", sync: dict[str, Any] | None = None) -> None:
    settings = {"timeout_s": 2.0, "batch_size": 20, "concurrency": 4, "page_size": 25, "max_attempts": 6,
                "interval_s": 0.1, **(sync or {})}
    lines = "\n".join(f"    {k}: {v}" for k, v in settings.items())
    (root / ".alma").mkdir(parents=True, exist_ok=True)
    (root / ".alma" / "config.yaml").write_text(f"""\
project_id: {project_id}
user_id: {USER}
storage: azure
db_path: {db_path}
azure:
  cosmos_endpoint: {endpoint}
  cosmos_key: keyvault://team-vault/cosmos-key
  database: {DATABASE}
  container: {container}
  keyvault_url_template: {kv_template}
  sync:
{lines}
{extra}""")


@pytest.fixture
def make_replica(tmp_path: Path, proxy: CosmosProxy, keyvault: KeyVaultStandIn,
                 container_name: str) -> Iterator[Callable[..., TestReplica]]:
    made: list[TestReplica] = []

    def make(name: str, project_id: str = PROJECT, enable: bool = True, **sync: Any) -> TestReplica:
        root = tmp_path / name
        write_config(root, project_id=project_id, db_path=tmp_path / f"{name}.db", endpoint=proxy.url,
                     kv_template=keyvault.url_template, container=container_name, sync=sync)
        config = load_config(root)
        store = SQLiteStore(config.db_path, config.policy, actor=f"test:{name}")
        r = TestReplica(name, root, config, store)
        if enable:
            r.replica.enable(project_id)
        made.append(r)
        return r

    yield make
    for r in made:
        r.store.close()


@pytest.fixture
def team(make_replica: Callable[..., TestReplica], tmp_path: Path) -> TeamStore:
    """A direct client on the test's container (through the proxy), for reading what Cosmos holds."""
    observer = make_replica("observer", enable=False)
    return open_team(observer.config)


def unit_vector(seed: int, dim: int = 384) -> list[float]:
    import random

    rng = random.Random(seed)
    v = [rng.gauss(0, 1) for _ in range(dim)]
    norm = sum(x * x for x in v) ** 0.5
    return [x / norm for x in v]

"""The team store: one Azure Cosmos DB (NoSQL) container shared by every replica, partitioned by ``/project_id``.

One document per memory, ``id`` = the memory id, in the partition of its project::

    {"id", "project_id", "type", "version", "updated_at", "origin", "deleted": false,
     "memory": {...the memory's fields, redacted...},
     "embedding": "<base64 of float32 little-endian>" | null, "embedding_model": "<model id>" | null,
     "schema": 1}

A deletion is the same document with ``"deleted": true`` and no memory or
vector (a tombstone), so it travels through the change feed like any write.
Vectors are base64, not JSON numbers: 2 KB instead of ~8 KB per memory, and
``/memory/*`` and ``/embedding`` are excluded from indexing (see
:data:`INDEXING_POLICY`): request units grow with size and indexed paths.

Only requests the loopback stand-in (``@vercel/cosmosdb-server``) also serves
are used: point reads by id + partition key (never a query with
``partition_key=``), one conditional create/replace per item (no transactional
batch), and the change feed. Vector search stays on the local replica.

The SDK's own retries are switched off so :mod:`alma_hooks.sync.retry` is the
one policy that counts: throttling retries set to 0 (``RetryOptions``), endpoint
discovery off (which turns off the 503/408/5xx/timeout failover retries), and
azure-core's connection retries set to 0.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..storage.base import redact_memory
from ..storage.replica import LWWKey, OutboxEntry, RemoteChange
from .retry import Verdict

DOC_SCHEMA = 1
PARTITION_KEY_PATH = "/project_id"
#: Only the envelope is indexed: the memory payload and the vector are carried, never queried.
INDEXING_POLICY = {
    "indexingMode": "consistent",
    "includedPaths": [{"path": "/*"}],
    "excludedPaths": [{"path": "/memory/*"}, {"path": "/embedding/?"}, {"path": '/"_etag"/?'}],
}
#: Statuses worth another try: throttled, timed out, retry-with, server side.
TRANSIENT = {408, 410, 429, 449}
POISON = {400, 413, 414, 422}


@dataclass
class RequestCharges:
    """Request units (``x-ms-request-charge``) and requests seen, across threads."""

    total: float = 0.0
    requests: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def add(self, headers: Any) -> None:
        try:
            charge = float((headers or {}).get("x-ms-request-charge") or 0.0)
        except (TypeError, ValueError):
            charge = 0.0
        with self._lock:
            self.total += charge
            self.requests += 1


def classify(exc: BaseException) -> Verdict:
    """What a failure of a Cosmos call means for the worker (see :class:`~alma_hooks.sync.retry.Verdict`)."""
    from azure.core.exceptions import AzureError, ServiceRequestError, ServiceResponseError
    from azure.cosmos import exceptions as cx

    if isinstance(exc, cx.CosmosClientTimeoutError):
        return Verdict("retry", "request timed out")
    if isinstance(exc, cx.CosmosHttpResponseError):
        status = exc.status_code
        headers = exc.headers or {}
        message = f"{status} {_service_message(exc)}"
        if status == 429:
            try:
                after = float(headers.get("x-ms-retry-after-ms")) / 1000.0
            except (TypeError, ValueError):
                after = None
            return Verdict("retry", message, after, status)
        if status is None or status in TRANSIENT or status >= 500:
            return Verdict("retry", message, None, status)
        if status in (409, 412):
            return Verdict("conflict", message, None, status)
        if status == 404:
            return Verdict("missing", message, None, status)
        if status in (401, 403):
            return Verdict("fatal", message, None, status)
        return Verdict("poison", message, None, status)
    if isinstance(exc, (ServiceRequestError, ServiceResponseError, ConnectionError, TimeoutError)):
        return Verdict("retry", f"connection failed: {type(exc).__name__}")
    if isinstance(exc, AzureError):
        return Verdict("retry", f"{type(exc).__name__}")
    if isinstance(exc, RaceLost):
        return Verdict("retry", str(exc))
    return Verdict("fatal", f"{type(exc).__name__}: {exc}")


def _service_message(exc: Any) -> str:
    text = str(getattr(exc, "message", "") or "").splitlines()
    return (text[0] if text else "")[:200]


class RaceLost(Exception):
    """Another replica kept writing the same item between our read and our conditional write."""


# ---------------------------------------------------------------- documents

def to_doc(entry: OutboxEntry) -> dict[str, Any]:
    """The document an outbox entry becomes (a memory, or a tombstone)."""
    if entry.op == "delete":
        assert entry.tombstone is not None
        version, updated_at, origin = entry.tombstone
        return {"id": entry.memory_id, "project_id": entry.project_id, "version": version,
                "updated_at": updated_at, "origin": origin, "deleted": True, "schema": DOC_SCHEMA}
    assert entry.memory is not None
    memory = redact_memory(entry.memory)  # already redacted when stored; again, in case the redactor grew
    body = memory.to_dict()
    body.pop("last_retrieved", None)  # each replica's own staleness clock
    return {"id": memory.id, "project_id": memory.project_id, "type": memory.type, "version": memory.version,
            "updated_at": memory.updated_at, "origin": memory.origin, "deleted": False, "memory": body,
            "embedding": base64.b64encode(entry.embedding).decode("ascii") if entry.embedding else None,
            "embedding_model": entry.embedding_model if entry.embedding else None, "schema": DOC_SCHEMA}


def doc_key(doc: dict[str, Any]) -> LWWKey:
    """A stored document's last-writer-wins key; a malformed one sorts before anything real."""
    try:
        return (int(doc["version"]), float(doc["updated_at"]), str(doc["origin"]))
    except (KeyError, TypeError, ValueError):
        return (-1, 0.0, "")


def from_doc(doc: dict[str, Any]) -> RemoteChange | None:
    """The change a document describes, or None when it is not a document this version understands."""
    try:
        if not isinstance(doc.get("id"), str) or not isinstance(doc.get("project_id"), str):
            return None
        deleted = bool(doc.get("deleted", False))
        memory = doc.get("memory")
        if not deleted and not isinstance(memory, dict):
            return None
        embedding = None
        if not deleted and isinstance(doc.get("embedding"), str):
            try:
                embedding = base64.b64decode(doc["embedding"], validate=True)
            except ValueError:
                embedding = None
        version, updated_at, origin = doc_key(doc)
        if version < 0:
            return None
        return RemoteChange(memory_id=doc["id"], project_id=doc["project_id"], version=version,
                            updated_at=updated_at, origin=origin, deleted=deleted,
                            memory=None if deleted else dict(memory),  # type: ignore[arg-type]
                            embedding=embedding,
                            embedding_model=doc.get("embedding_model") if embedding else None)
    except (AttributeError, TypeError):
        return None


# ---------------------------------------------------------------- the container

class TeamStore:
    """The Cosmos container of the team, with the few operations sync needs."""

    def __init__(self, container: Any, client: Any = None) -> None:
        self.container = container
        self.client = client
        self.charges = RequestCharges()

    @classmethod
    def connect(cls, endpoint: str, key: str, database: str, container: str, *, timeout_s: float = 10.0,
                create: bool = True, **client_options: Any) -> TeamStore:
        """A client with the SDK's retries off; creates the database and container when missing."""
        from azure.cosmos import CosmosClient, PartitionKey, documents
        from azure.cosmos._retry_options import RetryOptions

        policy = documents.ConnectionPolicy()
        policy.RetryOptions = RetryOptions(max_retry_attempt_count=0, max_wait_time_in_seconds=0)
        policy.EnableEndpointDiscovery = False
        options: dict[str, Any] = dict(
            connection_policy=policy, enable_endpoint_discovery=False, retry_total=0, retry_connect=0, retry_read=0,
            retry_status=0, connection_timeout=timeout_s, read_timeout=timeout_s, user_agent_suffix="alma-hooks")
        options.update(client_options)
        client = CosmosClient(endpoint, credential=key, **options)
        if create:
            db = client.create_database_if_not_exists(database)
            cont = db.create_container_if_not_exists(container, partition_key=PartitionKey(path=PARTITION_KEY_PATH),
                                                     indexing_policy=INDEXING_POLICY)
        else:
            cont = client.get_database_client(database).get_container_client(container)
        return cls(cont, client)

    def _hook(self, headers: Any, _body: Any) -> None:
        self.charges.add(headers)

    def _count_failure(self, exc: BaseException) -> None:
        headers = getattr(exc, "headers", None)
        if headers is not None:
            self.charges.add(headers)

    def read(self, project_id: str, memory_id: str) -> dict[str, Any] | None:
        """The document of ``memory_id`` in ``project_id``'s partition (a 1 RU point read), or None."""
        from azure.cosmos import exceptions as cx

        try:
            return self.container.read_item(memory_id, partition_key=project_id, response_hook=self._hook)
        except cx.CosmosResourceNotFoundError as e:
            self._count_failure(e)
            return None

    def create(self, doc: dict[str, Any]) -> None:
        """Create ``doc``; 409 if another replica created it first."""
        try:
            self.container.create_item(doc, response_hook=self._hook)
        except Exception as e:
            self._count_failure(e)
            raise

    def replace(self, doc: dict[str, Any], etag: str) -> None:
        """Replace the document only if it still has ``etag`` (412 otherwise: somebody wrote in between)."""
        from azure.core import MatchConditions

        try:
            self.container.replace_item(doc["id"], doc, etag=etag, match_condition=MatchConditions.IfNotModified,
                                        response_hook=self._hook)
        except Exception as e:
            self._count_failure(e)
            raise

    def change_pages(self, project_id: str, continuation: str | None,
                     page_size: int) -> Iterator[tuple[list[dict[str, Any]], str | None]]:
        """Pages of the change feed of ``project_id``'s partition and the continuation after each page.

        Without a continuation the feed starts at the beginning. Callers must still
        check each item's ``project_id``: a server may return a wider feed.
        """
        kwargs: dict[str, Any] = {"max_item_count": int(page_size), "response_hook": self._hook}
        if continuation:
            feed = self.container.query_items_change_feed(continuation=continuation, **kwargs)
        else:
            feed = self.container.query_items_change_feed(start_time="Beginning", partition_key=project_id, **kwargs)
        pages = feed.by_page()
        for page in pages:
            docs = list(page)
            yield docs, pages.continuation_token

    def query_all(self) -> list[dict[str, Any]]:
        """Every document of the container (admin and tests: a cross-partition query)."""
        return list(self.container.query_items("SELECT * FROM c", enable_cross_partition_query=True))

    def close(self) -> None:
        if self.client is not None:
            self.client.__exit__(None, None, None)

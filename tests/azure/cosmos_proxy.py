"""A loopback HTTPS proxy in front of the Cosmos DB stand-in: fault injection, and three shims.

The real ``azure-cosmos`` client talks to this proxy; the proxy talks to
``@vercel/cosmosdb-server`` (see ``cosmos_standin.py``). It exists to show what
the stand-in alone cannot:

Faults (``add_fault``), each matching method/path/body and firing ``times`` times:
``status`` (e.g. 429 with ``x-ms-retry-after-ms``, 503, 408, 449, 400, 413),
``delay`` (hold the request longer than the client's timeout, then forward it:
a write that lands after the client gave up), ``drop`` (close the connection
without an answer, before forwarding) and ``drop_after`` (forward, let the
stand-in apply it, then close without an answer: an acknowledged-but-lost write).

Shims over the stand-in's gaps, each a stand-in limitation and not Cosmos behaviour:

1. **Change-feed continuation.** The stand-in answers every change-feed request
   with the whole container and ETag ``"1"``, and any request carrying
   ``If-None-Match`` with 304, so a saved continuation never sees a later change
   and a page size below the container size loses the rest. The proxy keeps a
   logical sequence number (LSN) per document version it has seen (by ``_rid`` and
   ``_etag``) and answers change-feed requests as Cosmos's latest-version feed does:
   the documents changed after the continuation's LSN, oldest first, at most
   ``x-ms-max-item-count`` of them, ETag = the last LSN served, 304 when nothing is
   newer. Like the stand-in (and unlike a partition-scoped feed on Cosmos) it does
   not filter by partition: other projects' documents come back too.
2. **Point read of a missing item.** The stand-in answers it with 500 (a
   ``TypeError`` in its handler); Cosmos answers 404. The proxy turns exactly that
   500 into 404 ``NotFound``.
3. Nothing else is changed; request charges are the stand-in's (a flat 1 per request).

It also records every request (method, path, status, body bytes) and counts the
writes the stand-in applied per document id, for assertions.
"""

from __future__ import annotations

import collections
import http.client
import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

_DOCS = re.compile(r"^/dbs/[^/]+/colls/(?P<coll>[^/]+)/docs/?$")
_DOC = re.compile(r"^/dbs/[^/]+/colls/[^/]+/docs/(?P<id>[^/?]+)/?$")
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "te", "trailer", "upgrade"}


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Fault:
    kind: str                    # status | delay | drop | drop_after
    match: Callable[[Request], bool]
    times: int = 1
    status: int = 503
    retry_after_ms: int | None = None
    delay_s: float = 0.0
    fired: int = 0


@dataclass
class Exchange:
    method: str
    path: str
    status: int                  # 0: no answer (dropped)
    request_body: bytes
    fault: str = ""


def is_write(req: Request) -> bool:
    """A create (POST .../docs) or replace/upsert (PUT .../docs/{id}) of a document."""
    return (req.method == "POST" and bool(_DOCS.match(req.path)) and not req.headers.get("x-ms-documentdb-isquery")
            and "query" not in req.headers.get("content-type", "")) or (
        req.method == "PUT" and bool(_DOC.match(req.path)))


def body_contains(text: str) -> Callable[[Request], bool]:
    return lambda req: text.encode() in req.body


@dataclass
class CosmosProxy:
    upstream_port: int
    cert: Path
    key: Path
    latency_s: float = 0.0
    faults: list[Fault] = field(default_factory=list)
    exchanges: list[Exchange] = field(default_factory=list)
    applied_writes: collections.Counter[str] = field(default_factory=collections.Counter)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._feeds: dict[str, dict[str, Any]] = {}
        # one context for every upstream connection: building one loads the CA store (~80 ms here)
        self._upstream_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self._upstream_tls.check_hostname = False
        self._upstream_tls.verify_mode = ssl.CERT_NONE  # the stand-in's own certificate: self-signed and expired

    # ------------------------------------------------------------ lifecycle
    def start(self) -> CosmosProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                # headers and body go out in separate writes: without this, Nagle + delayed ACK add ~40 ms
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_GET(self) -> None:  # noqa: N802
                proxy._handle(self)

            do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_GET  # noqa: N815

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.cert), str(self.key))
        self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self._server.server_address[1]}/"

    # ------------------------------------------------------------ faults
    def add_fault(self, kind: str, match: Callable[[Request], bool] = is_write, *, times: int = 1,
                  status: int = 503, retry_after_ms: int | None = None, delay_s: float = 0.0) -> Fault:
        fault = Fault(kind, match, times, status, retry_after_ms, delay_s)
        with self._lock:
            self.faults.append(fault)
        return fault

    def _take_fault(self, req: Request) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.fired < fault.times and fault.match(req):
                    fault.fired += 1
                    return fault
        return None

    def sent_bytes(self) -> bytes:
        """Every request body the client sent, concatenated (what left the machine)."""
        with self._lock:
            return b"\n".join(e.request_body for e in self.exchanges)

    def writes_seen(self) -> int:
        with self._lock:
            return sum(self.applied_writes.values())

    # ------------------------------------------------------------ the request path
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        req = Request(h.command, h.path, {k.lower(): v for k, v in h.headers.items()}, body)
        if self.latency_s:
            time.sleep(self.latency_s)
        fault = self._take_fault(req)
        if fault is not None and fault.kind == "status":
            self._record(req, fault.status, f"status {fault.status}")
            extra = {"x-ms-retry-after-ms": str(fault.retry_after_ms)} if fault.retry_after_ms is not None else {}
            code = {429: "TooManyRequests", 503: "ServiceUnavailable", 408: "RequestTimeout", 449: "RetryWith",
                    400: "BadRequest", 413: "RequestEntityTooLarge"}.get(fault.status, "Error")
            self._reply(h, fault.status, {"x-ms-request-charge": "0", **extra},
                        json.dumps({"code": code, "message": f"injected by the test proxy: {code}"}).encode())
            return
        if fault is not None and fault.kind == "drop":
            self._record(req, 0, "drop")
            self._drop(h)
            return
        if fault is not None and fault.kind == "delay":
            time.sleep(fault.delay_s)
        if req.method == "GET" and "a-im" in req.headers and _DOCS.match(req.path.split("?")[0]):
            status, headers, data = self._change_feed(req)
        else:
            status, headers, data = self._forward(req)
            status, data = self._fix_missing_read(req, status, data)
        if 200 <= status < 300 and is_write(req):
            try:
                doc_id = json.loads(req.body)["id"]
            except (ValueError, KeyError, TypeError):
                doc_id = "?"
            with self._lock:
                self.applied_writes[doc_id] += 1
        if fault is not None and fault.kind == "drop_after":
            self._record(req, 0, "drop_after")
            self._drop(h)
            return
        self._record(req, status, "delay" if fault is not None else "")
        self._reply(h, status, headers, data)

    def _record(self, req: Request, status: int, fault: str) -> None:
        with self._lock:
            self.exchanges.append(Exchange(req.method, req.path, status, req.body, fault))

    @staticmethod
    def _drop(h: BaseHTTPRequestHandler) -> None:
        h.close_connection = True
        try:
            h.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    @staticmethod
    def _reply(h: BaseHTTPRequestHandler, status: int, headers: dict[str, str], data: bytes) -> None:
        try:
            h.send_response(status)
            for k, v in headers.items():
                if k.lower() not in _HOP:
                    h.send_header(k, v)
            if "content-type" not in {k.lower() for k in headers}:
                h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            if data:
                h.wfile.write(data)
        except OSError:
            h.close_connection = True  # the client gave up (timed out) before the answer

    def _forward(self, req: Request, drop_headers: tuple[str, ...] = ()) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPSConnection("127.0.0.1", self.upstream_port, context=self._upstream_tls, timeout=60)
        try:
            conn.connect()
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            headers = {k: v for k, v in req.headers.items() if k not in _HOP and k not in drop_headers and k != "host"}
            headers["host"] = f"127.0.0.1:{self.upstream_port}"
            conn.request(req.method, req.path, body=req.body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {k: v for k, v in resp.getheaders()}, data
        finally:
            conn.close()

    @staticmethod
    def _fix_missing_read(req: Request, status: int, data: bytes) -> tuple[int, bytes]:
        # shim 2: the stand-in's read-document handler dereferences the missing item
        if req.method == "GET" and status == 500 and _DOC.match(req.path.split("?")[0]) and (
                b"Cannot read properties of undefined" in data):
            return 404, json.dumps({"code": "NotFound", "message": "Entity with the specified id does not exist "
                                    "in the system."}).encode()
        return status, data

    def _change_feed(self, req: Request) -> tuple[int, dict[str, str], bytes]:
        # shim 1: a latest-version change feed with LSN continuations over the stand-in's full listing
        status, headers, data = self._forward(req, drop_headers=("a-im", "if-none-match", "x-ms-max-item-count",
                                                                 "x-ms-continuation"))
        if status != 200:
            return status, headers, data
        listing = json.loads(data)
        docs = listing.get("Documents", [])
        path = req.path.split("?")[0].rstrip("/")
        token = req.headers.get("if-none-match", "")
        with self._lock:
            feed = self._feeds.setdefault(path, {"lsn": 0, "seen": {}})
            for doc in docs:
                seen = feed["seen"].get(doc["_rid"])
                if seen is None or seen[0] != doc["_etag"]:
                    feed["lsn"] += 1
                    feed["seen"][doc["_rid"]] = (doc["_etag"], feed["lsn"])
            since = feed["lsn"] if token == "*" else int(token) if token.isdigit() else 0
            changed = sorted(((feed["seen"][d["_rid"]][1], i) for i, d in enumerate(docs)
                              if feed["seen"][d["_rid"]][1] > since))
        limit = int(req.headers.get("x-ms-max-item-count") or 0)
        if limit > 0:
            changed = changed[:limit]
        base = {k: v for k, v in headers.items() if k.lower() in ("x-ms-request-charge", "x-ms-activity-id",
                                                                  "content-type")}
        if not changed:
            return 304, {**base, "etag": str(since)}, b""
        page = [docs[i] for _, i in changed]
        body = json.dumps({"_rid": listing.get("_rid", ""), "Documents": page, "_count": len(page)}).encode()
        return 200, {**base, "etag": str(changed[-1][0]), "x-ms-item-count": str(len(page))}, body

"""A minimal loopback HTTPS stand-in of Azure Key Vault's secrets API, for the real ``SecretClient``.

What it serves as Key Vault does (API ``GET {vault}/secrets/{name}[/{version}]?api-version=...``):

- a request without ``Authorization: Bearer ...`` gets **401** with the challenge
  ``WWW-Authenticate: Bearer authorization="https://login.microsoftonline.com/<tenant>",
  resource="https://vault.azure.net"``: this is what makes the SDK's challenge policy ask
  its credential for a token (scope ``https://vault.azure.net/.default``) and send the
  request again;
- with the expected token: ``{"value", "id", "attributes"}`` for a known secret,
  **404** ``SecretNotFound`` for an unknown one, **403** ``Forbidden`` for a name listed
  in ``forbidden``; a wrong token gets **401** again.

What it is not: tokens are compared to one fixed string (no Entra ID, no signature,
no expiry), there is no RBAC or access policy, no version history, soft delete,
throttling or firewall. The vault name is the first path segment when the URL
template is ``https://127.0.0.1:<port>/{vault}``.
"""

from __future__ import annotations

import json
import re
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

TENANT = "00000000-0000-0000-0000-000000000000"
CHALLENGE = (f'Bearer authorization="https://login.microsoftonline.com/{TENANT}", '
             'resource="https://vault.azure.net"')
_PATH = re.compile(r"^(?:/(?P<vault>[A-Za-z0-9-]+))?/secrets/(?P<name>[A-Za-z0-9-]+)(?:/(?P<version>[A-Za-z0-9]+))?/?$")


@dataclass
class SeenRequest:
    method: str
    path: str
    vault: str | None
    authorized: bool
    status: int


@dataclass
class KeyVaultStandIn:
    cert: Path
    key: Path
    secrets: dict[str, str] = field(default_factory=dict)
    token: str = "alma-test-token"
    forbidden: set[str] = field(default_factory=set)
    requests: list[SeenRequest] = field(default_factory=list)

    def start(self) -> KeyVaultStandIn:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                standin._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.cert), str(self.key))
        self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url_template(self) -> str:
        """For ``azure.keyvault_url_template``: the vault name becomes the first path segment."""
        return f"https://127.0.0.1:{self.port}/{{vault}}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        path = h.path.split("?", 1)[0]
        m = _PATH.match(path)
        auth = h.headers.get("Authorization", "")
        authorized = auth == f"Bearer {self.token}"
        if m is None:
            status, body, extra = 400, {"error": {"code": "BadParameter", "message": "unknown path"}}, {}
        elif not auth:
            status, body, extra = 401, {"error": {"code": "Unauthorized", "message": "AKV10000: Request is missing a "
                                                  "Bearer or PoP token."}}, {"WWW-Authenticate": CHALLENGE}
        elif not authorized:
            status, body, extra = 401, {"error": {"code": "Unauthorized", "message": "AKV10022: Invalid audience."}}, \
                {"WWW-Authenticate": CHALLENGE}
        elif m["name"] in self.forbidden:
            status, body, extra = 403, {"error": {"code": "Forbidden", "message": "Caller is not authorized to perform "
                                                  "action on resource.", "innererror": {"code": "ForbiddenByRbac"}}}, {}
        elif m["name"] not in self.secrets:
            status, body, extra = 404, {"error": {"code": "SecretNotFound", "message": f"A secret with (name/id) "
                                                  f"{m['name']} was not found in this key vault."}}, {}
        else:
            version = m["version"] or "0123456789abcdef0123456789abcdef"
            now = int(time.time())
            status, extra = 200, {}
            body = {"value": self.secrets[m["name"]],
                    "id": f"https://127.0.0.1:{self.port}/secrets/{m['name']}/{version}",
                    "attributes": {"enabled": True, "created": now, "updated": now, "recoveryLevel": "Recoverable"}}
        self.requests.append(SeenRequest("GET", path, m["vault"] if m else None, authorized, status))
        data = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json; charset=utf-8")
        h.send_header("Content-Length", str(len(data)))
        for k, v in extra.items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)


class StaticCredential:
    """A test ``TokenCredential``: always the same bearer token, and a record of the scopes asked for."""

    def __init__(self, token: str = "alma-test-token") -> None:
        self.token = token
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        self.scopes.append(scopes)
        return AccessToken(self.token, int(time.time()) + 3600)


#: SecretClient options for the stand-in: its certificate is self-signed, and its host (127.0.0.1)
#: is not a subdomain of the challenge's resource (vault.azure.net), which the SDK checks by default.
CLIENT_OPTIONS = {"connection_verify": False, "verify_challenge_resource": False}

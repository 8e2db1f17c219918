"""The viewer's HTTP layer: stdlib ``ThreadingHTTPServer`` on 127.0.0.1, a JSON API and three static files.

Who may read it (other users of the machine can reach any loopback port):

- ``alma-hooks ui`` prints ``http://127.0.0.1:<port>/?token=<token>`` with a random
  token made for this run (``secrets.token_urlsafe``). Loading that URL sets an
  ``HttpOnly; SameSite=Strict`` cookie and redirects to ``/`` (the token leaves the
  address bar); every other request needs the cookie or the ``X-Alma-Token`` header,
  else 403.
- Writes (POST) need the header itself, not only the cookie, and a JSON body: a
  page of another origin can neither read the token nor send that header without
  a CORS preflight, which this server never grants. An ``Origin`` or
  ``Sec-Fetch-Site`` naming another site is refused too.
- The ``Host`` header must name this server (127.0.0.1 or localhost and its
  port): a DNS-rebinding page cannot talk to it under another name.
- Pages carry a Content-Security-Policy that allows only this origin's script and
  style (no inline script): the page renders data with ``textContent`` only, and
  the policy is the second line of defence.

Errors are JSON (``{"error": ..., "fix": ...}``) with a 4xx status; an unexpected
exception is logged and answered with a plain 500, never a traceback.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import urllib.parse
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

from ..config import Config, data_dir
from ..errors import AlmaError, BadRequest, NotFound, ScopeViolation, StoreUnavailable
from ..storage import open_store
from .api import ViewerAPI, engine_embed

log = logging.getLogger("alma_hooks.viewer")

HOST = "127.0.0.1"
TOKEN_HEADER = "X-Alma-Token"
MAX_BODY = 64 * 1024
STATIC_TYPES = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def _static(name: str) -> bytes:
    return resources.files("alma_hooks.viewer").joinpath("static", name).read_bytes()


def status_for(error: AlmaError) -> int:
    """The HTTP status of a library error."""
    if isinstance(error, NotFound):
        return 404
    if isinstance(error, ScopeViolation):
        return 403
    if isinstance(error, StoreUnavailable):
        return 503
    return 400


class ViewerServer(ThreadingHTTPServer):
    """The viewer on ``127.0.0.1:port`` (0: a free port), answering with ``api``."""

    daemon_threads = True

    def __init__(self, api: ViewerAPI, *, port: int = 0, token: str | None = None) -> None:
        self.api = api
        self.token = token or secrets.token_urlsafe(32)
        super().__init__((HOST, port), _Handler)
        self.port = int(self.server_address[1])
        # cookies ignore the port: two viewers of one user must not overwrite each other's
        self.cookie_name = f"alma_ui_{self.port}"
        self.hosts = {f"{HOST}:{self.port}", f"localhost:{self.port}"}
        self.origins = {f"http://{h}" for h in self.hosts}
        self.index = _static("index.html").replace(b"{{TOKEN}}", self.token.encode())
        self.files = {name: _static(name) for name in STATIC_TYPES}

    @property
    def url(self) -> str:
        """The URL to open: it carries the token once, the cookie does the rest."""
        return f"http://{HOST}:{self.port}/?token={self.token}"

    def valid(self, candidate: str | None) -> bool:
        return bool(candidate) and hmac.compare_digest(str(candidate).encode(), self.token.encode())

    def server_close(self) -> None:
        super().server_close()
        self.api.store.close()


def open_viewer(config: Config, *, all_projects: bool = False, port: int = 0,
                token: str | None = None) -> ViewerServer:
    """A viewer of ``config``'s project (every project with ``all_projects``), bound and ready to serve.

    Its store writes audit rows as actor ``ui:<user>``; search embeds queries with
    the warm engine when one runs, else ranks by words.
    """
    store = open_store(config, actor=f"ui:{config.user_id}")
    try:
        api = ViewerAPI(store, config, all_projects=all_projects, embed=engine_embed(data_dir()))
        return ViewerServer(api, port=port, token=token)
    except OSError as e:
        store.close()
        raise AlmaError(f"cannot listen on {HOST}:{port}: {e.strerror}", "pick another --port, or 0 for a free one") \
            from None
    except BaseException:
        store.close()
        raise


class _Handler(BaseHTTPRequestHandler):
    server: ViewerServer
    server_version = "alma-hooks-ui"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("%s %s", self.address_string(), format % args)

    # ------------------------------------------------------------ methods
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def _not_allowed(self) -> None:
        self._json(405, {"error": f"method {self.command} is not allowed"}, {"Allow": "GET, POST"})

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _not_allowed  # noqa: N815

    def _handle(self, method: str) -> None:
        try:
            self._route(method)
        except AlmaError as e:
            self._json(status_for(e), {"error": e.message, "fix": e.fix})
        except Exception:  # the server's one catch-all: a request gets a JSON 500, the log gets the traceback
            log.exception("viewer request failed: %s %s", method, self.path.split("?")[0])
            self._json(500, {"error": "internal error (see the alma-hooks log)"})

    # ------------------------------------------------------------ routing
    def _route(self, method: str) -> None:
        url = urllib.parse.urlsplit(self.path)
        if self.headers.get("Host", "") not in self.server.hosts:
            # never the URL here: a DNS-rebinding page would read the token from this answer
            self._json(403, {"error": "unknown Host header", "fix": "open the URL that `alma-hooks ui` printed"})
            return
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        if method == "GET" and url.path == "/" and "token" in query:
            self._login(query["token"][0])
            return
        if not self._authorized(method):
            return
        if method == "GET" and url.path == "/":
            self._send(200, self.server.index, "text/html; charset=utf-8")
        elif method == "GET" and url.path.startswith("/static/") and url.path[8:] in STATIC_TYPES:
            name = url.path[8:]
            self._send(200, self.server.files[name], STATIC_TYPES[name])
        elif url.path.startswith("/api/"):
            route = url.path[5:]
            if method == "GET":
                result = self.server.api.get(route, {k: v[0] for k, v in query.items()})
            else:
                result = self.server.api.post(route, self._body())
            self._json(200, result)
        else:
            raise NotFound(f"no page {url.path}")

    def _login(self, token: str) -> None:
        if not self.server.valid(token):
            self._json(403, {"error": "wrong token", "fix": "open the URL that `alma-hooks ui` printed"})
            return
        cookie = f"{self.server.cookie_name}={self.server.token}; HttpOnly; SameSite=Strict; Path=/"
        self._send(303, b"", "text/plain; charset=utf-8", {"Location": "/", "Set-Cookie": cookie})

    def _cookie_token(self) -> str | None:
        try:
            jar = SimpleCookie(self.headers.get("Cookie", ""))
        except CookieError:
            return None
        morsel = jar.get(self.server.cookie_name)
        return morsel.value if morsel is not None else None

    def _authorized(self, method: str) -> bool:
        header = self.headers.get(TOKEN_HEADER)
        if method == "POST":
            # a cookie rides along with any site's form: writes need the header a foreign page cannot set
            ok = self.server.valid(header)
            origin = self.headers.get("Origin")
            site = self.headers.get("Sec-Fetch-Site")
            if ok and ((origin is not None and origin not in self.server.origins)
                       or (site is not None and site not in ("same-origin", "none"))):
                self._json(403, {"error": "cross-site request refused"})
                return False
        else:
            ok = self.server.valid(header) or self.server.valid(self._cookie_token())
        if not ok:
            self._json(403, {"error": "this alma-hooks viewer needs its token",
                             "fix": "open the URL that `alma-hooks ui` printed"})
        return ok

    def _body(self) -> dict[str, Any]:
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise BadRequest("a POST body must be JSON (Content-Type: application/json)")
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise BadRequest("Content-Length is missing or not a number") from None
        if not 0 <= length <= MAX_BODY:
            raise BadRequest(f"the body must be at most {MAX_BODY} bytes")
        try:
            body = json.loads(self.rfile.read(length) or b"null")
        except (ValueError, UnicodeDecodeError):
            raise BadRequest("the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object")
        return body

    # ------------------------------------------------------------ responses
    def _json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(data, ensure_ascii=False).encode("utf-8", "replace"),
                   "application/json; charset=utf-8", headers)

    def _send(self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status, HTTPStatus(status).phrase)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in {**SECURITY_HEADERS, **(headers or {})}.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

"""The viewer's HTTP layer on a real loopback socket: token, cookie, CSRF and Host checks, JSON errors.

Each test runs a real :class:`ViewerServer` in a thread over a real SQLite store,
and talks to it with ``http.client``.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Iterator

import pytest
from viewertools import USER, Seeded, post_json, request, seed

from alma_hooks.errors import AlmaError, BadRequest, StoreUnavailable
from alma_hooks.viewer import server as viewer_server
from alma_hooks.viewer.server import ViewerServer, open_viewer, status_for


@pytest.fixture
def world(tmp_path, alma_home) -> Seeded:
    return seed(tmp_path, alma_home)


@pytest.fixture
def server(world: Seeded) -> Iterator[ViewerServer]:
    srv = open_viewer(world.config)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=10)


def get(srv: ViewerServer, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    return request(srv.port, "GET", path, headers=headers)


def api_get(srv: ViewerServer, path: str) -> tuple[int, dict]:
    status, _, body = get(srv, path, **{"X-Alma-Token": srv.token})
    return status, json.loads(body)


def test_it_listens_on_loopback_with_a_fresh_token(server: ViewerServer, world: Seeded) -> None:
    assert server.server_address[0] == "127.0.0.1" and server.port > 0
    assert re.fullmatch(rf"http://127\.0\.0\.1:{server.port}/\?token=[A-Za-z0-9_-]{{40,}}", server.url)
    other = open_viewer(world.config)
    try:
        assert other.token != server.token and other.port != server.port
    finally:
        other.server_close()


@pytest.mark.parametrize("path", ["/", "/static/app.js", "/static/style.css", "/api/scopes", "/api/memories",
                                  "/api/memory?id=x", "/nothing"])
def test_every_request_without_the_token_is_refused(server: ViewerServer, path: str) -> None:
    for headers in ({}, {"X-Alma-Token": "wrong"}, {"Cookie": f"{server.cookie_name}=wrong"},
                    {"Cookie": f"alma_ui_1={server.token}"}, {"Cookie": "garbage\x7f;;=="}):
        status, hdrs, body = get(server, path, **headers)
        assert status == 403, (path, headers)
        data = json.loads(body)
        assert "needs its token" in data["error"] and server.token not in body.decode()
        assert hdrs["content-type"].startswith("application/json")


def test_the_tokened_url_sets_a_cookie_and_drops_the_token(server: ViewerServer) -> None:
    status, hdrs, _ = get(server, f"/?token={server.token}")
    assert status == 303 and hdrs["location"] == "/"
    cookie = hdrs["set-cookie"]
    assert cookie.startswith(f"{server.cookie_name}={server.token};")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    status, hdrs, body = get(server, "/", Cookie=f"{server.cookie_name}={server.token}")
    assert status == 200 and hdrs["content-type"].startswith("text/html")
    assert f'<meta name="alma-token" content="{server.token}">' in body.decode()
    assert "script-src 'self'" in hdrs["content-security-policy"] and hdrs["x-frame-options"] == "DENY"
    assert hdrs["cache-control"] == "no-store" and hdrs["referrer-policy"] == "no-referrer"
    status, hdrs, body = get(server, "/static/app.js", Cookie=f"{server.cookie_name}={server.token}")
    assert status == 200 and hdrs["content-type"].startswith("text/javascript") and b"X-Alma-Token" in body
    status, _, _ = get(server, "/api/scopes", Cookie=f"{server.cookie_name}={server.token}")
    assert status == 200
    status, _, body = get(server, "/?token=wrong")
    assert status == 403 and "wrong token" in json.loads(body)["error"]


def test_the_page_never_renders_data_as_html() -> None:
    """The page's script builds every node with textContent or attributes; no HTML parsing of data."""
    from importlib import resources

    js = resources.files("alma_hooks.viewer").joinpath("static", "app.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in js, sink
    html = resources.files("alma_hooks.viewer").joinpath("static", "index.html").read_text()
    assert "<script>" not in html and "http://" not in html and "https://" not in html  # nothing from a CDN


def test_reads_through_the_api(server: ViewerServer, world: Seeded) -> None:
    status, data = api_get(server, "/api/memories?type=heuristic&q=flaky")
    assert status == 200 and data["items"][0]["id"] == world.heuristic.id
    status, data = api_get(server, f"/api/memory?id={world.heuristic.id}")
    assert status == 200 and len(data["confidence"]) == 3
    status, data = api_get(server, "/api/memories?q=" + "%3Cscript%3E")
    assert status == 200 and data["query"] == "<script>"


@pytest.mark.parametrize("path,code,error", [
    ("/api/memories?project=github.com/acme/billing", 403, "shows project"),
    ("/api/memory?id=nope", 404, "no memory nope"),
    ("/api/memories?limit=x", 400, "whole number"),
    ("/api/bogus", 404, "no such API route"),
    ("/elsewhere", 404, "no page"),
    ("/static/../server.py", 404, "no page"),
], ids=["other-project", "missing-id", "bad-limit", "bad-route", "bad-page", "traversal"])
def test_bad_requests_are_json_errors(server: ViewerServer, path: str, code: int, error: str) -> None:
    status, data = api_get(server, path)
    assert status == code and error in data["error"] and "Traceback" not in json.dumps(data)


def test_an_unexpected_error_is_a_plain_500(server: ViewerServer, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(route: str, params: dict) -> dict:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(server.api, "get", boom)
    status, data = api_get(server, "/api/scopes")
    assert status == 500 and data == {"error": "internal error (see the alma-hooks log)"}


def test_status_for_errors() -> None:
    assert status_for(StoreUnavailable("busy")) == 503
    assert status_for(BadRequest("bad")) == 400
    assert status_for(AlmaError("other")) == 400


def test_a_foreign_host_header_is_refused_without_the_token_in_the_answer(server: ViewerServer) -> None:
    for host in ("evil.example:80", f"attacker.test:{server.port}", "127.0.0.1"):
        status, _, body = get(server, "/api/scopes", Host=host, **{"X-Alma-Token": server.token})
        assert status == 403 and "unknown Host" in json.loads(body)["error"]
        assert server.token not in body.decode()
    status, _, _ = get(server, "/api/scopes", Host=f"localhost:{server.port}", **{"X-Alma-Token": server.token})
    assert status == 200


def test_post_needs_the_header_json_and_this_origin(server: ViewerServer, world: Seeded) -> None:
    body = {"id": world.heuristic.id, "pinned": True}
    cookie = {"Cookie": f"{server.cookie_name}={server.token}"}
    assert post_json(server.port, "/api/pin", body, None, **cookie)[0] == 403  # a cookie alone: what CSRF has
    assert post_json(server.port, "/api/pin", body, "wrong")[0] == 403
    status, data = post_json(server.port, "/api/pin", body, server.token, Origin="http://evil.example")
    assert status == 403 and "cross-site" in data["error"]
    assert post_json(server.port, "/api/pin", body, server.token, **{"Sec-Fetch-Site": "cross-site"})[0] == 403
    status, _, raw = request(server.port, "POST", "/api/pin", body=json.dumps(body).encode(),
                             headers={"X-Alma-Token": server.token, "Content-Type": "text/plain"})
    assert status == 400 and "must be JSON" in json.loads(raw)["error"]
    with server.api.lock:
        assert not server.api.store.get(world.scope, world.heuristic.id).pinned  # nothing above got through
    status, data = post_json(server.port, "/api/pin", body, server.token, Origin=f"http://127.0.0.1:{server.port}",
                             **{"Sec-Fetch-Site": "same-origin"})
    assert status == 200 and data["memory"]["pinned"] is True
    with server.api.lock:
        row = server.api.store.audit_log(world.scope, memory_id=world.heuristic.id)[0]
    assert (row["reason"], row["actor"]) == ("pinned in the viewer", f"ui:{USER}")


@pytest.mark.parametrize("raw,length,error", [
    (b"{not json", None, "not valid JSON"),
    (b"[1, 2]", None, "must be a JSON object"),
    (b"\xff\xfe", None, "not valid JSON"),
    (b"{}", "lots", "Content-Length"),
    (b"{}", str(viewer_server.MAX_BODY + 1), "at most"),
], ids=["broken", "array", "not-utf8", "bad-length", "too-big"])
def test_bad_post_bodies(server: ViewerServer, raw: bytes, length: str | None, error: str) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        head = (f"POST /api/pin HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nX-Alma-Token: {server.token}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {length or len(raw)}\r\n"
                "Connection: close\r\n\r\n")
        s.sendall(head.encode() + raw)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    assert status == 400 and error in json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"])
def test_other_methods_are_not_allowed(server: ViewerServer, method: str) -> None:
    status, hdrs, _ = request(server.port, method, "/api/scopes", headers={"X-Alma-Token": server.token})
    assert status == 405 and hdrs["allow"] == "GET, POST"


def test_a_busy_port_is_a_one_line_error(server: ViewerServer, world: Seeded) -> None:
    with pytest.raises(AlmaError, match=f"cannot listen on 127.0.0.1:{server.port}"):
        open_viewer(world.config, port=server.port)


def test_the_hook_path_never_imports_the_viewer() -> None:
    """The viewer is a face: the hook entry and the event handlers must not pull it (or http.server) in."""
    import subprocess
    import sys

    code = ("import sys, alma_hooks.entry, alma_hooks.events, alma_hooks.daemon_client; "
            "print(sorted(m for m in sys.modules if m.startswith('alma_hooks.viewer') or m == 'http.server'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

"""The hook side of the warm engine: find it, ask it, or start it. Stdlib only.

The engine listens on a Unix socket in ``<data dir>/run`` (0700). One request
per connection: a JSON line in and one out, or a hook's raw event in and the
bytes it prints out (``entry._via_engine``). A hook never waits for the
model to load: no socket, a refused connection or a slow answer all mean
"answer yourself" (lexical retrieval), and the engine is started for next time.
"""

from __future__ import annotations

import _socket
import os
import sys
import time

# No json, socket, pathlib or typing here: this module is on every hook's fast path, and those
# imports cost more than the engine's answer (annotations are strings, see `from __future__ import
# annotations`; _socket is what socket wraps, without its enum and selectors imports).
SPAWN_GRACE_S = 10.0


def run_dir(home: Path) -> Path:
    from pathlib import Path

    return Path(home) / "run"


def socket_path(home: Path) -> Path:
    return run_dir(home) / "engine.sock"


def exchange(home: str | os.PathLike[str], data: bytes, timeout_s: float) -> bytes | None:
    """Send ``data`` to the engine and read its answer to the end; None when there is no engine or it is too slow.

    One request per connection: the request ends where this side shuts its half of
    the socket, the answer where the engine closes the connection.
    """
    path = os.path.join(os.fspath(home), "run", "engine.sock")
    if not os.path.exists(path):
        return None
    deadline = time.monotonic() + timeout_s
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout_s)
        sock.connect(path)
        sock.sendall(data)
        sock.shutdown(_socket.SHUT_WR)
        chunks = []
        while True:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    except OSError:
        return None
    finally:
        sock.close()
    return b"".join(chunks)


def request(home: str | os.PathLike[str], message: dict[str, Any], timeout_s: float) -> dict[str, Any] | None:
    """Send one JSON request to the engine; its JSON answer, or None when there is no engine or it is too slow."""
    import json

    answer = exchange(home, json.dumps(message).encode() + b"\n", timeout_s)
    try:
        reply = json.loads(answer or b"null")
    except ValueError:
        return None
    return reply if isinstance(reply, dict) else None


def spawn(home: Path) -> bool:
    """Start the engine detached unless one is running or was started moments ago."""
    rd = run_dir(home)
    marker = rd / "engine.starting"
    try:
        rd.mkdir(parents=True, exist_ok=True, mode=0o700)
        if marker.exists() and time.time() - marker.stat().st_mtime < SPAWN_GRACE_S:
            return False
        marker.touch(mode=0o600)
        pid = os.fork()
    except OSError:
        return False
    if pid:
        try:
            os.waitpid(pid, 0)  # the intermediate child exits at once: no zombie, no orphan of ours
        except OSError:
            pass
        return True
    try:  # first child: detach, fork again, exec the engine
        os.setsid()
        if os.fork():
            os._exit(0)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        env = dict(os.environ, ALMA_HOME=str(home))
        os.execve(sys.executable, [sys.executable, "-m", "alma_hooks.daemon", "serve"], env)
    finally:
        os._exit(0)

"""The warm engine: one per user, holds the model and open stores, answers hooks over a Unix socket.

- Single instance: an exclusive ``flock`` on ``run/engine.lock``; a second
  engine exits at once.
- Socket and its directory are user-only (0700 dir, 0600 socket).
- Exits after ``engine.idle_timeout_s`` without requests (default 15 min), when
  the installed alma-hooks changes (version file's mtime), on ``stop``, or on
  SIGTERM; the socket and pid files are removed on the way out.
- Between requests it embeds pending memories, so a capture becomes findable
  by meaning without the hook ever computing an embedding, and reloads the
  KNN codes it holds in memory (``SQLiteStore(warm=True)``) that
  changed on disk, so a search rarely pays for a reload.

Run ``python -m alma_hooks.daemon serve`` (the hooks and ``alma-hooks engine start`` do).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path
from collections.abc import Sequence
from typing import Any

from . import __version__, entry, events, logs
from .config import data_dir, ensure_private_dir, load_config
from .daemon_client import request, run_dir, socket_path
from .errors import StoreUnavailable
from .storage.sqlite import SQLiteStore

log = logs.get("alma_hooks.daemon")
#: Its mtime changing means alma-hooks was upgraded: the engine exits. ALMA_ENGINE_VERSION_FILE lets tests use a copy.
VERSION_FILE = Path(os.environ.get("ALMA_ENGINE_VERSION_FILE") or Path(__file__).resolve().parent / "__init__.py")
EMBED_BATCH = 32
#: A request larger than this is cut (a hook's stdin is at most entry.MAX_STDIN).
MAX_REQUEST_BYTES = 64 * 1024 * 1024
SMALL_BATCH = 8
ACCEPT_TIMEOUT_S = 0.25
BUSY_WORK_EVERY_S = 0.5
#: The engine gives up on recording a slice this long before the asking hook's deadline, so a slice
#: it records as injected is one the hook received.
LATE_MARGIN_S = 0.05


class Engine:
    """The engine's state: the embedder, one store per DB path, a query-vector cache."""

    def __init__(self, home: Path, idle_timeout_s: float | None = None) -> None:
        self.home = home
        self.idle_timeout_s = idle_timeout_s
        self.stores: dict[str, SQLiteStore] = {}
        self.inodes: dict[str, int | None] = {}
        self.version_stamp = self._version_stamp()
        self.started = time.time()
        self.requests = 0
        from .embedding import get_embedder
        from .retrieval.cache import EmbeddingCache

        self.embedder = get_embedder()
        self.embedder.load()  # warm means loaded: a hook's first slice must not wait for the model
        self.cache = EmbeddingCache(home / "cache" / "embeddings.db", self.embedder.model_id)

    @staticmethod
    def _version_stamp() -> tuple[str, int]:
        try:
            return (__version__, VERSION_FILE.stat().st_mtime_ns)
        except OSError:
            return (__version__, 0)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Vectors of ``texts``, through the query cache; misses are embedded in one batch."""
        from .retrieval.cache import text_key

        missing = [t for t in dict.fromkeys(texts) if not self.cache.has(text_key(t, self.embedder.model_id))]
        fresh = dict(zip(missing, self.embedder.embed(missing))) if missing else {}
        return [self.cache.get_or_compute(t, lambda x: fresh[x] if x in fresh else self.embedder.embed([x])[0])
                for t in texts]

    def store(self, config: Any) -> SQLiteStore:
        return self._open(Path(config.db_path), config.policy)

    def _open(self, path: Path, policy: Any) -> SQLiteStore:
        key = str(path)
        self._drop_if_replaced(key)
        if key not in self.stores:
            self.stores[key] = SQLiteStore(path, policy, actor="engine", warm=True)
            self.inodes[key] = _inode(path)
        store = self.stores[key]
        store.policy = policy
        return store

    def _drop_if_replaced(self, key: str) -> bool:
        """Close a store whose path now holds another file (a DB quarantined, a fresh one started); True if so."""
        store = self.stores.get(key)
        inode = None if store is None else _inode(store.path)
        if inode is None or inode == self.inodes.get(key):
            return False  # same file, or none yet: keep the open one until a new file appears
        log.warning("%s was replaced on disk (quarantined?): reopening", key)
        del self.stores[key]
        store.close()
        return True

    # ------------------------------------------------------------ requests
    def handle(self, msg: dict[str, Any]) -> dict[str, Any]:
        op = msg.get("op")
        self.requests += 1
        if op == "ping":
            pending = sum(len(s.pending_embeddings(1000)) for s in self.stores.values())
            return {"ok": True, "pid": os.getpid(), "version": __version__, "uptime_s": time.time() - self.started,
                    "requests": self.requests, "model": self.embedder.model_id, "pending": pending}
        if op == "embed":
            return {"vectors": self.embed([str(t) for t in msg.get("texts", [])])}
        if op == "slice":
            payload = msg.get("payload") or {}
            ctx = events.make_context(payload, store_factory=self.store, embed=self.embed,
                                      env=_hook_env(msg.get("env"), self.home), deadline=_deadline(msg.get("deadline")))
            if ctx is None:
                return {"text": ""}
            return {"text": events.inject_text(ctx, str(msg.get("event")), str(msg.get("query") or ""))}
        if op == "stop":
            return {"ok": True, "stopping": True}
        return {"error": f"unknown op {op!r}"}

    def handle_hook(self, request: bytes) -> bytes:
        """A whole hook event, sent raw so the hook process imports almost nothing (entry._via_engine).

        Returns ``1`` and the bytes the hook prints, or ``0``: not handled (stdin is
        not an event object), the hook then runs it itself and fails open there.
        """
        self.requests += 1
        env_block, _, raw = request[len(entry.HOOK_REQUEST):].partition(b"\0\0")
        sent = dict(os.fsdecode(item).partition("=")[::2] for item in env_block.split(b"\0") if b"=" in item)
        try:
            payload = entry.parse_payload(raw)
        except ValueError:
            return b"0"
        env = _hook_env(sent, self.home)
        if sent.get("CLAUDE_PLUGIN_ROOT") and entry.settings_hooks_present(payload, env):
            return b"1"  # `alma-hooks install` registered the hooks in settings too: let those run
        ctx = events.make_context(payload, store_factory=self.store, embed=self.embed, env=env,
                                  deadline=_deadline(sent.get("HOOK_DEADLINE")))
        return b"1" + (entry.encode_output(events.handle(ctx)) if ctx is not None else b"")

    def background(self, batch: int = EMBED_BATCH) -> int:
        """Embed pending memories of every open store, reload the KNN codes that changed and checkpoint; returns how
        many memories it embedded (a reload is not counted: it must not keep an idle engine alive)."""
        done = 0
        for key, store in list(self.stores.items()):
            try:
                if self._drop_if_replaced(key):
                    store = self._open(store.path, store.policy)
                pending = store.pending_embeddings(batch)
                if pending:
                    vecs = self.embedder.embed([t for _, t in pending])
                    done += store.set_embeddings(self.embedder.model_id,
                                                 [(i, v) for (i, _), v in zip(pending, vecs)])
                store.refresh_codes()  # here, between requests, rather than in the next search
                store.checkpoint()  # a warm store leaves checkpoints to this, see SQLiteStore._connect
            except StoreUnavailable as e:  # busy or read-only now: try again on the next round
                log.info("background embedding skipped %s: %s", store.path, e)
        return done

    def close(self) -> None:
        for store in self.stores.values():
            store.close()
        self.cache.close()


def _inode(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _deadline(value: Any) -> float | None:
    """A hook's deadline (its ``time.monotonic()``, the same clock here) less :data:`LATE_MARGIN_S`; None if not sent."""
    try:
        return float(value) - LATE_MARGIN_S
    except (TypeError, ValueError):
        return None


def _hook_env(sent: Any, home: Path) -> dict[str, str]:
    """The environment to resolve a request's config in: the hook's ALMA_* and identity variables when sent.

    Config, project and user are resolved from the environment: the engine must
    resolve them as the requesting hook does, not as whoever started the engine
    did. The data dir is always the engine's own.
    """
    if isinstance(sent, dict):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ALMA_", "CLAUDE_"))}
        env.update({k: v for k, v in sent.items() if isinstance(k, str) and isinstance(v, str)
                    and (k.startswith("ALMA_") or k in entry.FORWARDED_ENV)})
    else:
        env = dict(os.environ)
    env["ALMA_HOME"] = str(home)
    return env


def serve(home: Path | None = None, idle_timeout_s: float | None = None) -> int:
    """Run the engine until idle, stopped, or upgraded. Returns 0; 3 when another engine runs."""
    home = home or data_dir()
    rd = ensure_private_dir(run_dir(home))
    lock = os.fdopen(os.open(rd / "engine.lock", os.O_RDWR | os.O_CREAT, 0o600), "r+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return 3
    logs.to_file(home)
    sock_path = socket_path(home)
    if idle_timeout_s is None:
        idle_timeout_s = float(load_config(home, {"ALMA_HOME": str(home)}).get("engine.idle_timeout_s", 900))
    server = None
    engine = None
    try:
        engine = Engine(home, idle_timeout_s)
        _open_default_store(engine, home)
        if sock_path.exists():
            sock_path.unlink()
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            server.bind(str(sock_path))
        finally:
            os.umask(old)
        os.chmod(sock_path, 0o600)
        server.listen(64)
        lock.truncate(0)
        lock.write(str(os.getpid()))
        lock.flush()
        for marker in (rd / "engine.starting",):
            marker.unlink(missing_ok=True)
        signal.signal(signal.SIGTERM, _exit_on_signal)
        _loop(engine, server, idle_timeout_s)
    except SystemExit:
        pass
    except Exception:  # noqa: BLE001 - logged; the engine is optional, hooks answer without it
        log.exception("engine stopped on an error")
    finally:
        if server is not None:
            server.close()
        try:
            sock_path.unlink()
        except OSError:
            pass
        if engine is not None:
            engine.close()
        lock.close()
    return 0


def _open_default_store(engine: Engine, home: Path) -> None:
    """Open the data dir's DB at start, so rows captured before the first request get embedded too."""
    config = load_config(home, {"ALMA_HOME": str(home)})
    if config.db_path.exists():
        try:
            engine.store(config)
        except StoreUnavailable as e:  # busy or read-only: the first slice request opens it later
            log.info("engine could not open %s yet: %s", config.db_path, e)


def _exit_on_signal(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def _loop(engine: Engine, server: socket.socket, idle_timeout_s: float) -> None:
    last_request = last_work = time.monotonic()
    server.settimeout(ACCEPT_TIMEOUT_S)
    while True:
        if time.monotonic() - last_work > BUSY_WORK_EVERY_S:
            # under a steady stream of requests, still make progress in small steps
            engine.background(SMALL_BATCH)
            last_work = time.monotonic()
        try:
            conn, _ = server.accept()
        except socket.timeout:
            last_work = time.monotonic()
            if engine.background() == 0:
                if time.monotonic() - last_request > idle_timeout_s:
                    log.info("engine idle for %.0f s: exiting", idle_timeout_s)
                    return
                if engine._version_stamp() != engine.version_stamp:
                    log.info("alma-hooks changed on disk: engine exiting")
                    return
            continue
        last_request = time.monotonic()
        with conn:
            reply = _serve_one(engine, conn)
        if reply.get("stopping"):
            return


def _serve_one(engine: Engine, conn: socket.socket) -> dict[str, Any]:
    """Answer one connection: a JSON request line (CLI, hooks' slice and embed calls) or a raw hook
    event (``entry.HOOK_REQUEST``, read to the end of the stream). Returns the JSON reply ({} for a hook)."""
    conn.settimeout(5.0)
    chunks: list[bytes] = []
    reply: dict[str, Any] = {}
    try:
        size = 0
        while size < MAX_REQUEST_BYTES:
            chunk = conn.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if chunks[0][:1] == b"{" and chunk.endswith(b"\n"):
                break
        buf = b"".join(chunks)
        if buf.startswith(entry.HOOK_REQUEST):
            out = engine.handle_hook(buf)
        else:
            msg = json.loads(buf or b"{}")
            reply = engine.handle(msg if isinstance(msg, dict) else {})
            out = json.dumps(reply).encode() + b"\n"
    except Exception as e:  # noqa: BLE001 - one bad request must not end the engine
        raw = b"".join(chunks[:1]).startswith(entry.HOOK_REQUEST)
        if isinstance(e, events.TooLate):  # the asking hook stopped waiting and handles the event itself
            log.info("answer not recorded: %s", e)
            reply = {}
        else:
            log.warning("engine request failed: %s: %s", type(e).__name__, e, exc_info=True)
            reply = {} if raw else {"error": type(e).__name__}
        out = b"0" if raw else json.dumps(reply).encode() + b"\n"
    try:
        conn.sendall(out)
    except OSError:
        pass
    return reply


def status(home: Path | None = None) -> dict[str, Any] | None:
    """The running engine's ping reply, or None."""
    return request(home or data_dir(), {"op": "ping"}, 2.0)


def stop(home: Path | None = None, wait_s: float = 5.0) -> bool:
    """Ask the engine to exit and wait until its socket is gone."""
    home = home or data_dir()
    if request(home, {"op": "stop"}, 2.0) is None:
        return False
    deadline = time.monotonic() + wait_s
    while socket_path(home).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return True


def start(home: Path | None = None, wait_s: float = 10.0) -> dict[str, Any] | None:
    """Start the engine detached (if not running) and wait for its first answer."""
    from .daemon_client import spawn

    home = home or data_dir()
    info = status(home)
    if info:
        return info
    (run_dir(home) / "engine.starting").unlink(missing_ok=True)
    spawn(home)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        info = status(home)
        if info:
            return info
        time.sleep(0.1)
    return None


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        sys.exit(serve())
    print("usage: python -m alma_hooks.daemon serve", file=sys.stderr)
    sys.exit(2)

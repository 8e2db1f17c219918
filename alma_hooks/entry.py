"""The hook process: read stdin, handle the event, print JSON, exit 0. Always.

This module holds the one catch-all of the package (``except BaseException``
in :func:`main`): a memory hook must never break or block Claude Code, so any
error, bad input or timeout becomes a log line and an exit 0 with empty or
valid output. Exit code 2 would erase the user's prompt or block a tool, so it
is never used.

Import path kept tiny on purpose (no click, yaml, numpy, onnxruntime, azure):
Python start-up plus imports are most of a hook's latency.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time

# Only what the fast path needs is imported here (logging, pathlib and typing cost more than
# the warm engine's whole answer); annotations are strings (`from __future__ import annotations`).

MAX_STDIN = 32 * 1024 * 1024
#: Our own deadline per event, a little under the timeout in hooks/hooks.json.
DEADLINES = {"SessionStart": 8.0, "UserPromptSubmit": 8.0, "SubagentStart": 8.0, "PreToolUse": 4.0,
             "PostToolUse": 4.0, "PostToolUseFailure": 4.0, "Stop": 12.0, "SubagentStop": 12.0, "SessionEnd": 12.0}
LEARN_EVENTS = ("Stop", "SubagentStop", "UserPromptSubmit")
CAPTURE_EVENTS = ("PostToolUse", "PostToolUseFailure", "Stop", "SubagentStop", "PreToolUse")
ENGINE_TIMEOUT_S = 0.3
#: How long a hook waits for the engine to handle its whole event before doing it itself.
ENGINE_HOOK_TIMEOUTS = {"UserPromptSubmit": 0.5, "SessionStart": 0.5, "SubagentStart": 0.5, "Stop": 4.0,
                        "SubagentStop": 4.0, "SessionEnd": 4.0}
ENGINE_HOOK_TIMEOUT_S = 1.0
EMBED_TIMEOUT_S = 3.0
HOOK_BUSY_TIMEOUT_MS = 1500
LOG_BYTES = 1_000_000
#: A JSON escape of a UTF-16 surrogate: valid JSON, but a lone one cannot be encoded as UTF-8.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


class _Deadline(Exception):
    pass


def setup_logging(home: Path) -> logging.Logger:
    """Route alma_hooks' warnings to a rotating, user-only, redacted log file; returns the entry logger."""
    import logging

    root = logging.getLogger("alma_hooks")
    if not any(getattr(h, "alma_hooks_log", False) for h in root.handlers):
        root.addHandler(_log_handler(home))
    root.setLevel(logging.WARNING)
    root.propagate = False
    return logging.getLogger("alma_hooks.entry")


def _log_handler(home: Path) -> logging.Handler:
    import logging
    from logging.handlers import RotatingFileHandler
    from pathlib import Path

    from .redact import redact

    class RedactingFormatter(logging.Formatter):
        """Logs never hold secrets: every line passes the redactor."""

        def format(self, record: logging.LogRecord) -> str:
            return redact(super().format(record))

    class QuietRotatingFileHandler(RotatingFileHandler):
        def handleError(self, record: logging.LogRecord) -> None:
            pass  # a log that cannot be written (disk full) is dropped: never a traceback on the hook's stderr

    class UserOnlyRotatingHandler(logging.Handler):
        """A rotating file handler opened on the first record, every file user-only; never raises."""

        alma_hooks_log = True

        def __init__(self, path: Path) -> None:
            super().__init__(logging.WARNING)
            self.path = path
            self.inner: logging.Handler | None = None

        def emit(self, record: logging.LogRecord) -> None:
            # user-only files, the first one and every one a rollover opens (umask is process-wide;
            # hooks and the engine log from one thread)
            old = os.umask(0o077)
            try:
                if self.inner is None:
                    self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                    self.inner = QuietRotatingFileHandler(self.path, maxBytes=LOG_BYTES, backupCount=3,
                                                          encoding="utf-8")
                    self.inner.setFormatter(
                        RedactingFormatter("%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"))
                self.inner.emit(record)
            except OSError:
                pass  # no room for the log (or no log dir): the hook's work and its spool go on
            finally:
                os.umask(old)

    return UserOnlyRotatingHandler(Path(home) / "logs" / "hooks.log")


def _on_alarm(signum: int, frame: Any) -> None:
    raise _Deadline("hook deadline reached")


def _remote(home: Path):  # type: ignore[no-untyped-def]
    """The engine call used by handlers; starts the engine when there is none.

    ``ALMA_ENGINE_AUTOSTART=0`` keeps using a running engine but never starts one
    (tests and CI with throwaway data dirs; machines that cannot spare the model's memory).
    """
    from . import daemon_client

    autostart = os.environ.get("ALMA_ENGINE_AUTOSTART", "1").strip().lower() not in ("0", "false", "no", "off")

    def ask(ctx: Any, event: str, query: str) -> str | None:
        msg = {"op": "slice", "event": event, "query": query, "payload": ctx.payload, "env": _identity_env()}
        reply = daemon_client.request(home, msg, ENGINE_TIMEOUT_S)
        if reply is None:
            if autostart:
                daemon_client.spawn(home)
            return None
        text = reply.get("text")
        return text if isinstance(text, str) else None

    return ask


def _identity_env() -> dict[str, str]:
    """What the engine needs to resolve config, project and user as this hook does."""
    return {k: v for k, v in os.environ.items() if k.startswith("ALMA_") or k in ("HOME", "USER", "LOGNAME")}


def _remote_embed(home: Path):  # type: ignore[no-untyped-def]
    """Embeddings from the warm engine for learning; None (lexical learning) when it is not there."""
    from . import daemon_client

    def embed(texts: Any) -> Any:
        reply = daemon_client.request(home, {"op": "embed", "texts": list(texts)}, EMBED_TIMEOUT_S)
        vectors = reply.get("vectors") if reply else None
        return vectors if isinstance(vectors, list) and len(vectors) == len(texts) else None

    return embed


def _store_factory(config: Any) -> Any:
    from .storage.sqlite import SQLiteStore

    return SQLiteStore(config.db_path, config.policy, busy_timeout_ms=HOOK_BUSY_TIMEOUT_MS, actor="hook")


def run(payload: dict[str, Any], home: Path) -> dict[str, Any] | None:
    """Handle one payload in this process (the engine is asked for slices only)."""
    from . import events, spool

    ctx = events.make_context(payload, store_factory=_store_factory, remote=_remote(home),
                              embed=_remote_embed(home) if payload.get("hook_event_name") in LEARN_EVENTS else None)
    if ctx is None:
        return None
    try:
        if any(True for _ in spool.pending(home)):
            from .errors import StoreUnavailable

            spool.replay(home, lambda p: _replay_one(p, ctx.store), limit=50,
                         transient=(StoreUnavailable, _Deadline))
        return events.handle(ctx)
    finally:
        ctx.store.close()


def _settings_hooks_present(payload: dict[str, Any]) -> bool:
    """True when project or user settings already run alma-hooks (see alma_hooks.install)."""
    cwd = payload.get("cwd")
    candidates = [os.path.join(os.path.expanduser("~"), ".claude", "settings.json")]
    for d in (os.environ.get("CLAUDE_PROJECT_DIR"), cwd):
        if isinstance(d, str) and d:
            candidates.append(os.path.join(d, ".claude", "settings.json"))
    for path in candidates:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
            # `alma-hooks install` writes the entry module; this repository's own settings run hooks/alma-hook
            if "alma_hooks.entry" in text or "/hooks/alma-hook" in text:
                return True
        except (OSError, UnicodeDecodeError):
            continue
    return False


def _replay_one(payload: dict[str, Any], store: Any) -> bool:
    """Apply one spooled capture to ``store``; False when it belongs to another DB (left for its hooks)."""
    from . import events

    ctx = events.make_context(payload, store_factory=lambda _c: store)
    if ctx is None:
        return True  # alma-hooks is disabled there now: nothing to write
    if os.path.realpath(ctx.config.db_path) != os.path.realpath(store.path):
        return False
    events.handle(ctx)
    return True


def _quarantine_if_corrupt(payload: dict[str, Any]) -> None:
    from .config import load_config
    from .storage.sqlite import quarantine_if_corrupt

    cwd = payload.get("cwd")
    quarantine_if_corrupt(load_config(cwd if isinstance(cwd, str) and cwd else None).db_path)


def _via_engine(payload: dict[str, Any], home: Path) -> tuple[bool, dict[str, Any] | None]:
    """Let a running engine handle the whole event: (handled, output).

    The fast path: no store, model or learning code is imported here. Handlers
    are idempotent (ids derive from the session, tool call and task), so when
    the engine is too slow and this process does the work itself, nothing is
    stored twice.
    """
    from . import daemon_client

    event = str(payload.get("hook_event_name") or "")
    reply = daemon_client.request(home, {"op": "hook", "payload": payload, "env": _identity_env()},
                                  ENGINE_HOOK_TIMEOUTS.get(event, ENGINE_HOOK_TIMEOUT_S))
    if reply is None or "output" not in reply:
        return False, None
    out = reply["output"]
    return True, out if isinstance(out, dict) else None


def main() -> int:
    """Entry point of every hook. Returns 0 whatever happens."""
    home = os.environ.get("ALMA_HOME") or os.path.join(os.path.expanduser("~"), ".alma")  # as config.data_dir
    payload: dict[str, Any] = {}
    out: dict[str, Any] | None = None
    try:
        raw = sys.stdin.buffer.read(MAX_STDIN + 1)
        if len(raw) > MAX_STDIN:
            raise ValueError(f"hook input over {MAX_STDIN} bytes")
        decoded = json.loads(raw.decode("utf-8", errors="replace"))
        if not isinstance(decoded, dict):
            raise ValueError(f"hook input is {type(decoded).__name__}, not an object")
        if _SURROGATE_ESCAPE.search(raw):
            decoded = _without_surrogates(decoded)
        payload = decoded
        event = str(payload.get("hook_event_name") or "")
        signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, DEADLINES.get(event, 4.0))
        if os.environ.get("CLAUDE_PLUGIN_ROOT") and _settings_hooks_present(payload):
            handled, out = True, None  # `alma-hooks install` registered the hooks in settings too: let those run
        else:
            handled, out = _via_engine(payload, home)
        if not handled:
            from pathlib import Path

            setup_logging(Path(home))
            out = run(payload, Path(home))
        signal.setitimer(signal.ITIMER_REAL, 0)
    except BaseException as e:  # noqa: BLE001 - the one catch-all: a hook fails open, always
        signal.setitimer(signal.ITIMER_REAL, 0)
        out = None
        _fail_open(e, payload, home)
    if out:
        try:  # UTF-8 whatever the locale: Claude Code reads UTF-8
            sys.stdout.buffer.write(json.dumps(out, ensure_ascii=False).encode("utf-8", "replace"))
            sys.stdout.buffer.flush()
        except BaseException:  # noqa: BLE001 - a closed stdout must not turn into a non-zero exit
            pass
    return 0


def _without_surrogates(obj: Any) -> Any:
    """``obj`` with lone surrogates replaced by U+FFFD, so SQLite, the spool and stdout can encode it."""
    if isinstance(obj, str):
        return _SURROGATE.sub("\ufffd", obj)
    if isinstance(obj, dict):
        return {_without_surrogates(k): _without_surrogates(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_without_surrogates(v) for v in obj]
    return obj


def _fail_open(error: BaseException, payload: dict[str, Any], home: str | Path) -> None:
    """Log the error; keep a capture that could not be written; quarantine a corrupt DB."""
    try:
        from pathlib import Path

        from .errors import AlmaError, StoreCorrupt, StoreUnavailable

        home = Path(home)
        log = setup_logging(home)

        event = payload.get("hook_event_name", "?")
        # an AlmaError says what to do about it too (free disk space, upgrade, ...)
        what = error.one_line() if isinstance(error, AlmaError) else error
        log.warning("%s failed open: %s: %s", event, type(error).__name__, what,
                    exc_info=not isinstance(error, (StoreUnavailable, _Deadline, ValueError)))
        # a prompt opens the task its tool calls belong to: keep it when the store is unavailable
        # (not on a deadline: replaying it inside a later hook's shorter deadline could never finish)
        if (event in CAPTURE_EVENTS and isinstance(error, (StoreUnavailable, _Deadline))
                or event == "UserPromptSubmit" and isinstance(error, StoreUnavailable)):
            from . import spool

            spool.put(home, payload)
        if isinstance(error, StoreCorrupt):
            _quarantine_if_corrupt(payload)
    except BaseException:  # noqa: BLE001 - even logging may fail (disk full); still exit 0
        pass


if __name__ == "__main__":  # pragma: no cover - hooks/alma-hook runs main()
    sys.exit(main())

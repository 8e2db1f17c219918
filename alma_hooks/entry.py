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

import os
import sys

# The fast path (a running engine handles the whole event) imports nothing more than os, sys and
# _socket: json pulls in re and enum, socket and signal pull in enum, and those cost more than
# the engine's whole answer. Annotations are strings (`from __future__ import annotations`).

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
#: Starts a request that hands the engine a hook's raw stdin (see :func:`_via_engine`).
HOOK_REQUEST = b"alma-hook/1\0"
#: Environment a hook forwards to the engine: what decides its config, project and user, and
#: whether it runs as a plugin beside hooks registered in settings.
FORWARDED_ENV = ("HOME", "USER", "LOGNAME", "CLAUDE_PLUGIN_ROOT", "CLAUDE_PROJECT_DIR")
EMBED_TIMEOUT_S = 3.0
HOOK_BUSY_TIMEOUT_MS = 1500


class _Deadline(Exception):
    pass


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
        import time

        msg = {"op": "slice", "event": event, "query": query, "payload": ctx.payload, "env": _identity_env(),
               "deadline": time.monotonic() + ENGINE_TIMEOUT_S}
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
    return {k: v for k, v in os.environ.items() if k.startswith("ALMA_") or k in FORWARDED_ENV}


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


def settings_hooks_present(payload: dict[str, Any], env: Mapping[str, str]) -> bool:
    """True when project or user settings already run alma-hooks (see alma_hooks.install).

    A plugin hook then does nothing: the settings' hooks handle the event.
    """
    cwd = payload.get("cwd")
    home = env.get("HOME") or os.path.expanduser("~")
    candidates = [os.path.join(home, ".claude", "settings.json")]
    for d in (env.get("CLAUDE_PROJECT_DIR"), cwd):
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


def parse_payload(raw: bytes) -> dict[str, Any]:
    """A hook's stdin as the event object; ValueError when it is not one."""
    import json

    if len(raw) > MAX_STDIN:
        raise ValueError(f"hook input over {MAX_STDIN} bytes")
    decoded = json.loads(raw.decode("utf-8", errors="replace"))
    if not isinstance(decoded, dict):
        raise ValueError(f"hook input is {type(decoded).__name__}, not an object")
    import re

    # a JSON escape of a UTF-16 surrogate is valid JSON, but a lone one cannot be encoded as UTF-8
    if re.search(rb"\\u[dD][89a-fA-F]", raw):
        decoded = _without_surrogates(decoded)
    return decoded


def encode_output(out: dict[str, Any] | None) -> bytes:
    """What a hook prints for ``out``: UTF-8 JSON whatever the locale (Claude Code reads UTF-8)."""
    if not out:
        return b""
    import json

    return json.dumps(out, ensure_ascii=False).encode("utf-8", "replace")


def _event_name(raw: bytes) -> str:
    """The event's name read off the raw JSON without a parser ('' when not plainly there)."""
    at = raw.find(b'"hook_event_name"')
    if at < 0:
        return ""
    start = raw.find(b'"', raw.find(b":", at) + 1) + 1
    end = raw.find(b'"', start)
    return raw[start:end].decode("ascii", "replace") if 0 < start <= end <= start + 40 else ""


def _via_engine(raw: bytes, home: str) -> bytes | None:
    """Let a running engine handle the whole event: what to print, or None (handle it here).

    The fast path: stdin goes to the engine unparsed, with the environment that
    decides config and identity, and the engine answers with the bytes to print;
    no json, store, model or learning code is imported here. Handlers are
    idempotent (ids derive from the session, tool call and task), so when the
    engine is too slow and this process does the work itself, nothing is stored
    twice. Request: ``HOOK_REQUEST``, ``NAME=value`` pairs each ended by NUL, a
    NUL, the raw stdin, end of stream; the first pair is ``HOOK_DEADLINE``, this
    process's ``time.monotonic()`` when it stops waiting. Answer: ``1`` and the
    output (handled) or ``0`` (not handled).
    """
    import time  # (loaded by daemon_client anyway)

    from .daemon_client import exchange

    timeout = ENGINE_HOOK_TIMEOUTS.get(_event_name(raw), ENGINE_HOOK_TIMEOUT_S)
    # the hook's deadline on the clock both processes share: a slice the engine finishes later is not
    # recorded as injected (this process does the event itself by then)
    env = b"HOOK_DEADLINE=" + repr(time.monotonic() + timeout).encode() + b"\0"
    env += b"".join(k + b"=" + v + b"\0" for k, v in os.environb.items()
                    if k.startswith(b"ALMA_") or k.decode("ascii", "replace") in FORWARDED_ENV)
    reply = exchange(home, HOOK_REQUEST + env + b"\0" + raw, timeout) or b""
    return reply[1:] if reply[:1] == b"1" else None


def main() -> int:
    """Entry point of every hook. Returns 0 whatever happens."""
    home = os.environ.get("ALMA_HOME") or os.path.join(os.path.expanduser("~"), ".alma")  # as config.data_dir
    payload: dict[str, Any] = {}
    out = b""
    alarm: Any = None
    try:
        raw = sys.stdin.buffer.read(MAX_STDIN + 1)
        fast = _via_engine(raw, home) if len(raw) <= MAX_STDIN else None
        if fast is not None:
            out = fast
        else:
            import signal

            alarm = signal
            payload = parse_payload(raw)
            event = str(payload.get("hook_event_name") or "")
            signal.signal(signal.SIGALRM, _on_alarm)
            signal.setitimer(signal.ITIMER_REAL, DEADLINES.get(event, 4.0))
            if not (os.environ.get("CLAUDE_PLUGIN_ROOT") and settings_hooks_present(payload, os.environ)):
                # (else `alma-hooks install` registered the hooks in settings too: let those run)
                from pathlib import Path

                from . import logs

                logs.to_file(home)
                out = encode_output(run(payload, Path(home)))
            signal.setitimer(signal.ITIMER_REAL, 0)
    except BaseException as e:  # noqa: BLE001 - the one catch-all: a hook fails open, always
        if alarm is not None:
            alarm.setitimer(alarm.ITIMER_REAL, 0)
        out = b""
        _fail_open(e, payload, home)
    if out:
        try:
            sys.stdout.buffer.write(out)
            sys.stdout.buffer.flush()
        except BaseException:  # noqa: BLE001 - a closed stdout must not turn into a non-zero exit
            pass
    return 0


def _without_surrogates(obj: Any) -> Any:
    """``obj`` with lone surrogates replaced by U+FFFD, so SQLite, the spool and stdout can encode it."""
    if isinstance(obj, str):
        import re

        return re.sub("[\ud800-\udfff]", "\ufffd", obj)
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

        from . import logs

        home = Path(home)
        logs.to_file(home)
        log = logs.get("alma_hooks.entry")

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

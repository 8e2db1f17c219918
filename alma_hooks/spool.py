"""Captures that could not be written now (DB busy, read-only, disk full) wait here for replay.

One JSON file per capture, redacted before it touches the disk, user-only
permissions, named by time so replay keeps the order. Nothing is deleted
before the store has accepted it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from . import logs
from .redact import redact_obj

MAX_REPLAY = 200
#: At most this many waiting captures; past it new ones are dropped (logged) rather than fill the disk.
MAX_FILES = 2000
#: Long strings keep their head and tail: redacting 10 MB takes seconds, past the hook's timeout, and
#: a capture only needs the command's start and the output's end (test summaries, last lines).
MAX_CHARS_HEAD = 16_000
MAX_CHARS_TAIL = 48_000
log = logs.get("alma_hooks.spool")


def spool_dir(home: Path) -> Path:
    return home / "spool"


def put(home: Path, payload: dict[str, Any]) -> Path:
    """Write one redacted payload atomically (0600) and return its path."""
    d = spool_dir(home)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    waiting = sum(1 for n in os.listdir(d) if n.endswith(".json"))
    if waiting >= MAX_FILES:
        raise OSError(f"spool full ({waiting} captures wait in {d}); capture dropped")
    name = f"{time.time_ns():020d}-{os.getpid()}"
    tmp = d / f".{name}.tmp"
    fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(redact_obj(_bounded(payload)), f)
        f.flush()
        os.fsync(f.fileno())
    final = d / f"{name}.json"
    os.replace(tmp, final)
    return final


def _bounded(obj: Any) -> Any:
    """``obj`` with every string over the limit cut to its head and tail."""
    if isinstance(obj, str):
        if len(obj) <= MAX_CHARS_HEAD + MAX_CHARS_TAIL:
            return obj
        return obj[:MAX_CHARS_HEAD] + "\n[...]\n" + obj[-MAX_CHARS_TAIL:]
    if isinstance(obj, dict):
        return {k: _bounded(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_bounded(v) for v in obj]
    return obj


def pending(home: Path) -> Iterator[Path]:
    d = spool_dir(home)
    try:
        names = sorted(n for n in os.listdir(d) if n.endswith(".json"))
    except OSError:
        return
    for n in names:
        yield d / n


def replay(home: Path, apply: Callable[[dict[str, Any]], bool | None], limit: int = MAX_REPLAY,
           transient: tuple[type[BaseException], ...] = ()) -> int:
    """Apply spooled payloads oldest first; each file is removed only after ``apply`` accepted it.

    - ``apply`` returning False leaves the file for another replayer (a hook of another DB).
    - ``apply`` raising one of ``transient`` (the store is still unavailable, the hook's time is
      up) stops the replay and keeps the file.
    - Any other error means the payload can never be applied here: it is renamed ``.failed``
      (kept, never deleted) and logged, so one bad capture cannot block every later one.
    - A file that is not JSON is renamed ``.bad`` for the same reason.
    """
    done = 0
    for path in pending(home):
        if done >= limit:
            break
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            _set_aside(path, ".bad")
            continue
        try:
            if apply(payload) is False:
                continue
        except transient:
            raise
        except Exception as e:  # noqa: BLE001 - any other failure is this payload's, not the store's
            log.warning("spooled capture %s cannot be replayed (%s: %s); kept as .failed",
                        path.name, type(e).__name__, e)
            _set_aside(path, ".failed")
            continue
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        done += 1
    return done


def _set_aside(path: Path, suffix: str) -> None:
    try:
        os.replace(path, path.with_suffix(suffix))
    except OSError:
        pass

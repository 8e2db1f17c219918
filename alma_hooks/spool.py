"""Captures that could not be written now (DB busy, read-only, disk full) wait here for replay.

One JSON file per capture, redacted before it touches the disk, user-only
permissions, named by time so replay keeps the order. Nothing is deleted
before the store has accepted it.

When the data dir's own disk is full (ENOSPC, EDQUOT, EFBIG), a capture goes to
a fallback spool on another filesystem: a user-only directory in
``$XDG_RUNTIME_DIR`` (the user's tmpfs on systemd machines) or ``/dev/shm``,
named after the data dir. Replay reads both, oldest first. (The fallback lives
in memory: a reboot before the disk is freed loses what waits there, which is
still better than losing it at once.)
"""

from __future__ import annotations

import errno
import json
import os
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from . import logs
from .redact import cut_head, cut_tail, redact_obj

MAX_REPLAY = 200
#: At most this many waiting captures; past it new ones are dropped (logged) rather than fill the disk.
MAX_FILES = 2000
#: Long strings keep their head and tail: redacting 10 MB takes seconds, past the hook's timeout, and
#: a capture only needs the command's start and the output's end (test summaries, last lines).
MAX_CHARS_HEAD = 16_000
MAX_CHARS_TAIL = 48_000
log = logs.get("alma_hooks.spool")


#: Write errors that mean "this disk has no room": the capture goes to the fallback spool.
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
#: A ``.tmp`` file this old belongs to a writer that died (a hook lives seconds): removed.
STALE_TMP_S = 600


def spool_dir(home: Path) -> Path:
    return Path(home) / "spool"


def fallback_dir(home: Path) -> Path | None:
    """The spool on another filesystem for when ``home``'s disk is full; None when there is none."""
    base = os.environ.get("XDG_RUNTIME_DIR") or "/dev/shm"
    try:
        st = os.stat(home)
    except OSError:
        return None
    return Path(base) / f"alma-spool-{os.getuid()}-{st.st_dev}-{st.st_ino}"


def _private_dir(d: Path) -> bool:
    """Make ``d`` (0700) or check that it is a directory of ours that no one else can read."""
    try:
        d.mkdir(parents=False, exist_ok=True, mode=0o700)
        st = os.lstat(d)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o077


def put(home: Path, payload: dict[str, Any]) -> Path:
    """Write one redacted payload atomically (0600) and return its path (the fallback spool on a full disk)."""
    text = json.dumps(redact_obj(_bounded(payload)))
    d = spool_dir(home)
    try:
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        return _write(d, text)
    except OSError as e:
        fallback = fallback_dir(home)
        if e.errno not in FULL_ERRNOS or fallback is None or not _private_dir(fallback):
            raise
        log.warning("no room for the spool in %s (%s): the capture waits in %s", d, e.strerror, fallback)
        return _write(fallback, text)


def _write(d: Path, text: str) -> Path:
    waiting = sum(1 for n in os.listdir(d) if n.endswith(".json"))
    if waiting >= MAX_FILES:
        raise OSError(f"spool full ({waiting} captures wait in {d}); capture dropped")
    name = f"{time.time_ns():020d}-{os.getpid()}"
    tmp = d / f".{name}.tmp"
    fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        final = d / f"{name}.json"
        os.replace(tmp, final)
    except BaseException:
        try:  # a half-written file of a capture that was not kept
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return final


def _bounded(obj: Any) -> Any:
    """``obj`` with every string over the limit cut to its head and tail."""
    if isinstance(obj, str):
        if len(obj) <= MAX_CHARS_HEAD + MAX_CHARS_TAIL:
            return obj
        # cut between tokens: half a secret would no longer be recognised by the redactor
        return cut_head(obj, MAX_CHARS_HEAD) + "\n[...]\n" + cut_tail(obj, MAX_CHARS_TAIL)
    if isinstance(obj, dict):
        return {k: _bounded(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_bounded(v) for v in obj]
    return obj


def pending(home: Path) -> Iterator[Path]:
    """Waiting captures of both spools, oldest first (names start with the time)."""
    found: list[tuple[str, Path]] = []
    for d in (spool_dir(home), fallback_dir(home)):
        if d is None:
            continue
        try:
            names = os.listdir(d)
        except OSError:
            continue
        found += [(n, d / n) for n in names if n.endswith(".json")]
        _remove_stale_tmp(d, names)
    for _, path in sorted(found):
        yield path


def _remove_stale_tmp(d: Path, names: list[str]) -> None:
    """Drop ``.tmp`` files of writers killed mid-write (never acknowledged: the hook did not finish)."""
    now = time.time()
    for n in names:
        if n.startswith(".") and n.endswith(".tmp"):
            try:
                if now - os.lstat(d / n).st_mtime > STALE_TMP_S:
                    os.unlink(d / n)
            except OSError:
                pass


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

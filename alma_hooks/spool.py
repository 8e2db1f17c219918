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

from .redact import redact_obj

MAX_REPLAY = 200


def spool_dir(home: Path) -> Path:
    return home / "spool"


def put(home: Path, payload: dict[str, Any]) -> Path:
    """Write one redacted payload atomically (0600) and return its path."""
    d = spool_dir(home)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    name = f"{time.time_ns():020d}-{os.getpid()}"
    tmp = d / f".{name}.tmp"
    fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(redact_obj(payload), f)
        f.flush()
        os.fsync(f.fileno())
    final = d / f"{name}.json"
    os.replace(tmp, final)
    return final


def pending(home: Path) -> Iterator[Path]:
    d = spool_dir(home)
    try:
        names = sorted(n for n in os.listdir(d) if n.endswith(".json"))
    except OSError:
        return
    for n in names:
        yield d / n


def replay(home: Path, apply: Callable[[dict[str, Any]], None], limit: int = MAX_REPLAY) -> int:
    """Apply spooled payloads oldest first; each file is removed only after ``apply`` returned.

    ``apply`` raising stops the replay (the store is still unavailable) and keeps the file.
    A file that is not JSON is renamed ``.bad`` so it cannot block the queue.
    """
    done = 0
    for path in pending(home):
        if done >= limit:
            break
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            try:
                os.replace(path, path.with_suffix(".bad"))
            except OSError:
                pass
            continue
        apply(payload)
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        done += 1
    return done

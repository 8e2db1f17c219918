"""The secrets corpus of ``tests/test_redact.py`` as byte needles, and a scan of files' raw bytes for them.

A secret leaks if its exact bytes, or any 12+ character alphanumeric run of it in lower
case (what FTS5 would keep as a token), appear in a file. Used by the hook and Cosmos
tests of issue 7 (secrets never at rest, nor on the wire).
"""

from __future__ import annotations

import re
from pathlib import Path

from test_redact import CORPUS

_RUN = re.compile(r"[A-Za-z0-9]{12,}")


def corpus() -> list[tuple[str, str, str, str]]:
    """(id, text, secret, kind) of every corpus entry."""
    return [(p.id, p.values[0], p.values[1], p.values[2]) for p in CORPUS]


def needles(secret: str) -> list[bytes]:
    out = {secret.encode(), secret.lower().encode()}
    out |= {run.lower().encode() for run in _RUN.findall(secret)}
    return sorted(out)


def leaks(data: bytes, secrets: list[str]) -> list[str]:
    """The secrets whose needles occur in ``data`` (compared as is and lower-cased)."""
    lowered = data.lower()
    return [s for s in secrets if any(n in data or n in lowered for n in needles(s))]


def scan(roots: list[Path], secrets: list[str]) -> tuple[int, int, list[str]]:
    """(files, bytes, leaks as 'file: secret') of every regular file under ``roots``."""
    files = size = 0
    found: list[str] = []
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
            data = path.read_bytes()
            files += 1
            size += len(data)
            found += [f"{path}: {s[:12]}..." for s in leaks(data, secrets)]
    return files, size, found

"""Figures the reliability tests measure, collected by ``bench/reliability.py``.

A test calls ``record("name", key=value, ...)`` with what it counted. Nothing is written
unless ``RELIABILITY_FIGURES`` names a file (the fault runner sets it): then each call
appends one JSON line. Figures are reported, never asserted on (no timing assertions).
"""

from __future__ import annotations

import json
import os
from typing import Any

ENV = "RELIABILITY_FIGURES"  # (not ALMA_*: the hook tests clear those)
#: Set by the fault runner: the small default-run variants of a test skip, its soak variant runs.
FULL_ENV = "RELIABILITY_FULL_RUN"


def record(name: str, **values: Any) -> None:
    path = os.environ.get(ENV)
    if not path:
        return
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"name": name, **values}, default=str) + "\n")


def full_run() -> bool:
    """True inside ``bench/reliability.py``: run the soak sizes only."""
    return os.environ.get(FULL_ENV) == "1"

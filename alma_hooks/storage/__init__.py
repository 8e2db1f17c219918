"""Stores: the contract (``base``), the SQLite default and the JSON-lines fallback."""

from __future__ import annotations

from pathlib import Path

from ..config import Config
from .base import Store


def open_store(config: Config, *, backend: str = "sqlite", busy_timeout_ms: int = 5000, actor: str = "") -> Store:
    """Open the configured store for ``config`` (the one place that picks a backend)."""
    if backend == "files":
        from .files import FileStore

        return FileStore(Path(str(config.db_path) + ".d"), config.policy, actor=actor)
    from .sqlite import SQLiteStore

    return SQLiteStore(config.db_path, config.policy, busy_timeout_ms=busy_timeout_ms, actor=actor)

"""Run a real alma-hooks writer (hook, engine, sync CLI) that may ``kill -9`` itself before its Nth SQL statement.

Usage: ``python -I tests/killpoint.py hook|engine|cli [ARGS...]``

- ``hook``: ``alma_hooks.entry.main()`` on stdin, what ``hooks/alma_hook.py`` runs;
- ``engine``: ``alma_hooks.daemon.serve()`` in the foreground (the data dir from ``ALMA_HOME``);
- ``cli``: ``tests/azure/run_cli.py ARGS`` (the production CLI with the loopback seams of the Azure tests).

Environment (all optional):

- ``ALMA_TEST_KILL_AT=N``: send this process SIGKILL just before its Nth SQL statement
  (statements of every apsw connection count, ``BEGIN`` and ``COMMIT`` included), so
  a sweep over N stops the writer between any two statements of any transaction;
- ``ALMA_TEST_STATEMENTS=PATH``: write the number of statements run to PATH at exit
  (how far a sweep over N has to go).

Nothing here changes what the writer does until the kill: the trace only counts.
Kills at random *times* (inside SQLite's own writes) are made by the tests from outside.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
from pathlib import Path

import apsw

KILL_AT = int(os.environ.get("ALMA_TEST_KILL_AT") or 0)
COUNT_FILE = os.environ.get("ALMA_TEST_STATEMENTS")
_count = 0


def _trace(cursor: object, sql: str, bindings: object) -> bool:
    global _count
    _count += 1
    if _count == KILL_AT:
        os.kill(os.getpid(), signal.SIGKILL)
    return True


def _hook(connection: apsw.Connection) -> None:
    connection.exec_trace = _trace


def _write_count() -> None:
    if COUNT_FILE:
        Path(COUNT_FILE).write_text(str(_count))


def main() -> int:
    if KILL_AT or COUNT_FILE:
        apsw.connection_hooks.append(_hook)
    mode, args = sys.argv[1], sys.argv[2:]
    try:
        if mode == "hook":
            from alma_hooks.entry import main as hook_main

            return hook_main()
        if mode == "engine":
            from alma_hooks.daemon import serve

            return serve()
        if mode == "cli":
            script = Path(__file__).resolve().parent / "azure" / "run_cli.py"
            sys.path.insert(0, str(script.parent))
            sys.argv = [str(script), *args]
            try:
                runpy.run_path(str(script), run_name="__main__")
            except SystemExit as e:
                return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            return 0
        print(f"unknown mode {mode!r}", file=sys.stderr)
        return 2
    finally:
        _write_count()


if __name__ == "__main__":
    sys.exit(main())

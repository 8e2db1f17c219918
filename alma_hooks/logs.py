"""alma-hooks' loggers, which cost nothing until a warning is logged.

``import logging`` costs ~16 ms of a hook's start-up here (it pulls in
threading, traceback, string and weakref) and ``logging.handlers`` ~7 ms more,
while a healthy hook logs nothing. So the package's modules take their loggers
from :func:`get`: a stand-in that imports :mod:`logging` on the first record at
WARNING or above (or at any level once something else imported it, so a
program or a test that configured logging sees every record). Below WARNING and
with :mod:`logging` not imported, nothing would be shown anyway: WARNING is the
level :func:`to_file` sets, and logging's own default.

:func:`to_file` routes the records to ``<data dir>/logs/hooks.log``: rotating,
user-only, every line redacted. Hooks, the engine and the viewer call it.
"""

from __future__ import annotations

import os
import sys
from typing import Any

LOG_BYTES = 1_000_000
_WARNING = 30
_home: str | None = None


class Logger:
    """The part of :class:`logging.Logger` the package uses, importing logging only when it must."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def _log(self, level: int, msg: str, *args: Any, **kwargs: Any) -> None:
        if level < _WARNING and "logging" not in sys.modules:
            return
        import logging

        _attach()
        logging.getLogger(self.name).log(level, msg, *args, **kwargs)

    def debug(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self._log(10, msg, *args, **kwargs)

    def info(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self._log(20, msg, *args, **kwargs)

    def warning(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self._log(30, msg, *args, **kwargs)

    def error(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self._log(40, msg, *args, **kwargs)

    def exception(self, msg: str, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("exc_info", True)
        self._log(40, msg, *args, **kwargs)


def get(name: str) -> Logger:
    """The logger ``name`` (under ``alma_hooks``)."""
    return Logger(name)


def to_file(home: str | os.PathLike[str]) -> None:
    """Send alma-hooks' warnings to the rotating, user-only, redacted ``<home>/logs/hooks.log``."""
    global _home
    _home = os.fspath(home)
    if "logging" in sys.modules:
        _attach()


def _attach() -> None:
    """Install the file handler of :func:`to_file`'s data dir on the ``alma_hooks`` logger, once."""
    if _home is None:
        return
    import logging

    root = logging.getLogger("alma_hooks")
    path = os.path.join(_home, "logs", "hooks.log")
    if not any(getattr(h, "alma_hooks_log", None) == path for h in root.handlers):
        for old in [h for h in root.handlers if getattr(h, "alma_hooks_log", None)]:
            root.removeHandler(old)  # another data dir's (a test process that changes ALMA_HOME)
            old.close()
        root.addHandler(_handler(path))
    root.setLevel(logging.WARNING)
    root.propagate = False


def _handler(path: str) -> Any:
    import logging

    from .redact import redact

    class RedactingFormatter(logging.Formatter):
        """Logs never hold secrets: every line passes the redactor."""

        def format(self, record: logging.LogRecord) -> str:
            return redact(super().format(record))

    from logging.handlers import RotatingFileHandler

    class QuietRotatingFileHandler(RotatingFileHandler):
        def handleError(self, record: logging.LogRecord) -> None:
            pass  # a log that cannot be written (disk full) is dropped: never a traceback on the hook's stderr

    class UserOnlyRotatingHandler(logging.Handler):
        """A rotating file handler opened on the first record, every file user-only; never raises."""

        alma_hooks_log = path

        def __init__(self) -> None:
            super().__init__(logging.WARNING)
            self.inner: logging.Handler | None = None

        def emit(self, record: logging.LogRecord) -> None:
            # user-only files, the first one and every one a rollover opens (umask is process-wide;
            # hooks and the engine log from one thread)
            old = os.umask(0o077)
            try:
                if self.inner is None:
                    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
                    self.inner = QuietRotatingFileHandler(path, maxBytes=LOG_BYTES, backupCount=3,
                                                          encoding="utf-8")
                    self.inner.setFormatter(
                        RedactingFormatter("%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"))
                self.inner.emit(record)
            except OSError:
                pass  # no room for the log (or no log dir): the hook's work and its spool go on
            finally:
                os.umask(old)

        def close(self) -> None:
            if self.inner is not None:
                self.inner.close()
            super().close()

    return UserOnlyRotatingHandler()

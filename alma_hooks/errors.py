"""The one exception family of alma-hooks.

Library code raises these; the CLI turns them into one-line messages with a
non-zero exit, and the hook entry module turns everything into a log line and
an exit 0 (see ``alma_hooks.entry``).
"""


class AlmaError(Exception):
    """Base of every error alma-hooks raises on purpose.

    ``fix`` is a short instruction for the user, shown after the message.
    """

    exit_code = 1

    def __init__(self, message: str, fix: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def one_line(self) -> str:
        return f"{self.message} ({self.fix})" if self.fix else self.message


class ConfigError(AlmaError):
    """A configuration file or value is invalid."""

    exit_code = 2


class SecretInConfig(ConfigError):
    """A plaintext secret was found where only a Key Vault reference belongs."""


class ScopeViolation(AlmaError):
    """A write or read outside the caller's scope, refused by the store."""

    exit_code = 3


class StoreUnavailable(AlmaError):
    """The store cannot be used right now (locked, read-only, disk full)."""

    exit_code = 4


class StoreCorrupt(StoreUnavailable):
    """The database file is not a valid SQLite database or fails quick_check."""


class SchemaTooNew(StoreUnavailable):
    """The database was written by a newer alma-hooks.

    Unavailable to this version, not broken: hooks keep their captures in the
    spool (an upgraded alma-hooks replays them) and never quarantine the file.
    """

    exit_code = 4


class EmbeddingError(AlmaError):
    """The embedding model is missing, changed, or disagrees with the DB."""

    exit_code = 5


class NotFound(AlmaError):
    """A memory id that does not exist in the caller's scope."""

    exit_code = 6


class BadRequest(AlmaError):
    """A request to a face (the viewer's JSON API) that is malformed: a missing field, a wrong type, a bad value."""

    exit_code = 2


class SecretUnavailable(AlmaError):
    """A Key Vault reference could not be resolved (no credential, no access, no such secret, unreachable)."""

    exit_code = 7


class SyncUnavailable(AlmaError):
    """The team store could not be reached or refused the worker; queued writes stay queued."""

    exit_code = 8

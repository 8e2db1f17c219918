"""The ``alma-hooks`` command line: thin click commands over the library.

Each command group lives in its own module and registers itself on ``main``.
Errors of the :class:`~alma_hooks.errors.AlmaError` family become one line on
stderr and the error's exit code, never a traceback.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from .. import __version__
from ..errors import AlmaError

F = TypeVar("F", bound=Callable[..., Any])
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
#: Bytes of argv that are not UTF-8 reach Python as lone surrogates (surrogateescape).
_SURROGATE = re.compile("[\ud800-\udfff]")


class AlmaGroup(click.Group):
    """A click group that turns library errors into one-line messages."""

    def main(self, args: Sequence[str] | None = None, *rest: Any, **kwargs: Any) -> Any:
        # a lone surrogate cannot be encoded as UTF-8 (SQLite, the tokenizer, stdout): use U+FFFD instead
        args = [_SURROGATE.sub("\ufffd", a) for a in (sys.argv[1:] if args is None else args)]
        return super().main(args, *rest, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AlmaError as e:
            click.echo(f"Error: {e.one_line()}", err=True)
            sys.exit(e.exit_code)


@click.group(cls=AlmaGroup, context_settings=CONTEXT)
@click.version_option(__version__, prog_name="alma-hooks")
def main() -> None:
    """alma-hooks: persistent learning memory for Claude Code agents.

    \b
    Quick start:
      alma-hooks install            # hooks, agents and config in this project
      alma-hooks remember "We deploy with make release" --type knowledge
      alma-hooks search "how do we deploy?"
    """


def json_option(f: F) -> F:
    """The shared ``--json`` flag."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")(f)  # type: ignore[return-value]


def _existing_dir(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    # click's file_okay=False refuses regular files only: /dev/null or a socket would get through
    if value is not None and not value.is_dir():
        what = "does not exist" if not value.exists() else "is not a directory"
        raise click.BadParameter(f"{value} {what} (fix: give the project's directory, or cd into it)")
    return value


def project_option(f: F) -> F:
    """The shared ``--project-dir`` option (default: the current directory)."""
    return click.option("--project-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                        callback=_existing_dir,
                        help="Project directory (default: current directory).")(f)  # type: ignore[return-value]


def agent_option(f: F) -> F:
    return click.option("--agent", default="main", show_default=True, help="Agent scope (main, helena, victor, ...).")(f)  # type: ignore[return-value]


# Command modules register themselves on `main` when imported.
from . import engine, learning, memory, setup  # noqa: E402,F401
from . import sync  # noqa: E402,F401  (team sync: alma_hooks/cli/sync.py)
from . import viewer  # noqa: E402,F401  (alma-hooks ui: alma_hooks/viewer/)

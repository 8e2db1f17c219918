"""``alma-hooks engine status|start|stop``: the warm engine that keeps the model loaded."""

from __future__ import annotations

import json
from typing import Any

import click

from ..config import data_dir
from ..errors import AlmaError
from . import CONTEXT, json_option, main


def _describe(info: dict[str, Any]) -> str:
    uptime = float(info.get("uptime_s") or 0)
    return (f"running: pid {info.get('pid')}, uptime {_duration(uptime)}, requests {info.get('requests')}, "
            f"model {info.get('model')}, version {info.get('version')}")


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


@main.group(context_settings=CONTEXT)
def engine() -> None:
    """The warm engine: one background process per user that keeps the embedding model loaded.

    Hooks start it on demand and it exits after 15 idle minutes; these
    commands are for looking at it and for stopping it.

    \b
    Examples:
      alma-hooks engine status
      alma-hooks engine start
      alma-hooks engine stop
    """


@engine.command()
@json_option
def status(as_json: bool) -> None:
    """Show whether the engine runs (pid, uptime, requests, model); exit 0 either way.

    \b
    Examples:
      alma-hooks engine status
      alma-hooks engine status --json
    """
    from .. import daemon  # imported here: it pulls in the hook handlers, which other commands never need

    info = daemon.status(data_dir())
    if as_json:
        click.echo(json.dumps({"running": bool(info), **(info or {})}))
    else:
        click.echo(_describe(info) if info else "not running")


@engine.command()
@json_option
def start(as_json: bool) -> None:
    """Start the engine in the background (nothing happens if it already runs).

    \b
    Examples:
      alma-hooks engine start
    """
    from .. import daemon

    home = data_dir()
    info = daemon.start(home)
    if not info:
        raise AlmaError("the engine did not answer within 10 s",
                        f"see {home / 'logs' / 'hooks.log'}; `alma-hooks doctor` checks the model")
    click.echo(json.dumps({"running": True, **info}) if as_json else _describe(info))


@engine.command()
def stop() -> None:
    """Stop the engine (hooks start it again when needed).

    \b
    Examples:
      alma-hooks engine stop
    """
    from .. import daemon

    click.echo("stopped" if daemon.stop(data_dir()) else "not running")

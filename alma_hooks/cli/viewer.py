"""The viewer command: ``alma-hooks ui`` serves a local page of what the agents learned."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import click

from ..config import load_config
from . import main, project_option


def _has_display() -> bool:
    # without a graphical session, webbrowser would start a text browser in this terminal
    return sys.platform == "darwin" or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


@main.command()
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port on 127.0.0.1 (0: a free one).")
@click.option("--all", "all_projects", is_flag=True, help="Browse every project in the database (default: this one).")
@click.option("--open/--no-open", "open_browser", default=None,
              help="Open the page in a browser (default: when a graphical session is there).")
@project_option
def ui(port: int, all_projects: bool, open_browser: bool | None, project_dir: Path | None) -> None:
    """Serve a local web page of this project's memories: search, heuristics with their evidence and
    confidence over time, anti-patterns, preferences, the audit log and what was injected into recent
    prompts. Pin, edit and forget from the page; every change is audited.

    The page listens on 127.0.0.1 only and needs the one-time token in the printed URL;
    Ctrl-C stops it.

    \b
    Examples:
      alma-hooks ui
      alma-hooks ui --all --port 8765 --no-open
    """
    from ..viewer.server import open_viewer

    config = load_config(project_dir)
    server = open_viewer(config, all_projects=all_projects, port=port)
    what = "every project" if all_projects else config.project_id
    click.echo(f"alma-hooks ui: {server.url}")
    click.echo(f"  showing {what}; only this URL's token opens it; Ctrl-C stops it", err=True)
    sys.stdout.flush()
    if open_browser or (open_browser is None and _has_display()):
        import webbrowser

        if not webbrowser.open(server.url):
            click.echo("  no browser found: open the URL yourself", err=True)

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.server_close()
    click.echo("alma-hooks ui: stopped", err=True)

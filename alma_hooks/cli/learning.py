"""What learning decided: conflicts to review."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .. import service
from . import agent_option, json_option, main, project_option


@main.command()
@agent_option
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@json_option
@project_option
def review(agent: str, limit: int, as_json: bool, project_dir: Path | None) -> None:
    """List learning conflicts: a new strategy that contradicted a high-confidence heuristic.

    Learning never overwrites a trusted heuristic; it records the conflict here
    so a person can decide (edit it, pin it, or `alma-hooks forget ID`).

    \b
    Examples:
      alma-hooks review
      alma-hooks review --agent helena --json
    """
    config, store = service.open_project(project_dir)
    with store:
        rows = [r for r in store.audit_log(service.scope_for(config, agent), limit=10_000)
                if r["action"] == "conflict"][:limit]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("No conflicts to review.")
        return
    for r in rows:
        click.echo(f"{r['memory_id']}  {r['reason']}")

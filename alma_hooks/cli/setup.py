"""Setting alma-hooks up: install, uninstall, demo."""

from __future__ import annotations

from pathlib import Path

import click

from . import main, project_option


@main.command()
@click.option("--scope", type=click.Choice(["project", "user"]), default="project", show_default=True,
              help="Register the hooks in .claude/settings.json (project) or ~/.claude/settings.json (user).")
@project_option
def install(scope: str, project_dir: Path | None) -> None:
    """Register the hooks, install Helena and Victor, write .alma/config.yaml, initialise the DB.

    \b
    Examples:
      alma-hooks install                 # this project
      alma-hooks install --scope user    # every project of this user
    """
    from ..config import load_config
    from ..install import install as do_install
    from ..storage.sqlite import SQLiteStore

    root = (project_dir or Path.cwd()).resolve()
    report = do_install(root, scope)
    verb = "updated" if report.changed else "already up to date:"
    click.echo(f"hooks: {verb} {report.settings_path}" + (f" (backup {report.backup.name})" if report.backup else ""))
    if report.agents:
        click.echo(f"agents: {', '.join(report.agents)} in {report.settings_path.parent / 'agents'}")
    for note in report.notes:
        click.echo(f"note: {note}")
    if report.config_written:
        click.echo(f"config: wrote {root / '.alma' / 'config.yaml'}")
    config = load_config(root)
    with SQLiteStore(config.db_path, config.policy) as store:
        click.echo(f"memory: {store.path} (schema {store.schema_version()}, project {config.project_id})")
    click.echo("Done. Start `claude` in this project; `alma-hooks doctor` checks the set-up.")


@main.command()
@click.option("--scope", type=click.Choice(["project", "user"]), default="project", show_default=True)
@project_option
def uninstall(scope: str, project_dir: Path | None) -> None:
    """Remove alma-hooks' hooks and agents from Claude Code settings (memories are kept).

    \b
    Example:
      alma-hooks uninstall
    """
    from ..install import uninstall as do_uninstall

    report = do_uninstall((project_dir or Path.cwd()).resolve(), scope)
    if not report.changed and not report.agents:
        click.echo(f"nothing to remove in {report.settings_path}")
        return
    how = "restored from backup" if report.backup else "hooks removed"
    click.echo(f"hooks: {how}: {report.settings_path}")
    if report.agents:
        click.echo(f"agents removed: {', '.join(report.agents)}")


@main.command()
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to put the scratch project (default: a new temp dir).")
def demo(workdir: Path | None) -> None:
    """Replay a short Helena/Victor history through the real hooks and show what was learned.

    \b
    Example:
      alma-hooks demo
    """
    from ..demo import run_demo

    run_demo(click.echo, workdir)

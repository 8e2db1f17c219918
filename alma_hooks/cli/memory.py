"""Memory commands: remember, search, stats, export, import, forget, reembed, doctor.

Each command parses its options and calls :mod:`alma_hooks.service`; errors of
the AlmaError family become one line on stderr (see ``AlmaGroup``).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from .. import service
from ..errors import AlmaError, EmbeddingError
from ..types import MEMORY_TYPES, TYPE_ALIASES
from . import agent_option, json_option, main, project_option

SEARCH_TYPES = sorted(TYPE_ALIASES)

# The store logs refusals as warnings; in the CLI the error line already says
# it, and logging's last-resort handler would print it a second time.
logging.getLogger("alma_hooks").addHandler(logging.NullHandler())


def _embed_pending(store: Any, embedder: Any) -> int:
    """Embed rows stored without a vector (DESIGN §9: the CLI does it when it can).

    A model problem only warns: the rows stay findable by their words.
    """
    try:
        return service.embed_pending(store, embedder)
    except EmbeddingError as e:
        click.echo(f"Warning: not embedded yet: {e.one_line()}", err=True)
        return 0


@main.command()
@click.argument("text")
@click.option("--type", "mtype", type=click.Choice(service.REMEMBER_TYPES), default="knowledge", show_default=True,
              help="knowledge: a fact about the project; preference: your standing instruction.")
@click.option("--agent", default=None, help="Only this agent sees it (default: every agent of the project).")
@click.option("--domain", default="", help="Domain of the fact, checked against the agent's can_learn list.")
@project_option
@json_option
def remember(text: str, mtype: str, agent: str | None, domain: str, project_dir: Path | None, as_json: bool) -> None:
    """Store a curated fact or a preference in the current project.

    \b
    Examples:
      alma-hooks remember "Deploy with make release; never push to prod by hand"
      alma-hooks remember "No emojis in code or commit messages" --type preference
      alma-hooks remember "Login form needs data-testid on every input" \\
          --agent helena --domain form_testing
    """
    config, store = service.open_project(project_dir)
    with store:
        memory = service.remember(config, store, text, mtype, agent, domain)
        _embed_pending(store, service.default_embedder())
    if as_json:
        click.echo(json.dumps({"id": memory.id, "type": memory.type, "text": memory.text, "agent": memory.agent,
                               "domain": memory.domain, "project_id": memory.project_id}))
    else:
        click.echo(f"Remembered {memory.type} {memory.id} in {config.project_id}")


@main.command()
@click.argument("query")
@agent_option
@click.option("--type", "types", multiple=True, type=click.Choice(SEARCH_TYPES, case_sensitive=False),
              help="Only these memory types (repeatable).")
@click.option("--k", "k", type=click.IntRange(min=1, max=1000), default=10, show_default=True,
              help="How many results.")
@project_option
@json_option
def search(query: str, agent: str, types: tuple[str, ...], k: int, project_dir: Path | None, as_json: bool) -> None:
    """Find the memories of this project that best match QUERY.

    \b
    Examples:
      alma-hooks search "how do we deploy?"
      alma-hooks search "flaky login test" --agent helena --type heuristic --k 5
      alma-hooks search "database naming" --json | jq '.[0].text'
    """
    if not query.strip():
        raise click.UsageError("QUERY is empty; e.g. alma-hooks search \"how do we deploy?\"")
    config, store = service.open_project(project_dir)
    with store:
        embedder = service.default_embedder()
        _embed_pending(store, embedder)
        try:
            hits = service.search(config, store, query, agent, list(types) or None, k, embedder)
        except EmbeddingError as e:
            click.echo(f"Warning: searching by words only: {e.one_line()}", err=True)
            hits = service.search(config, store, query, agent, list(types) or None, k, None)
    rows = [service.hit_to_dict(h) for h in hits]
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    if not rows:
        click.echo(f"No memories match in {config.project_id} (agent {agent}).")
        return
    for r in rows:
        click.echo(f"{r['score']:.3f}  {r['type']:<12} {r['id'][:12]}  {r['text']}")


@main.command()
@agent_option
@click.option("--all", "all_projects", is_flag=True, help="The whole database: every project and agent.")
@click.option("--every", default="week", show_default=True, metavar="day|week|N",
              help="One step of the learning curves: a day, a week, or N outcomes.")
@click.option("--last", type=click.IntRange(1, 200), default=12, show_default=True,
              help="Steps of each curve shown in the terminal (--json has them all).")
@project_option
@json_option
def stats(agent: str, all_projects: bool, every: str, last: int, project_dir: Path | None, as_json: bool) -> None:
    """Count memories by type in this project (or the whole database with --all), and
    show each agent's learning curve: success rate, heuristics learned and retired.

    \b
    Examples:
      alma-hooks stats
      alma-hooks stats --agent helena --json
      alma-hooks stats --every 10          # one curve step per 10 outcomes
      alma-hooks stats --all --every day
    """
    from ..learning import curves

    step = curves.parse_every(every)
    config, store = service.open_project(project_dir)
    with store:
        data = store.stats(None if all_projects else service.scope_for(config, agent))
        found = curves.project_curves(store, None if all_projects else config.project_id, config.user_id, step)
    data["scope"] = "all projects" if all_projects else f"{config.project_id} (agent {agent})"
    data["curves"] = [c.to_dict() for c in found]
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"{data['memories']} memories in {data['scope']}")
    for t in MEMORY_TYPES:
        if data["by_type"].get(t):
            click.echo(f"  {t:<13} {data['by_type'][t]}")
    if all_projects and data["by_agent"]:
        click.echo("  by agent: " + ", ".join(f"{a} {n}" for a, n in sorted(data["by_agent"].items())))
    click.echo(f"events {data['events']}, pending embeddings {data['pending_embeddings']}, "
               f"db {data['db_path']} ({data['db_bytes'] / 1e6:.1f} MB, schema {data['schema_version']})")
    for line in curves.format_curves(found, last):
        click.echo(line)


@main.command()
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True, path_type=Path), default=None,
              help="Write to FILE instead of stdout.")
@click.option("--all", "all_projects", is_flag=True, help="Every project in the database (default: this one).")
@project_option
def export(output: Path | None, all_projects: bool, project_dir: Path | None) -> None:
    """Write memories (with their vectors) as JSON lines.

    \b
    Examples:
      alma-hooks export > memories.jsonl
      alma-hooks export --output backup.jsonl --all
    """
    if output is not None and not output.name:  # `-o ''` is Path('.'): no file name to write to
        raise click.BadParameter("needs a file name", param_hint="'--output'")
    config, store = service.open_project(project_dir)
    with store:
        project = None if all_projects else config.project_id
        if output is None:
            n = service.export_jsonl(store, sys.stdout, project)
        elif output.exists() and not output.is_file():
            # a device or a pipe (/dev/null, a FIFO): write through it; renaming a temporary
            # file over it would replace the device itself (as root, /dev/null became a file)
            try:
                with open(output, "w", encoding="utf-8") as f:
                    n = service.export_jsonl(store, f, project)
            except OSError as e:
                raise AlmaError(f"cannot write {output}: {e.strerror}", "choose a writable path") from None
        else:
            tmp = output.with_name(output.name + ".tmp")
            try:
                with open(tmp, "w", encoding="utf-8") as f:
                    n = service.export_jsonl(store, f, project)
                tmp.replace(output)
            except OSError as e:
                tmp.unlink(missing_ok=True)
                raise AlmaError(f"cannot write {output}: {e.strerror}", "choose a writable path") from None
    click.echo(f"Exported {n} memories from {'all projects' if all_projects else config.project_id}"
               + (f" to {output}" if output else ""), err=True)


@main.command(name="import")
@click.argument("file", type=click.Path(path_type=Path))
@project_option
def import_(file: Path, project_dir: Path | None) -> None:
    """Import memories from a JSONL file made by `alma-hooks export`.

    Every line is checked before anything is written; a bad line names its
    number and nothing is imported. A memory already present is replaced only
    by a newer version.

    \b
    Examples:
      alma-hooks import memories.jsonl
    """
    _config, store = service.open_project(project_dir)
    with store:
        result = service.import_jsonl(store, file)
        _embed_pending(store, service.default_embedder())
    skipped = f" ({result.skipped} skipped: already present or outside an agent's domains)" if result.skipped else ""
    click.echo(f"Imported {result.written} of {result.read} memories{skipped}")


@main.command()
@click.argument("memory_id", metavar="[ID]", required=False)
@click.option("--reason", default="forgotten on request", show_default=True, help="Kept in the audit log.")
@click.option("--dry-run", is_flag=True, help="Without ID: show what a forgetting pass would remove.")
@agent_option
@project_option
def forget(memory_id: str | None, reason: str, dry_run: bool, agent: str, project_dir: Path | None) -> None:
    """Delete one memory by id, or (without ID) run a forgetting pass: decay, staleness, caps.

    Every removal is audited. A pass never removes pinned memories, preferences
    or curated knowledge.

    \b
    Examples:
      alma-hooks forget 3f2a9c... --reason "we moved to GitHub Actions"
      alma-hooks forget --dry-run              # what a pass would remove
      alma-hooks forget --agent helena         # run the pass for Helena's memories
    """
    config, store = service.open_project(project_dir)
    with store:
        scope = service.scope_for(config, agent)
        if memory_id and memory_id.strip():
            if dry_run:
                raise click.UsageError("--dry-run applies to a forgetting pass, not to forgetting one ID")
            store.delete(scope, memory_id.strip(), reason=reason)
            click.echo(f"Forgot {memory_id}")
            return
        from ..learning import forgetting

        report = forgetting.run(store, config, scope, dry_run=dry_run)
    for mid, mtype, why in report.removed:
        click.echo(f"{'would remove' if dry_run else 'removed'} {mtype} {mid}: {why}")
    click.echo(report.summary())


@main.command()
@project_option
def reembed(project_dir: Path | None) -> None:
    """Embed every memory again with the installed model (after a model change).

    \b
    Examples:
      alma-hooks reembed
    """
    _config, store = service.open_project(project_dir)
    with store:
        n = service.reembed(store, service.default_embedder())
    click.echo(f"Re-embedded {n} memories")


@main.command()
@project_option
@json_option
@click.option("--quiet", "-q", is_flag=True, help="Print only problems and a one-line summary.")
def doctor(project_dir: Path | None, as_json: bool, quiet: bool) -> None:
    """Check the installation, model, database and configuration; say how to fix what is wrong.

    Exits non-zero when any check fails. A corrupt database is moved aside
    (never deleted) and a fresh one started.

    \b
    Examples:
      alma-hooks doctor
      alma-hooks doctor --json
    """
    from ..doctor import FAIL, OK, run_checks

    checks = run_checks(project_dir)
    failed = [c for c in checks if c.status == FAIL]
    if as_json:
        click.echo(json.dumps([c.to_dict() for c in checks], indent=2))
    else:
        for c in checks:
            if not quiet or c.status != OK:
                click.echo(c.line())
        if quiet:
            bad = len(failed)
            click.echo(f"doctor: {len(checks) - bad} of {len(checks)} checks passed"
                       + (f", {bad} failed" if bad else ""))
    if failed:
        sys.exit(1)

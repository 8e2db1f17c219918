"""``alma-hooks sync enable|disable|status|run``: share a project's memories through Cosmos DB.

Thin commands over :mod:`alma_hooks.sync.worker` and
:class:`alma_hooks.storage.replica.Replica`; reads always stay on the local replica.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from .. import service
from ..errors import EmbeddingError, SyncUnavailable
from ..storage.replica import Replica
from . import CONTEXT, json_option, main, project_option


@main.group(context_settings=CONTEXT)
def sync() -> None:
    """Team sync: this project's memories shared through Azure Cosmos DB (storage: azure).

    Every machine keeps its own SQLite replica and reads only from it; the
    worker pushes local writes (an outbox filled in the same transaction as
    each write) and pulls the team's changes from the container's change feed.
    The Cosmos key comes from Key Vault (azure.cosmos_key: keyvault://...).

    \b
    Examples:
      alma-hooks sync enable          # queue every memory of the project once
      alma-hooks sync run --once      # push, then pull, then exit
      alma-hooks sync run             # keep going every azure.sync.interval_s
      alma-hooks sync status --json
    """


@sync.command()
@project_option
def enable(project_dir: Path | None) -> None:
    """Start syncing this project: queue its memories for the initial push.

    \b
    Examples:
      alma-hooks sync enable && alma-hooks sync run --once
    """
    from ..sync.worker import require_azure

    config, store = service.open_project(project_dir)
    require_azure(config)
    with store:
        replica = Replica(store)
        if replica.enabled(config.project_id):
            click.echo(f"Sync is already on for {config.project_id}")
            return
        queued = replica.enable(config.project_id)
    click.echo(f"Sync on for {config.project_id}: {queued} memories queued for the initial push "
               "(run `alma-hooks sync run`)")


@sync.command()
@project_option
def disable(project_dir: Path | None) -> None:
    """Stop queuing this project's writes (queued ones stay, and go out if sync is enabled again).

    \b
    Examples:
      alma-hooks sync disable
    """
    config, store = service.open_project(project_dir)
    with store:
        was = Replica(store).disable(config.project_id)
    click.echo(f"Sync off for {config.project_id}" if was else f"Sync was not on for {config.project_id}")


@sync.command()
@project_option
@json_option
def status(project_dir: Path | None, as_json: bool) -> None:
    """Show whether sync is on, what is queued, what is parked and when it last ran.

    \b
    Examples:
      alma-hooks sync status
      alma-hooks sync status --json | jq .pending
    """
    config, store = service.open_project(project_dir)
    with store:
        info = Replica(store).status(config.project_id)
    info["storage"] = config.get("storage")
    if as_json:
        click.echo(json.dumps(info))
        return
    click.echo(f"{info['project_id']}: sync {'on' if info['enabled'] else 'off'} (storage: {info['storage']}), "
               f"{info['pending']} queued, {info['parked']} parked, replica {info['origin'] or '-'}")
    for name in ("last_push", "last_pull"):
        if info[name]:
            click.echo(f"  {name.replace('_', ' ')}: {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(info[name]))}")
    for item in info["parked_items"]:
        click.echo(f"  parked {item['op']} {item['memory_id']}: {item['error']}")


@sync.command()
@click.option("--once", is_flag=True, help="One push and one pull, then exit.")
@click.option("--full", is_flag=True, help="Read the change feed from the beginning (merging is idempotent).")
@click.option("--retry-parked", is_flag=True, help="Try parked (refused) items again.")
@click.option("--no-embed", is_flag=True, help="Do not embed memories still without a vector before pushing.")
@project_option
@json_option
def run(once: bool, full: bool, retry_parked: bool, no_embed: bool, project_dir: Path | None, as_json: bool) -> None:
    """Push queued writes to Cosmos DB and pull the team's changes (exit 8 if the store could not be reached).

    Safe to stop at any moment (even kill -9): a queued write leaves the queue
    only after Cosmos acknowledged it, and a pulled page is merged together
    with its feed position.

    \b
    Examples:
      alma-hooks sync run --once --json
      alma-hooks sync run              # every azure.sync.interval_s seconds, until Ctrl-C
    """
    from ..embedding import MODEL_ID
    from ..sync import worker

    config, store = service.open_project(project_dir)
    worker.require_azure(config)
    with store, worker.WorkerLock(config.db_path, config.project_id):
        if not Replica(store).enabled(config.project_id):
            raise SyncUnavailable(f"sync is off for {config.project_id}", "run `alma-hooks sync enable` first")
        if not no_embed:
            _embed_pending(store)
        team = worker.open_team_store(config)
        try:
            w = worker.SyncWorker(store, team, config.project_id, settings=worker.SyncSettings.from_config(config),
                                  accept_model=MODEL_ID)
            report = worker.run(w, once=once, retry_parked=retry_parked, full=full,
                                on_report=lambda r: _print_report(r, as_json))
        except KeyboardInterrupt:
            return
        finally:
            team.close()
    if not report.ok:
        sys.exit(SyncUnavailable.exit_code)


def _embed_pending(store: Any) -> None:
    # vectors travel with the items: embed what is still pending so the team gets it (DESIGN §9)
    if not store.pending_embeddings(1):
        return
    try:
        service.embed_pending(store, service.default_embedder())
    except EmbeddingError as e:
        click.echo(f"Warning: pushing without vectors (replicas embed them): {e.one_line()}", err=True)


def _print_report(report: Any, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report.to_dict()))
        return
    p, q = report.push, report.pull
    m = q.merge
    click.echo(f"push: {p.written} written, {p.unchanged} unchanged, {p.dropped} dropped, {p.parked} parked, "
               f"{p.failed} still queued after errors")
    click.echo(f"pull: {q.read} read in {q.pages} pages: {m.applied} merged, {m.deleted} deleted, {m.stale} stale, "
               f"{m.other_project} of other projects ignored, {m.refused + m.invalid + q.unreadable} skipped")
    click.echo(f"{report.requests} requests, {report.request_charge:g} RU, {report.retries} retries "
               f"({report.throttled} throttled, waited {report.waited_s:.1f}s), {report.seconds:.2f}s")
    for err in (p.error, q.error):
        if err:
            click.echo(f"Error: {err}", err=True)

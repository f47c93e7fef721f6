"""``segment-accounts demo``: the whole product on generated traffic, end to end, in one command."""

from __future__ import annotations

from pathlib import Path

import click

from pipelines.connections import Connection, ConnectionConfigError, Registry
from pipelines.jobs import EXIT_OK, run_job
from pipelines.sample_data import write_ndjson
from pipelines.settings import Paths

DEMO_CONNECTION = "demo-web"


def demo_connection(paths: Paths) -> Connection:
    """The demo's connection: group calls first, the work email's domain as fallback."""
    registry = Registry(paths.data)
    try:
        return registry.get(DEMO_CONNECTION)
    except ConnectionConfigError:
        connection, _credentials = registry.add(DEMO_CONNECTION, account_mapping="group")
        return connection


def send_events(paths: Paths, connection: Connection, events: int) -> None:
    """Spool generated events the way a backfill would."""
    from pipelines.ingest import ingest
    from pipelines.spool import SpoolWriter

    source = paths.data / "demo-events.ndjson.gz"
    write_ndjson(source, events)
    with SpoolWriter(paths.spool) as writer:
        summary = ingest([source], connection.connection_id, writer)
    click.echo(f"demo: {summary.line()}")


def show_results(warehouse: Path) -> None:
    import duckdb

    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        raw = con.execute("select count(*) from segment_raw.raw_events").fetchone()
        click.echo(f"\nraw events landed: {raw[0] if raw else 0}")
        has_marts = con.execute(
            "select count(*) from information_schema.tables where table_name = 'dim_accounts'"
        ).fetchone()
        if not has_marts or not has_marts[0]:
            return
        rows = con.execute(
            "select account_id, account_name, resolution_method, contact_count, last_seen_at"
            " from dim_accounts order by contact_count desc, account_id limit 15"
        ).fetchall()
        click.echo("\nresolved accounts (top 15 by contacts):")
        click.echo(f"  {'account_id':<16} {'account_name':<20} {'method':<13} {'contacts':>8}  last_seen_at")
        for account_id, name, method, contacts, last_seen in rows:
            click.echo(f"  {account_id!s:<16} {name!s:<20} {method!s:<13} {contacts:>8}  {last_seen}")
        methods = con.execute(
            "select account_resolution_method, count(*) from dim_contacts group by 1 order by 2 desc"
        ).fetchall()
        click.echo("\ncontacts by account resolution: " + ", ".join(f"{m}: {n}" for m, n in methods))
    finally:
        con.close()


def run_demo(paths: Paths, events: int) -> int:
    connection = demo_connection(paths)
    send_events(paths, connection, events)
    code = run_job(paths, quiet=True)
    if code == EXIT_OK:
        show_results(paths.warehouse)
    return code

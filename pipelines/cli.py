"""The ``segment-accounts`` command line: one entry point for every job of an installation.

Heavy imports (dlt, uvicorn) happen inside the commands that need them, so ``--help`` and ``connections`` stay
fast. A user mistake is one clear line and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import click

from pipelines.connections_cli import connections
from pipelines.settings import configure_tools, paths, restrict_new_files


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="segment-accounts")
def main() -> None:
    """Segment events into contacts and accounts in your own warehouse."""
    restrict_new_files()
    configure_tools()


main.add_command(connections)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="Server processes.")
@click.option(
    "--public-url",
    help="The https URL Segment reaches this receiver at (your reverse proxy); saved for `connections add`, "
    "`connections list` and the admin page.",
)
@click.option(
    "--admin-host", default="127.0.0.1", show_default=True, help="Address of the admin page (keep it private)."
)
@click.option("--admin-port", default=8081, show_default=True, type=click.IntRange(0, 65535), help="0: no admin page.")
def serve(host: str, port: int, workers: int, public_url: str | None, admin_host: str, admin_port: int) -> None:
    """Receive Segment webhooks and Tracking API calls into the spool (never opens the warehouse), and serve the
    admin page on its own listener."""
    from pipelines import public_url as urls
    from pipelines.connections import ConnectionConfigError
    from pipelines.receiver.server import serve as run_server

    data = paths().data
    try:
        if public_url:
            urls.save(data, public_url)
        url = urls.resolve(data)
    except ConnectionConfigError as error:
        raise click.ClickException(str(error)) from None
    if url.warning():
        click.secho(f"Warning: {url.warning()}", fg="yellow", err=True)
    if admin_port:
        _start_admin(data, admin_host, admin_port)
    run_server(host=host, port=port, workers=workers)


def _start_admin(data: Path, host: str, port: int) -> None:
    from pipelines import public_url as urls
    from pipelines.admin import token
    from pipelines.admin.server import start_in_thread

    new_token = token.ensure(data)
    start_in_thread(data, host, port)
    shown_host = f"[{host}]" if ":" in host else host
    page = f"http://{shown_host}:{port}/"
    if new_token:
        click.echo(f"Admin page: {page}login?token={new_token}", err=True)
        click.secho(
            "This admin token is shown only this once; `segment-accounts admin rotate-token` replaces it.",
            fg="yellow",
            err=True,
        )
    else:
        click.echo(f"Admin page: {page} (admin token in {token.token_path(data)}, hashed)", err=True)
    if not urls.is_loopback(page):
        click.secho(
            "Warning: the admin page is not on loopback: put it behind TLS and a firewall.", fg="yellow", err=True
        )


@main.group()
def admin() -> None:
    """The admin page's token."""


@admin.command("rotate-token")
def rotate_token() -> None:
    """Make a new admin token (printed once); the old one and every signed-in browser stop working."""
    from pipelines.admin import token

    new_token = token.rotate(paths().data)
    click.echo(f"New admin token: {new_token}")
    click.echo("Sign in at the admin page's /login, or open /login?token=<token>. It is shown only this once.")


@main.command()
@click.option("--connection", "connection_name", help="Only this connection (name or id).")
@click.option("--rejected", is_flag=True, help="Only rejected events and refused deliveries.")
@click.option("-n", "--lines", default=50, show_default=True, type=click.IntRange(1, 50), help="How many.")
@click.option("--payloads", is_flag=True, help="Print each payload (write keys removed) under its line.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new ones until Ctrl-C.")
def tail(connection_name: str | None, rejected: bool, lines: int, payloads: bool, follow: bool) -> None:
    """The last events each connection accepted, rejected or refused, from the receiver (no warehouse)."""
    import time

    from pipelines import activity
    from pipelines.connections import ConnectionConfigError, Registry

    data = paths().data
    try:
        registry = Registry(data)
        ids = [registry.get(connection_name).connection_id] if connection_name else None
    except ConnectionConfigError as error:
        raise click.ClickException(str(error)) from None
    kinds = ("rejected", "refused") if rejected else activity.KINDS
    names = {c.connection_id: c.name for c in registry.list()}
    items = activity.tail(data, connection_ids=ids, kinds=kinds, limit=lines)
    if not items and not follow:
        click.echo("Nothing received yet." + ("" if ids is None else " (for this connection)"))
    seq = 0
    while True:
        for item in reversed(items):
            detail = item.reason or item.message_id or ""
            name = names.get(item.connection_id, item.connection_id)
            click.echo(f"{activity.iso_us(item.received_at_us)}  {name}  {item.kind:<8}  {item.summary}  {detail}")
            if payloads and item.payload:
                click.echo(f"    {item.payload}")
            seq = max(seq, item.seq)
        if not follow:
            return
        time.sleep(1)
        items = activity.tail(data, connection_ids=ids, kinds=kinds, after_seq=seq, limit=50)


@main.command()
@click.option("--wait", is_flag=True, help="Wait for a running job instead of exiting with code 75.")
def load(wait: bool) -> None:
    """Move everything new in the spool into the warehouse's raw tables."""
    from pipelines.jobs import EXIT_BUSY, Busy, root_cause, run_lock
    from pipelines.loader import load as run_load
    from pipelines.loader import target_name
    from pipelines.warehouse_lock import WarehouseInUse, check_warehouse_free, error_chain_text, in_use_message

    current = paths()
    try:
        with run_lock(current, wait=wait):
            if target_name() == "duckdb":
                check_warehouse_free(current)
            click.echo(run_load(current).line())
    except Busy as busy:
        click.echo(f"load skipped: {busy}", err=True)
        sys.exit(EXIT_BUSY)
    except WarehouseInUse as busy:
        raise click.ClickException(f"load failed: {busy}") from None
    except Exception as error:  # the cursor did not move; the next load retries
        reason = in_use_message(error_chain_text(error)) or root_cause(error)
        raise click.ClickException(f"load failed: {reason}") from None


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--connection", "connection_name", required=True, help="Name or id of the connection to file under.")
def ingest(files: tuple[Path, ...], connection_name: str) -> None:
    """Backfill events from NDJSON or JSON-array files (gzip or not), e.g. a Segment archive."""
    from pipelines.connections import ConnectionConfigError, Registry
    from pipelines.ingest import ingest as run_ingest
    from pipelines.spool import SpoolWriter

    current = paths()
    try:
        connection = Registry(current.data).get(connection_name)
    except ConnectionConfigError as error:
        raise click.ClickException(str(error)) from None
    total = sum(f.stat().st_size for f in files)
    size = f"{total / 1e6:.1f} MB" if total >= 100_000 else f"{total / 1e3:.1f} KB"
    label = f"ingesting {len(files)} file{'s' if len(files) != 1 else ''} ({size}) into the spool"
    with (
        SpoolWriter(current.spool) as writer,
        click.progressbar(length=total, label=f"{label} for connection {connection.name}", file=sys.stderr) as bar,
    ):
        summary = run_ingest(list(files), connection.connection_id, writer, on_progress=bar.update)
    click.echo(summary.line())


@main.command("restore-spool")
def restore_spool() -> None:
    """Put the spool's archived (already loaded) segments back, so the next load lands their events again: how a
    lost or damaged warehouse is rebuilt (then `run --full-refresh`). Staging keeps one copy of each event."""
    from pipelines.jobs import run_lock
    from pipelines.spool import SpoolLockedError, SpoolReader

    current = paths()
    try:
        with run_lock(current, wait=True), SpoolReader(current.spool) as reader:
            count = reader.restore_loaded()
    except SpoolLockedError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"restored {count} archived spool segments; the next `segment-accounts run` loads them again")


@main.command()
@click.option("--full-refresh", is_flag=True, help="Rebuild incremental models from scratch.")
@click.option("--wait", is_flag=True, help="Wait for a running job instead of exiting with code 75.")
@click.option("-v", "--verbose", is_flag=True, help="Stream dbt's log (it is always kept in the data folder's logs/).")
def transform(full_refresh: bool, wait: bool, verbose: bool) -> None:
    """Build the dbt models and run their tests (dbt build, unit tests included) under the run lock, then publish
    the marts to analytics.duckdb. Exit 0 ok, 1 failed, 75 another run is in progress."""
    from pipelines.jobs import TRANSFORM, run_job

    sys.exit(run_job(paths(), job=TRANSFORM, full_refresh=full_refresh, wait=wait, verbose=verbose))


@main.command()
@click.option("--full-refresh", is_flag=True, help="Rebuild incremental models from scratch.")
@click.option("--wait", is_flag=True, help="Wait for a running job instead of exiting with code 75.")
@click.option("-v", "--verbose", is_flag=True, help="Stream dbt's log (it is always kept in the data folder's logs/).")
def run(full_refresh: bool, wait: bool, verbose: bool) -> None:
    """Load, then transform, then publish the marts to analytics.duckdb: what a schedule calls. Prints one line.
    Exit 0 ok, 1 failed, 75 another run is in progress."""
    from pipelines.jobs import run_job

    sys.exit(run_job(paths(), full_refresh=full_refresh, wait=wait, verbose=verbose))


@main.command()
def freshness() -> None:
    """Has Segment stopped delivering? dbt's source freshness, then each connection from the receiver's counts:
    exit 0 pass or warn, 1 error."""
    from pipelines.freshness import check_connections, check_freshness
    from pipelines.jobs import run_lock

    with run_lock(paths(), wait=True):  # dbt opens the embedded warehouse: never while a run has it
        code, results = check_freshness(paths())
    for result in results:
        click.echo(result.line())
    connections = check_connections(paths())
    for connection in connections:
        click.echo(connection.line())
    if code != 0 and not results:
        raise click.ClickException(
            f"dbt source freshness failed (exit {code}), output above; has `segment-accounts load` run yet?"
        )
    if code != 0 or any(c.status == "error" for c in connections):
        sys.exit(1)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object for scripts.")
def status(as_json: bool) -> None:
    """A run in progress, the last run, the spool's backlog, what the warehouse and analytics.duckdb hold, and
    the data folder's size by part."""
    from pipelines.jobs import collect_status, status_lines

    report = collect_status(paths())
    if as_json:
        click.echo(json.dumps(report))
        return
    for line in status_lines(report):
        click.echo(line)


@main.command()
@click.option("--serve", "serve_site", is_flag=True, help="Then serve the site on loopback until Ctrl-C.")
@click.option("--port", default=8082, show_default=True, type=click.IntRange(0, 65535), help="Port for --serve.")
def docs(serve_site: bool, port: int) -> None:
    """Build the dbt docs site (every model and column, the lineage graph) and say where it is."""
    from pipelines.docs_site import DocsError, build_docs, docs_server
    from pipelines.jobs import run_lock

    try:
        with run_lock(paths(), wait=True):  # dbt reads the embedded warehouse's catalog: never while a run has it
            site = build_docs(paths())
        click.echo(f"docs site: {site.index}")
        click.echo(f"one file, opens without a server: {site.static_index}")
        click.echo(f"example queries that run on analytics.duckdb as they are: {site.analytics_queries}/")
        if not serve_site:
            return
        server = docs_server(site, port)
    except DocsError as error:
        raise click.ClickException(str(error)) from None
    host, bound_port = server.server_address[:2]
    # Ctrl-C stops it even when started from a script in the background (which starts children with SIGINT
    # ignored), and so does a service manager's SIGTERM: both end it cleanly, exit 0.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    click.echo(f"serving the docs site on http://{host}:{bound_port}/ (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@main.command()
@click.option("--events", default=2_000, show_default=True, type=click.IntRange(10, 10_000_000))
def demo(events: int) -> None:
    """Generate sample traffic, send it in, run the pipeline and print the resolved accounts."""
    from pipelines.demo import NotADemoFolder, run_demo

    try:
        sys.exit(run_demo(paths(), events=events))
    except NotADemoFolder as refused:
        print(refused, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()

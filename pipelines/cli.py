"""The ``segment-accounts`` command line: one entry point for every job of an installation.

Heavy imports (dlt, uvicorn) happen inside the commands that need them, so ``--help`` and ``connections`` stay
fast. A user mistake is one clear line and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import json
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
def serve(host: str, port: int, workers: int) -> None:
    """Receive Segment webhooks and Tracking API calls into the spool (never opens the warehouse)."""
    from pipelines.receiver.server import serve as run_server

    run_server(host=host, port=port, workers=workers)


@main.command()
def load() -> None:
    """Move everything new in the spool into the warehouse's raw tables."""
    from pipelines.jobs import root_cause
    from pipelines.loader import load as run_load

    try:
        click.echo(run_load(paths()).line())
    except Exception as error:  # the cursor did not move; the next load retries
        raise click.ClickException(f"load failed: {root_cause(error)}") from None


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
    with (
        SpoolWriter(current.spool) as writer,
        click.progressbar(length=total, label="ingesting", file=sys.stderr) as bar,
    ):
        summary = run_ingest(list(files), connection.connection_id, writer, on_progress=bar.update)
    click.echo(summary.line())


@main.command()
@click.option("--full-refresh", is_flag=True, help="Rebuild incremental models from scratch.")
def transform(full_refresh: bool) -> None:
    """Build the dbt models and run their tests (dbt build)."""
    from pipelines.transform import build, read_build_report, schema_change_hint

    code = build(paths(), ["--full-refresh"] if full_refresh else [])
    if code != 0:
        hint = schema_change_hint(read_build_report(paths()), "transform")
        raise click.ClickException(hint or f"dbt build failed (exit {code}); see the output above")


@main.command()
@click.option("--full-refresh", is_flag=True, help="Rebuild incremental models from scratch.")
@click.option("--wait", is_flag=True, help="Wait for a running job instead of exiting with code 75.")
def run(full_refresh: bool, wait: bool) -> None:
    """Load, then transform: what a schedule calls. Exit 0 ok, 1 failed, 75 another run is in progress."""
    from pipelines.jobs import run_job

    sys.exit(run_job(paths(), full_refresh=full_refresh, wait=wait))


@main.command()
def freshness() -> None:
    """Has Segment stopped delivering? dbt's source freshness: exit 0 pass or warn, 1 error."""
    from pipelines.freshness import check_freshness

    code, results = check_freshness(paths())
    for result in results:
        click.echo(result.line())
    if code != 0:
        if not results:
            raise click.ClickException(
                f"dbt source freshness failed (exit {code}), output above; has `segment-accounts load` run yet?"
            )
        sys.exit(1)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object for scripts.")
def status(as_json: bool) -> None:
    """Spool backlog, connections and what the warehouse holds."""
    from pipelines.jobs import collect_status
    from pipelines.transform import BuildReport

    report = collect_status(paths())
    if as_json:
        click.echo(json.dumps(report, default=str))
        return
    for key, value in report.items():
        if key == "last_build":
            value = BuildReport(**value).line() if value else "none yet (run `segment-accounts run`)"
        click.echo(f"{key:>24}: {value}")


@main.command()
@click.option("--events", default=2_000, show_default=True, type=click.IntRange(10, 10_000_000))
def demo(events: int) -> None:
    """Generate sample traffic, send it in, run the pipeline and print the resolved accounts."""
    from pipelines.demo import run_demo

    sys.exit(run_demo(paths(), events=events))


if __name__ == "__main__":
    main()

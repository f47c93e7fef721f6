"""``segment-accounts demo``: the whole product on generated traffic, end to end, in one command.

The events go in the way production traffic does: over HTTP to a real ``serve`` process on loopback, as signed
Webhooks-destination posts (single events and arrays) and as Tracking API batches authenticated by write key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import orjson

from pipelines.connections import ConnectionConfigError, Credentials, Registry
from pipelines.jobs import EXIT_OK, run_job
from pipelines.sample_data import TrafficGenerator, quarantined_examples
from pipelines.settings import MARTS_SCHEMA, Paths, raw_schema
from pipelines.transform import read_build_report

if TYPE_CHECKING:
    import duckdb

DEMO_CONNECTION = "demo-web"
WEBHOOK_ARRAY_SIZE = 20
TRACKING_BATCH_SIZE = 100


def demo_credentials(paths: Paths) -> tuple[str, Credentials]:
    """The demo's connection (group calls first, work-email domain as fallback) and fresh credentials for it.

    Secrets are shown only once, so a second demo run rotates them with no grace period.
    """
    registry = Registry(paths.data)
    try:
        connection = registry.get(DEMO_CONNECTION)
        credentials = registry.rotate(connection.connection_id, grace=timedelta(0), write_key=True)
    except ConnectionConfigError:
        connection, credentials = registry.add(DEMO_CONNECTION, account_mapping="group")
    return connection.connection_id, credentials


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(port: int, server: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise click.ClickException(f"the receiver exited with code {server.returncode} before it was ready")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.1)
    raise click.ClickException("the receiver did not become healthy within 30 s")


def _chunks(events: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for event in events:
        chunk.append(event)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class DemoSender:
    """Posts events the three ways Segment can: one signed event, a signed array, a Tracking API batch."""

    def __init__(self, port: int, connection_id: str, credentials: Credentials) -> None:
        self.http = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.webhook_path = f"/webhooks/{connection_id}"
        self.secret = credentials.webhook_secret.encode()
        self.basic = "Basic " + base64.b64encode(f"{credentials.write_key}:".encode()).decode()
        self.requests = 0

    def _post(self, path: str, body: bytes, headers: dict[str, str]) -> None:
        self.http.request("POST", path, body=body, headers={"Content-Type": "application/json", **headers})
        response = self.http.getresponse()
        answer = response.read()
        if response.status != 200:
            raise click.ClickException(f"receiver answered {response.status} to {path}: {answer[:200]!r}")
        self.requests += 1

    def webhook(self, payload: Any) -> None:
        body = orjson.dumps(payload)
        signature = hmac.new(self.secret, body, hashlib.sha1).hexdigest()
        self._post(self.webhook_path, body, {"X-Signature": signature})

    def tracking_batch(self, events: list[dict[str, Any]]) -> None:
        self._post("/v1/batch", orjson.dumps({"batch": events}), {"Authorization": self.basic})


def demo_traffic(events: int, now: datetime) -> Iterator[dict[str, Any]]:
    """The demo's events: a month of product traffic ending now (so "this week" has data), with Engage audiences
    and computed traits, user-to-user alias chains, companies whose group call names their website next to
    colleagues known only by a work email there; then a few events a broken source sends, to be quarantined."""
    start = now - timedelta(days=30)
    yield from TrafficGenerator(seed=7, start=start, engage=0.05, renames=0.6).events(events)
    yield from quarantined_examples(now - timedelta(hours=1))


def send_over_http(paths: Paths, events: int) -> None:
    connection_id, credentials = demo_credentials(paths)
    port = free_port()
    env = dict(os.environ, SEGMENT_ACCOUNTS_DATA=str(paths.data))
    command = [str(Path(sys.executable).with_name("segment-accounts")), "serve", "--port", str(port)]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_healthy(port, server)
        sender = DemoSender(port, connection_id, credentials)
        started = time.perf_counter()
        traffic = demo_traffic(events, datetime.now(UTC).replace(microsecond=0))
        sent = 0
        with click.progressbar(length=events, label="sending over HTTP", file=sys.stderr) as bar:
            for n, chunk in enumerate(_chunks(traffic, WEBHOOK_ARRAY_SIZE)):
                sent += len(chunk)
                if n % 10 == 0:
                    for event in chunk:  # some sources post one event per request
                        sender.webhook(event)
                elif n % 3 == 0:
                    # an SDK stamps sentAt when it sends: the Tracking API corrects each timestamp by it
                    sent_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
                    sender.tracking_batch([{**event, "sentAt": sent_at} for event in chunk])
                else:
                    sender.webhook(chunk)
                bar.update(min(len(chunk), events - bar.pos))
        elapsed = time.perf_counter() - started
        click.echo(
            f"demo: sent {sent} events ({events} of product traffic, Segment's retries included, and"
            f" {sent - events} malformed ones as a broken source sends them) in {sender.requests}"
            f" signed/authenticated requests to 127.0.0.1:{port} in {elapsed:.1f}s, every one answered 200 after fsync"
        )
    finally:
        server.send_signal(signal.SIGTERM)  # graceful: in-flight requests finish, the spool segment is sealed
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def show_results(warehouse: Path) -> None:
    """What the demo built: every mart with its row count, the accounts, and what domain consolidation did."""
    import duckdb

    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        raw_events = _count(con, f'"{raw_schema()}".raw_events') or 0
        rejected = _count(con, f'"{raw_schema()}".rejected_events')
        # the run's "records loaded" counts both tables, and fct_events one row per (connection, messageId)
        click.echo(
            f"\nraw events landed: {raw_events}, and {rejected or 0} quarantined in rejected_events with a reason"
        )
        distinct_events = _count(con, f'"{MARTS_SCHEMA}".fct_events')
        if distinct_events is not None and raw_events:
            click.echo(
                f"fct_events holds {distinct_events} of them: {raw_events - distinct_events} were retried deliveries"
                " of a messageId already received, kept once (the first received)"
            )
        marts = [
            row[0]
            for row in con.execute(
                "select table_name from information_schema.tables where table_schema = ? order by table_name",
                [MARTS_SCHEMA],
            ).fetchall()
        ]
        if "dim_accounts" not in marts:
            return
        click.echo(f"\nmarts in schema {MARTS_SCHEMA}:")
        for mart in marts:
            count = con.execute(f'select count(*) from "{MARTS_SCHEMA}"."{mart}"').fetchone()
            click.echo(f"  {mart:<26} {count[0] if count else 0:>8} rows")
        rows = con.execute(
            "select account_id, account_name, account_id_source, contact_count, last_seen_at"
            f" from {MARTS_SCHEMA}.dim_accounts order by contact_count desc, account_id limit 15"
        ).fetchall()
        click.echo("\nresolved accounts (top 15 by contacts):")
        click.echo(f"  {'account_id':<16} {'account_name':<20} {'id source':<13} {'contacts':>8}  last_seen_at")
        for account_id, name, source, contacts, last_seen in rows:
            click.echo(f"  {account_id!s:<16} {name!s:<20} {source!s:<13} {contacts:>8}  {last_seen}")
        methods = con.execute(
            f"select account_assigned_by, count(*) from {MARTS_SCHEMA}.dim_contacts group by 1 order by 2 desc, 1"
        ).fetchall()
        click.echo("\ncontacts by account_assigned_by: " + ", ".join(f"{m}: {n}" for m, n in methods))
        matched = con.execute(
            "select account_id, split_part(email, '@', 2) as email_domain, count(*)"
            f" from {MARTS_SCHEMA}.dim_contacts where account_assigned_by = 'email_domain_matched'"
            " group by 1, 2 order by 1, 2"
        ).fetchall()
        if matched:
            click.echo(
                "domain consolidation: "
                + ", ".join(f"{domain} -> {account} ({n} contacts)" for account, domain, n in matched)
            )
    finally:
        con.close()


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int | None:
    """Rows in ``table``, or None when it does not exist (a build that failed before creating it)."""
    import duckdb

    try:
        row = con.execute(f"select count(*) from {table}").fetchone()
    except duckdb.CatalogException:
        return None
    return row[0] if row else 0


class NotADemoFolder(RuntimeError):
    """The data folder holds connections the demo did not make: a real installation's, whose raw layer and spool
    archive would keep the demo's made-up events for good."""


def check_demo_folder(paths: Paths, events: int) -> None:
    others = sorted(connection.name for connection in Registry(paths.data).list() if connection.name != DEMO_CONNECTION)
    if others:
        raise NotADemoFolder(
            f"demo refused: {paths.data} holds other connections ({', '.join(others)}), and the demo would add "
            f"{events:,} made-up events to that installation for good; run it on an empty folder (`make demo` "
            "uses data/demo in the checkout, or DEMO_DATA=<folder>)"
        )


def run_demo(paths: Paths, events: int) -> int:
    check_demo_folder(paths, events)
    send_over_http(paths, events)
    code = run_job(paths)
    report = read_build_report(paths)
    if code != EXIT_OK and report is not None and report.schema_changed:
        # a demo folder from an older version: rebuild it, as the line above tells an operator to
        click.echo("demo: rebuilding the tables an older version built, from the raw layer")
        code = run_job(paths, full_refresh=True)
    if code == EXIT_OK:
        show_results(paths.warehouse)
        click.echo(f"\nanalysts: open {paths.data / 'analytics.duckdb'} read-only (the marts, e.g. dim_accounts)")
    return code

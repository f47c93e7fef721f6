"""End to end: events in through the CLI and through a real receiver, contacts and accounts out of the marts.

One small story with a known answer for every resolution rule a user relies on first: a visitor who signs up
and belongs to a company by group call, a free-mail user who gets no account, a work email's domain as the
account, an alias chain, and a second connection that maps accounts by an identify trait path.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import duckdb
import orjson
import pytest

from pipelines.connections import Registry
from pipelines.demo import DemoSender, free_port, wait_healthy
from pipelines.settings import Paths
from pipelines.spool import SpoolReader
from tests.conftest import CLI, RunCli


def _event(message_id: str, kind: str, at: str, **fields: object) -> dict:
    return {"type": kind, "messageId": message_id, "timestamp": f"2026-11-0{at}Z", **fields}


# Backfilled from a file through `segment-accounts ingest`: the web connection's older history.
WEB_ARCHIVE = [
    _event("w1", "page", "1T09:00:00", anonymousId="anon-ann", name="Pricing"),
    _event("w2", "identify", "1T09:05:00", anonymousId="anon-ann", userId="ann", traits={"email": "ann@acme.com"}),
    _event("w3", "identify", "1T10:00:00", userId="bob", traits={"email": "Bob@Gmail.com"}),
    _event("w4", "track", "1T11:00:00", userId="temp-4", event="Signed Up"),
    _event("w5", "alias", "1T11:05:00", previousId="temp-4", userId="dan"),
]
# Live over HTTP: signed Webhooks-destination posts for web.
WEB_LIVE = [
    _event("w6", "group", "2T09:00:00", userId="ann", groupId="acme-corp", traits={"name": "Acme Corp"}),
    _event("w7", "identify", "2T09:30:00", userId="cat", traits={"email": "cat@initech.com"}),
    _event("w8", "track", "2T10:00:00", userId="ann", event="Report Viewed"),
    _event("w3", "identify", "1T10:00:00", userId="bob", traits={"email": "Bob@Gmail.com"}),  # a re-delivery
]
# Live over HTTP: a Tracking API batch for the app connection, which maps accounts by trait path company.id.
APP_LIVE = [
    _event("a1", "identify", "3T08:00:00", userId="eve", traits={"company": {"id": "globex", "name": "Globex"}}),
    _event("a2", "track", "3T08:10:00", userId="eve", event="Project Created"),
]


def _serve(data_dir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = dict(os.environ, SEGMENT_ACCOUNTS_DATA=str(data_dir))
    server = subprocess.Popen([CLI, "serve", "--port", str(port)], env=env, stderr=subprocess.DEVNULL)
    wait_healthy(port, server)
    return server, port


@pytest.mark.slow
def test_cli_and_receiver_traffic_resolves_to_the_expected_contacts_and_accounts(
    paths: Paths, run_cli: RunCli, tmp_path: Path
) -> None:
    registry = Registry(paths.data)
    web, web_credentials = registry.add("web")
    app, app_credentials = registry.add(
        "app", account_mapping="traits", account_id_trait="company.id", account_name_trait="company.name"
    )

    archive = tmp_path / "web-archive.ndjson"
    archive.write_bytes(b"\n".join(orjson.dumps(e) for e in WEB_ARCHIVE) + b"\n")
    run_cli("ingest", str(archive), "--connection", "web")

    server, port = _serve(paths.data)
    try:
        web_sender = DemoSender(port, web.connection_id, web_credentials)
        web_sender.webhook(WEB_LIVE[:2])  # an array, signed over the whole body
        for event in WEB_LIVE[2:]:
            web_sender.webhook(event)
        DemoSender(port, app.connection_id, app_credentials).tracking_batch(APP_LIVE)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)

    result = run_cli("run", timeout=600)
    assert result.stdout.strip().splitlines()[-1].startswith("run ok: 11 records loaded")

    con = duckdb.connect(str(paths.warehouse), read_only=True)
    try:
        contacts = {
            row[0]: row[1:]
            for row in con.execute(
                "select user_id, is_anonymous, email, account_id, account_assigned_by from analytics.dim_contacts"
            ).fetchall()
        }
        identifiers = dict(
            con.execute(
                "select i.identifier, c.user_id from analytics.dim_contact_identifiers as i"
                " join analytics.dim_contacts as c using (contact_id)"
            ).fetchall()
        )
        accounts = dict(con.execute("select account_id, account_name from analytics.dim_accounts").fetchall())
        event_count = con.execute("select count(*) from analytics.fct_events").fetchone()[0]
        ann_events = con.execute(
            "select count(*) from analytics.fct_events as e join analytics.dim_contacts as c using (contact_id)"
            " where c.user_id = 'ann'"
        ).fetchone()[0]
    finally:
        con.close()

    assert contacts["ann"] == (False, "ann@acme.com", "acme-corp", "group")
    assert contacts["bob"][2:] == (None, "none")  # gmail.com is free mail: no account
    assert contacts["cat"][2:] == ("initech.com", "email_domain")
    assert contacts["dan"][2:] == (None, "none")
    assert contacts["eve"][2:] == ("globex", "traits")
    assert set(contacts) == {"ann", "bob", "cat", "dan", "eve"}, "the anonymous visitor became ann, not a contact"
    assert identifiers["anon-ann"] == "ann"
    assert identifiers["temp-4"] == "dan"  # the alias chain
    assert accounts == {"acme-corp": "Acme Corp", "initech.com": "initech.com", "globex": "Globex"}
    assert event_count == 10  # 11 received, the re-delivered w3 counted once
    assert ann_events == 4  # w1 (anonymous, stitched), w2, w6, w8


@pytest.mark.slow
def test_demo_shows_accounts_and_rebuilds_tables_an_older_version_built(paths: Paths, run_cli: RunCli) -> None:
    """`make demo` twice on one folder must keep working, also after an upgrade changed an incremental model."""
    first = run_cli("demo", "--events", "200")
    assert "resolved accounts" in first.stdout
    assert "rebuilding" not in first.stdout
    with duckdb.connect(str(paths.warehouse)) as con:  # the staging table as an older version built it
        con.execute("alter table staging.stg_segment__events add column legacy_column varchar")

    second = run_cli("demo", "--events", "200")
    assert "demo: rebuilding the tables an older version built" in second.stdout
    assert "resolved accounts" in second.stdout
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        columns = [row[0] for row in con.execute("describe staging.stg_segment__events").fetchall()]
    assert "legacy_column" not in columns


def test_demo_refuses_a_folder_that_holds_other_connections(paths: Paths, run_cli: RunCli) -> None:
    """An operator who exported SEGMENT_ACCOUNTS_DATA for a real installation must not get 2,000 made-up events in
    its raw layer and spool archive for good."""
    Registry(paths.data).add("shop")
    refused = run_cli("demo", "--events", "50", check=False)
    assert refused.returncode == 2
    assert refused.stderr.startswith("demo refused: ") and "(shop)" in refused.stderr
    assert [connection.name for connection in Registry(paths.data).list()] == ["shop"]
    assert not paths.spool.exists() or SpoolReader(paths.spool).stats().pending_bytes == 0

"""Scaling out, as an operator would run it: two hosts, each with its own receiver, spool and loader, one shared
connection registry (``SEGMENT_ACCOUNTS_REGISTRY``) and one PostgreSQL warehouse.

Signed webhooks and ``/v1/batch`` calls go to either receiver, some messageIds to both (a Segment retry that
reached the other host); a secret rotated on one host is taken by both running receivers, the old one refused.
Both hosts' loads start together, round after round, the first load (which creates every table) included; one
round of loads runs while dbt builds. Then one more build: every acknowledged event is in ``fct_events`` exactly
once, the connections are there once each, and the marts equal a one-host DuckDB build of the same spooled
records (each host's spool is copied before its load and replayed into DuckDB).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import click
import duckdb
import psycopg2
import pytest

from pipelines.connections import Credentials, Registry
from pipelines.demo import DemoSender, free_port, wait_healthy
from pipelines.jobs import SCHEDULED_BUILD_OPTIONS
from pipelines.loader import load
from pipelines.sample_data import TrafficGenerator, write_ndjson
from pipelines.settings import Paths
from pipelines.transform import dbt_command, dbt_env
from tests.conftest import CLI
from tests.pg_server import PostgresServer, running_postgres
from tests.test_postgres import AS_OF, MARTS, _duck_rows, _normalized, _pg_rows

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

HOSTS = ("host-a", "host-b")
CHUNK = 10
"""Events per request."""


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with running_postgres(timezone="Pacific/Chatham") as server:
        yield server


def _pg(server: PostgresServer) -> Any:
    con = psycopg2.connect(host=server.host, port=server.port, user=server.user, dbname=server.database)
    con.set_session(autocommit=True)
    return con


def _query(server: PostgresServer, sql: str) -> list[tuple]:
    con = _pg(server)
    try:
        with con.cursor() as cursor:
            cursor.execute(sql)
            return cursor.fetchall()
    finally:
        con.close()


class Host:
    """One machine of the installation: its data folder (spool, dlt state), the shared registry, one loader name."""

    def __init__(self, name: str, root: Path, registry: Path, server: PostgresServer, raw_schema: str) -> None:
        self.name = name
        self.paths = Paths(root / name)
        self.env = dict(
            os.environ,
            SEGMENT_ACCOUNTS_DATA=str(self.paths.data),
            SEGMENT_ACCOUNTS_REGISTRY=str(registry),
            SEGMENT_ACCOUNTS_TARGET="postgres",
            SEGMENT_ACCOUNTS_LOADER_NAME=f"segment_accounts_{name.replace('-', '_')}",
            SEGMENT_ACCOUNTS_RAW_SCHEMA=raw_schema,
            **server.env(),
        )
        self.server: subprocess.Popen[bytes] | None = None
        self.port = 0

    def serve(self) -> None:
        self.port = free_port()
        self.server = subprocess.Popen(
            [CLI, "serve", "--port", str(self.port)], env=self.env, stderr=subprocess.DEVNULL
        )
        wait_healthy(self.port, self.server)

    def stop(self) -> None:
        if self.server is not None:
            self.server.send_signal(signal.SIGTERM)
            self.server.wait(timeout=30)

    def load(self) -> subprocess.Popen[str]:
        return subprocess.Popen([CLI, "load"], env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _loads_together(hosts: list[Host]) -> None:
    """Every host's `load` started at the same moment; each must succeed."""
    running = [host.load() for host in hosts]
    for host, process in zip(hosts, running, strict=True):
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, f"{host.name} load failed:\n{out}\n{err}"


def _send(hosts: list[Host], credentials: dict[str, Credentials], events: list[tuple[str, dict]]) -> set:
    """Each chunk to one receiver (a webhook array or a Tracking API batch), every fourth chunk to both.

    Returns the acknowledged (connection_id, messageId): DemoSender raises on anything but 200. New
    connections each call: a receiver closes keep-alive connections left idle while the loads ran."""
    senders = {
        (host.name, cid): DemoSender(host.port, cid, creds) for host in hosts for cid, creds in credentials.items()
    }
    acknowledged = set()
    for n, chunk in enumerate(events[i : i + CHUNK] for i in range(0, len(events), CHUNK)):
        connection_id = chunk[0][0]  # _traffic keeps each chunk on one connection
        payloads = [event for _, event in chunk]
        targets = hosts if n % 4 == 0 else [hosts[n % 2]]
        for host in targets:
            sender = senders[(host.name, connection_id)]
            if n % 3 == 0:
                sender.tracking_batch(payloads)
            else:
                sender.webhook(payloads)
        acknowledged |= {(connection_id, event["messageId"]) for event in payloads}
    return acknowledged


def _traffic(connections: dict[str, str], seed: int, count: int) -> list[tuple[str, dict]]:
    """Generated events, in runs of CHUNK per connection."""
    names = sorted(connections)
    out = []
    for n, event in enumerate(TrafficGenerator(seed=seed, engage=0.05).events(count)):
        out.append((connections[names[(n // CHUNK) % len(names)]], event))
    return out


def _rotate_web(hosts: list[Host], credentials: dict[str, Credentials], web_id: str) -> set:
    """`connections rotate web --grace-hours 0` on the first host; every receiver must take the new secret and
    refuse the old one within seconds, without a restart. Returns the acknowledged probe events."""
    rotated = subprocess.run(
        [CLI, "connections", "rotate", "web", "--grace-hours", "0", "--write-key", "--json"],
        env=hosts[0].env,
        capture_output=True,
        text=True,
        check=True,
    )
    fresh = json.loads(rotated.stdout)
    rotated_credentials = Credentials(webhook_secret=fresh["webhook_secret"], write_key=fresh["write_key"])
    acknowledged = set()
    for host in hosts:
        probe = {"type": "track", "event": "Rotated", "userId": "probe", "messageId": f"probe-{host.name}"}
        deadline = time.monotonic() + 15
        while True:
            try:  # a fresh connection each time: the receiver closes one it answered 401
                DemoSender(host.port, web_id, rotated_credentials).webhook(probe)
                break
            except click.ClickException:  # not yet re-read
                assert time.monotonic() < deadline, f"{host.name} never accepted the rotated secret"
                time.sleep(0.2)
        acknowledged.add((web_id, probe["messageId"]))
        with pytest.raises(click.ClickException, match="401"):
            DemoSender(host.port, web_id, credentials[web_id]).webhook(probe)
    credentials[web_id] = rotated_credentials
    return acknowledged


def _snapshot_spool(host: Host, copies: Path, label: str) -> Path:
    """The host's spool as its next load will read it (cursor included), for the one-host replay."""
    target = copies / f"{label}-{host.name}"
    shutil.copytree(host.paths.spool, target, ignore=shutil.ignore_patterns("*.lock"))
    return target


def _build(host: Host, *, tests: bool) -> subprocess.Popen[str]:
    """dbt as a schedule runs it: `build` without unit tests (the Postgres suite runs them), or only the seeds
    and models where the data tests would check nothing this module is about."""
    command = (
        ["build", *SCHEDULED_BUILD_OPTIONS]
        if tests
        else ["build", "--resource-type", "seed", "--resource-type", "model"]
    )
    return subprocess.Popen(
        dbt_command(host.paths, [*command, "--vars", json.dumps(AS_OF)]),
        env={**dbt_env(host.paths), **host.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _built(process: subprocess.Popen[str], what: str) -> None:
    started = time.perf_counter()
    out, _ = process.communicate(timeout=900)
    print(f"{what}: {time.perf_counter() - started:.0f}s")
    assert process.returncode == 0, f"{what} failed:\n{out[-6000:]}"


def _two_hosts(tmp: Path, server: PostgresServer, raw_schema: str) -> tuple[list[Host], dict[str, str], dict]:
    registry_dir = tmp / "registry"
    hosts = [Host(name, tmp, registry_dir, server, raw_schema) for name in HOSTS]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SEGMENT_ACCOUNTS_REGISTRY", str(registry_dir))
        registry = Registry(hosts[0].paths.data)
        web, web_credentials = registry.add("web")
        app, app_credentials = registry.add(
            "app", account_mapping="traits", account_id_trait="company.id", account_name_trait="company.name"
        )
    connections = {"web": web.connection_id, "app": app.connection_id}
    credentials: dict[str, Credentials] = {web.connection_id: web_credentials, app.connection_id: app_credentials}
    return hosts, connections, credentials


def _run_two_hosts(tmp: Path, server: PostgresServer, rounds: int, events_per_round: int) -> dict[str, Any]:
    raw_schema = "segment_raw"
    hosts, connections, credentials = _two_hosts(tmp, server, raw_schema)
    copies = tmp / "spool-copies"
    replay: list[Path] = []
    acknowledged: set = set()
    for host in hosts:
        host.serve()
    try:
        for n in range(rounds):
            if n == 1:  # a rotation on one host reaches both running receivers through the shared registry
                acknowledged |= _rotate_web(hosts, credentials, connections["web"])
            acknowledged |= _send(hosts, credentials, _traffic(connections, seed=100 + n, count=events_per_round))
            replay += [_snapshot_spool(host, copies, f"round{n}") for host in hosts]
            _loads_together(hosts)
            duplicated = _query(
                server,
                f"select _dlt_load_id, connection_id from {raw_schema}.connections group by 1, 2 having count(*) > 1",
            )
            assert not duplicated, f"round {n}: a load wrote a connection twice: {duplicated}"

        # Both loads while dbt builds: what they bring must reach the next build, none of it lost.
        acknowledged |= _send(hosts, credentials, _traffic(connections, seed=999, count=events_per_round))
        replay += [_snapshot_spool(host, copies, "during-build") for host in hosts]
        building = _build(hosts[0], tests=False)
        time.sleep(2)  # dbt is past its start-up and reading the raw tables
        _loads_together(hosts)
        overlapped = building.poll() is None
        _built(building, "the build during the loads")
        assert overlapped, "the loads finished after the build: nothing was tested"
    finally:
        for host in hosts:
            host.stop()
    _built(_build(hosts[0], tests=True), "the build after the loads")

    # One host, one DuckDB warehouse: every spool copy replayed in turn into one data folder (in this process:
    # a child per copy would pay dlt's import each time).
    one_host = Host("one-host", tmp, tmp / "registry", server, raw_schema)
    one_host.env.update(SEGMENT_ACCOUNTS_TARGET="duckdb")
    with mock.patch.dict(os.environ, one_host.env):
        for copy in replay:
            shutil.rmtree(one_host.paths.spool, ignore_errors=True)
            shutil.copytree(copy, one_host.paths.spool)
            load(one_host.paths)
    _built(_build(one_host, tests=False), "the one-host DuckDB build")
    return {"acknowledged": acknowledged, "duckdb": one_host.paths.warehouse, "connections": connections}


@pytest.fixture(scope="module")
def two_hosts(tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer) -> dict[str, Any]:
    """Two rounds of loads started together (the first creates every table), then a third during a build."""
    return _run_two_hosts(tmp_path_factory.mktemp("scale-out"), postgres, rounds=2, events_per_round=150)


def test_every_acknowledged_event_once(two_hosts: dict[str, Any], postgres: PostgresServer) -> None:
    rows = _query(
        postgres,
        "select connections.connection_id, events.message_id from analytics.fct_events as events"
        " inner join staging.stg_segment__connections as connections using (connection_name)",
    )
    assert len(rows) == len(set(rows)), "an event twice in fct_events"
    assert set(rows) == two_hosts["acknowledged"]
    raw = _query(postgres, "select count(*) from segment_raw.raw_events")[0][0]
    assert raw > len(rows), "no messageId reached both receivers: the deduplication was not exercised"


def test_connections_once_each(two_hosts: dict[str, Any], postgres: PostgresServer) -> None:
    rows = _query(postgres, "select connection_id, connection_name from staging.stg_segment__connections")
    assert sorted(rows) == sorted((cid, name) for name, cid in two_hosts["connections"].items())


@pytest.mark.parametrize("mart", sorted(MARTS))
def test_marts_equal_a_one_host_duckdb_build(mart: str, two_hosts: dict[str, Any], postgres: PostgresServer) -> None:
    con = _pg(postgres)
    duck = duckdb.connect(str(two_hosts["duckdb"]), read_only=True)
    try:
        pg_columns, pg_rows = _pg_rows(con, f"select * from analytics.{mart}")
        duck_columns, duck_rows = _duck_rows(duck, f"select * from analytics.{mart}")
    finally:
        con.close()
        duck.close()
    assert pg_columns == duck_columns
    # a fingerprint hashes each warehouse's own JSON text, and a load id is each loader's own clock
    kept = [i for i, column in enumerate(duck_columns) if column not in ("source_fingerprint", "_dlt_load_id")]
    columns = [duck_columns[i] for i in kept]
    expected = _normalized(columns, [tuple(row[i] for i in kept) for row in duck_rows], MARTS[mart])
    actual = _normalized(columns, [tuple(row[i] for i in kept) for row in pg_rows], MARTS[mart])
    assert len(actual) == len(expected)
    differing = [(a, e) for a, e in zip(actual, expected, strict=True) if a != e]
    assert not differing, f"{len(differing)} rows differ, first: {differing[0]}"


def _wait_for_lock_waits(server: PostgresServer, sessions: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        waiting = _query(server, "select count(*) from pg_stat_activity where wait_event_type = 'Lock'")[0][0]
        if waiting >= sessions:
            return
        time.sleep(0.1)
    raise AssertionError(f"fewer than {sessions} loaders reached their CREATE TABLE within {timeout}s")


def test_two_first_loads_creating_the_same_tables_both_land(tmp_path: Path, postgres: PostgresServer) -> None:
    """The first-load race made certain: a table appears between each loader's look and its CREATE TABLE.

    An open transaction here creates raw_events (one column) and holds it until both loaders wait on it; its
    commit makes both loaders' CREATE TABLE fail, as a faster loader's would. Each must try again, find the
    table, add the columns it lacks and land every record.
    """
    raw_schema = "raw_first_load_race"
    hosts, _, _ = _two_hosts(tmp_path, postgres, raw_schema)
    for n, host in enumerate(hosts):
        events = tmp_path / f"{host.name}.ndjson"
        write_ndjson(events, 50, seed=n)
        ingested = subprocess.run(
            [CLI, "ingest", str(events), "--connection", "web"], env=host.env, capture_output=True, check=False
        )
        assert ingested.returncode == 0, ingested.stderr
    blocker = _pg(postgres)
    try:
        with blocker.cursor() as cursor:
            cursor.execute(f"create schema {raw_schema}")
            blocker.autocommit = False
            cursor.execute(f"create table {raw_schema}.raw_events (connection_id text)")
            running = [host.load() for host in hosts]
            _wait_for_lock_waits(postgres, sessions=len(hosts))
        blocker.commit()
    finally:
        blocker.close()
    for host, process in zip(hosts, running, strict=True):
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, f"{host.name} load failed:\n{out}\n{err}"
    assert _query(postgres, f"select count(*) from {raw_schema}.raw_events")[0][0] == 100
    snapshots = _query(postgres, f"select _dlt_load_id, count(*) from {raw_schema}.connections group by 1")
    assert [count for _, count in snapshots] == [2, 2]  # web and app, once per load


@pytest.mark.long
def test_two_hosts_many_rounds(tmp_path: Path) -> None:
    """The two-host run with more rounds of simultaneous loads and more traffic, on a server of its own."""
    with running_postgres() as server:
        result = _run_two_hosts(tmp_path, server, rounds=8, events_per_round=500)
        rows = _query(
            server,
            "select connections.connection_id, events.message_id from analytics.fct_events as events"
            " inner join staging.stg_segment__connections as connections using (connection_name)",
        )
    assert len(rows) == len(set(rows)) and set(rows) == result["acknowledged"]

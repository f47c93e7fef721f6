"""The same project on a real PostgreSQL server: the loader lands the raw tables, `dbt build --target postgres`
runs seeds, models, unit tests and data tests, and the marts equal DuckDB's for the same spooled events.

One spool feeds both targets (raw ``received_at`` is our clock at ingest, so the events are spooled once and
the data folder copied): what differs between the marts is then the SQL, nothing else. The server runs in a
time zone far from UTC so that any timestamp read in the session's zone shows up as a difference. Postgres
builds twice, the second time incrementally on later traffic; DuckDB builds once: equal marts show that the
incremental models work on Postgres too.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import duckdb
import psycopg2
import pytest

from pipelines.connections import Registry
from pipelines.ingest import ingest
from pipelines.loader import load
from pipelines.sample_data import write_ndjson
from pipelines.settings import Paths
from pipelines.spool import SpoolWriter
from pipelines.transform import run_dbt
from tests.pg_server import PostgresServer, running_postgres
from tests.test_loader import BAD_LINES, TRICKY_EVENTS

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

AS_OF = {"segment_accounts__account_activity_as_of": "2026-11-20T00:00:00Z"}
"""dim_account_rollups reads "now": both builds get the same one (the generated traffic is November 2026)."""

# Beyond test_loader's exact-payload events: values each warehouse parses in its own way.
EDGE_EVENTS = [
    # Impossible dates and times: null, so occurred_at falls through to the next source (Postgres would fail
    # the whole build on casting them).
    '{"type":"track","userId":"u-edge","messageId":"e-1","event":"Feb 30","timestamp":"2024-02-30T10:00:00Z"}',
    '{"type":"track","userId":"u-edge","messageId":"e-2","event":"Month 13","timestamp":"2024-13-01T10:00:00Z",'
    '"sentAt":"2024-05-01T10:00:10Z","originalTimestamp":"2024-05-01T10:00:00Z","receivedAt":"2024-05-01T10:00:11Z"}',
    '{"type":"track","userId":"u-edge","messageId":"e-3","event":"Leap second","timestamp":"2024-06-30T23:59:60Z"}',
    '{"type":"track","userId":"u-edge","messageId":"e-4","event":"Minute 60","timestamp":"2024-06-30T23:60:00"}',
    # Past microseconds: cut, not rounded; 24:00 is the next midnight.
    '{"type":"track","userId":"u-edge","messageId":"e-5","event":"Nanos","timestamp":"2024-05-01T10:00:00.9999999Z"}',
    '{"type":"track","userId":"u-edge","messageId":"e-6","event":"Midnight","timestamp":"2024-05-01T24:00:00+02:00"}',
    # jsonb cannot hold U+0000: Postgres's parsed copy has U+FFFD instead (the raw payload stays exact).
    '{"type":"identify","userId":"u-edge","messageId":"e-7","traits":{"email":"Edge@Example.ORG",'
    '"nick":"a\\u0000b","path":"C:\\\\u0000"}}',
    # Non-ASCII case mapping and ordering.
    '{"type":"identify","userId":"ÉMILE","messageId":"e-8","traits":{"email":"Émile@Exämple.COM","name":"Émile"}}',
    '{"type":"group","userId":"ÉMILE","messageId":"e-9","groupId":"Zürich AG","traits":{"name":"Zürich"}}',
]

MARTS = {
    "fct_events": {"properties", "traits", "context"},
    "dim_contacts": {"traits"},
    "dim_accounts": {"traits"},
    "dim_contact_identifiers": set(),
    "dim_account_rollups": set(),
    "fct_audience_history": {"value"},
    "dim_audience_memberships": set(),
    "fct_identity_merges": set(),
}
"""Each mart compared across targets, with its JSON columns."""


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    with running_postgres(timezone="Pacific/Chatham") as server:
        yield server


def _spool(data: Path, later_spool: Path, source_dir: Path) -> dict[str, str]:
    """Generated traffic on three connections (one per account mapping), plus edge cases; returns their lines.

    The web and app traffic goes to the data folder's spool; the crm traffic, the edge cases and the web traffic
    again to ``later_spool``, whose segments are added afterwards, so the Postgres build can be incremental.
    """
    registry = Registry(data)
    connections = {
        "web": registry.add("web")[0],
        "app": registry.add(
            "app", account_mapping="traits", account_id_trait="company.id", account_name_trait="company.name"
        )[0],
        "crm": registry.add("crm", account_mapping="email")[0],
    }
    generated = {}
    for seed, name in enumerate(connections, start=1):
        generated[name] = source_dir / f"{name}.ndjson"
        write_ndjson(generated[name], 1_200, seed=seed, engage=0.05, renames=0.5)
    edge = source_dir / "edge.ndjson"
    edge.write_text("\n".join(TRICKY_EVENTS + EDGE_EVENTS + list(BAD_LINES)) + "\n", encoding="utf-8")
    not_an_array = source_dir / "broken.json"
    not_an_array.write_text('[{"type": "page"', encoding="utf-8")  # quarantined with an empty payload
    first = {"web": [generated["web"]], "app": [generated["app"]]}
    # The web traffic again, later: re-delivered copies, which must lose to the copies already built on.
    later = {"web": [generated["web"], edge, not_an_array], "crm": [generated["crm"]]}
    for spool, files in ((Paths(data).spool, first), (later_spool, later)):
        with SpoolWriter(spool) as writer:
            for name, paths in files.items():
                ingest(paths, connections[name].connection_id, writer)
    return {json.loads(line)["messageId"]: line for line in TRICKY_EVENTS + EDGE_EVENTS}


def _add_segments(later_spool: Path, paths: Paths) -> None:
    """Hand the later traffic to an installation's spool, as a receiver appending to it would."""
    for segment in sorted(later_spool.glob("*.seg")):
        shutil.copy2(segment, paths.spool / segment.name)


def _target_env(target: str, server: PostgresServer) -> dict[str, str]:
    return {"SEGMENT_ACCOUNTS_TARGET": target, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", **server.env()}


def _load_and_build(paths: Paths, env: dict[str, str]) -> dict[str, Any]:
    """The loader, then `dbt build`; returns dbt's run results."""
    with mock.patch.dict(os.environ, env):
        load(paths)
        code = run_dbt(paths, ["build", "--vars", json.dumps(AS_OF)], quiet=True)
    results = json.loads((paths.data / "dbt" / "target" / "run_results.json").read_text())
    failed = [r["unique_id"] for r in results["results"] if r["status"] not in {"success", "pass"}]
    assert code == 0 and not failed, f"dbt build on {env['SEGMENT_ACCOUNTS_TARGET']} failed: {failed}"
    return results


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer) -> dict[str, Any]:
    """One spool, copied into a Postgres and a DuckDB installation and built.

    Postgres builds in two steps: the first traffic, then the later one (with re-delivered copies) in an
    incremental build. DuckDB builds everything at once, so comparing the marts also compares Postgres's
    incremental models with a full build.
    """
    work = tmp_path_factory.mktemp("targets")
    spooled = work / "spooled"
    later_spool = work / "later_spool"
    lines = _spool(spooled, later_spool, work)
    built: dict[str, Any] = {"lines": lines}
    for target in ("postgres", "duckdb"):
        paths = Paths(work / target)
        shutil.copytree(spooled, paths.data)
        env = _target_env(target, postgres)
        if target == "postgres":
            _load_and_build(paths, env)
        _add_segments(later_spool, paths)
        built[target] = (paths, _load_and_build(paths, env))
    return built


@pytest.fixture(scope="module")
def pg(built: dict[str, Any], postgres: PostgresServer) -> Iterator[Any]:
    con = psycopg2.connect(host=postgres.host, port=postgres.port, user=postgres.user, dbname=postgres.database)
    con.set_session(readonly=True, autocommit=True)
    yield con
    con.close()


@pytest.fixture(scope="module")
def duck(built: dict[str, Any]) -> Iterator[duckdb.DuckDBPyConnection]:
    paths, _ = built["duckdb"]
    con = duckdb.connect(str(paths.warehouse), read_only=True)
    yield con
    con.close()


def _pg_rows(pg: Any, sql: str) -> tuple[list[str], list[tuple]]:
    with pg.cursor() as cursor:
        cursor.execute(sql)
        return [d.name for d in cursor.description], cursor.fetchall()


def _duck_rows(duck: duckdb.DuckDBPyConnection, sql: str) -> tuple[list[str], list[tuple]]:
    cursor = duck.execute(sql)
    return [d[0] for d in cursor.description], cursor.fetchall()


def _json_value(value: Any) -> Any:
    """Parsed JSON as comparable across targets: keys sorted, -0.0 as 0.0 (jsonb's numeric has no negative
    zero), U+0000 as U+FFFD (jsonb cannot hold it: macro postgres__parse_json)."""
    if isinstance(value, dict):
        return tuple(sorted((_json_value(k), _json_value(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_json_value(v) for v in value)
    if isinstance(value, float):
        return value + 0.0
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    return value


def _normal(value: Any, is_json: bool) -> Any:
    """A value as comparable across targets: timestamps in UTC, JSON parsed (DuckDB returns its text)."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    if is_json and value is not None:
        return _json_value(json.loads(value) if isinstance(value, str) else value)
    return value


def _normalized(columns: list[str], rows: list[tuple], json_columns: set[str]) -> list[tuple]:
    flags = [c in json_columns for c in columns]
    return sorted(
        (tuple(_normal(v, f) for v, f in zip(row, flags, strict=True)) for row in rows),
        key=lambda row: tuple((v is None, str(v)) for v in row),
    )


def test_dbt_build_passes_on_postgres(built: dict[str, Any]) -> None:
    _, results = built["postgres"]
    kinds: dict[str, int] = {}
    for result in results["results"]:
        kind = result["unique_id"].split(".")[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    assert kinds.get("seed", 0) >= 3
    assert kinds.get("model", 0) >= 20
    assert kinds.get("unit_test", 0) >= 25
    assert kinds.get("test", 0) >= 80


def test_second_postgres_build_took_the_incremental_path(built: dict[str, Any]) -> None:
    """Without this, equal marts could come from a silent full rebuild: delete+insert is what dbt ran last."""
    paths, _ = built["postgres"]
    run_sql = paths.data / "dbt" / "target" / "run" / "segment_accounts" / "models"
    for model in (
        "staging/segment/stg_segment__events.sql",
        "intermediate/identity/int_identifier_calls_summarized.sql",
        "intermediate/identity/int_events_identified.sql",
        "marts/fct_events.sql",
        "marts/fct_audience_history.sql",
    ):
        assert "delete from" in (run_sql / model).read_text().lower(), model


def test_raw_layer_is_exact_on_postgres(built: dict[str, Any], pg: Any, duck: duckdb.DuckDBPyConnection) -> None:
    """csv COPY keeps every payload byte for byte: non-ASCII, quotes, newlines, big numbers, empty text."""
    events_sql = "select connection_id, message_id, received_at, payload from segment_raw.raw_events"
    rejected_sql = "select connection_id, received_at, reason, payload from segment_raw.rejected_events"
    for sql in (events_sql, rejected_sql):
        assert _normalized(*_pg_rows(pg, sql), set()) == _normalized(*_duck_rows(duck, sql), set())
    _, events = _pg_rows(pg, events_sql)
    payloads = {message_id: payload for _, message_id, _, payload in events}
    for message_id, line in built["lines"].items():
        assert payloads[message_id] == line, message_id
    _, rejected = _pg_rows(pg, rejected_sql)
    assert {payload for *_, payload in rejected} >= {*BAD_LINES, ""}


@pytest.mark.parametrize("mart", sorted(MARTS))
def test_marts_equal_across_targets(mart: str, pg: Any, duck: duckdb.DuckDBPyConnection) -> None:
    pg_columns, pg_rows = _pg_rows(pg, f"select * from analytics.{mart}")
    duck_columns, duck_rows = _duck_rows(duck, f"select * from analytics.{mart}")
    assert pg_columns == duck_columns
    assert len(pg_rows) > 5
    # A fingerprint hashes the warehouse's own JSON text ([1,2] on DuckDB, [1, 2] in jsonb), and a load id is
    # the loader's clock: each is compared within a target (the incremental tests), never across targets.
    kept = [i for i, column in enumerate(duck_columns) if column not in ("source_fingerprint", "_dlt_load_id")]
    duck_columns, pg_columns = [duck_columns[i] for i in kept], [pg_columns[i] for i in kept]
    duck_rows = [tuple(row[i] for i in kept) for row in duck_rows]
    pg_rows = [tuple(row[i] for i in kept) for row in pg_rows]
    expected = _normalized(duck_columns, duck_rows, MARTS[mart])
    actual = _normalized(pg_columns, pg_rows, MARTS[mart])
    assert len(actual) == len(expected)
    differing = [(a, e) for a, e in zip(actual, expected, strict=True) if a != e]
    assert not differing, f"{len(differing)} rows differ, first: {differing[0]}"


def test_edge_values_on_postgres(pg: Any) -> None:
    _, rows = _pg_rows(
        pg,
        "select message_id, occurred_at, received_at from analytics.fct_events where message_id like 'e-%'",
    )
    occurred = {message_id: (occurred_at, received_at) for message_id, occurred_at, received_at in rows}
    for message_id in ("e-1", "e-3", "e-4"):  # impossible: our received_at
        assert occurred[message_id][0] == occurred[message_id][1], message_id
    assert occurred["e-2"][0] == datetime(2024, 5, 1, 10, 0, 1)  # receivedAt - (sentAt - originalTimestamp)
    assert occurred["e-5"][0] == datetime(2024, 5, 1, 10, 0, 0, 999999)
    assert occurred["e-6"][0] == datetime(2024, 5, 1, 22, 0)
    _, contacts = _pg_rows(
        pg, "select user_id, email, account_id, traits from analytics.dim_contacts where user_id = 'ÉMILE'"
    )
    assert contacts == [("ÉMILE", "émile@exämple.com", "Zürich AG", {"email": "Émile@Exämple.COM", "name": "Émile"})]

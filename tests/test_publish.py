"""analytics.duckdb is updated from a copy of itself (only what differs is written again): after any run it must
still equal the build's marts, row for row."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from pipelines.connections import Registry
from pipelines.jobs import PUBLISHED_LINE
from pipelines.publish import analytics_file
from pipelines.settings import Paths
from tests.conftest import RunCli

HISTORY = [
    '{"type":"identify","userId":"ann","anonymousId":"a-1","messageId":"h-1","timestamp":"2026-11-01T10:00:00Z",'
    '"traits":{"email":"ann@acme.com"}}',
    '{"type":"track","anonymousId":"a-1","messageId":"h-2","event":"Viewed","timestamp":"2026-11-01T10:01:00Z"}',
    '{"type":"identify","userId":"bob","messageId":"h-3","timestamp":"2026-11-01T11:00:00Z",'
    '"traits":{"email":"bob@globex.com"}}',
    '{"type":"track","userId":"bob","messageId":"h-4","event":"Signed Up","timestamp":"2026-11-01T11:01:00Z"}',
    '{"type":"group","userId":"bob","groupId":"globex","messageId":"h-5","timestamp":"2026-11-01T11:02:00Z"}',
]
# bob's events move to ann's contact, and his account with them
LATE_ALIAS = '{"type":"alias","previousId":"bob","userId":"ann","messageId":"l-1","timestamp":"2026-11-02T09:00:00Z"}'
NEW_EVENT = '{"type":"track","userId":"ann","messageId":"n-1","event":"Invited","timestamp":"2026-11-03T09:00:00Z"}'


def _ingest(run_cli: RunCli, tmp_path: Path, name: str, lines: list[str]) -> None:
    source = tmp_path / f"{name}.ndjson"
    source.write_text("".join(line + "\n" for line in lines))
    run_cli("ingest", str(source), "--connection", "web")


def _differences(paths: Paths) -> dict[str, tuple[int, int]]:
    """Per mart: rows only in analytics.duckdb, rows only in the build (both 0 when equal)."""
    with duckdb.connect(str(analytics_file(paths)), read_only=True) as con:
        con.execute(f"attach '{paths.warehouse}' as build (read_only)")
        tables = [
            row[0]
            for row in con.execute(
                "select table_name from duckdb_tables() where database_name = current_database()"
            ).fetchall()
        ]
        found = {}
        for table in tables:
            ours = f"main.{table}"
            built = f"build.analytics.{table}"
            only_ours = con.execute(f"select count(*) from (from {ours} except all from {built})").fetchone()[0]
            only_built = con.execute(f"select count(*) from (from {built} except all from {ours})").fetchone()[0]
            found[table] = (only_ours, only_built)
    return found


def _assert_equal(paths: Paths) -> None:
    differences = _differences(paths)
    assert len(differences) == 8 and all(pair == (0, 0) for pair in differences.values()), differences


BY_REWRITTEN_ROWS = "fct_events by the rows the build rewrote"


def _last_run_log(paths: Paths) -> str:
    return max(paths.data.glob("logs/run-*.log"), key=lambda path: path.stat().st_mtime_ns).read_text()


@pytest.fixture
def history(paths: Paths, run_cli: RunCli, tmp_path: Path) -> None:
    """A connection, its history ingested and built, and analytics.duckdb published from scratch."""
    Registry(paths.data).add("web")
    _ingest(run_cli, tmp_path, "history", HISTORY)
    run_cli("run")


@pytest.mark.usefixtures("history")
def test_the_published_copy_equals_the_build_after_every_kind_of_run(
    paths: Paths, run_cli: RunCli, tmp_path: Path
) -> None:
    _assert_equal(paths)
    assert PUBLISHED_LINE.search(_last_run_log(paths)), "the benches read publishing's time from this line"

    _ingest(run_cli, tmp_path, "alias", [LATE_ALIAS])
    run_cli("run")
    _assert_equal(paths)
    with duckdb.connect(str(analytics_file(paths)), read_only=True) as con:
        contacts = con.execute("select count(distinct contact_id) from fct_events").fetchone()[0]
    assert contacts == 1, "bob's events moved to ann's contact in the published copy too"
    # the moved events came as the rows fct_events' incremental build rewrote, not from comparing the copies
    assert BY_REWRITTEN_ROWS in _last_run_log(paths)

    # a copy written since it was published (by hand) is compared row by row, not trusted: a row that differs
    # from the build in one column only is found and written again
    with duckdb.connect(str(analytics_file(paths))) as con:
        con.execute("update fct_events set event_name = 'tampered' where message_id = 'h-4'")
    _ingest(run_cli, tmp_path, "new", [NEW_EVENT])
    run_cli("run")
    _assert_equal(paths)
    assert BY_REWRITTEN_ROWS not in _last_run_log(paths)

    run_cli("run")  # nothing new: only the clock's models are written
    _assert_equal(paths)


@pytest.mark.usefixtures("history")
def test_a_build_that_was_not_published_makes_the_next_publish_compare(
    paths: Paths, run_cli: RunCli, tmp_path: Path
) -> None:
    """An orchestrator's own `dbt build` rewrites fct_events without publishing. The next run's build rewrites
    only its own new events, so its rows alone would leave the copy without the orchestrator's: the copy is
    compared instead."""
    from pipelines.transform import run_dbt

    _ingest(run_cli, tmp_path, "alias", [LATE_ALIAS])
    run_cli("load")
    assert run_dbt(paths, ["build", "--selector", "scheduled"], quiet=True) == 0
    _ingest(run_cli, tmp_path, "new", [NEW_EVENT])
    run_cli("run")
    assert BY_REWRITTEN_ROWS not in _last_run_log(paths)
    _assert_equal(paths)


@pytest.mark.usefixtures("history")
def test_a_copy_with_more_free_space_than_used_is_replaced_by_a_fresh_file(
    paths: Paths, run_cli: RunCli, tmp_path: Path
) -> None:
    target = analytics_file(paths)
    with duckdb.connect(str(target)) as con:  # free space inside the file, as deleted rows leave it
        con.execute(
            "create table filler as select md5(range::varchar) || md5((range * 7)::varchar) as pad from range(300000)"
        )
        con.execute("checkpoint")
        con.execute("create or replace table fct_events as from fct_events")  # blocks after the filler's
        con.execute("checkpoint")
        con.execute("drop table filler")
        con.execute("checkpoint")
    assert _blocks(target)[1] > _blocks(target)[0], "the file now has more free blocks than used ones"
    bloated = target.stat().st_size
    _ingest(run_cli, tmp_path, "new", [NEW_EVENT])
    run_cli("run")
    used, free = _blocks(target)
    assert free <= used and target.stat().st_size < bloated
    _assert_equal(paths)


def _blocks(database: Path) -> tuple[int, int]:
    with duckdb.connect(str(database), read_only=True) as con:
        used, free = con.execute(
            "select used_blocks, free_blocks from pragma_database_size() where database_name = current_database()"
        ).fetchone()
    return used, free


def test_publishing_by_difference_adds_replaces_and_removes_rows() -> None:
    """The difference covers each way a keyed mart's rows change between builds: a new key, a changed row, a key
    the build no longer has; an unchanged row is left where it is."""
    from pipelines.publish import _apply_difference

    with duckdb.connect() as con:
        con.execute("create schema build_side")
        con.execute("create table build_side.marts (event_id text, contact_id text, properties json)")
        con.execute(
            "insert into build_side.marts values ('kept', 'k1', '{\"a\": 1}'), ('changed', 'k2', '{\"b\": 2}'),"
            " ('new', 'k3', null)"
        )
        con.execute("create table published (event_id text, contact_id text, properties json)")
        con.execute(
            "insert into published values ('kept', 'k1', '{\"a\": 1}'), ('changed', 'k1', '{\"b\": 2}'),"
            " ('gone', 'k9', '[]')"
        )
        _apply_difference(con, "main.published", "build_side.marts", ["event_id"])
        rows = con.execute("select event_id, contact_id, properties::text from published order by event_id").fetchall()
        assert rows == [("changed", "k2", '{"b": 2}'), ("kept", "k1", '{"a": 1}'), ("new", "k3", None)]


def test_a_key_repeated_in_the_build_is_published_whole() -> None:
    """A key the build repeats (a dimension's unique test does not run on a schedule) cannot be matched row for
    row: the copy would keep one of the rows. The mart is then written whole, equal to the build."""
    from pipelines.publish import _apply_difference

    with duckdb.connect() as con:
        con.execute("create schema build_side")
        con.execute("create table build_side.dim (contact_id text, email text)")
        con.execute("insert into build_side.dim values ('c1', 'a@x.com'), ('c1', 'b@x.com'), ('c2', 'c@x.com')")
        con.execute("create table published (contact_id text, email text)")
        con.execute("insert into published values ('c1', 'a@x.com'), ('c2', 'c@x.com')")
        _apply_difference(con, "main.published", "build_side.dim", ["contact_id"])
        rows = con.execute("select * from published order by all").fetchall()
        assert rows == [("c1", "a@x.com"), ("c1", "b@x.com"), ("c2", "c@x.com")]


def test_a_mart_is_keyed_by_the_one_column_its_unique_and_not_null_tests_name() -> None:
    from pipelines.publish import _tested_keys

    def test(name: str, model: str, column: str | None, **kwargs: object) -> dict:
        metadata = {"name": name, "kwargs": kwargs}
        return {"resource_type": "test", "test_metadata": metadata, "attached_node": model, "column_name": column}

    manifest = {
        "nodes": {
            "t1": test("unique", "model.p.dim_contacts", "contact_id"),
            "t2": test("not_null", "model.p.dim_contacts", "contact_id"),
            "t3": test("not_null", "model.p.dim_contacts", "email"),
            # unique without not_null: a null key cannot be matched
            "t4": test("unique", "model.p.dim_emails", "email"),
            # two candidate keys: which one is the row's identity is not for publishing to guess
            "t5": test("unique", "model.p.dim_pairs", "left_id"),
            "t6": test("not_null", "model.p.dim_pairs", "left_id"),
            "t7": test("unique", "model.p.dim_pairs", "right_id"),
            "t8": test("not_null", "model.p.dim_pairs", "right_id"),
            # a key of two columns
            "t9": test(
                "unique_combination_of_columns", "model.p.dim_identifiers", None, combination_of_columns=["a", "b"]
            ),
        }
    }
    assert _tested_keys(manifest) == {"model.p.dim_contacts": ("contact_id",), "model.p.dim_identifiers": ("a", "b")}


def test_publishing_by_difference_matches_rows_by_every_column_of_a_composite_key() -> None:
    from pipelines.publish import _apply_difference

    with duckdb.connect() as con:
        con.execute("create schema build_side")
        con.execute("create table build_side.ids (identifier text, identifier_type text, contact_id text)")
        con.execute("insert into build_side.ids values ('x', 'user_id', 'c2'), ('x', 'anonymous_id', 'c1')")
        con.execute("create table published (identifier text, identifier_type text, contact_id text)")
        con.execute(
            "insert into published values ('x', 'user_id', 'c1'), ('x', 'anonymous_id', 'c1'), ('y', 'user_id', 'c3')"
        )
        _apply_difference(con, "main.published", "build_side.ids", ['"identifier"', '"identifier_type"'])
        rows = con.execute("select * from published order by all").fetchall()
        assert rows == [("x", "anonymous_id", "c1"), ("x", "user_id", "c2")]
        # the unchanged row was left where it was, not deleted and inserted again
        kept = con.execute("select rowid from published where identifier_type = 'anonymous_id'").fetchall()
        assert kept == [(1,)]


def test_rewritten_rows_that_do_not_add_up_to_the_build_make_publishing_compare() -> None:
    """The replay trusts that the mart's primary key is the key its build's delete+insert used. Should the result
    not have the build's rows, the copies are compared, and the copy ends equal to the build."""
    from pipelines.publish import _apply_rewritten_rows

    with duckdb.connect() as con:
        con.execute("create schema build_side")
        con.execute("create table build_side.events (event_id text, contact_id text)")
        con.execute("insert into build_side.events values ('e1', 'c2'), ('e2', 'c1')")
        # a batch that does not match the build: e1 twice
        con.execute("create table build_side.rewritten as from build_side.events where event_id = 'e1'")
        con.execute("insert into build_side.rewritten from build_side.events where event_id = 'e1'")
        con.execute("create table published (event_id text, contact_id text)")
        con.execute("insert into published values ('e1', 'c1'), ('e2', 'c1')")
        _apply_rewritten_rows(con, "main.published", "build_side.rewritten", "build_side.events", ['"event_id"'])
        assert con.execute("select * from published order by all").fetchall() == [("e1", "c2"), ("e2", "c1")]

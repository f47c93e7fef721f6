"""After a successful build on the embedded DuckDB, give analysts their own copy of the marts: analytics.duckdb.

DuckDB admits one writer process per file, and a reader blocks the writer: an analyst's notebook on the build's
database stops the schedule, and a running build stops the notebook. So the build's database stays private to the
jobs, and each successful build writes every mart into a new file beside it, then renames that file over
``analytics.duckdb``. A rename is atomic: a session that holds the old file open keeps reading that consistent
snapshot (its inode lives on until it closes), and the next connection opens the new one. Nothing an analyst does
with the file can block a run, and a run never takes a lock an analyst waits on.

Which tables: every model under ``models/marts`` (dbt's manifest says which, and where the build put them), so a
new mart is published without a change here. In analytics.duckdb they sit in the default schema, so
``select * from dim_accounts`` needs no prefix. Server warehouses (Postgres, Snowflake, BigQuery) let readers and
writers share a database: there analysts query the marts' schema directly and nothing is published.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.atomic_file import write_json_atomically
from pipelines.settings import Paths
from pipelines.transform import dbt_artifact

if TYPE_CHECKING:
    from duckdb import DuckDBPyConnection

MARTS_FOLDER = "marts"
"""The models folder whose models analysts query (dbt's "how we structure" layout: marts are the public layer)."""

BUILD_STATE_SOURCE = "build_state"
"""dbt source of the models' own bookkeeping; a mart's ``<name>__rewritten`` and ``<name>__build`` tables there
hold the rows its last build rewrote and which builds those were (macros/published_changes.sql)."""

_TMP_SUFFIX = ".tmp"
_REPLACED_KEY = "__published_key"  # publishing's own columns beside a mart's: __published_key_0, _1, ...


class PublishError(RuntimeError):
    """The marts could not be published; analysts keep the previous analytics.duckdb."""


@dataclass(frozen=True)
class Mart:
    name: str  # the table's name in analytics.duckdb
    schema: str  # where the build put it, from the manifest
    identifier: str
    description: str
    columns: dict[str, str]  # column -> description
    key: tuple[str, ...] = ()  # the columns of its primary-key test (``_tested_keys``): published by difference
    rewritten: tuple[str, str] | None = None  # (schema, table) of the rows its last build rewrote, if it keeps them
    last_build: tuple[str, str] | None = None  # (schema, table) of its last build's and the previous one's ids


@dataclass(frozen=True)
class Published:
    tables: int  # written by this publish
    rows: int  # in every published mart
    seconds: float
    path: Path
    total: int  # marts in the file
    from_rewritten_rows: tuple[str, ...] = ()  # marts brought up to date by the rows their build rewrote


def analytics_file(paths: Paths) -> Path:
    return paths.data / "analytics.duckdb"


def is_published_mart(node: dict) -> bool:
    """A manifest node analytics.duckdb holds: an enabled, non-ephemeral model under models/marts."""
    fqn = node.get("fqn") or []
    return (
        node.get("resource_type") == "model"
        and len(fqn) >= 3
        and fqn[1] == MARTS_FOLDER
        and node.get("config", {}).get("materialized") != "ephemeral"
    )


def marts_from_manifest(manifest_path: Path) -> list[Mart]:
    """Every enabled, non-ephemeral model under models/marts, with the relation dbt built for it."""
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as error:
        raise PublishError(f"cannot read dbt's manifest {manifest_path}: {error}") from None
    build_state = {
        source["name"]: (source["schema"], source["identifier"])
        for source in manifest.get("sources", {}).values()
        if source.get("source_name") == BUILD_STATE_SOURCE
    }
    tested_keys = _tested_keys(manifest)
    marts = []
    for unique_id, node in manifest.get("nodes", {}).items():
        if not is_published_mart(node):
            continue
        marts.append(
            Mart(
                name=node["alias"] or node["name"],
                schema=node["schema"],
                identifier=node["alias"] or node["name"],
                description=node.get("description") or "",
                columns={name: column.get("description") or "" for name, column in node.get("columns", {}).items()},
                key=tested_keys.get(unique_id, ()),
                rewritten=build_state.get(f"{node['name']}__rewritten"),
                last_build=build_state.get(f"{node['name']}__build"),
            )
        )
    names = [mart.name for mart in marts]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise PublishError(f"two marts share the name {', '.join(duplicates)}: analytics.duckdb needs one of each")
    return sorted(marts, key=lambda mart: mart.name)


def _tested_keys(manifest: dict) -> dict[str, tuple[str, ...]]:
    """Model -> the columns of its primary-key test, which every model of the project has: the one column that
    both a ``unique`` and a ``not_null`` test name, else the columns of its one ``unique_combination_of_columns``
    test. A model with neither, or with several candidates, gets no key."""
    single: dict[str, dict[str, set[str]]] = {}
    combined: dict[str, list[tuple[str, ...]]] = {}
    for node in manifest.get("nodes", {}).values():
        metadata = node.get("test_metadata") or {}
        name, model, column = metadata.get("name"), node.get("attached_node"), node.get("column_name")
        if node.get("resource_type") != "test" or not model:
            continue
        if name in ("unique", "not_null") and column:
            single.setdefault(model, {}).setdefault(column, set()).add(name)
        elif name == "unique_combination_of_columns":
            columns = (metadata.get("kwargs") or {}).get("combination_of_columns")
            if isinstance(columns, list) and columns and all(isinstance(one, str) for one in columns):
                combined.setdefault(model, []).append(tuple(columns))
    keys = {model: found[0] for model, found in combined.items() if len(found) == 1}
    for model, columns in single.items():
        keyed = [column for column, names in columns.items() if names == {"unique", "not_null"}]
        if len(keyed) == 1:
            keys[model] = (keyed[0],)
    return keys


def _quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def publish(paths: Paths, only: Collection[str] | None = None) -> Published:
    """Write the marts into a new file and rename it over analytics.duckdb. Call under the run lock, after the
    build (the build's database must be free to open read-only).

    Writing a million-row mart costs more than the rest of publishing together, and a scheduled run changes a
    small part of it. So the new file starts as a kernel copy of the published one (a fraction of a second) when
    that has every mart, and each mart is brought up to date in it: not at all when this build did not rebuild it
    (``only``: the models it built, e.g. the clock's alone); by difference for a mart keyed by its primary-key test
    (rows whose hash differs, or that exist on one side only, are deleted and inserted again); otherwise written
    whole. A build rewrites a dimension whole, but a run changes few of its rows: comparing 125k contacts cost
    less than half of writing them again (and the file's checkpoint writes only what changed). A copy with more
    free space than used (rows deleted over many runs) is dropped for a fresh file, which bounds its size.

    Comparing reads every row of both copies, and so grows with history. A mart that keeps the rows its last
    build rewrote (``fct_events``: macros/published_changes.sql) is instead brought up to date with those rows
    alone, when that build followed the very build the copy was made from: which build each mart's copy was made
    from is written beside the file (``published_builds_file``), after it is in place.
    """
    import duckdb

    started = time.perf_counter()
    marts = marts_from_manifest(dbt_artifact(paths, "manifest.json"))
    if not marts:
        raise PublishError("dbt's manifest lists no model under models/marts")
    target = analytics_file(paths)
    for stale in paths.data.glob(f"{target.name}.*{_TMP_SUFFIX}*"):  # left by a run that died while publishing
        stale.unlink(missing_ok=True)
    tmp = target.with_name(f"{target.name}.{os.getpid()}{_TMP_SUFFIX}")
    copied_from = _read_published_builds(paths)
    published_builds_file(paths).unlink(missing_ok=True)  # until the new file is in place, it describes no file
    builds: dict[str, str] = {}
    from_rewritten: list[str] = []
    written = 0
    try:
        reused = target.exists() and _copy_if_reusable(target, tmp, marts)
        con = duckdb.connect(str(tmp))
        try:
            con.execute(f"attach {_quote_literal(str(paths.warehouse))} as build (read_only)")
            for mart in marts:
                name = _quote_identifier(mart.name)
                table = f"main.{name}"
                source = f"build.{_quote_identifier(mart.schema)}.{_quote_identifier(mart.identifier)}"
                if not _exists(con, "build", mart.schema, mart.identifier):
                    raise PublishError(f"mart {mart.schema}.{mart.identifier} is not in the warehouse")
                built_by, built_after = _last_build(con, mart)
                if reused and only is not None and mart.name not in only:
                    if mart.name in copied_from:  # not rebuilt: the copy still holds the build it held
                        builds[mart.name] = copied_from[mart.name]
                    continue
                written += 1
                if reused and mart.key and _same_columns(con, mart):
                    key = [_quote_identifier(column) for column in mart.key]
                    rewritten = _rewritten_rows(con, mart)
                    if rewritten and built_after is not None and built_after == copied_from.get(mart.name):
                        _apply_rewritten_rows(con, table, rewritten, source, key)
                        from_rewritten.append(mart.name)
                    else:
                        _apply_difference(con, table, source, key)
                else:
                    con.execute(f"create or replace table {table} as select * from {source}")
                if built_by is not None:
                    builds[mart.name] = built_by
                _comment(con, name, mart)
            con.execute("detach build")
            rows = sum(_count(con, f"main.{_quote_identifier(mart.name)}") for mart in marts)
            con.execute("checkpoint")
        finally:
            con.close()
        _fsync(tmp)
        os.replace(tmp, target)
        _fsync(paths.data, directory=True)
        _write_published_builds(paths, builds)
    finally:
        tmp.unlink(missing_ok=True)
        tmp.with_name(tmp.name + ".wal").unlink(missing_ok=True)
    return Published(
        tables=written,
        rows=rows,
        seconds=time.perf_counter() - started,
        path=target,
        total=len(marts),
        from_rewritten_rows=tuple(from_rewritten),
    )


def published_builds_file(paths: Paths) -> Path:
    """Which build of each mart analytics.duckdb's copy was made from (dbt invocation ids)."""
    return paths.data / "analytics.builds.json"


def _read_published_builds(paths: Paths) -> dict[str, str]:
    """The record, if analytics.duckdb is still the file it describes: one opened for writing since (by hand: the
    file is for reading) may hold anything, so then no build is vouched for."""
    try:
        record = json.loads(published_builds_file(paths).read_text())
        builds, file = record["builds"], record["file"]
        if file != _file_identity(analytics_file(paths)) or not isinstance(builds, dict):
            return {}
    except (OSError, ValueError, TypeError, KeyError):
        return {}
    return {name: build for name, build in builds.items() if isinstance(name, str) and isinstance(build, str)}


def _write_published_builds(paths: Paths, builds: dict[str, str]) -> None:
    record = {"file": _file_identity(analytics_file(paths)), "builds": builds}
    write_json_atomically(published_builds_file(paths), record)


def _file_identity(path: Path) -> list[int]:
    """What changes when a file is written: its size and modification time."""
    found = path.stat()
    return [found.st_size, found.st_mtime_ns]


def _last_build(con: DuckDBPyConnection, mart: Mart) -> tuple[str | None, str | None]:
    """(the build that wrote the mart, the build before it) as the mart's build state says; (None, None) when it
    keeps none."""
    if mart.last_build is None or not _exists(con, "build", *mart.last_build):
        return None, None
    schema, table = (_quote_identifier(part) for part in mart.last_build)
    row = con.execute(f"select built_by, built_after from build.{schema}.{table}").fetchone()
    return (row[0], row[1]) if row else (None, None)


def _rewritten_rows(con: DuckDBPyConnection, mart: Mart) -> str | None:
    """The relation of the rows the mart's last build rewrote, with the mart's columns in order; None when there is
    none (a full build keeps none)."""
    if mart.rewritten is None or not _exists(con, "build", *mart.rewritten):
        return None
    if _columns(con, "build", *mart.rewritten) != _columns(con, "build", mart.schema, mart.identifier):
        return None
    return "build." + ".".join(_quote_identifier(part) for part in mart.rewritten)


def _apply_rewritten_rows(con: DuckDBPyConnection, table: str, rewritten: str, source: str, key: Sequence[str]) -> None:
    """Replay the build's delete+insert on the copy (same columns in the same order): its rows with a rewritten key
    go, the rewritten rows come. The mart's primary key is the key its delete+insert used (``fct_events``:
    event_id); should the result not have the build's row count, the copies are compared instead."""
    columns = ", ".join(key)
    con.execute(f"delete from {table} where ({columns}) in (select {columns} from {rewritten})")
    con.execute(f"insert into {table} select * from {rewritten}")
    if _count(con, table) != _count(con, source):
        _apply_difference(con, table, source, key)


def _copy_if_reusable(published: Path, tmp: Path, marts: list[Mart]) -> bool:
    """Copy the published file to ``tmp`` when it has every mart and no more free space than used."""
    import duckdb

    shutil.copyfile(published, tmp)
    try:
        con = duckdb.connect(str(tmp))
    except duckdb.Error:  # damaged, or not a DuckDB file: start afresh
        tmp.unlink(missing_ok=True)
        return False
    try:
        tables = {row[0] for row in con.execute("select table_name from duckdb_tables()").fetchall()}
        size = con.execute(
            "select used_blocks, free_blocks from pragma_database_size() where database_name = current_database()"
        ).fetchone()
    finally:
        con.close()
    if tables != {mart.name for mart in marts} or size is None or size[1] > size[0]:
        tmp.unlink(missing_ok=True)
        tmp.with_name(tmp.name + ".wal").unlink(missing_ok=True)
        return False
    return True


def _exists(con: DuckDBPyConnection, database: str, schema: str, table: str) -> bool:
    found = con.execute(
        "select count(*) from duckdb_tables() where database_name = ? and schema_name = ? and table_name = ?",
        [database, schema, table],
    ).fetchone()
    return bool(found and found[0])


def _same_columns(con: DuckDBPyConnection, mart: Mart) -> bool:
    """The published table has the build's columns, names and types in order (else it is written whole)."""
    ours = _columns(con, con.execute("select current_database()").fetchone()[0], "main", mart.name)
    return bool(ours) and ours == _columns(con, "build", mart.schema, mart.identifier)


def _columns(con: DuckDBPyConnection, database: str, schema: str, table: str) -> list[tuple[str, str]]:
    """A table's (column, type) in order."""
    query = (
        "select column_name, data_type from duckdb_columns() where database_name = ? and schema_name = ?"
        " and table_name = ? order by column_index"
    )
    return con.execute(query, [database, schema, table]).fetchall()


def _apply_difference(con: DuckDBPyConnection, table: str, source: str, key: Sequence[str]) -> None:
    """Make ``table`` equal ``source`` by rewriting only the rows that differ: keyed by the columns ``key``
    (quoted), compared by a hash of the whole row. A null key cannot be matched, so then the table is written
    whole; so it is when the result has not as many rows as the build (a key repeated in the build, which its test
    would have stopped, were it in the run).

    The build's table is read once: its rows that differ are kept as they are read, not fetched again by key
    afterwards (a probe by key reads every column of every row, the events' JSON included: at 5M events that
    second read cost more than the comparison itself)."""
    any_null = " or ".join(f"{column} is null" for column in key)
    nulls = con.execute(f"select count(*) from {source} where {any_null}").fetchone()
    if nulls and nulls[0]:
        con.execute(f"create or replace table {table} as select * from {source}")
        return
    replaced = [f"{_REPLACED_KEY}_{n}" for n in range(len(key))]
    columns = ", ".join(key)
    matched = " and ".join(f"built_row.{column} = published.{column}" for column in key)
    # one row per key whose row differs: the build's row (null when the build no longer has that key) and the
    # published key it replaces (null when the key is new)
    con.execute(
        f"""create or replace temp table publish_changed_rows as
        select {", ".join(f"published.{column} as {name}" for column, name in zip(key, replaced, strict=True))},
            built_row.*
        from {source} as built_row
        full join (select {columns}, hash(published_row) as row_hash from {table} as published_row) as published
            on {matched}
        where published.row_hash is distinct from hash(built_row)"""
    )
    con.execute(f"delete from {table} where ({columns}) in (select {', '.join(replaced)} from publish_changed_rows)")
    con.execute(
        f"insert into {table} select * exclude ({', '.join(replaced)}) from publish_changed_rows"
        f" where {key[0]} is not null"
    )
    con.execute("drop table publish_changed_rows")
    if _count(con, table) != _count(con, source):
        con.execute(f"create or replace table {table} as select * from {source}")


def _count(con: DuckDBPyConnection, table: str) -> int:
    row = con.execute(f"select count(*) from {table}").fetchone()
    return row[0] if row else 0


def _comment(con: DuckDBPyConnection, table: str, mart: Mart) -> None:
    """dbt's descriptions as DuckDB comments, so an analyst's `duckdb_tables()` / `duckdb_columns()` explain them."""
    if mart.description:
        con.execute(f"comment on table main.{table} is {_quote_literal(mart.description.strip())}")
    present = {row[0] for row in con.execute(f"describe main.{table}").fetchall()}
    for column, description in mart.columns.items():
        if description and column in present:
            con.execute(
                f"comment on column main.{table}.{_quote_identifier(column)} is {_quote_literal(description.strip())}"
            )


def _fsync(path: Path, *, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

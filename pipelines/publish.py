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
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.settings import Paths
from pipelines.transform import dbt_artifact

if TYPE_CHECKING:
    from duckdb import DuckDBPyConnection

MARTS_FOLDER = "marts"
"""The models folder whose models analysts query (dbt's "how we structure" layout: marts are the public layer)."""

_TMP_SUFFIX = ".tmp"
_REPLACED_KEY = "__published_key"  # a column of publishing's own, beside a mart's columns


class PublishError(RuntimeError):
    """The marts could not be published; analysts keep the previous analytics.duckdb."""


@dataclass(frozen=True)
class Mart:
    name: str  # the table's name in analytics.duckdb
    schema: str  # where the build put it, from the manifest
    identifier: str
    description: str
    columns: dict[str, str]  # column -> description
    unique_key: str | None = None  # an incremental mart's single-column unique_key: published by difference


@dataclass(frozen=True)
class Published:
    tables: int  # written by this publish
    rows: int  # in every published mart
    seconds: float
    path: Path
    total: int  # marts in the file


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
    marts = []
    for node in manifest.get("nodes", {}).values():
        if not is_published_mart(node):
            continue
        marts.append(
            Mart(
                name=node["alias"] or node["name"],
                schema=node["schema"],
                identifier=node["alias"] or node["name"],
                description=node.get("description") or "",
                columns={name: column.get("description") or "" for name, column in node.get("columns", {}).items()},
                unique_key=_single_key(node.get("config", {})),
            )
        )
    names = [mart.name for mart in marts]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise PublishError(f"two marts share the name {', '.join(duplicates)}: analytics.duckdb needs one of each")
    return sorted(marts, key=lambda mart: mart.name)


def _single_key(config: dict) -> str | None:
    key = config.get("unique_key") if config.get("materialized") == "incremental" else None
    return key if isinstance(key, str) and key else None


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
    (``only``: the models it built, e.g. the clock's alone); by difference for a mart with a single-column
    ``unique_key`` (the per-event ``fct_events``: rows whose hash differs, or that exist on one side only, are
    deleted and inserted again); otherwise written whole. A copy with more free space than used (rows deleted
    over many runs) is dropped for a fresh file, which bounds its size.
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
                if reused and only is not None and mart.name not in only:
                    continue
                written += 1
                if reused and mart.unique_key and _same_columns(con, mart):
                    _apply_difference(con, table, source, _quote_identifier(mart.unique_key))
                else:
                    con.execute(f"create or replace table {table} as select * from {source}")
                _comment(con, name, mart)
            con.execute("detach build")
            rows = sum(_count(con, f"main.{_quote_identifier(mart.name)}") for mart in marts)
            con.execute("checkpoint")
        finally:
            con.close()
        _fsync(tmp)
        os.replace(tmp, target)
        _fsync(paths.data, directory=True)
    finally:
        tmp.unlink(missing_ok=True)
        tmp.with_name(tmp.name + ".wal").unlink(missing_ok=True)
    return Published(tables=written, rows=rows, seconds=time.perf_counter() - started, path=target, total=len(marts))


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
    query = (
        "select column_name, data_type from duckdb_columns() where database_name = ? and schema_name = ?"
        " and table_name = ? order by column_index"
    )
    published = con.execute(query, [con.execute("select current_database()").fetchone()[0], "main", mart.name])
    ours = published.fetchall()
    theirs = con.execute(query, ["build", mart.schema, mart.identifier]).fetchall()
    return bool(ours) and ours == theirs


def _apply_difference(con: DuckDBPyConnection, table: str, source: str, key: str) -> None:
    """Make ``table`` equal ``source`` by rewriting only the rows that differ: keyed by ``key``, compared by a
    hash of the whole row. A null key cannot be matched, so then the table is written whole.

    The build's table is read once: its rows that differ are kept as they are read, not fetched again by key
    afterwards (a probe by key reads every column of every row, the events' JSON included: at 5M events that
    second read cost more than the comparison itself)."""
    nulls = con.execute(f"select count(*) from {source} where {key} is null").fetchone()
    if nulls and nulls[0]:
        con.execute(f"create or replace table {table} as select * from {source}")
        return
    # one row per key whose row differs: the build's row (null when the build no longer has that key) and the
    # published key it replaces (null when the key is new)
    con.execute(
        f"""create or replace temp table publish_changed_rows as
        select published.{key} as {_REPLACED_KEY}, built_row.*
        from {source} as built_row
        full join (select {key}, hash(published_row) as row_hash from {table} as published_row) as published
            on built_row.{key} = published.{key}
        where published.row_hash is distinct from hash(built_row)"""
    )
    con.execute(f"delete from {table} where {key} in (select {_REPLACED_KEY} from publish_changed_rows)")
    con.execute(
        f"insert into {table} select * exclude ({_REPLACED_KEY}) from publish_changed_rows where {key} is not null"
    )
    con.execute("drop table publish_changed_rows")


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

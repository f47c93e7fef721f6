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


class PublishError(RuntimeError):
    """The marts could not be published; analysts keep the previous analytics.duckdb."""


@dataclass(frozen=True)
class Mart:
    name: str  # the table's name in analytics.duckdb
    schema: str  # where the build put it, from the manifest
    identifier: str
    description: str
    columns: dict[str, str]  # column -> description


@dataclass(frozen=True)
class Published:
    tables: int  # written by this publish
    rows: int  # in every published mart
    seconds: float
    path: Path
    total: int  # marts in the file


def analytics_file(paths: Paths) -> Path:
    return paths.data / "analytics.duckdb"


def marts_from_manifest(manifest_path: Path) -> list[Mart]:
    """Every enabled, non-ephemeral model under models/marts, with the relation dbt built for it."""
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as error:
        raise PublishError(f"cannot read dbt's manifest {manifest_path}: {error}") from None
    marts = []
    for node in manifest.get("nodes", {}).values():
        fqn = node.get("fqn") or []
        if node.get("resource_type") != "model" or len(fqn) < 3 or fqn[1] != MARTS_FOLDER:
            continue
        if node.get("config", {}).get("materialized") == "ephemeral":
            continue
        marts.append(
            Mart(
                name=node["alias"] or node["name"],
                schema=node["schema"],
                identifier=node["alias"] or node["name"],
                description=node.get("description") or "",
                columns={name: column.get("description") or "" for name, column in node.get("columns", {}).items()},
            )
        )
    names = [mart.name for mart in marts]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise PublishError(f"two marts share the name {', '.join(duplicates)}: analytics.duckdb needs one of each")
    return sorted(marts, key=lambda mart: mart.name)


def _quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def publish(paths: Paths, only: Collection[str] | None = None) -> Published:
    """Write the marts into a new file and rename it over analytics.duckdb. Call under the run lock, after the
    build (the build's database must be free to open read-only).

    ``only``: the marts this build rebuilt, when it rebuilt some and not others (a run with nothing new rebuilds
    the clock's models alone). The new file then starts as a copy of the published one, which a kernel copy makes
    in a fraction of the time re-reading every mart takes, and only those marts are written again into it.
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
    written = marts
    if only is not None and target.exists():
        shutil.copyfile(target, tmp)
        written = [mart for mart in marts if mart.name in only]
    try:
        con = duckdb.connect(str(tmp))
        try:
            con.execute(f"attach {_quote_literal(str(paths.warehouse))} as build (read_only)")
            for mart in written:
                table = _quote_identifier(mart.name)
                source = f"build.{_quote_identifier(mart.schema)}.{_quote_identifier(mart.identifier)}"
                try:
                    con.execute(f"create or replace table main.{table} as select * from {source}")
                except duckdb.CatalogException:
                    raise PublishError(f"mart {mart.schema}.{mart.identifier} is not in the warehouse") from None
                _comment(con, table, mart)
            con.execute("detach build")
            rows = 0
            for mart in marts:
                try:
                    count = con.execute(f"select count(*) from main.{_quote_identifier(mart.name)}").fetchone()
                except duckdb.CatalogException:  # the published copy predates this mart: publish them all
                    raise PublishError(f"mart {mart.name} is missing from the published copy") from None
                rows += count[0] if count else 0
            con.execute("checkpoint")
        finally:
            con.close()
        _fsync(tmp)
        os.replace(tmp, target)
        _fsync(paths.data, directory=True)
    except PublishError:
        if written is marts:
            raise
        tmp.unlink(missing_ok=True)
        return publish(paths)  # the published copy lacks a mart: write every one
    finally:
        tmp.unlink(missing_ok=True)
        tmp.with_name(tmp.name + ".wal").unlink(missing_ok=True)
    return Published(
        tables=len(written), rows=rows, seconds=time.perf_counter() - started, path=target, total=len(marts)
    )


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

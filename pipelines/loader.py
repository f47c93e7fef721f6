"""``segment-accounts load``: run the dlt pipeline from the spool's cursor, then commit the cursor.

The order is the whole durability argument: extract -> normalize -> load (the warehouse commits) -> only then
``SpoolReader.commit``, which also lets the spool delete segments the warehouse now has. A crash before the commit
re-reads the same records next time: the raw table may repeat a row, which staging deduplicates, and nothing is
lost.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import dlt
from dlt.common.destination import Destination
from dlt.common.pipeline import LoadInfo
from dlt.pipeline.exceptions import PipelineStepFailed

from pipelines.connections import Registry, validate_connections
from pipelines.segment_spool import CursorTracker, segment_spool
from pipelines.settings import Paths, raw_schema, spool_keep_days
from pipelines.spool import SpoolReader

PIPELINE_NAME = "segment_accounts"
"""dlt keys its state and schema versions by pipeline name: loaders sharing one warehouse each need their own
(``SEGMENT_ACCOUNTS_LOADER_NAME``)."""

LOADER_FILE_FORMATS = {
    # Spark (and any lake engine) reads Parquet files.
    "spark": "parquet",
    # COPY ... FROM STDIN instead of dlt's default INSERT ... VALUES: three times faster on the same events
    # (bench/bench_targets.py), text byte for byte, empty strings included (tests/test_postgres.py).
    "postgres": "csv",
}
"""dlt's loader file format per target; a target not listed gets its destination's default."""

LOAD_ATTEMPTS = 5
"""How often the load step is tried before ``load`` gives up (the cursor then stays put: nothing is lost).

Loaders sharing a warehouse race on DDL: dlt checks which schema and tables exist, then creates the missing
ones, so two first loads (or two loads bringing a new column) can both try to create the same table and one
fails ("already exists"). Its package stays pending, and the DDL ran in one transaction where the warehouse
has them (Postgres), so it changed nothing; tried again, it finds what was created meanwhile and adds only the
rest. Each round of a race has
a winner, so N loaders need at most N attempts. A retry rather than a lock: Snowflake, BigQuery and object
storage offer no lock that every loader could take."""

LOADED_PACKAGES_KEPT = 10
"""dlt's records of completed loads kept in its working folder (``load/loaded/``), the newest. Their job files are
already gone (``delete_completed_jobs`` in .dlt/config.toml); what stays of each is ~50 KB of schema and state,
which at a load every 15 minutes would still grow the data folder by megabytes a day."""

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadSummary:
    records: int
    seconds: float
    load_id: str | None  # None: nothing to move, so no load was committed
    raw_loads: str | None = None  # the warehouse's completed loads afterwards (``completed_loads``)

    def line(self) -> str:
        if self.load_id is None and not self.records:
            return f"loaded 0 spooled records: nothing new in the spool or registry, no load ({self.seconds:.1f}s)"
        rate = self.records / self.seconds if self.seconds else 0.0
        return f"loaded {self.records} spooled records in {self.seconds:.1f}s ({rate:,.0f}/s)"


def target_name() -> str:
    """The warehouse target: one variable chooses both dlt's destination and dbt's profile output."""
    return os.environ.get("SEGMENT_ACCOUNTS_TARGET", "duckdb")


def postgres_credentials() -> str:
    """A connection string built from the same variables profiles.yml reads, so one set configures both tools."""
    user = quote(os.environ.get("SEGMENT_ACCOUNTS_PG_USER", "postgres"), safe="")
    password = quote(os.environ.get("SEGMENT_ACCOUNTS_PG_PASSWORD", ""), safe="")
    host = os.environ.get("SEGMENT_ACCOUNTS_PG_HOST", "127.0.0.1")
    port = os.environ.get("SEGMENT_ACCOUNTS_PG_PORT", "5432")
    database = os.environ.get("SEGMENT_ACCOUNTS_PG_DATABASE", "segment_accounts")
    auth = f"{user}:{password}" if password else user
    return f"postgresql://{auth}@{host}:{port}/{database}"


def warehouse_destination(paths: Paths) -> Destination:
    """dlt destination for the current target; other dlt destinations take credentials from dlt.secrets."""
    target = target_name()
    if target == "duckdb":
        return dlt.destinations.duckdb(str(paths.warehouse))
    if target == "postgres":
        return dlt.destinations.postgres(credentials=postgres_credentials())
    if target == "spark":
        # Spark (and any lake engine) reads the raw layer as Parquet files: <lake>/<dataset>/<table>/*.parquet.
        return dlt.destinations.filesystem(bucket_url=paths.lake.as_uri())
    return Destination.from_reference(target)


def make_pipeline(paths: Paths) -> dlt.Pipeline:
    """The pipeline, its state kept in the data folder (not ~/.dlt) so one folder is one installation."""
    return dlt.pipeline(
        pipeline_name=os.environ.get("SEGMENT_ACCOUNTS_LOADER_NAME", PIPELINE_NAME),
        destination=warehouse_destination(paths),
        dataset_name=raw_schema(),
        pipelines_dir=str(paths.dlt_dir),
    )


def load(paths: Paths) -> LoadSummary:
    """Move everything new in the spool into the raw tables; returns what moved."""
    started = time.perf_counter()
    pipeline = make_pipeline(paths)
    # A package left by a crashed run is finished by dlt first; its records are re-read as well because their
    # cursor was never committed, which can repeat raw rows (staging keeps the first copy) but never loses one.
    keep_days = spool_keep_days()  # a bad setting stops the load before anything moves
    with SpoolReader(paths.spool, keep_loaded_days=keep_days) as reader:
        tracker = CursorTracker()
        registry = Registry(paths.data)
        validate_connections(registry.list())
        connections = [c.public_dict() for c in registry.list()]
        snapshot = _connections_digest(connections)
        unchanged = _loads_if_nothing_to_move(paths, pipeline, reader, snapshot)
        if unchanged is not None:
            return LoadSummary(records=0, seconds=time.perf_counter() - started, load_id=None, raw_loads=unchanged)
        file_format = LOADER_FILE_FORMATS.get(target_name())
        info = _run(pipeline, segment_spool(reader=reader, tracker=tracker, connections=connections), file_format)
        info.raise_on_failed_jobs()
        if tracker.cursor is not None:
            reader.commit(tracker.cursor)
        _loaded_connections_file(paths).write_text(snapshot + "\n")
    prune_loaded_packages(Path(pipeline.working_dir))
    load_id = info.loads_ids[-1] if info.loads_ids else None
    return LoadSummary(
        records=tracker.records,
        seconds=time.perf_counter() - started,
        load_id=load_id,
        raw_loads=completed_loads(pipeline),
    )


def _connections_digest(connections: list[dict[str, Any]]) -> str:
    """The registry snapshot a load would write, and where it would write it."""
    document = {"target": target_name(), "schema": raw_schema(), "connections": connections}
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()


def _loaded_connections_file(paths: Paths) -> Path:
    return paths.dlt_dir / "connections_loaded.sha256"


def _loads_if_nothing_to_move(paths: Paths, pipeline: dlt.Pipeline, reader: SpoolReader, snapshot: str) -> str | None:
    """The warehouse's completed loads when there is nothing to move: no record waits in the spool, dlt holds no
    unfinished package, the registry snapshot is the one this loader last committed, and the raw tables exist.
    Then a load would only commit an empty package (and a copy of the registry): skipped, so that the raw
    layer's loads change only when something new arrived, which is how a run knows it has nothing new to build
    (``pipelines.build_inputs``). None: load."""
    try:
        loaded = _loaded_connections_file(paths).read_text().strip()
    except OSError:
        return None
    if loaded != snapshot or pipeline.has_pending_data or reader.stats().pending_bytes:
        return None
    return completed_loads(pipeline)


def completed_loads(pipeline: dlt.Pipeline) -> str | None:
    """dlt's completed loads in the raw schema, by every loader sharing it: their count and newest load id.

    It changes exactly when a loader commits a load. None when it cannot be read: no load yet, or a destination
    without SQL (the file lake Spark reads), which then always counts as changed."""
    if target_name() == "spark":
        return None
    try:
        with pipeline.sql_client() as client:
            table = client.make_qualified_table_name("_dlt_loads")
            rows = client.execute_sql(f"select count(*), max(load_id) from {table} where status = 0")
    except Exception:  # no schema or table yet, or no SQL client for this destination: build
        return None
    if not rows or not rows[0][0]:
        return None
    count, newest = rows[0]
    return f"{count}:{newest}"


def raw_loads(paths: Paths) -> str | None:
    """``completed_loads`` for this installation's warehouse (without loading)."""
    return completed_loads(make_pipeline(paths))


def prune_loaded_packages(working_dir: Path, keep: int = LOADED_PACKAGES_KEPT) -> None:
    """Remove all but the newest ``keep`` completed load packages (their load ids sort by time)."""
    folder = working_dir / "load" / "loaded"
    try:
        packages = [entry for entry in folder.iterdir() if entry.is_dir() and _is_load_id(entry.name)]
    except FileNotFoundError:
        return
    for old in sorted(packages, key=lambda entry: float(entry.name))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def _is_load_id(name: str) -> bool:
    try:
        float(name)
    except ValueError:
        return False
    return True


def _run(pipeline: dlt.Pipeline, source: Any, file_format: str | None) -> LoadInfo:
    """``pipeline.run``, with the load step tried again while its package is still pending (``LOAD_ATTEMPTS``).

    Only a load that left its package pending is retried: a package whose jobs failed for good is complete,
    and retrying would report success over rows that never landed.
    """
    try:
        return pipeline.run(source, loader_file_format=file_format)
    except PipelineStepFailed as error:
        if error.step != "load" or not error.has_pending_data:
            raise
        failure = error
    for attempt in range(2, LOAD_ATTEMPTS + 1):
        # jittered, so that loaders which failed together do not collide again in lockstep
        time.sleep(random.uniform(0.2, 1.0) * attempt)
        log.warning("load attempt %d of %d after: %s", attempt, LOAD_ATTEMPTS, failure.exception)
        try:
            return pipeline.load()
        except PipelineStepFailed as error:
            if error.step != "load" or not error.has_pending_data:
                raise
            failure = error
    raise failure

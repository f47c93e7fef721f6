"""``segment-accounts load``: run the dlt pipeline from the spool's cursor, then commit the cursor.

The order is the whole durability argument: extract -> normalize -> load (the warehouse commits) -> only then
``SpoolReader.commit``, which also lets the spool delete segments the warehouse now has. A crash before the commit
re-reads the same records next time: the raw table may repeat a row, which staging deduplicates, and nothing is
lost.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from urllib.parse import quote

import dlt
from dlt.common.destination import Destination

from pipelines.connections import Registry, validate_connections
from pipelines.segment_spool import CursorTracker, segment_spool
from pipelines.settings import RAW_DATASET, Paths
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


@dataclass(frozen=True)
class LoadSummary:
    records: int
    seconds: float
    load_id: str | None

    def line(self) -> str:
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
        dataset_name=os.environ.get("SEGMENT_ACCOUNTS_RAW_SCHEMA", RAW_DATASET),
        pipelines_dir=str(paths.dlt_dir),
    )


def load(paths: Paths) -> LoadSummary:
    """Move everything new in the spool into the raw tables; returns what moved."""
    started = time.perf_counter()
    pipeline = make_pipeline(paths)
    # A package left by a crashed run is finished by dlt first; its records are re-read as well because their
    # cursor was never committed, which can repeat raw rows (staging keeps the first copy) but never loses one.
    with SpoolReader(paths.spool) as reader:
        tracker = CursorTracker()
        registry = Registry(paths.data)
        validate_connections(registry.list())
        connections = [c.public_dict() for c in registry.list()]
        file_format = LOADER_FILE_FORMATS.get(target_name())
        info = pipeline.run(
            segment_spool(reader=reader, tracker=tracker, connections=connections), loader_file_format=file_format
        )
        info.raise_on_failed_jobs()
        if tracker.cursor is not None:
            reader.commit(tracker.cursor)
    load_id = info.loads_ids[-1] if info.loads_ids else None
    return LoadSummary(records=tracker.records, seconds=time.perf_counter() - started, load_id=load_id)

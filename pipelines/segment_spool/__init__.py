"""A dlt source that moves the spool into the warehouse's raw tables.

Laid out like dlt's verified sources: ``segment_spool`` is the ``@dlt.source``; each table is a typed
``@dlt.resource``; settings come from ``dlt.config`` (``[sources.segment_spool]`` in ``.dlt/config.toml``).

Records travel as Arrow tables with a fixed schema, which does two jobs: dlt's Arrow path is two orders of
magnitude faster than nested dicts (bench/bench_loader.py), and a fixed schema means the payload stays one text
column exactly as received; dlt never flattens it and new traits never add columns.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import dlt
from dlt.sources import DltResource

from pipelines.segment_spool.helpers import CursorTracker, empty_tables, split_batch
from pipelines.segment_spool.settings import CONNECTIONS_COLUMNS, RAW_EVENTS_TABLE, REJECTED_EVENTS_TABLE
from pipelines.spool import SpoolReader


@dlt.source(name="segment_spool", max_table_nesting=0)
def segment_spool(
    reader: SpoolReader,
    tracker: CursorTracker,
    connections: Sequence[dict[str, Any]],
    batch_size: int = dlt.config.value,
) -> Sequence[DltResource]:
    """Everything new in the spool since the committed cursor, plus the current connection settings.

    The caller commits ``tracker.cursor`` to the spool only after the pipeline reports the load committed, so a
    crash anywhere in between re-reads the same records (raw may repeat a row; staging dedupes) and loses none.
    """
    return (
        spool_records(reader, tracker, batch_size),
        connections_resource(connections),
    )


@dlt.resource(name=RAW_EVENTS_TABLE, write_disposition="append")
def spool_records(reader: SpoolReader, tracker: CursorTracker, batch_size: int) -> Iterator[Any]:
    """Spool batches as Arrow tables, events to ``raw_events`` and quarantined ones to ``rejected_events``."""
    wrote_events = wrote_rejected = False
    for batch in reader.column_batches(max_records=batch_size):
        events, rejected = split_batch(batch.columns)
        if events.num_rows:
            wrote_events = True
            yield events
        if rejected.num_rows:
            wrote_rejected = True
            yield dlt.mark.with_table_name(rejected, REJECTED_EVENTS_TABLE)
        tracker.advance(batch.cursor, len(batch.columns))
    # Declare any table this run did not write, so dbt's sources exist from the very first run.
    empty_events, empty_rejected = empty_tables()
    if not wrote_events:
        yield empty_events
    if not wrote_rejected:
        yield dlt.mark.with_table_name(empty_rejected, REJECTED_EVENTS_TABLE)


@dlt.resource(name="connections", write_disposition="replace", columns=CONNECTIONS_COLUMNS)
def connections_resource(connections: Sequence[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """The connection registry without secrets: dbt reads the account-mapping settings from it as data."""
    yield list(connections)


__all__ = ["CursorTracker", "segment_spool"]

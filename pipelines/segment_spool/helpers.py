"""Turning spool records into Arrow tables, and tracking how far a load got."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.segment_spool.settings import RAW_EVENTS_SCHEMA, REJECTED_EVENTS_SCHEMA
from pipelines.spool import EVENT_KIND, Columns


@dataclass
class CursorTracker:
    """The spool position reached by the extract step; committed by the caller only after the load commits."""

    cursor: Any = None
    records: int = 0
    batches: int = field(default=0)

    def advance(self, cursor: Any, records: int) -> None:
        self.cursor = cursor
        self.records += records
        self.batches += 1


def _timestamps(values: Sequence[int]) -> pa.Array:
    return pa.array(values, type=pa.int64()).cast(RAW_EVENTS_SCHEMA.field("received_at").type)


def _texts(values: Sequence[bytes | None]) -> pa.Array:
    """UTF-8 bytes as an Arrow string column, validated in C; invalid bytes are kept with replacement characters."""
    binary = pa.array(values, type=pa.binary())
    try:
        return binary.cast(pa.string())
    except pa.ArrowInvalid:
        return pa.array([None if v is None else v.decode("utf-8", errors="replace") for v in values], type=pa.string())


def split_batch(columns: Columns) -> tuple[pa.Table, pa.Table]:
    """One spool batch as (raw events, rejected events) tables with the raw layer's fixed schemas."""
    if not any(columns.kinds):  # kind 0 is "event": the usual all-events batch needs no filtering
        return _events_table(columns.connection_ids, columns.received_at_us, columns.message_ids, columns.payloads), (
            REJECTED_EVENTS_SCHEMA.empty_table()
        )
    mask = pa.array([kind == EVENT_KIND for kind in columns.kinds], type=pa.bool_())
    events = _events_table(
        columns.connection_ids, columns.received_at_us, columns.message_ids, columns.payloads
    ).filter(mask)
    rejected = pa.Table.from_arrays(
        [
            pa.array(columns.connection_ids, type=pa.string()),
            _timestamps(columns.received_at_us),
            _texts([r or b"" for r in columns.reasons]),
            _texts(columns.payloads),
        ],
        schema=REJECTED_EVENTS_SCHEMA,
    ).filter(pc.invert(mask))
    return events, rejected


def _events_table(
    connection_ids: Sequence[str],
    received_at_us: Sequence[int],
    message_ids: Sequence[bytes | None],
    payloads: Sequence[bytes],
) -> pa.Table:
    return pa.Table.from_arrays(
        [
            pa.array(connection_ids, type=pa.string()),
            _texts(message_ids),
            _timestamps(received_at_us),
            _texts(payloads),
        ],
        schema=RAW_EVENTS_SCHEMA,
    )


def empty_tables() -> tuple[pa.Table, pa.Table]:
    """Zero-row tables with the raw schemas, to create the tables before any event arrives."""
    return RAW_EVENTS_SCHEMA.empty_table(), REJECTED_EVENTS_SCHEMA.empty_table()

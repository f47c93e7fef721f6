"""Turning spool records into Arrow tables, and tracking how far a load got."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from pipelines.segment_spool.settings import RAW_EVENTS_SCHEMA, REJECTED_EVENTS_SCHEMA
from pipelines.spool import Record


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


def _timestamps(values: list[int]) -> pa.Array:
    return pa.array(values, type=pa.int64()).cast(RAW_EVENTS_SCHEMA.field("received_at").type)


def _texts(payloads: list[bytes]) -> pa.Array:
    """Payload bytes as an Arrow string column without a Python str per record when they are valid UTF-8."""
    binary = pa.array(payloads, type=pa.binary())
    try:
        return binary.cast(pa.string())  # validates UTF-8 in C
    except pa.ArrowInvalid:
        return pa.array([p.decode("utf-8", errors="replace") for p in payloads], type=pa.string())


def split_batch(records: Sequence[Record]) -> tuple[pa.Table, pa.Table]:
    """One spool batch as (raw events, rejected events) tables with the raw layer's fixed schemas."""
    if all(r.kind == "event" for r in records):  # the usual case: transpose the tuples in C, no filtering
        events: Sequence[Record] = records
        rejected: Sequence[Record] = ()
    else:
        events = [r for r in records if r.kind == "event"]
        rejected = [r for r in records if r.kind != "event"]
    if events:
        _kinds, connection_ids, received, payloads, message_ids, _reasons = zip(*events, strict=True)
    else:
        connection_ids = received = payloads = message_ids = ()
    return (
        pa.Table.from_arrays(
            [
                pa.array(connection_ids, type=pa.string()),
                pa.array(message_ids, type=pa.string()),
                _timestamps(list(received)),
                _texts(list(payloads)),
            ],
            schema=RAW_EVENTS_SCHEMA,
        ),
        rejected_table(rejected),
    )


def rejected_table(records: Sequence[Record]) -> pa.Table:
    return pa.Table.from_arrays(
        [
            pa.array([r.connection_id for r in records], type=pa.string()),
            _timestamps([r.received_at_us for r in records]),
            pa.array([r.reason or "" for r in records], type=pa.string()),
            _texts([r.payload for r in records]),
        ],
        schema=REJECTED_EVENTS_SCHEMA,
    )


def empty_tables() -> tuple[pa.Table, pa.Table]:
    """Zero-row tables with the raw schemas, to create the tables before any event arrives."""
    return RAW_EVENTS_SCHEMA.empty_table(), REJECTED_EVENTS_SCHEMA.empty_table()

"""Table names and schemas of the raw layer: the contract between the loader and dbt's sources."""

from __future__ import annotations

import pyarrow as pa
from dlt.common.schema.typing import TTableSchemaColumns

RAW_EVENTS_TABLE = "raw_events"
REJECTED_EVENTS_TABLE = "rejected_events"
CONNECTIONS_TABLE = "connections"

_received_at = pa.timestamp("us", tz="UTC")

RAW_EVENTS_SCHEMA = pa.schema(
    [
        pa.field("connection_id", pa.string(), nullable=False),
        pa.field("message_id", pa.string(), nullable=False),
        pa.field("received_at", _received_at, nullable=False),
        # The event's JSON exactly as stored in the spool: text, never parsed or flattened on the way in.
        pa.field("payload", pa.string(), nullable=False),
    ]
)

REJECTED_EVENTS_SCHEMA = pa.schema(
    [
        pa.field("connection_id", pa.string(), nullable=False),
        pa.field("received_at", _received_at, nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        # Raw bytes as text; bytes that are not UTF-8 are kept with replacement characters (the spool has them exact).
        pa.field("payload", pa.string(), nullable=False),
    ]
)

CONNECTIONS_COLUMNS: TTableSchemaColumns = {
    # Not a primary key: the table holds one snapshot of the registry per load (segment_spool's resource).
    "connection_id": {"data_type": "text", "nullable": False},
    "name": {"data_type": "text", "nullable": False},
    "account_mapping": {"data_type": "text", "nullable": False},
    "account_id_trait": {"data_type": "text", "nullable": True},
    "account_name_trait": {"data_type": "text", "nullable": True},
    "email_fallback": {"data_type": "bool", "nullable": False},
    "allow_legacy_batch_signature": {"data_type": "bool", "nullable": False},
    "created_at": {"data_type": "text", "nullable": False},
}

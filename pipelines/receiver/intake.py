"""Events -> spool Records: the per-event verdict inside an accepted request.

An event that fails validation (docs/contract.md, section 3) or is over the per-event size limit becomes a
"rejected" Record carrying its reason; the rest of the request is still accepted. Either way the bytes are kept.
"""

from __future__ import annotations

from typing import Any

from pipelines.payloads import dumps
from pipelines.spool import Record
from pipelines.validation import event_problem, message_id_of


def event_record(connection_id: str, received_at_us: int, event: Any, payload: bytes | None = None) -> Record:
    """A Record for one parsed event; ``payload`` is its exact bytes when we have them, else it is serialized."""
    if payload is None:
        payload = dumps(event)
    problem = event_problem(event, payload)
    if problem is not None:
        return Record("rejected", connection_id, received_at_us, payload, None, problem)
    message_id = message_id_of(event, payload)
    return Record("event", connection_id, received_at_us, payload, message_id)


def rejected_request(connection_id: str, received_at_us: int, raw: bytes, reason: str) -> Record:
    """The raw bytes of a whole authenticated request we could not read as events (it got a 400)."""
    return Record("rejected", connection_id, received_at_us, raw, None, reason)

"""Per-event validation: the one place the quarantine reasons of docs/contract.md (section 3) are decided.

Both ways in (the HTTP receiver and ``ingest``) call :func:`event_problem` on every event, so an event is
accepted or quarantined for the same reason whichever way it arrived. The checks are deliberately shallow: they
refuse what no model could ever use (no identity, no type), and leave meaning (junk ids, time parsing) to dbt,
where it can be changed and re-run over history.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

MESSAGE_TYPES = frozenset({"track", "page", "screen", "identify", "group", "alias"})
MAX_MESSAGE_ID_CHARS = 100
MAX_EVENT_BYTES = 32 * 1024


def field(event: Mapping[str, Any], camel: str, snake: str) -> Any:
    """A key in either spelling: Segment's libraries send camelCase, some server libraries snake_case."""
    value = event.get(camel)
    return event.get(snake) if value is None else value


def identifier_text(value: Any) -> str | None:
    """An id as the warehouse reads it (macro segment_identifier): one rule on both sides, so an event is never
    accepted here for an id that the models then ignore, nor the other way round.

    Segment's ids are strings; a number is one too, as its canonical text (``42`` and ``42.0`` are ``"42"``).
    ``true``, an array or an object is no id. Blank strings are no id either (the models trim them to null).
    """
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, int):
        return str(value)
    if value != value or value in (float("inf"), float("-inf")):
        return None
    return str(int(value)) if value.is_integer() else repr(value)


def _present(value: Any) -> bool:
    return identifier_text(value) is not None


OVERSIZE_REASON = f"event over {MAX_EVENT_BYTES // 1024} KB"
LONE_SURROGATE_REASON = "lone surrogate escape: not Unicode text"


def _has_lone_surrogate(value: Any) -> bool:
    """A string holding half of a UTF-16 pair, from an escape like \\ud800 (valid pairs were joined by the parser).

    JSON's grammar allows it, but it is no character: I-JSON (RFC 7493) forbids it, and the warehouses refuse it
    (DuckDB's JSON cast fails, and with it the whole build), so it is quarantined here, where it can be seen.
    """
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(v) for v in value)
    return False


def _json_kind(value: Any) -> str:
    """The JSON name of a parsed value's kind, for a reason a person reads."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "array" if isinstance(value, list) else "object"


def event_problem(event: Any, raw: bytes) -> str | None:
    """The reason this event (parsed, and its exact bytes) must be quarantined, or None when it is acceptable."""
    if len(raw) > MAX_EVENT_BYTES:
        return OVERSIZE_REASON
    if not isinstance(event, dict):
        return "not a JSON object"
    # Only an escape can make a surrogate (UTF-8 bytes cannot): look inside only when the bytes hold one.
    if (b"\\ud" in raw or b"\\uD" in raw) and _has_lone_surrogate(event):
        return LONE_SURROGATE_REASON
    message_type = event.get("type")
    if message_type is None:
        return "missing type"
    if not isinstance(message_type, str):  # a list or object cannot even be looked up in a set
        return f"invalid type: a JSON {_json_kind(message_type)}, not text"
    if message_type not in MESSAGE_TYPES:
        return f"invalid type: {message_type[:40]!r}"
    if not (_present(field(event, "userId", "user_id")) or _present(field(event, "anonymousId", "anonymous_id"))):
        return "missing userId and anonymousId"
    if message_type == "track" and not _present(event.get("event")):
        return "track without event"
    if message_type == "alias" and not _present(field(event, "previousId", "previous_id")):
        return "alias without previousId"
    if message_type == "group" and not _present(field(event, "groupId", "group_id")):
        return "group without groupId"
    message_id = field(event, "messageId", "message_id")
    if message_id is not None:
        if not isinstance(message_id, str | int) or isinstance(message_id, bool):
            return "messageId is not a string"
        if len(str(message_id)) > MAX_MESSAGE_ID_CHARS:
            return f"messageId over {MAX_MESSAGE_ID_CHARS} characters"
    return None


def message_id_of(event: Mapping[str, Any], raw: bytes) -> str:
    """The event's messageId, or one derived from its bytes when it has none.

    Deriving it from the content (not a random uuid) makes a re-ingested archive deduplicate against itself.
    """
    message_id = field(event, "messageId", "message_id")
    if message_id is not None and str(message_id).strip():
        return str(message_id)
    return "content-" + hashlib.sha256(raw).hexdigest()[:40]

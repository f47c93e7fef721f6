"""What Segment's Tracking API does to a call before anyone sees it, done the same way here.

- A batch's top-level ``context`` and ``integrations`` are merged into each item (the item's keys win), and its
  ``sentAt`` applies to items without their own.
- ``receivedAt`` is our clock; ``messageId`` is filled when absent.
- ``timestamp`` is corrected for the device's clock skew as Segment documents it (Spec: Common Fields,
  Timestamps): the call's own time becomes ``originalTimestamp`` and
  ``timestamp = receivedAt - (sentAt - originalTimestamp)``; with no ``sentAt`` a given timestamp is kept as is;
  with no time at all, ``timestamp = receivedAt``.
- ``writeKey`` is removed: it is a credential, and nothing downstream may hold one.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from pipelines.payloads import canonical
from pipelines.validation import field, message_id_of

BATCH_PATHS = frozenset({"batch", "b"})
SINGLE_PATHS = {
    "track": "track",
    "page": "page",
    "screen": "screen",
    "identify": "identify",
    "group": "group",
    "alias": "alias",
    "t": "track",
    "p": "page",
    "s": "screen",
    "i": "identify",
    "g": "group",
    "a": "alias",
}
"""Path (after /v1/) -> the call type it sets; analytics.js uses the one-letter forms."""

_LONG_FRACTION = re.compile(r"(\.\d{6})\d+")
_MAX_OFFSET = timedelta(hours=15, minutes=59)


def parse_time(value: Any) -> datetime | None:
    """An ISO-8601 time (offset or Z; naive means UTC); None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        try:  # Python reads at most 6 fraction digits; some clients send nanoseconds
            parsed = datetime.fromisoformat(_LONG_FRACTION.sub(r"\1", value))
        except ValueError:
            return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    offset = parsed.utcoffset()
    if offset is not None and abs(offset) > _MAX_OFFSET:  # the models' rule (macro iso8601_to_utc): no time
        return None
    return parsed


def parse_us(value: Any) -> int | None:
    """parse_time as exact integer microseconds since the epoch (integer arithmetic: no float rounding)."""
    moment = parse_time(value)
    return None if moment is None else (moment - _EPOCH) // _ONE_US


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
_SECONDS: dict[int, str] = {}


def format_us(micros: int) -> str:
    """Segment's own format: UTC, milliseconds, ``Z``. Formatting is the hot spot of a batch, so the
    ``YYYY-MM-DDTHH:MM:SS`` part of each second is cached (events of one batch share a few seconds)."""
    seconds, rest = divmod(micros, 1_000_000)
    prefix = _SECONDS.get(seconds)
    if prefix is None:
        if len(_SECONDS) >= 4096:
            _SECONDS.clear()
        prefix = _SECONDS[seconds] = (_EPOCH + timedelta(seconds=seconds)).replace(tzinfo=None).isoformat()
    return f"{prefix}.{rest // 1000:03d}Z"


def format_time(moment: datetime) -> str:
    return format_us((moment - _EPOCH) // _ONE_US)


class Receipt:
    """One request's receipt time, shared by all its items (formatted once; the batch's sentAt parsed once)."""

    __slots__ = ("_sent", "iso", "micros")

    def __init__(self, received_at_us: int) -> None:
        self.micros = received_at_us
        self.iso = format_us(received_at_us)
        self._sent: tuple[Any, int | None] = (None, None)

    def sent_us(self, value: Any) -> int | None:
        """parse_us, remembering the last value: a batch's items share its one sentAt."""
        if value is not self._sent[0]:
            self._sent = (value, parse_us(value))
        return self._sent[1]


def normalize(
    item: dict[str, Any],
    receipt: Receipt,
    *,
    call_type: str | None = None,
    batch: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Apply the Tracking API's server-side fields to one call, in place; returns it."""
    given = field(item, "messageId", "message_id")
    if given is None or (isinstance(given, str) and not given.strip()):
        # From the content as sent, so a client retrying a call without an id does not double it.
        item["messageId"] = message_id_of(item, canonical(item))
    item.pop("writeKey", None)
    if call_type is not None:
        item["type"] = call_type
    if batch is not None:
        for key in ("context", "integrations"):
            shared = batch.get(key)
            if isinstance(shared, dict) and shared:
                own = item.get(key)
                if own is None:
                    item[key] = dict(shared)
                elif isinstance(own, dict):
                    item[key] = {**shared, **own}
        if "sentAt" not in item and batch.get("sentAt") is not None:
            item["sentAt"] = batch["sentAt"]
    item["receivedAt"] = receipt.iso
    _set_timestamp(item, receipt)
    return item


def _set_timestamp(item: dict[str, Any], receipt: Receipt) -> None:
    original = item.get("originalTimestamp")
    if original is None:
        original = item.get("timestamp")
        if original is None:
            item["timestamp"] = receipt.iso
            return
        item["originalTimestamp"] = original
    sent = receipt.sent_us(item.get("sentAt"))
    at = parse_us(original) if sent is not None else None
    if sent is not None and at is not None:
        try:
            item["timestamp"] = format_us(receipt.micros - (sent - at))
        except (OverflowError, ValueError):  # absurd skew beyond the calendar: keep what the client said
            item.setdefault("timestamp", original)
    else:
        item.setdefault("timestamp", original)

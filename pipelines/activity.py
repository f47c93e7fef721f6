"""Per-connection activity: what the integrations page, ``connections list``, ``tail`` and ``freshness`` show.

Counts come from the receiver itself, not from the spool or the warehouse: the spool deletes a segment once the
loader has committed it, and the warehouse knows only what the loader has moved, so neither can say "events in
the last hour" while the loader is behind or after it has caught up. Each receiver process keeps a small buffer
(per-minute counts, the last events of each kind, the last sample per reject reason) and a background thread
writes it to ``activity.sqlite3`` in the data folder about once a second, in one transaction. So:

- the hot path adds a few dictionary updates per record, after the spool's fsync, never any I/O;
- ``serve --workers N`` works: each process writes its own buffer; SQLite (WAL) serialises the writers;
- a restart keeps everything but the last second of counts (a crash loses counts, never an event: the events are
  in the spool already);
- reading never needs the warehouse.

Payloads kept for the tail are cut to ``PAYLOAD_CHARS`` and never hold a write key (``writeKey`` is removed).
The file holds payloads, so it is created 0600 like the secrets.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from pipelines.spool import Record

log = logging.getLogger(__name__)

ACTIVITY_FILE = "activity.sqlite3"
TAIL_SIZE = 50
"""Events kept per connection and kind (accepted, rejected, refused) for the tail."""
PAYLOAD_CHARS = 4096
REASON_CHARS = 200
KEEP_MINUTES = 48 * 60
FLUSH_SECONDS = 1.0
KINDS = ("event", "rejected", "refused")
"""event: accepted into the spool; rejected: in the spool's quarantine with a reason; refused: a request for this
connection we did not store (wrong or missing signature), counted without its payload."""

_WRITE_KEY = re.compile(rb'("write_?[kK]ey"\s*:\s*)"(?:[^"\\]|\\.)*"')
_SCHEMA = """
create table if not exists minute_counts (
    connection_id text not null,
    minute integer not null,
    kind text not null,
    reason text not null,
    n integer not null,
    primary key (connection_id, minute, kind, reason)
) without rowid;
create table if not exists recent (
    seq integer primary key autoincrement,
    connection_id text not null,
    kind text not null,
    received_at_us integer not null,
    message_id text,
    reason text,
    summary text not null,
    payload text not null
);
create index if not exists recent_by_connection on recent (connection_id, kind, seq);
create table if not exists last_seen (
    connection_id text not null,
    kind text not null,
    received_at_us integer not null,
    primary key (connection_id, kind)
) without rowid;
create table if not exists reject_samples (
    connection_id text not null,
    reason text not null,
    received_at_us integer not null,
    payload text not null,
    primary key (connection_id, reason)
) without rowid;
"""


def activity_path(data_dir: Path) -> Path:
    return Path(data_dir) / ACTIVITY_FILE


def _connect(path: Path) -> sqlite3.Connection:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
    db = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
    db.execute("pragma journal_mode = wal")
    db.execute("pragma synchronous = normal")  # counts, not events: a power cut may lose the last second
    db.executescript(_SCHEMA)
    return db


# ---- what the receiver records --------------------------------------------------------------------------------


@dataclass
class _Buffer:
    counts: dict[tuple[str, int, str, str], int] = field(default_factory=dict)
    recent: dict[tuple[str, str], deque[tuple[int, str | None, str | None, bytes]]] = field(default_factory=dict)
    last_seen: dict[tuple[str, str], int] = field(default_factory=dict)
    samples: dict[tuple[str, str], tuple[int, bytes]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.counts)


class ActivityRecorder:
    """Buffers what one receiver process accepted, rejected and refused; a daemon thread writes it out."""

    def __init__(self, data_dir: Path, *, flush_seconds: float = FLUSH_SECONDS) -> None:
        self.path = activity_path(data_dir)
        self._lock = threading.Lock()
        self._buffer = _Buffer()
        self._stop = threading.Event()
        self._flush_seconds = flush_seconds
        self._db: sqlite3.Connection | None = None
        self._warned = False
        self._thread = threading.Thread(target=self._run, name="activity", daemon=True)
        self._thread.start()

    def record(self, records: Sequence[Record]) -> None:
        """Note records the spool has just made durable. Cheap: dictionary updates under a lock, no I/O."""
        with self._lock:
            b = self._buffer
            for r in records:
                self._note(b, r.connection_id, r.kind, r.received_at_us, r.message_id, r.reason, r.payload)

    def refused(self, connection_id: str, reason: str, received_at_us: int | None = None) -> None:
        """A request for a known connection that we refused without storing it (e.g. a wrong signature)."""
        at = received_at_us if received_at_us is not None else time.time_ns() // 1000
        with self._lock:
            self._note(self._buffer, connection_id, "refused", at, None, reason, b"")

    @staticmethod
    def _note(
        b: _Buffer, cid: str, kind: str, at: int, message_id: str | None, reason: str | None, payload: bytes
    ) -> None:
        why = (reason or "")[:REASON_CHARS]
        key = (cid, at // 60_000_000, kind, why)
        b.counts[key] = b.counts.get(key, 0) + 1
        if b.last_seen.get((cid, kind), 0) < at:
            b.last_seen[(cid, kind)] = at
        # Bounded memory without a copy in the common case (events are small; bytes are immutable).
        cut = payload if len(payload) <= PAYLOAD_CHARS * 4 else bytes(payload[: PAYLOAD_CHARS * 4])
        tail = b.recent.get((cid, kind))
        if tail is None:
            tail = b.recent[(cid, kind)] = deque(maxlen=TAIL_SIZE)
        tail.append((at, message_id, why or None, cut))
        if kind == "rejected" and b.samples.get((cid, why), (0, b""))[0] <= at:
            b.samples[(cid, why)] = (at, cut)

    def flush(self) -> None:
        """Write the buffer out now (also called by the thread and on close). Never raises: counts are a view."""
        with self._lock:
            buffer, self._buffer = self._buffer, _Buffer()
        if not buffer:
            return
        try:
            if self._db is None:
                self._db = _connect(self.path)
            _write(self._db, buffer)
            self._warned = False
        except (sqlite3.Error, OSError) as error:
            if not self._warned:  # once per outage, not once a second
                log.warning("activity counts not saved to %s: %s", self.path, error)
                self._warned = True

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.flush()
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None

    def _run(self) -> None:
        while not self._stop.wait(self._flush_seconds):
            self.flush()


def _write(db: sqlite3.Connection, b: _Buffer) -> None:
    oldest_minute = int(time.time() // 60) - KEEP_MINUTES
    db.execute("begin immediate")
    try:
        db.executemany(
            "insert into minute_counts values (?, ?, ?, ?, ?)"
            " on conflict (connection_id, minute, kind, reason) do update set n = n + excluded.n",
            [(*key, n) for key, n in b.counts.items()],
        )
        db.executemany(
            "insert into last_seen values (?, ?, ?) on conflict (connection_id, kind)"
            " do update set received_at_us = max(received_at_us, excluded.received_at_us)",
            [(*key, at) for key, at in b.last_seen.items()],
        )
        db.executemany(
            "insert into reject_samples values (?, ?, ?, ?) on conflict (connection_id, reason)"
            " do update set received_at_us = excluded.received_at_us, payload = excluded.payload"
            " where excluded.received_at_us >= received_at_us",
            [(cid, why, at, shown_payload(p)) for (cid, why), (at, p) in b.samples.items()],
        )
        for (cid, kind), items in b.recent.items():
            db.executemany(
                "insert into recent (connection_id, kind, received_at_us, message_id, reason, summary, payload)"
                " values (?, ?, ?, ?, ?, ?, ?)",
                [(cid, kind, at, mid, why, summarize(p), shown_payload(p)) for at, mid, why, p in items],
            )
            db.execute(
                "delete from recent where connection_id = ? and kind = ? and seq <= ("
                " select seq from recent where connection_id = ? and kind = ? order by seq desc limit 1 offset ?)",
                (cid, kind, cid, kind, TAIL_SIZE),
            )
        db.execute("delete from minute_counts where minute < ?", (oldest_minute,))
        # Reasons carry details (a JSON error's position...), so samples are pruned by age like the counts.
        db.execute("delete from reject_samples where received_at_us < ?", (oldest_minute * 60_000_000,))
        db.execute("commit")
    except BaseException:
        db.execute("rollback")
        raise


def shown_payload(payload: bytes) -> str:
    """The payload as the admin sees it: without any write key, cut to PAYLOAD_CHARS characters."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        text = _WRITE_KEY.sub(rb'\1"[removed]"', payload).decode("utf-8", "replace")
    else:
        text = orjson.dumps(_without_write_keys(doc)).decode()
    return text if len(text) <= PAYLOAD_CHARS else text[:PAYLOAD_CHARS] + "…"


def _without_write_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_write_keys(v) for k, v in value.items() if k not in ("writeKey", "write_key")}
    if isinstance(value, list):
        return [_without_write_keys(v) for v in value]
    return value


def summarize(payload: bytes) -> str:
    """One short label for a tail line: the call type and, for a track, the event name."""
    if not payload:
        return "-"  # a refused delivery: its bytes were not kept
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return "(not JSON)"
    if not isinstance(doc, dict):
        return "(array)" if isinstance(doc, list) else "(not an object)"
    kind = doc.get("type")
    label = str(kind) if isinstance(kind, str) else "(no type)"
    for key in ("event", "name"):
        value = doc.get(key)
        if isinstance(value, str) and value:
            return f"{label} {value}"[:120]
    return label[:120]


# ---- what the page and the CLI read ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RejectReason:
    reason: str
    count: int
    sample: str  # the latest payload with this reason, as shown_payload made it


@dataclass(frozen=True)
class ConnectionActivity:
    connection_id: str
    events_last_hour: int = 0
    events_last_day: int = 0
    rejected_last_day: int = 0
    refused_last_day: int = 0
    last_event_us: int | None = None
    last_rejected_us: int | None = None
    rejects: tuple[RejectReason, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "events_last_hour": self.events_last_hour,
            "events_last_day": self.events_last_day,
            "rejected_last_day": self.rejected_last_day,
            "refused_last_day": self.refused_last_day,
            "last_event_at": iso_us(self.last_event_us),
            "last_rejected_at": iso_us(self.last_rejected_us),
            "rejects": [{"reason": r.reason, "count": r.count, "sample": r.sample} for r in self.rejects],
        }


@dataclass(frozen=True)
class TailItem:
    seq: int
    connection_id: str
    kind: str
    received_at_us: int
    message_id: str | None
    reason: str | None
    summary: str
    payload: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "connection_id": self.connection_id,
            "kind": self.kind,
            "received_at": iso_us(self.received_at_us),
            "message_id": self.message_id,
            "reason": self.reason,
            "summary": self.summary,
            "payload": self.payload,
        }


def iso_us(us: int | None) -> str | None:
    if us is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(us / 1_000_000))


@contextlib.contextmanager
def _reading(data_dir: Path) -> Iterator[sqlite3.Connection | None]:
    path = activity_path(data_dir)
    if not path.exists():  # no receiver has run yet: nothing to read, and nothing to create
        yield None
        return
    db = _connect(path)
    try:
        yield db
    finally:
        db.close()


def _unreadable(data_dir: Path, error: sqlite3.Error) -> None:
    # Counts are a view: a damaged file must not take `connections list` or the page down with it.
    log.warning("activity counts unreadable (%s); delete %s to start them over", error, activity_path(data_dir))


def summaries(data_dir: Path, now_us: int | None = None) -> dict[str, ConnectionActivity]:
    """Per connection id: counts over the last hour and day, last event times, rejects by reason."""
    now = now_us if now_us is not None else time.time_ns() // 1000
    minute = now // 60_000_000
    try:
        return _summaries(data_dir, now, minute)
    except sqlite3.Error as error:
        _unreadable(data_dir, error)
        return {}


def _summaries(data_dir: Path, now: int, minute: int) -> dict[str, ConnectionActivity]:
    with _reading(data_dir) as db:
        if db is None:
            return {}
        counts = db.execute(
            "select connection_id, kind, reason, sum(case when minute > ? then n else 0 end), sum(n)"
            " from minute_counts where minute > ? group by connection_id, kind, reason",
            (minute - 60, minute - 24 * 60),
        ).fetchall()
        seen = db.execute("select connection_id, kind, received_at_us from last_seen").fetchall()
        samples = {(c, r): p for c, r, p in db.execute("select connection_id, reason, payload from reject_samples")}
    acc: dict[str, dict[str, Any]] = {}
    for cid, kind, reason, hour, day in counts:
        a = acc.setdefault(cid, {"connection_id": cid, "rejects": []})
        if kind == "event":
            a["events_last_hour"] = a.get("events_last_hour", 0) + hour
            a["events_last_day"] = a.get("events_last_day", 0) + day
        elif kind == "rejected":
            a["rejected_last_day"] = a.get("rejected_last_day", 0) + day
            a["rejects"].append(RejectReason(reason, day, samples.get((cid, reason), "")))
        else:
            a["refused_last_day"] = a.get("refused_last_day", 0) + day
            a["rejects"].append(RejectReason(f"refused: {reason}", day, ""))
    for cid, kind, at in seen:
        a = acc.setdefault(cid, {"connection_id": cid, "rejects": []})
        if kind == "event":
            a["last_event_us"] = at
        elif kind == "rejected":
            a["last_rejected_us"] = at
    return {
        cid: ConnectionActivity(**{**a, "rejects": tuple(sorted(a["rejects"], key=lambda r: -r.count))})
        for cid, a in acc.items()
    }


def tail(
    data_dir: Path,
    *,
    connection_ids: Iterable[str] | None = None,
    kinds: Iterable[str] = KINDS,
    after_seq: int = 0,
    limit: int = TAIL_SIZE,
) -> list[TailItem]:
    """The latest items, newest first: across connections unless ``connection_ids`` narrows it."""
    wanted_kinds = list(kinds)
    sql = "select seq, connection_id, kind, received_at_us, message_id, reason, summary, payload from recent"
    where = [f"kind in ({', '.join('?' * len(wanted_kinds))})", "seq > ?"]
    args: list[Any] = [*wanted_kinds, after_seq]
    if connection_ids is not None:
        ids = list(connection_ids)
        where.append(f"connection_id in ({', '.join('?' * len(ids))})")
        args += ids
    try:
        with _reading(data_dir) as db:
            if db is None:
                return []
            rows = db.execute(
                f"{sql} where {' and '.join(where)} order by received_at_us desc, seq desc limit ?", (*args, limit)
            ).fetchall()
    except sqlite3.Error as error:
        _unreadable(data_dir, error)
        return []
    return [TailItem(*row) for row in rows]


class RecordingWriter:
    """A spool writer that tells the recorder what it made durable: counts follow the fsync, never precede it."""

    def __init__(self, writer: Any, recorder: ActivityRecorder) -> None:
        self.writer = writer
        self.recorder = recorder

    def append(self, records: Sequence[Record]) -> None:
        self.writer.append(records)
        self.recorder.record(records)

    def close(self) -> None:
        try:
            self.writer.close()
        finally:
            self.recorder.close()

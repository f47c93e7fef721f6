"""``segment-accounts ingest``: backfill from files (NDJSON or a JSON array, gzip or not) into the spool.

Files go through the spool like live traffic, with the same per-event validation, so a backfill and a webhook
are indistinguishable downstream and a bad line is quarantined with its reason instead of stopping the run.
"""

from __future__ import annotations

import gzip
import io
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from pipelines.payloads import NotJSON, loads, split_array
from pipelines.spool import Record, SpoolWriter
from pipelines.validation import event_problem, message_id_of

CHUNK_RECORDS = 5_000
"""Records per spool append: one fsync per chunk keeps a backfill fast without holding much in memory."""


@dataclass
class IngestSummary:
    accepted: int = 0
    rejected: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    def line(self) -> str:
        text = f"accepted {self.accepted} events, quarantined {self.rejected}"
        if self.reasons:
            text += " (" + ", ".join(f"{reason}: {n}" for reason, n in self.reasons.most_common()) + ")"
        return text


class EventFile:
    """One input file, gunzipped when its bytes start with gzip's magic number (names lie; bytes don't)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle = path.open("rb")
        inner: BinaryIO = self._handle
        if self._handle.read(2) == b"\x1f\x8b":
            inner = gzip.GzipFile(fileobj=self._handle, mode="rb")  # type: ignore[assignment]
        self._handle.seek(0)
        self._stream = io.BufferedReader(inner, buffer_size=1 << 20)  # type: ignore[arg-type]

    def position(self) -> int:
        """Bytes of the file on disk consumed so far (compressed bytes for gzip): what a progress bar can know."""
        return self._handle.tell()

    def close(self) -> None:
        self._stream.close()
        self._handle.close()

    def events(self) -> Iterator[tuple[bytes, Any, str | None]]:
        """(exact event bytes, parsed event, quarantine reason or None) for every event in the file."""
        if self._first_byte() == b"[":
            yield from self._array_events()
            return
        for line in self._stream:
            line = line.strip()
            if not line:
                continue
            try:
                value = loads(line)
            except NotJSON:
                yield line, None, "not JSON"
                continue
            yield line, value, event_problem(value, line)

    def _array_events(self) -> Iterator[tuple[bytes, Any, str | None]]:
        text = self._stream.read().decode("utf-8", errors="surrogateescape")
        try:
            for source, value in split_array(text):
                raw = source.encode("utf-8", errors="surrogateescape")
                yield raw, value, event_problem(value, raw)
        except NotJSON as error:
            yield b"", None, f"file is not a JSON array of events: {error}"

    def _first_byte(self) -> bytes:
        while True:
            byte = self._stream.peek(1)[:1]
            if not byte or byte not in b" \t\r\n\xef\xbb\xbf":
                return byte
            self._stream.read(1)


def ingest(
    files: list[Path],
    connection_id: str,
    writer: SpoolWriter,
    on_progress: Callable[[int], None] | None = None,
) -> IngestSummary:
    """Spool every event of ``files`` for ``connection_id``.

    ``on_progress`` receives the bytes of input consumed since its last call, after each durable chunk.
    """
    summary = IngestSummary()
    chunk: list[Record] = []
    for path in files:
        source = EventFile(path)
        reported = 0
        try:
            for raw, value, reason in source.events():
                now_us = time.time_ns() // 1_000
                if reason is None:
                    message_id = message_id_of(value, raw)
                    chunk.append(Record("event", connection_id, now_us, raw, message_id=message_id))
                    summary.accepted += 1
                else:
                    chunk.append(Record("rejected", connection_id, now_us, raw, reason=f"{path.name}: {reason}"))
                    summary.rejected += 1
                    summary.reasons[reason] += 1
                if len(chunk) >= CHUNK_RECORDS:
                    writer.append(chunk)
                    chunk.clear()
                    if on_progress:
                        position = source.position()
                        on_progress(position - reported)
                        reported = position
            if chunk:
                writer.append(chunk)
                chunk.clear()
            if on_progress:
                on_progress(path.stat().st_size - reported)
        finally:
            source.close()
    return summary

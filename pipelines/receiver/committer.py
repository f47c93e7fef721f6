"""Group commit from the event loop: many requests, one spool append (one fsync).

``SpoolWriter.append`` blocks on fsync, so it runs in a thread. Handing each request to its own thread would
cost a thread switch per request; instead requests queue here while one append is in flight, and the next
append takes everything queued. Throughput then grows with load instead of being capped at one fsync per
request, and each request still waits for its own records to be durable before it is answered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from pipelines.spool import Record


class Writer(Protocol):
    def append(self, records: Sequence[Record]) -> None: ...

    def close(self) -> None: ...


class Committer:
    """Durably append records for coroutines of one event loop, batching those that arrive together."""

    def __init__(self, writer: Writer) -> None:
        self.writer = writer
        self._queue: list[tuple[Sequence[Record], asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        # One thread: appends are serialized anyway, and it keeps the default pool free for everything else.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool")
        self.failing: OSError | None = None
        """The error of the last append when it failed and none has succeeded since: /health reports it."""

    async def commit(self, records: Sequence[Record]) -> None:
        """Return once ``records`` are durable; raise what the spool raised (SpoolError: disk full, fsync...)."""
        if not records:
            return
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._queue.append((records, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush_all())
        # If this request is cancelled, only its own future is: the flush still writes its records.
        await done

    async def _flush_all(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            group, self._queue = self._queue, []
            records = [r for recs, _ in group for r in recs] if len(group) > 1 else group[0][0]
            try:
                await loop.run_in_executor(self._thread, self.writer.append, records)
            except OSError as error:  # SpoolError: nothing in this group may be acknowledged
                self.failing = error
                _settle(group, error)
            except Exception as error:
                # Not an I/O fault (a record the spool refuses): retry each request alone so only its own fails.
                if len(group) == 1:
                    _settle(group, error)
                else:
                    for item in group:
                        try:
                            await loop.run_in_executor(self._thread, self.writer.append, item[0])
                            _settle([item], None)
                        except Exception as single:
                            _settle([item], single)
            else:
                self.failing = None
                _settle(group, None)

    async def close(self) -> None:
        """Finish queued appends, then close the writer (on shutdown, after the server stopped taking requests)."""
        if self._flusher is not None:
            await asyncio.wait({self._flusher}, timeout=30)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, self.writer.close)
        self._thread.shutdown(wait=False)


def _settle(group: list[tuple[Sequence[Record], asyncio.Future[None]]], error: BaseException | None) -> None:
    for _, future in group:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)

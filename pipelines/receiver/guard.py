"""uvicorn's httptools protocol with the limits an unauthenticated socket must meet before the app sees it.

uvicorn buffers request headers without a limit, has no timeout for reading a request (only for idling between
two of them) and accepts connections until the process runs out of descriptors. Anyone could therefore hold
memory with an endless header, hold sockets open forever (idle, slowloris headers, a body shorter than its
Content-Length), and with enough of them make accept() fail for real clients. This subclass adds, per connection:

- a header budget: more than :data:`MAX_HEADER_BYTES` before the headers end is answered 431 and closed;
- a deadline for the headers (:data:`HEADER_SECONDS`, from connect or the request's first byte) and one for the
  body (:data:`BODY_SECONDS` after the headers): past it the socket is closed, and a handler waiting for the
  body sees the client gone;
- a cap on open connections below the descriptor limit: a new connection over the cap closes the connection
  that has waited longest without a request being served (idle or still sending one), so a flood of idle
  sockets can no longer lock real clients out.

Nothing else of uvicorn changes: parsing, keep-alive, pipelining and graceful shutdown are its own.
"""

from __future__ import annotations

import asyncio
import resource
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEADER_BYTES = 64 * 1024
"""Request line plus headers. Segment sends well under 2 KB; the common server defaults are 8-64 KB."""
HEADER_SECONDS = 10.0
BODY_SECONDS = 30.0
"""The whole body (at most 500 KB) must arrive within this: 17 KB/s, far below any real client's rate."""
RESERVED_DESCRIPTORS = 32
"""Descriptors kept free of client sockets: spool segment, registry, logs, threads' needs."""
MAX_OPEN_FILES = 65536
"""The soft descriptor limit is raised up to the hard limit, at most to this."""

_HEADER_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b'content-length: 81\r\n\r\n{"success":false,"code":"headers_too_large","message":"request headers too large"}'
)
_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b'content-length: 75\r\n\r\n{"success":false,"code":"timeout","message":"request not received in time"}'
)


def raise_open_files_limit() -> int:
    """Raise the soft descriptor limit toward the hard one; returns the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = MAX_OPEN_FILES if hard == resource.RLIM_INFINITY else min(hard, MAX_OPEN_FILES)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return MAX_OPEN_FILES if soft == resource.RLIM_INFINITY else soft


def connection_cap() -> int:
    """Client sockets allowed at once: the descriptor limit less a reserve (at least 8)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    soft = MAX_OPEN_FILES if soft == resource.RLIM_INFINITY else soft
    return max(8, soft - RESERVED_DESCRIPTORS)


class GuardedProtocol(HttpToolsProtocol):
    """HttpToolsProtocol plus a header budget, read deadlines and a connection cap (see the module)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reading_headers = True
        self._header_bytes = 0
        self._deadline: asyncio.TimerHandle | None = None
        open_: dict[GuardedProtocol, None] | None = getattr(self.server_state, "guarded", None)
        if open_ is None:
            open_ = {}
            self.server_state.guarded = open_  # type: ignore[attr-defined]
        self._open = open_

    # ---- connections ------------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._open[self] = None
        self._arm(HEADER_SECONDS)
        if len(self._open) > cap():
            victim = next((c for c in self._open if not c._serving()), self)
            victim._close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._open.pop(self, None)
        self._disarm()
        super().connection_lost(exc)

    def _serving(self) -> bool:
        """The app holds a whole request: never evict it (its client is answered soon)."""
        cycle = self.cycle
        return (
            not self._reading_headers and self._deadline is None and cycle is not None and not cycle.response_complete
        )

    def _close(self) -> None:
        self._open.pop(self, None)
        self._disarm()
        if not self.transport.is_closing():
            self.transport.close()

    # ---- reading ----------------------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._reading_headers and not self.transport.is_closing():
            self._header_bytes += len(data)  # bounded by one read past the budget: the parser holds no more
            if self._header_bytes > MAX_HEADER_BYTES:
                self.transport.write(_HEADER_TOO_LARGE)
                self._close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_headers = True
        self._header_bytes = 0
        if self._deadline is None:  # a keep-alive connection's next request
            self._arm(HEADER_SECONDS)

    def on_headers_complete(self) -> None:
        self._reading_headers = False
        self._arm(BODY_SECONDS)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    # ---- deadlines --------------------------------------------------------------------------------------------

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._reading_headers and self._header_bytes:
            self.transport.write(_TIMEOUT)  # a request was started: say why it ends
        # A body still awaited: closing makes the handler's receive() report the client gone (nothing stored).
        self._close()


_cap: list[int] = []


def cap() -> int:
    """The connection cap of this process, set on first use (in each worker, after any fork): the descriptor
    limit is raised first, then the cap derived from it."""
    if not _cap:
        raise_open_files_limit()
        _cap.append(connection_cap())
    return _cap[0]

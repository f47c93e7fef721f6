"""Reading request bodies with hard bounds: never hold more than the limit + 1 byte of anyone's body.

Both the bytes on the wire and what gzip expands them to are bounded, so neither a huge upload nor a gzip bomb
(a few KB that inflate to gigabytes) can take the process's memory.
"""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable
from typing import Any

from pipelines.receiver.errors import HttpError, too_large

Receive = Callable[[], Awaitable[dict[str, Any]]]

MAX_BODY_BYTES = 500 * 1024
MAX_GZIP_MEMBERS = 8
"""Clients send one gzip member; each member costs a fresh inflater, so thousands of empty members in a 500 KB
body (25,600 took ~1 s of CPU on the event loop, before authentication) are refused after this many."""
DRAIN_BYTES = 4 * 2**20
"""After refusing a body, read and drop up to this much so the client gets our 413 instead of a reset socket."""


class ClientGone(Exception):
    """The client disconnected mid-request: there is nobody to answer."""


async def read_body(receive: Receive, declared_length: int | None, limit: int = MAX_BODY_BYTES) -> bytes:
    """The whole body, or 413 as soon as it is known to exceed ``limit`` (from Content-Length or while streaming)."""
    if declared_length is not None and declared_length > limit:
        await drain(receive, declared_length if declared_length <= DRAIN_BYTES else 0)
        raise too_large(f"request body over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            chunks.clear()
            if message.get("more_body", False):
                await drain(receive, DRAIN_BYTES - size)
            raise too_large(f"request body over {limit} bytes")
        if chunk:
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def drain(receive: Receive, budget: int) -> None:
    """Discard up to ``budget`` more body bytes (a bounded courtesy; the server closes the rest)."""
    while budget > 0:
        message = await receive()
        if message["type"] != "http.request":
            return
        budget -= len(message.get("body", b""))
        if not message.get("more_body", False):
            return


def gunzip(data: bytes, limit: int = MAX_BODY_BYTES) -> bytes:
    """Inflate a gzip body (all members) to at most ``limit`` bytes: 413 beyond it, 400 when corrupt."""
    out: list[bytes] = []
    size = 0
    rest = data
    while rest.strip(b"\x00"):  # gzip tolerates zero padding after the last member
        if len(out) == MAX_GZIP_MEMBERS:
            raise HttpError(400, "bad_encoding", f"gzip body of more than {MAX_GZIP_MEMBERS} members")
        inflater = zlib.decompressobj(wbits=31)
        try:
            chunk = inflater.decompress(rest, limit + 1 - size)
        except zlib.error:
            raise HttpError(400, "bad_encoding", "body is not valid gzip") from None
        size += len(chunk)
        if size > limit or inflater.unconsumed_tail:
            raise too_large(f"body inflates to over {limit} bytes")
        if not inflater.eof:
            raise HttpError(400, "bad_encoding", "gzip body is truncated")
        out.append(chunk)
        rest = inflater.unused_data
    if not out:
        raise HttpError(400, "bad_encoding", "empty gzip body")
    return out[0] if len(out) == 1 else b"".join(out)

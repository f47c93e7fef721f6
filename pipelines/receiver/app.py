"""The receiver as a raw ASGI application: routing, auth order, status codes, access log.

No framework: the hot path is a handful of dict lookups, and every byte of the body is read through
:mod:`pipelines.receiver.body`, which bounds it. The order of checks is the security argument and is the same
for every route: who is asking (404/401) and how big it is (413) before any parsing, and nothing stored for an
unauthenticated caller. A 200 is sent only after the spool has fsync'd the request's records.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

from pipelines import settings
from pipelines.activity import ActivityRecorder, RecordingWriter
from pipelines.connections import Connection, Registry
from pipelines.payloads import NotJSON, dumps, loads, split_array
from pipelines.receiver import auth
from pipelines.receiver.accesslog import AccessLog
from pipelines.receiver.body import ClientGone, gunzip, read_body
from pipelines.receiver.committer import Committer, Writer
from pipelines.receiver.errors import HttpError, too_large, unauthorized
from pipelines.receiver.intake import event_record, rejected_request
from pipelines.receiver.tracking import BATCH_PATHS, SINGLE_PATHS, Receipt, normalize
from pipelines.spool import Record, SpoolReader, SpoolWriter, probe_writable

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

access_log = logging.getLogger("pipelines.receiver.access")
log = logging.getLogger("pipelines.receiver")

MAX_BATCH_EVENTS = 2_500
RETRY_AFTER_SECONDS = b"5"
REGISTRY_REFRESH_SECONDS = 1.0
_OK = b'{"success":true}'
_WANTED_HEADERS = frozenset({b"content-length", b"content-encoding", b"authorization", b"x-signature"})


def _error_body(code: str, message: str) -> bytes:
    return orjson.dumps({"success": False, "code": code, "message": message})


class ReceiverApp:
    """ASGI app. Pass ``registry``/``writer`` to inject them (tests); by default both come from the data folder
    when the server starts (lifespan), one SpoolWriter per worker process."""

    def __init__(
        self,
        *,
        registry: Registry | None = None,
        writer: Writer | None = None,
        data_dir: Path | None = None,
        log_requests: bool = True,
    ) -> None:
        self._data = data_dir
        self._registry = registry
        self._committer = Committer(writer) if writer is not None else None
        self._access = AccessLog(access_log) if log_requests else None
        self._refreshed_at = 0.0
        self._activity: ActivityRecorder | None = None  # per-connection counts for the admin page

    # ---- lifecycle --------------------------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self._data if self._data is not None else settings.data_dir()

    def _ready(self) -> tuple[Registry, Committer]:
        """Open the registry and this process's spool segment on first need (after any fork)."""
        if self._registry is None:
            self._registry = Registry(self.data_dir)
        if self._committer is None:
            self._activity = ActivityRecorder(self.data_dir)
            spool = SpoolWriter(settings.Paths(self.data_dir).spool)
            self._committer = Committer(RecordingWriter(spool, self._activity))
        return self._registry, self._committer

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self._ready()
                except Exception as error:
                    log.exception("receiver cannot start")
                    await send({"type": "lifespan.startup.failed", "message": str(error)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._access is not None:
                    self._access.flush()
                if self._committer is not None:
                    await self._committer.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # ---- ASGI entry -------------------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        received_at_us = time.time_ns() // 1000
        status = 500
        try:
            status, body, extra = await self._dispatch(scope, receive, received_at_us)
        except ClientGone:
            status = 499  # nginx's "client closed request": nothing to send
            self._log(scope, status, started)
            return
        except HttpError as error:
            status, body, extra = await self._refuse(error, received_at_us)
        except OSError as error:  # SpoolError: our fault, so 5xx and the sender retries
            log.error("spool unavailable: %s", error)
            status, body, extra = 503, _error_body("unavailable", "spool unavailable"), _RETRY
        except Exception:
            log.exception("unexpected error on %s %s", scope.get("method"), scope.get("path"))
            status, body, extra = 500, _error_body("internal", "internal error"), ()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", b"%d" % len(body)),
                    *extra,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
        self._log(scope, status, started)

    def _log(self, scope: Scope, status: int, started: float) -> None:
        if self._access is not None:
            client = scope.get("client") or ("-", 0)
            self._access.add(client[0], scope["method"], scope["path"], status, time.perf_counter() - started)

    async def _refuse(self, error: HttpError, received_at_us: int) -> tuple[int, bytes, tuple[Any, ...]]:
        """Answer an HttpError, first quarantining an authenticated request's bytes when it carries them."""
        if error.quarantine is not None:
            registry, committer = self._ready()
            # Unreadable bodies can carry a writeKey we could not take out as JSON: never store a credential.
            kept = registry.redact(_redact_write_key(error.quarantine))
            record = rejected_request(error.connection_id, received_at_us, kept, error.message)
            try:
                await committer.commit([record])
            except OSError as spool_error:
                log.error("spool unavailable: %s", spool_error)
                return 503, _error_body("unavailable", "spool unavailable"), _RETRY
        return error.status, _error_body(error.code, error.message), ()

    async def _dispatch(self, scope: Scope, receive: Receive, received_at_us: int) -> tuple[int, bytes, Any]:
        path: str = scope["path"]
        method: str = scope["method"]
        if path.startswith("/v1/"):
            name = path[4:].rstrip("/")
            if name in BATCH_PATHS or name in SINGLE_PATHS:
                _require(method, "POST")
                await self._tracking(scope, receive, name, received_at_us)
                return 200, _OK, ()
        elif path.startswith("/webhooks/"):
            connection_id = path[10:].rstrip("/")
            if connection_id and "/" not in connection_id:
                _require(method, "POST")
                await self._webhook(scope, receive, connection_id, received_at_us)
                return 200, _OK, ()
        elif path == "/health":
            _require(method, "GET", "HEAD")
            return await self._health()
        raise HttpError(404, "not_found", "no such endpoint")

    # ---- routes -----------------------------------------------------------------------------------------------

    def _registry_now(self) -> Registry:
        """The registry, re-read at most once a second so `connections add/rotate` apply without a restart."""
        registry, _ = self._ready()
        now = time.monotonic()
        if now - self._refreshed_at >= REGISTRY_REFRESH_SECONDS:
            self._refreshed_at = now
            registry.refresh()
        return registry

    async def _webhook(self, scope: Scope, receive: Receive, connection_id: str, received_at_us: int) -> None:
        """Segment Webhooks destination: one event or an array, HMAC-signed over the raw body."""
        registry = self._registry_now()
        connection = registry.by_id(connection_id)
        if connection is None:
            raise HttpError(404, "unknown_connection", "unknown connection")
        headers = _headers(scope)
        signature = headers.get(b"x-signature")
        if not signature:
            self._refused(connection_id, "missing X-Signature", received_at_us)
            raise unauthorized("missing X-Signature")
        gzipped = _gzipped(headers)
        raw = await read_body(receive, _length(headers))
        secrets = registry.webhook_secrets(connection_id)
        if not auth.signature_ok(raw, signature, secrets) and not (
            connection.allow_legacy_batch_signature and auth.legacy_batch_signature_ok(raw, signature, secrets)
        ):
            self._refused(connection_id, "wrong signature", received_at_us)
            raise unauthorized("wrong signature")
        body = _inflate(raw, gzipped, connection_id)
        await self._committer_commit(_webhook_records(connection_id, received_at_us, body))

    def _refused(self, connection_id: str, reason: str, received_at_us: int) -> None:
        """Count a refused delivery for a known connection (a stale secret in Segment shows up on the page)."""
        if self._activity is not None:
            self._activity.refused(connection_id, reason, received_at_us)

    async def _tracking(self, scope: Scope, receive: Receive, name: str, received_at_us: int) -> None:
        """Segment HTTP Tracking API: Basic auth or body writeKey; single calls and batches."""
        registry = self._registry_now()
        headers = _headers(scope)
        connection: Connection | None = None
        user = auth.basic_auth_user(headers.get(b"authorization"))
        if user is not None:
            connection = registry.by_write_key(user)
            if connection is None:
                raise unauthorized("wrong write key")
        gzipped = _gzipped(headers)
        raw = await read_body(receive, _length(headers))
        body = _inflate(raw, gzipped, connection.connection_id if connection is not None else None)
        try:
            document = loads(body)
        except NotJSON as error:
            if connection is None:  # nobody we know: refuse, keep nothing
                raise HttpError(400, "invalid_json", f"not JSON: {error}") from None
            raise HttpError(
                400, "invalid_json", f"not JSON: {error}", quarantine=body, connection_id=connection.connection_id
            ) from None
        key = document.get("writeKey") if isinstance(document, dict) else None
        if connection is None:
            connection = registry.by_write_key(key) if isinstance(key, str) else None
            if connection is None:
                raise unauthorized("missing write key" if key is None else "wrong write key")
        elif key is not None and (not isinstance(key, str) or registry.by_write_key(key) != connection):
            # Two credentials naming different connections (or a wrong one): which source sent this is unknown.
            raise unauthorized("the writeKey in the body and the Authorization header disagree")
        records = _tracking_records(connection.connection_id, received_at_us, name, document)
        # A quarantined item (a batch item that is no object) is kept as sent: never with a credential in it.
        records = [r._replace(payload=registry.redact(r.payload)) if r.kind == "rejected" else r for r in records]
        await self._committer_commit(records)

    async def _committer_commit(self, records: list[Record]) -> None:
        _, committer = self._ready()
        await committer.commit(records)

    async def _health(self) -> tuple[int, bytes, Any]:
        """Liveness, whether the spool can write now, and its backlog: never a secret or a payload.

        A 503 "degraded" when the spool cannot make a record durable (disk full, read-only, not readable), so
        monitoring sees what every write is answering. After a failed append the probe decides, so the status
        recovers as soon as space returns, without waiting for the next event.
        """
        spool = settings.Paths(self.data_dir).spool
        loop = asyncio.get_running_loop()
        committer = self._committer
        problem: str | None = None
        if committer is not None and committer.failing is not None:
            probe = await loop.run_in_executor(None, probe_writable, spool)
            if probe is None:
                committer.failing = None
            else:
                problem = _error_name(probe)
        try:
            stats = await loop.run_in_executor(None, SpoolReader(spool).stats)
        except Exception as error:  # the process is alive even if the spool folder is not readable
            problem = problem or type(error).__name__
            return 503, orjson.dumps({"status": "degraded", "spool": {"error": problem}}), _RETRY
        counts = {
            "segments": stats.segments,
            "pending_bytes": stats.pending_bytes,
            "pending_records": stats.pending_records,
            "oldest_pending_received_at_us": stats.oldest_pending_received_at_us,
        }
        if problem is not None:
            body = {"status": "degraded", "spool": {"writable": False, "error": problem, **counts}}
            return 503, orjson.dumps(body), _RETRY
        return 200, orjson.dumps({"status": "ok", "spool": {"writable": True, **counts}}), ()


# ---- request pieces -----------------------------------------------------------------------------------------

_RETRY = ((b"retry-after", RETRY_AFTER_SECONDS),)


def _require(method: str, *allowed: str) -> None:
    if method not in allowed:
        raise HttpError(405, "method_not_allowed", f"use {' or '.join(allowed)}")


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return {k: v for k, v in scope["headers"] if k in _WANTED_HEADERS}


def _length(headers: dict[bytes, bytes]) -> int | None:
    value = headers.get(b"content-length")
    return int(value) if value is not None and value.isdigit() else None


def _gzipped(headers: dict[bytes, bytes]) -> bool:
    encoding = headers.get(b"content-encoding", b"").strip().lower()
    if encoding in (b"", b"identity"):
        return False
    if encoding == b"gzip":
        return True
    raise HttpError(415, "unsupported_encoding", "Content-Encoding must be gzip or identity")


def _inflate(raw: bytes, gzipped: bool, connection_id: str | None) -> bytes:
    """The body, gunzipped when it says so; a corrupt gzip from a known sender is quarantined as it came."""
    if not gzipped:
        return raw
    try:
        return gunzip(raw)
    except HttpError as error:
        if error.status == 400 and connection_id is not None:
            error.quarantine, error.connection_id = raw, connection_id
        raise


def _webhook_records(connection_id: str, received_at_us: int, body: bytes) -> list[Record]:
    """One event (stored as the exact request bytes) or an array (each element's exact bytes)."""
    if body.lstrip()[:1] == b"[":
        try:
            loads(body)  # strict first (no NaN, UTF-8 only); split_array then gives each element's exact bytes
            elements = list(split_array(body.decode("utf-8")))
        except (NotJSON, UnicodeDecodeError, RecursionError) as error:
            raise _bad_request(connection_id, body, f"not JSON: {error}") from None
        if len(elements) > MAX_BATCH_EVENTS:
            raise too_large(f"over {MAX_BATCH_EVENTS} events in one request")
        return [event_record(connection_id, received_at_us, v, s.encode("utf-8")) for s, v in elements]
    try:
        event = loads(body)
    except NotJSON as error:
        raise _bad_request(connection_id, body, f"not JSON: {error}") from None
    if not isinstance(event, dict):
        raise _bad_request(connection_id, body, "not an event: expected a JSON object or array")
    return [event_record(connection_id, received_at_us, event, body)]


def _tracking_records(connection_id: str, received_at_us: int, name: str, document: Any) -> list[Record]:
    receipt = Receipt(received_at_us)
    if name in BATCH_PATHS:
        items = document.get("batch") if isinstance(document, dict) else None
        if not isinstance(items, list):
            raise _bad_request(connection_id, _without_key(document), 'not a batch: expected {"batch": [...]}')
        if len(items) > MAX_BATCH_EVENTS:
            raise too_large(f"over {MAX_BATCH_EVENTS} events in one batch")
        return [
            event_record(
                connection_id,
                received_at_us,
                normalize(item, receipt, batch=document) if isinstance(item, dict) else item,
            )
            for item in items
        ]
    if not isinstance(document, dict):
        raise _bad_request(connection_id, _without_key(document), "not an event: expected a JSON object")
    event = normalize(document, receipt, call_type=SINGLE_PATHS[name])
    return [event_record(connection_id, received_at_us, event)]


_WRITE_KEY_VALUE = re.compile(rb'("writeKey"\s*:\s*")((?:[^"\\]|\\.)*)(")')


def _redact_write_key(raw: bytes) -> bytes:
    """Bytes to quarantine, with the value of any ``"writeKey": "..."`` they spell replaced."""
    if b"writeKey" not in raw:
        return raw
    return _WRITE_KEY_VALUE.sub(rb"\1[redacted]\3", raw)


def _error_name(error: OSError) -> str:
    """An OSError as its errno name (ENOSPC), never its message: a path may be in it."""
    return errno.errorcode.get(error.errno or 0, type(error).__name__)


def _without_key(document: Any) -> bytes:
    """A refused document as quarantine keeps it: re-serialized without its writeKey (a credential)."""
    if isinstance(document, dict):
        document = {k: v for k, v in document.items() if k != "writeKey"}
    return dumps(document)


def _bad_request(connection_id: str, raw: bytes, reason: str) -> HttpError:
    return HttpError(400, "invalid_event", reason, quarantine=raw, connection_id=connection_id)


def create_app() -> ReceiverApp:
    """Factory for the server (``uvicorn --factory``): each worker process builds its own app and spool writer."""
    return ReceiverApp()

"""The receiver in-process: every status code, auth path, limit and Tracking API rule (docs/receiver.md).

The ASGI app is called directly with a tiny driver, so a test controls exactly how the body arrives (one chunk,
many, or more than it announced) and runs in milliseconds. The spool is an in-memory writer except where the
real SpoolWriter itself is the point.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import gzip
import hashlib
import hmac
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipelines import connections as connections_module
from pipelines.connections import Registry
from pipelines.payloads import dumps, loads
from pipelines.receiver import auth, tracking
from pipelines.receiver.app import ReceiverApp
from pipelines.receiver.body import MAX_BODY_BYTES
from pipelines.spool import Record, SpoolError, SpoolReader, SpoolWriter

pytestmark = pytest.mark.timeout(30)

# ---- driver -----------------------------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[bytes, bytes]
    body: bytes
    receives: int = 0

    def json(self) -> Any:
        return json.loads(self.body)


async def _acall(
    app: ReceiverApp,
    method: str,
    path: str,
    body: bytes | Sequence[bytes] = b"",
    headers: dict[str, str] | None = None,
    *,
    query: bytes = b"",
    content_length: bool = True,
) -> Reply:
    chunks = [body] if isinstance(body, bytes) else list(body)
    hdrs = [(k.lower().encode(), v.encode("latin-1")) for k, v in (headers or {}).items()]
    if content_length and isinstance(body, bytes):
        hdrs.append((b"content-length", str(len(body)).encode()))
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": query,
        "headers": hdrs,
        "client": ("127.0.0.1", 5555),
    }
    sent: list[dict[str, Any]] = []
    state = {"receives": 0}

    async def receive() -> dict[str, Any]:
        i = state["receives"]
        state["receives"] += 1
        if i < len(chunks):
            return {"type": "http.request", "body": chunks[i], "more_body": i < len(chunks) - 1}
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    payload = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return Reply(start["status"], dict(start["headers"]), payload, state["receives"])


def call(app: ReceiverApp, method: str, path: str, body: bytes | Sequence[bytes] = b"", **kw: Any) -> Reply:
    return asyncio.run(_acall(app, method, path, body, **kw))


class MemoryWriter:
    """Stands in for SpoolWriter: keeps records, counts appends, fails on demand."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.appends = 0
        self.fail = False

    def append(self, records: Sequence[Record]) -> None:
        self.appends += 1
        if self.fail:
            raise SpoolError(errno.ENOSPC, "No space left on device")
        self.records.extend(records)

    def close(self) -> None:
        pass

    @property
    def events(self) -> list[Record]:
        return [r for r in self.records if r.kind == "event"]

    @property
    def rejected(self) -> list[Record]:
        return [r for r in self.records if r.kind == "rejected"]


@dataclass
class Env:
    app: ReceiverApp
    writer: MemoryWriter
    registry: Registry
    cid: str
    secret: bytes
    write_key: str
    other_secret: bytes
    legacy_cid: str
    legacy_secret: bytes
    extra: dict[str, Any] = field(default_factory=dict)


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return make_env(tmp_path)


def make_env(tmp_path: Path) -> Env:
    """Three connections (one allowing legacy batch signatures) and an app on an in-memory spool."""
    registry = Registry(tmp_path)
    conn, creds = registry.add("web")
    _, other = registry.add("other")
    legacy, legacy_creds = registry.add("legacy", allow_legacy_batch_signature=True)
    writer = MemoryWriter()
    app = ReceiverApp(registry=registry, writer=writer, data_dir=tmp_path)
    return Env(
        app,
        writer,
        registry,
        conn.connection_id,
        creds.webhook_secret.encode(),
        creds.write_key,
        other.webhook_secret.encode(),
        legacy.connection_id,
        legacy_creds.webhook_secret.encode(),
    )


def sign(secret: bytes, body: bytes) -> str:
    return hmac.new(secret, body, hashlib.sha1).hexdigest()


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def event(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"type": "track", "event": "Signed Up", "userId": "u1", "messageId": "m-1"}
    base.update(extra)
    return base


def hook(e: Env, body: bytes, signature: str | None, cid: str | None = None, **headers: str) -> Reply:
    if signature is not None:
        headers["X-Signature"] = signature
    return call(e.app, "POST", f"/webhooks/{cid or e.cid}", body, headers=headers)


def track_api(e: Env, path: str, document: Any, *, key: str | None = None, **kw: Any) -> Reply:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = basic(key)
    return call(e.app, "POST", path, dumps(document), headers=headers, **kw)


# ---- webhooks: signatures ---------------------------------------------------------------------------------------


def test_webhook_valid_signature_stores_exact_bytes(env: Env) -> None:
    body = b'{ "type": "track", "event": "Signed Up", "userId": "u1", "messageId": "m-1",\n "n": 1.50 }'
    reply = hook(env, body, sign(env.secret, body))
    assert (reply.status, reply.json()) == (200, {"success": True})
    [record] = env.writer.records
    assert (record.kind, record.connection_id, record.message_id, record.payload) == ("event", env.cid, "m-1", body)


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param(None, id="missing"),
        pytest.param("", id="empty"),
        pytest.param("0" * 40, id="wrong"),
        pytest.param("truncated", id="truncated"),
        pytest.param("uppercase", id="uppercase"),
        pytest.param("other-connection", id="other-connection-secret"),
        pytest.param("sha1=", id="prefixed"),
    ],
)
def test_webhook_bad_signature_is_401_and_stores_nothing(env: Env, signature: str | None) -> None:
    body = dumps(event())
    good = sign(env.secret, body)
    header = {
        "truncated": good[:39],
        "uppercase": good.upper(),
        "other-connection": sign(env.other_secret, body),
        "sha1=": "sha1=" + good,
    }.get(signature or "", signature)
    reply = hook(env, body, header)
    assert reply.status == 401
    assert env.writer.records == []


def test_webhook_signature_checked_before_parsing(env: Env) -> None:
    """Garbage with a wrong signature is 401 (not 400) and never stored."""
    reply = hook(env, b"{not json", "0" * 40)
    assert reply.status == 401
    assert env.writer.records == []


def test_webhook_unknown_connection_is_404(env: Env) -> None:
    body = dumps(event())
    assert hook(env, body, sign(env.secret, body), cid="0" * 20).status == 404
    assert env.writer.records == []


def test_webhook_rotation_grace_then_expiry(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = env.registry.rotate("web", grace=timedelta(hours=1))
    body = dumps(event())
    assert hook(env, body, sign(creds.webhook_secret.encode(), body)).status == 200
    assert hook(env, body, sign(env.secret, body)).status == 200  # old secret, inside the grace period
    later = datetime.now(UTC) + timedelta(hours=2)
    monkeypatch.setattr(connections_module, "_now", lambda now: now or later)
    assert hook(env, body, sign(env.secret, body)).status == 401  # grace over
    assert hook(env, body, sign(creds.webhook_secret.encode(), body)).status == 200
    assert len(env.writer.events) == 3


def test_webhook_array_signed_over_whole_body(env: Env) -> None:
    body = (
        b'[{"type":"track","event":"A","userId":"u","messageId":"a"},\n  '
        b'{"type":"page","anonymousId":"x","messageId":"b", "big": 123456789012345678901234567890}]'
    )
    reply = hook(env, body, sign(env.secret, body))
    assert reply.status == 200
    assert [r.message_id for r in env.writer.events] == ["a", "b"]
    # each element keeps its exact bytes, big integer included
    assert env.writer.events[1].payload == (
        b'{"type":"page","anonymousId":"x","messageId":"b", "big": 123456789012345678901234567890}'
    )


def _legacy_body() -> tuple[bytes, bytes]:
    first = b'{"type":"track","event":"A","userId":"u","messageId":"a"}'
    forged = b'{"type":"track","event":"Forged","userId":"victim","messageId":"evil"}'
    return first, b"[" + first + b"," + forged + b"]"


def test_webhook_first_element_signature_refused_by_default(env: Env) -> None:
    first, body = _legacy_body()
    assert hook(env, body, sign(env.secret, first)).status == 401
    assert env.writer.records == []


def test_webhook_first_element_signature_when_opted_in(env: Env) -> None:
    first, body = _legacy_body()
    reply = hook(env, body, sign(env.legacy_secret, first), cid=env.legacy_cid)
    assert reply.status == 200  # accepted, and this is exactly the unsafe part: the second event was never signed
    assert [r.message_id for r in env.writer.events] == ["a", "evil"]
    # the opt-in does not weaken anything else: a wrong signature is still refused
    assert hook(env, body, sign(env.secret, first), cid=env.legacy_cid).status == 401


def test_webhook_not_json_is_400_and_quarantined(env: Env) -> None:
    body = b"\x00 this is not json"
    reply = hook(env, body, sign(env.secret, body))
    assert reply.status == 400
    [record] = env.writer.records
    assert (record.kind, record.payload, record.connection_id) == ("rejected", body, env.cid)
    assert record.reason is not None and record.reason.startswith("not JSON")


@pytest.mark.parametrize("body", [b'"just a string"', b"42", b"[1, 2", b"null", b'[{"type": "track", "n": NaN}]'])
def test_webhook_not_an_event_shape_is_400(env: Env, body: bytes) -> None:
    reply = hook(env, body, sign(env.secret, body))
    assert reply.status == 400
    assert [r.payload for r in env.writer.rejected] == [body]


def test_webhook_gzip(env: Env) -> None:
    raw = gzip.compress(dumps(event()))
    reply = hook(env, raw, sign(env.secret, raw), **{"Content-Encoding": "gzip"})
    assert reply.status == 200
    assert env.writer.events[0].payload == dumps(event())


# ---- Tracking API: auth -----------------------------------------------------------------------------------------


def test_tracking_basic_auth(env: Env) -> None:
    reply = track_api(env, "/v1/track", event(), key=env.write_key)
    assert reply.status == 200
    assert env.writer.events[0].connection_id == env.cid


def test_tracking_body_write_key_is_used_then_removed(env: Env) -> None:
    reply = track_api(env, "/v1/batch", {"writeKey": env.write_key, "batch": [event(writeKey=env.write_key)]})
    assert reply.status == 200
    [record] = env.writer.events
    assert env.write_key.encode() not in record.payload


@pytest.mark.parametrize("path", ["/v1/batch", "/v1/identify"])
def test_tracking_body_write_key_that_is_not_text_is_401(env: Env, path: str) -> None:
    """A body writeKey holding a lone surrogate escape is no key (found by the long fuzz: it was a 500)."""
    key = b'"writeKey":"\\ud800' + env.write_key.encode() + b'"'
    item = dumps(event())
    body = b"{" + key + b',"batch":[' + item + b"]}" if path == "/v1/batch" else b"{" + key + b"," + item[1:]
    reply = call(env.app, "POST", path, body)
    assert reply.status == 401
    assert env.writer.records == []


@pytest.mark.parametrize("how", ["wrong-basic", "wrong-body", "missing", "bad-base64", "bearer"])
def test_tracking_bad_write_key_is_401(env: Env, how: str) -> None:
    document: dict[str, Any] = {"batch": [event()]}
    headers = {}
    if how == "wrong-basic":
        headers["Authorization"] = basic("nope")
    elif how == "wrong-body":
        document["writeKey"] = "nope"
    elif how == "bad-base64":
        headers["Authorization"] = "Basic ???"
    elif how == "bearer":
        headers["Authorization"] = "Bearer " + env.write_key
    reply = call(env.app, "POST", "/v1/batch", dumps(document), headers=headers)
    assert reply.status == 401
    assert env.writer.records == []


def test_tracking_wrong_basic_wins_over_good_body_key(env: Env) -> None:
    document = {"writeKey": env.write_key, "batch": [event()]}
    assert track_api(env, "/v1/batch", document, key="nope").status == 401


def test_tracking_text_plain_body(env: Env) -> None:
    """analytics.js posts text/plain (no CORS preflight) with the key in the body."""
    body = dumps({"writeKey": env.write_key, **event()})
    reply = call(env.app, "POST", "/v1/t", body, headers={"Content-Type": "text/plain;charset=UTF-8"})
    assert reply.status == 200


def test_tracking_gzip(env: Env) -> None:
    raw = gzip.compress(dumps({"batch": [event(), event(messageId="m-2")]}))
    reply = call(
        env.app,
        "POST",
        "/v1/batch",
        raw,
        headers={"Content-Encoding": "gzip", "Authorization": basic(env.write_key)},
    )
    assert reply.status == 200
    assert [r.message_id for r in env.writer.events] == ["m-1", "m-2"]


def test_gzip_bomb_is_413_without_inflating_it(env: Env) -> None:
    bomb = gzip.compress(b"[" + b" " * (8 * 2**20) + b"]")  # 8 MB of spaces in ~8 KB
    assert len(bomb) < MAX_BODY_BYTES
    reply = call(
        env.app, "POST", "/v1/batch", bomb, headers={"Content-Encoding": "gzip", "Authorization": basic(env.write_key)}
    )
    assert reply.status == 413
    assert env.writer.records == []


def test_corrupt_gzip_is_400(env: Env) -> None:
    raw = gzip.compress(dumps(event()))[:-6]
    reply = call(
        env.app, "POST", "/v1/track", raw, headers={"Content-Encoding": "gzip", "Authorization": basic(env.write_key)}
    )
    assert reply.status == 400
    assert [(r.kind, r.payload) for r in env.writer.records] == [("rejected", raw)]  # authenticated: kept


def test_unknown_content_encoding_is_415(env: Env) -> None:
    reply = call(env.app, "POST", "/v1/track", b"{}", headers={"Content-Encoding": "br"})
    assert reply.status == 415


def test_tracking_not_json_authenticated_is_quarantined(env: Env) -> None:
    reply = call(env.app, "POST", "/v1/batch", b"{oops", headers={"Authorization": basic(env.write_key)})
    assert reply.status == 400
    assert [(r.kind, r.payload) for r in env.writer.records] == [("rejected", b"{oops")]


def test_tracking_not_json_unauthenticated_stores_nothing(env: Env) -> None:
    assert call(env.app, "POST", "/v1/batch", b"{oops").status == 400
    assert env.writer.records == []


@pytest.mark.parametrize(("path", "document"), [("/v1/batch", {"batch": {}}), ("/v1/track", [1, 2])])
def test_tracking_wrong_shape_is_400_and_quarantined(env: Env, path: str, document: Any) -> None:
    reply = track_api(env, path, document, key=env.write_key)
    assert reply.status == 400
    assert len(env.writer.rejected) == 1


# ---- limits -----------------------------------------------------------------------------------------------------


def test_body_over_limit_by_content_length_is_413(env: Env) -> None:
    body = b"x" * (MAX_BODY_BYTES + 1)
    reply = call(env.app, "POST", "/v1/batch", body, headers={"Authorization": basic(env.write_key)})
    assert reply.status == 413
    assert env.writer.records == []


def test_body_at_limit_is_read(env: Env) -> None:
    document = {"batch": [event(messageId=f"m{i}") for i in range(2)], "pad": ""}
    document["pad"] = "y" * (MAX_BODY_BYTES - len(dumps(document)))
    assert len(dumps(document)) == MAX_BODY_BYTES
    assert track_api(env, "/v1/batch", document, key=env.write_key).status == 200


def test_streamed_body_stops_reading_past_limit(env: Env) -> None:
    """No Content-Length (chunked): reading stops at limit + 1, not at the end of a 40 MB body."""
    chunk = b"x" * 65536
    chunks = [chunk] * 640
    reply = call(
        env.app,
        "POST",
        "/v1/batch",
        chunks,
        headers={"Authorization": basic(env.write_key)},
        content_length=False,
    )
    assert reply.status == 413
    assert reply.receives <= 4 * 2**20 // 65536 + 2  # the bounded courtesy drain, never the whole upload


def test_event_over_32kb_is_quarantined_rest_accepted(env: Env) -> None:
    big = event(messageId="big", properties={"blob": "z" * 33_000})
    reply = track_api(env, "/v1/batch", {"batch": [big, event(messageId="small")]}, key=env.write_key)
    assert reply.status == 200
    assert [r.message_id for r in env.writer.events] == ["small"]
    [rejected] = env.writer.rejected
    assert rejected.reason == "event over 32 KB"
    assert b'"big"' in rejected.payload


def test_webhook_single_event_over_32kb_is_quarantined(env: Env) -> None:
    body = dumps(event(properties={"blob": "z" * 33_000}))
    assert hook(env, body, sign(env.secret, body)).status == 200
    assert [(r.kind, r.reason, r.payload) for r in env.writer.records] == [("rejected", "event over 32 KB", body)]


def test_batch_over_2500_events_is_413(env: Env) -> None:
    items = [{"type": "track", "event": "e", "userId": "u"}] * 2501
    assert track_api(env, "/v1/batch", {"batch": items}, key=env.write_key).status == 413
    body = dumps(items)
    assert hook(env, body, sign(env.secret, body)).status == 413
    assert env.writer.records == []


def test_batch_of_2500_events_is_accepted(env: Env) -> None:
    items = [event(messageId=f"m{i}") for i in range(2500)]
    assert track_api(env, "/v1/batch", {"batch": items}, key=env.write_key).status == 200
    assert len(env.writer.events) == 2500


# ---- per-event quarantine ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ({"event": "e", "userId": "u"}, "missing type"),
        ({"type": "click", "event": "e", "userId": "u"}, "invalid type: 'click'"),
        # a type that is not text (a list cannot even be looked up in a set: it was a 500, found by the long fuzz)
        ({"type": [], "event": "e", "userId": "u"}, "invalid type: a JSON array, not text"),
        ({"type": {"a": 1}, "event": "e", "userId": "u"}, "invalid type: a JSON object, not text"),
        ({"type": 7, "event": "e", "userId": "u"}, "invalid type: a JSON number, not text"),
        ({"type": "track", "event": "e"}, "missing userId and anonymousId"),
        ({"type": "track", "userId": "u"}, "track without event"),
        ({"type": "alias", "userId": "u"}, "alias without previousId"),
        ({"type": "group", "userId": "u"}, "group without groupId"),
        ({"type": "track", "event": "e", "userId": "u", "messageId": "x" * 101}, "messageId over 100 characters"),
        ("not an object", "not a JSON object"),
        ({"type": "track", "event": "half \ud800 pair", "userId": "u"}, "lone surrogate escape: not Unicode text"),
    ],
)
def test_each_quarantine_reason_in_a_batch(env: Env, bad: Any, reason: str) -> None:
    reply = track_api(env, "/v1/batch", {"batch": [bad, event(messageId="good")]}, key=env.write_key)
    assert reply.status == 200
    assert [r.message_id for r in env.writer.events] == ["good"]
    assert [r.reason for r in env.writer.rejected] == [reason]


def test_surrogate_pairs_and_escaped_backslashes_are_not_lone_surrogates(env: Env) -> None:
    body = b'{"type":"track","userId":"u","messageId":"ok","event":"\\ud83d\\ude00 C:\\\\ud800"}'
    assert hook(env, body, sign(env.secret, body)).status == 200
    assert [(r.kind, r.payload) for r in env.writer.records] == [("event", body)]


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ({"type": "track", "userId": "u"}, "track without event"),
        ({"type": "identify"}, "missing userId and anonymousId"),
        ({"type": "group", "userId": "u"}, "group without groupId"),
        ({"type": "alias", "userId": "u"}, "alias without previousId"),
    ],
)
def test_each_quarantine_reason_in_a_webhook(env: Env, bad: dict[str, Any], reason: str) -> None:
    body = dumps(bad)
    assert hook(env, body, sign(env.secret, body)).status == 200
    assert [(r.kind, r.reason, r.payload) for r in env.writer.records] == [("rejected", reason, body)]


# ---- spool failure ----------------------------------------------------------------------------------------------


def test_spool_failure_is_503_with_retry_after(env: Env) -> None:
    env.writer.fail = True
    body = dumps(event())
    reply = hook(env, body, sign(env.secret, body))
    assert reply.status == 503
    assert reply.headers[b"retry-after"] == b"5"
    assert track_api(env, "/v1/batch", {"batch": [event()]}, key=env.write_key).status == 503
    # a quarantine write that fails is our fault too: 503, not 400
    assert call(env.app, "POST", "/v1/batch", b"{oops", headers={"Authorization": basic(env.write_key)}).status == 503


def test_concurrent_requests_share_spool_appends(env: Env) -> None:
    async def burst() -> list[int]:
        replies = await asyncio.gather(
            *(
                _acall(
                    env.app,
                    "POST",
                    "/v1/track",
                    dumps(event(messageId=f"c{i}")),
                    headers={"Authorization": basic(env.write_key)},
                )
                for i in range(50)
            )
        )
        return [r.status for r in replies]

    assert asyncio.run(burst()) == [200] * 50
    assert len(env.writer.events) == 50
    assert env.writer.appends < 50  # group commit: requests waiting together share one append


def test_real_spool_round_trip(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    conn, creds = registry.add("web")
    writer = SpoolWriter(tmp_path / "spool")
    app = ReceiverApp(registry=registry, writer=writer, data_dir=tmp_path)
    body = dumps(event())
    reply = call(
        app,
        "POST",
        f"/webhooks/{conn.connection_id}",
        body,
        headers={"X-Signature": sign(creds.webhook_secret.encode(), body)},
    )
    assert reply.status == 200
    writer.close()
    with SpoolReader(tmp_path / "spool") as reader:
        records = [r for b in reader.batches() for r in b.records]
    assert [(r.message_id, r.payload) for r in records] == [("m-1", body)]


# ---- Tracking API semantics -------------------------------------------------------------------------------------


def _stored(e: Env) -> list[dict[str, Any]]:
    return [loads(r.payload) for r in e.writer.events]


def test_batch_context_and_integrations_merged_item_keys_win(env: Env) -> None:
    document = {
        "batch": [
            event(messageId="a", context={"ip": "1.1.1.1"}, integrations={"All": False}),
            event(messageId="b"),
        ],
        "context": {"ip": "9.9.9.9", "library": {"name": "lib"}},
        "integrations": {"All": True, "Mixpanel": False},
    }
    assert track_api(env, "/v1/batch", document, key=env.write_key).status == 200
    a, b = _stored(env)
    assert a["context"] == {"ip": "1.1.1.1", "library": {"name": "lib"}}
    assert a["integrations"] == {"All": False, "Mixpanel": False}
    assert b["context"] == {"ip": "9.9.9.9", "library": {"name": "lib"}}


def test_received_at_and_clock_skew_corrected_timestamp(env: Env) -> None:
    # the device clock is 1 h fast: sent "at 13:00:10" when it was about 12:00:10 here
    document = {
        "sentAt": "2024-05-01T13:00:10.000Z",
        "batch": [event(messageId="a", timestamp="2024-05-01T13:00:00.000Z")],
    }
    assert track_api(env, "/v1/batch", document, key=env.write_key).status == 200
    [stored] = _stored(env)
    received = tracking.parse_time(stored["receivedAt"])
    assert received is not None and abs(received - datetime.now(UTC)) < timedelta(seconds=10)
    assert tracking.parse_time(stored["timestamp"]) == received - timedelta(seconds=10)
    assert stored["originalTimestamp"] == "2024-05-01T13:00:00.000Z"
    assert stored["sentAt"] == "2024-05-01T13:00:10.000Z"
    assert env.writer.events[0].received_at_us // 1000 == int(received.timestamp() * 1000)


def test_timestamp_rules() -> None:
    receipt = tracking.Receipt(1_714_564_800_000_000)  # 2024-05-01T12:00:00Z
    no_time = tracking.normalize({"type": "track"}, receipt)
    assert no_time["timestamp"] == "2024-05-01T12:00:00.000Z" == no_time["receivedAt"]
    assert "originalTimestamp" not in no_time
    historical = tracking.normalize({"timestamp": "2020-01-01T00:00:00+02:00"}, receipt)
    assert historical["timestamp"] == "2020-01-01T00:00:00+02:00"  # no sentAt: kept as given
    assert historical["originalTimestamp"] == "2020-01-01T00:00:00+02:00"
    skewed = tracking.normalize(
        {"originalTimestamp": "2024-05-01T11:59:00Z", "sentAt": "2024-05-01T11:59:30.123456789Z"}, receipt
    )
    assert skewed["timestamp"] == "2024-05-01T11:59:29.876Z"  # 12:00:00 - 30.123456789 s
    unreadable = tracking.normalize({"timestamp": "yesterday", "sentAt": "2024-05-01T11:59:30Z"}, receipt)
    assert unreadable["timestamp"] == "yesterday"


def test_message_id_filled_when_absent_and_stable(env: Env) -> None:
    call_ = {"type": "track", "event": "e", "userId": "u", "timestamp": "2024-05-01T12:00:00Z"}
    assert track_api(env, "/v1/track", call_, key=env.write_key).status == 200
    assert track_api(env, "/v1/track", dict(call_), key=env.write_key).status == 200
    first, second = env.writer.events
    assert first.message_id and first.message_id == second.message_id  # a retried call deduplicates
    assert _stored(env)[0]["messageId"] == first.message_id


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/v1/track", "track"),
        ("/v1/page", "page"),
        ("/v1/screen", "screen"),
        ("/v1/identify", "identify"),
        ("/v1/group", "group"),
        ("/v1/alias", "alias"),
        ("/v1/t", "track"),
        ("/v1/p", "page"),
        ("/v1/s", "screen"),
        ("/v1/i", "identify"),
        ("/v1/g", "group"),
        ("/v1/a", "alias"),
    ],
)
def test_single_call_paths_set_type(env: Env, path: str, kind: str) -> None:
    document = {"type": "bogus", "event": "e", "userId": "u", "groupId": "g", "previousId": "p"}
    assert track_api(env, path, document, key=env.write_key).status == 200
    assert _stored(env)[0]["type"] == kind


def test_batch_short_path(env: Env) -> None:
    assert track_api(env, "/v1/b", {"batch": [event()]}, key=env.write_key).status == 200
    assert len(env.writer.events) == 1


def test_big_integers_survive_exactly(env: Env) -> None:
    body = b'{"batch":[{"type":"track","event":"e","userId":12345678901234567890123,"messageId":"m",'
    body += b'"properties":{"n":-98765432109876543210987654321,"f":0.5,"s":"\\ud83d\\ude00 \xc3\xa9"}}]}'
    reply = call(env.app, "POST", "/v1/batch", body, headers={"Authorization": basic(env.write_key)})
    assert reply.status == 200
    [record] = env.writer.events
    assert b'"userId":12345678901234567890123' in record.payload
    assert b'"n":-98765432109876543210987654321' in record.payload
    assert "😀 é".encode() in record.payload


# ---- codec and auth units -----------------------------------------------------------------------------------------


def test_codec_refuses_non_json_constants() -> None:
    from pipelines.payloads import NotJSON

    for text in (b"NaN", b'{"a": Infinity}', b"1e400", b"\xff", b"[" * 100_000):
        with pytest.raises(NotJSON):
            loads(text)


def test_first_element_bytes() -> None:
    assert auth.first_element(b' [ {"a": [1,2]} , {"b":2}]') == b'{"a": [1,2]}'
    assert auth.first_element(b'{"a":1}') is None


# ---- other routes -----------------------------------------------------------------------------------------------


def test_health_reports_spool_without_secrets(env: Env) -> None:
    reply = call(env.app, "GET", "/health")
    assert reply.status == 200
    doc = reply.json()
    assert doc["status"] == "ok"
    assert set(doc["spool"]) >= {"segments", "pending_bytes"}
    assert env.secret not in reply.body and env.write_key.encode() not in reply.body


def test_unknown_path_and_method(env: Env) -> None:
    assert call(env.app, "GET", "/nope").status == 404
    assert call(env.app, "GET", "/v1/batch").status == 405
    assert call(env.app, "POST", "/health").status == 405
    assert call(env.app, "POST", "/webhooks/").status == 404


def test_access_log_has_no_secrets_or_bodies(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    body = dumps(event(properties={"marker": "BODY-MARKER"}))
    signature = sign(env.secret, body)
    with caplog.at_level(logging.INFO, logger="pipelines.receiver"):
        hook(env, body, signature)
        call(
            env.app,
            "POST",
            "/v1/track",
            body,
            headers={"Authorization": basic(env.write_key)},
            query=b"writeKey=QSECRET",
        )
        call(env.app, "POST", "/v1/track", b"{oops", headers={"Authorization": basic(env.write_key)})
    text = caplog.text
    assert '"POST /v1/track" 200' in text and f'"POST /webhooks/{env.cid}" 200' in text
    for secret in (
        signature,
        env.write_key,
        basic(env.write_key),
        env.secret.decode(),
        "QSECRET",
        "BODY-MARKER",
        "oops",
    ):
        assert secret not in text

"""Hostile input and unlucky operators, in-process: each defect found by hardening, with the test that keeps it found.

The receiver is driven as in tests/test_receiver.py (the ASGI app called directly, an in-memory spool), so each
case runs in milliseconds. What needs a real process, socket or filesystem is in tests/test_hardening_server.py.
"""

from __future__ import annotations

import errno
import gzip
import logging
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from test_receiver import Env, basic, call, event, hook, make_env, sign, track_api

from pipelines.connections import ConnectionConfigError, Registry, validate_trait_path
from pipelines.payloads import MAX_DEPTH, NotJSON, dumps, loads
from pipelines.receiver import tracking
from pipelines.receiver.body import MAX_GZIP_MEMBERS
from pipelines.spool import Record, SpoolError, SpoolReader, SpoolWriter
from pipelines.validation import event_problem, identifier_text

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return make_env(tmp_path)


def _deep(depth: int) -> bytes:
    """An object ``depth`` levels deep, as text (orjson and the stdlib cannot write that deep)."""
    return b'{"a":' * depth + b'"deep"' + b"}" * depth


def _event_with(properties: bytes, message_id: bool = True) -> bytes:
    head = b'{"type":"track","event":"E","userId":"u1",' + (b'"messageId":"m-1",' if message_id else b"")
    return head + b'"properties":' + properties + b"}"


# ---- 4. a write key never reaches quarantine --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        pytest.param(b'{"writeKey": "KEY", "type": "track", oops', {}, id="not-json"),
        pytest.param(b'{"writeKey": "KEY", "type": "track", "n": NaN}', {}, id="nan"),
        pytest.param(b'{"writeKey": "KEY", "batch": [}', {"Content-Encoding": "gzip"}, id="plain-text-marked-gzip"),
        pytest.param(b"writeKey=KEY&type=track", {}, id="form-encoded"),
    ],
)
def test_quarantined_body_never_holds_the_write_key(env: Env, body: bytes, headers: dict[str, str]) -> None:
    body = body.replace(b"KEY", env.write_key.encode())
    reply = call(env.app, "POST", "/v1/batch", body, headers={"Authorization": basic(env.write_key), **headers})
    assert reply.status == 400
    [record] = env.writer.rejected
    assert env.write_key.encode() not in record.payload
    assert b"[redacted]" in record.payload  # the rest of the body is kept for whoever reads the quarantine


def test_quarantined_gzip_body_that_is_not_json_never_holds_the_write_key(env: Env) -> None:
    body = gzip.compress(b'{"writeKey": "%s", "n": NaN}' % env.write_key.encode())
    headers = {"Authorization": basic(env.write_key), "Content-Encoding": "gzip"}
    assert call(env.app, "POST", "/v1/track", body, headers=headers).status == 400
    [record] = env.writer.rejected
    assert env.write_key.encode() not in record.payload


# ---- also seen: two credentials naming different connections ------------------------------------------------------


def test_basic_key_and_body_write_key_of_different_connections_are_refused(env: Env) -> None:
    _, other = env.registry.add("third")
    document = {"writeKey": other.write_key, **event()}
    reply = track_api(env, "/v1/track", document, key=env.write_key)
    assert reply.status == 401 and "disagree" in reply.json()["message"]
    assert env.writer.records == []
    # the same key twice, or only one of them, is fine
    assert track_api(env, "/v1/track", {"writeKey": env.write_key, **event()}, key=env.write_key).status == 200
    assert track_api(env, "/v1/track", {"writeKey": other.write_key, **event()}).status == 200


# ---- 5. gzip member bombs ---------------------------------------------------------------------------------------


def test_gzip_member_bomb_is_refused_after_a_few_members(env: Env) -> None:
    empty = gzip.compress(b"")
    bomb = empty * (500 * 1024 // len(empty))  # ~25,000 empty members: ~1 s of CPU to inflate them all
    reply = call(env.app, "POST", "/v1/batch", bomb, headers={"Content-Encoding": "gzip"})
    assert reply.status == 400
    assert f"more than {MAX_GZIP_MEMBERS} members" in reply.json()["message"]
    # a body split into a few members (allowed by gzip) still works
    body = dumps({"batch": [event()]})
    step = len(body) // 4 + 1
    parts = b"".join(gzip.compress(body[i : i + step]) for i in range(0, len(body), step))
    reply = call(
        env.app, "POST", "/v1/batch", parts, headers={"Content-Encoding": "gzip", "Authorization": basic(env.write_key)}
    )
    assert reply.status == 200 and len(env.writer.events) == 1


# ---- 7. deep nesting: 400 and quarantine, never 500 ---------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/track", "/v1/batch"])
def test_event_nested_1000_levels_is_400_and_quarantined(env: Env, path: str) -> None:
    item = _event_with(_deep(1000), message_id=False)  # the server derives a messageId from the content
    body = b'{"batch":[' + item + b"]}" if path == "/v1/batch" else item
    reply = call(env.app, "POST", path, body, headers={"Authorization": basic(env.write_key)})
    assert reply.status == 400 and "nested deeper" in reply.json()["message"]
    [record] = env.writer.rejected
    assert record.payload == body


def test_webhook_nested_1000_levels_is_400_and_quarantined(env: Env) -> None:
    body = _event_with(_deep(1000))
    reply = hook(env, body, sign(env.secret, body))
    assert reply.status == 400
    assert [r.payload for r in env.writer.rejected] == [body]


def test_nesting_up_to_the_limit_is_accepted(env: Env) -> None:
    body = _event_with(_deep(MAX_DEPTH - 1))  # the event is one level more
    assert hook(env, body, sign(env.secret, body)).status == 200
    assert [r.payload for r in env.writer.events] == [body]
    body = _event_with(_deep(MAX_DEPTH))
    assert hook(env, body, sign(env.secret, body)).status == 400


# ---- 8. duplicate keys (I-JSON) -----------------------------------------------------------------------------------


def test_duplicate_keys_are_refused_and_quarantined_with_a_reason(env: Env) -> None:
    body = b'{"type":"bogus","type":"track","event":"E","userId":"u1","messageId":"m-1"}'
    reply = hook(env, body, sign(env.secret, body))
    assert reply.status == 400
    [record] = env.writer.records
    assert (record.kind, record.payload) == ("rejected", body)
    assert record.reason == "not JSON: duplicate key 'type'"


@pytest.mark.parametrize(
    "text",
    [
        b'{"a": 1, "a": 2}',
        b'{"a" :1,"a":2}',  # whitespace before the colon
        b'[{"p": {"x": 1, "y": {"z": 1, "z": 1}}}]',  # nested
        b'{"s": "\\u0022:", "a": 1, "a": 2}',  # a quote spelled as an escape inside a string
        b'{"n": 123456789012345678901234567890, "n": 1}',  # the exact (big integer) parser
    ],
)
def test_duplicate_keys_at_any_depth_are_not_json(text: bytes) -> None:
    with pytest.raises(NotJSON, match="duplicate key"):
        loads(text)


@pytest.mark.parametrize(
    "text", [b'{"s": "x\\":y", "a": 1}', b'{"a": {"a": {"a": 1}}}', b'[{"a": 1}, {"a": 2}]', b'{"a":1,\n"b":"\\" :"}']
)
def test_equal_keys_in_different_objects_or_inside_strings_are_fine(text: bytes) -> None:
    assert loads(text) is not None


# ---- 10. access log injection -----------------------------------------------------------------------------------


def test_access_log_escapes_newlines_and_terminal_codes(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="pipelines.receiver.access"):
        call(env.app, "GET", '/x\n1.2.3.4 "GET /health" 200 0.1ms\x1b[2J\x1b]0;owned\x07"\\')
    [line] = [r.getMessage() for r in caplog.records if r.name == "pipelines.receiver.access"]
    assert "\n" not in line and "\x1b" not in line and "\x07" not in line
    assert line.endswith(
        '"GET /x\\x0a1.2.3.4 \\"GET /health\\" 200 0.1ms\\x1b[2J\\x1b]0;owned\\x07\\"\\\\" 404 ' + line[-5:]
    )


# ---- 11. /health tells when the spool cannot write ------------------------------------------------------------------


def test_health_is_degraded_while_the_spool_cannot_write_and_recovers(env: Env, tmp_path: Path) -> None:
    (tmp_path / "spool").mkdir()
    assert call(env.app, "GET", "/health").json()["spool"]["writable"] is True
    env.writer.fail = True
    body = dumps(event())
    assert hook(env, body, sign(env.secret, body)).status == 503
    os.chmod(tmp_path / "spool", 0o500)  # the probe meets the same fault as the writer
    try:
        if os.access(tmp_path / "spool", os.W_OK):  # root ignores modes: make the probe fail another way
            (tmp_path / "spool").rename(tmp_path / "spool.away")
            (tmp_path / "spool").write_bytes(b"")
        reply = call(env.app, "GET", "/health")
        assert reply.status == 503 and reply.headers[b"retry-after"]
        assert reply.json()["status"] == "degraded"
    finally:
        os.chmod(tmp_path / "spool", 0o700)
        if (tmp_path / "spool.away").exists():
            (tmp_path / "spool").unlink()
            (tmp_path / "spool.away").rename(tmp_path / "spool")
    # space returns: /health says so at once, and writes work again
    reply = call(env.app, "GET", "/health")
    assert (reply.status, reply.json()["status"]) == (200, "ok")
    env.writer.fail = False
    assert hook(env, body, sign(env.secret, body)).status == 200


# ---- also seen: a failed spool write leaves no empty segment behind -----------------------------------------------


def test_failed_spool_writes_leave_no_empty_segments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spool = tmp_path / "spool"
    writer = SpoolWriter(spool)
    record = Record("event", "c", 1, b"{}", "m")

    def full(fd: int, data: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        real_write = os.write
        patch.setattr(
            os, "write", lambda fd, data: real_write(fd, data) if bytes(data[:8]) == b"SASPOOL\x01" else full(fd, data)
        )
        for _ in range(5):
            with pytest.raises(SpoolError):
                writer.append([record])
    writer.append([record])
    writer.close()
    segments = sorted(spool.glob("*.seg"))
    assert len(segments) == 1, [p.stat().st_size for p in segments]
    with SpoolReader(spool) as reader:
        assert [r.message_id for batch in reader.batches() for r in batch.records] == ["m"]


# ---- 6. one rule for ids, at intake and in the models ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("user_id", "text"),
    [
        (True, None),
        ([], None),
        ({"id": 1}, None),
        ("  ", None),
        (42, "42"),
        (42.0, "42"),
        (1.5, "1.5"),
        (-0.0, "0"),
        ("true", "true"),
    ],
)
def test_intake_reads_ids_as_the_models_do(user_id: Any, text: str | None) -> None:
    """The same cases as the dbt unit test test_identifiers_read_as_intake_reads_them."""
    assert identifier_text(user_id) == text
    problem = event_problem({"type": "page", "userId": user_id}, b"{}")
    assert (problem is None) == (text is not None)


def test_an_event_whose_only_id_is_true_is_quarantined(env: Env) -> None:
    body = dumps({"type": "track", "event": "E", "userId": True, "messageId": "m-1"})
    assert hook(env, body, sign(env.secret, body)).status == 200
    assert [r.reason for r in env.writer.rejected] == ["missing userId and anonymousId"]


def test_intake_reads_no_time_beyond_the_models_offsets() -> None:
    assert tracking.parse_time("2024-05-01T10:00:00+15:59") is not None
    assert tracking.parse_time("2024-05-01T10:00:00+16:00") is None
    assert tracking.parse_time("0000-05-01T10:00:00Z") is None


# ---- 12. a private data folder --------------------------------------------------------------------------------------


def test_data_folder_and_its_files_are_private(tmp_path: Path) -> None:
    """What `segment-accounts` sets at start-up (restrict_new_files), then a connection, a spooled event, a load."""
    from pipelines.loader import load
    from pipelines.settings import Paths, restrict_new_files

    data = tmp_path / "data"
    previous = os.umask(0o022)  # a usual umask: the fix must not depend on the operator's
    try:
        restrict_new_files()
        Registry(data).add("web")
        with SpoolWriter(Paths(data).spool) as writer:
            writer.append([Record("event", "c", 1, dumps(event()), "m-1")])
        load(Paths(data))
    finally:
        os.umask(previous)
    found = [data, *data.rglob("*")]
    names = {p.name for p in found}
    assert {"warehouse.duckdb", "spool", "cursor.json", "dlt", "connections.json"} <= names
    shared = [
        f"{oct(stat.S_IMODE(p.stat().st_mode))} {p.relative_to(tmp_path)}" for p in found if p.stat().st_mode & 0o077
    ]
    assert shared == []


# ---- also seen: trait paths ---------------------------------------------------------------------------------------


def test_trait_paths_are_bounded() -> None:
    assert validate_trait_path("company." + "a" * 200) == "company." + "a" * 200
    with pytest.raises(ConnectionConfigError, match="too long"):
        validate_trait_path("a" * 10_000)


def test_a_trait_path_edited_into_an_invalid_value_stops_the_load(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    registry.add("web", account_mapping="traits", account_id_trait="company.id")
    public = tmp_path / "connections.json"
    public.write_text(public.read_text().replace('"company.id"', '"company id; drop table x"'))
    from pipelines.loader import load
    from pipelines.settings import Paths

    with pytest.raises(ConnectionConfigError, match=r"connection 'web' in connections\.json: invalid account id trait"):
        load(Paths(tmp_path))


def test_a_quarantined_batch_item_never_holds_a_write_key(env: Env) -> None:
    reply = track_api(env, "/v1/batch", {"batch": [event(), env.write_key, [env.write_key]]}, key=env.write_key)
    assert reply.status == 200
    assert len(env.writer.rejected) == 2
    assert all(env.write_key.encode() not in r.payload for r in env.writer.records)

"""The receiver as users run it: `segment-accounts serve` in its own process, on loopback.

What only a real process shows: the unmodified Segment Python SDK talks to it; a kill -9 under concurrent load
loses no acknowledged event (a 200 means fsync'd); SIGTERM lets an in-flight request finish. Events are checked
where users find them: after `segment-accounts load`, in the warehouse's raw table.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pipelines.connections import Registry

pytestmark = pytest.mark.timeout(120)

BIN = Path(sys.executable).parent / "segment-accounts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One `segment-accounts serve` process on a loopback port, with every wait bounded."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.port = free_port()
        self.log = data / f"serve-{self.port}.log"
        env = {**os.environ, "SEGMENT_ACCOUNTS_DATA": str(data)}
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [str(BIN), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()}")
            try:
                if self.request("GET", "/health")[0] == 200:
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not start: {self.log.read_text()}")

    def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> Any:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def stop(self) -> bool:
        """SIGTERM and wait; True when the shutdown was graceful (the lifespan closed the spool)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            return False
        # uvicorn re-raises the SIGTERM it handled once it has shut down, so a clean stop may end "by signal"
        return code in (0, -signal.SIGTERM) and "Application shutdown complete" in self.log.read_text()


@pytest.fixture
def data(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


def load_raw(data: Path) -> dict[str, str]:
    """Run `segment-accounts load`, then read message_id -> payload from the raw table."""
    env = {**os.environ, "SEGMENT_ACCOUNTS_DATA": str(data)}
    done = subprocess.run([str(BIN), "load"], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    import duckdb

    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        rows = con.execute("select message_id, payload from segment_raw.raw_events").fetchall()
    return {str(m): str(p) for m, p in rows}


def test_signed_webhooks_and_segment_sdk_land_intact(data: Path, servers: list[Server]) -> None:
    registry = Registry(data)
    conn, creds = registry.add("web")
    server = Server(data)
    servers.append(server)

    # Webhooks: one event as Segment formats it (its exact bytes are the payload), and an array.
    single = (
        '{"type":"identify","userId":"u-1","messageId":"wh-1","traits":{"email":"ana@acme.io","name":"Ana é 😀"},'
        '"big":123456789012345678901234567890,"timestamp":"2024-05-01T12:00:00.000Z"}'
    ).encode()
    array = (
        b'[{"type":"track","event":"A","userId":"u-1","messageId":"wh-2"} ,\n'
        b' {"type":"group","userId":"u-1","groupId":"acme","messageId":"wh-3"}]'
    )
    for body in (single, array):
        status, reply = server.request(
            "POST", f"/webhooks/{conn.connection_id}", body, {"X-Signature": sign(creds.webhook_secret, body)}
        )
        assert (status, json.loads(reply)) == (200, {"success": True})
    status, _ = server.request("POST", f"/webhooks/{conn.connection_id}", single, {"X-Signature": "0" * 40})
    assert status == 401

    # The unmodified Segment SDK, synchronous module-level API, then a batching client with gzip.
    import segment.analytics as analytics
    from segment.analytics import Client

    sent_at = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    analytics.write_key = creds.write_key
    analytics.host = f"http://127.0.0.1:{server.port}"
    analytics.sync_mode = True
    analytics.default_client = None
    try:
        analytics.track("u-1", "Signed Up", {"plan": "pro", "n": 2**70}, message_id="sdk-1", timestamp=sent_at)
        analytics.identify("u-1", {"email": "ana@acme.io"}, message_id="sdk-2")
        analytics.group("u-1", "acme", {"name": "Acme"}, message_id="sdk-3")
        analytics.page("u-1", "Docs", "Home", {"path": "/"}, message_id="sdk-4")
        analytics.screen("u-1", "App", "Main", message_id="sdk-5")
        analytics.alias("anon-1", "u-1", message_id="sdk-6")
    finally:
        analytics.default_client = None
        analytics.sync_mode = False
        analytics.write_key = analytics.host = None
    errors: list[Any] = []
    host = f"http://127.0.0.1:{server.port}"
    client = Client(creds.write_key, host=host, gzip=True, on_error=lambda e, batch: errors.append(e))
    for i in range(20):
        client.track(anonymous_id="anon-2", event="Batched", properties={"i": i}, message_id=f"sdk-b{i}")
    client.flush()
    client.shutdown()
    assert errors == []
    assert server.stop()

    raw = load_raw(data)
    assert raw["wh-1"] == single.decode()  # byte for byte
    assert json.loads(raw["wh-3"]) == {"type": "group", "userId": "u-1", "groupId": "acme", "messageId": "wh-3"}
    tracked = json.loads(raw["sdk-1"])
    assert tracked["properties"] == {"plan": "pro", "n": 2**70}  # a 71-bit integer, exact
    assert tracked["originalTimestamp"] == "2024-05-01T12:00:00.000+00:00"
    assert tracked["context"]["library"]["name"] == "analytics-python"
    assert "writeKey" not in raw["sdk-1"] and creds.write_key not in "".join(raw.values())
    assert {json.loads(raw[f"sdk-{i}"])["type"] for i in range(1, 7)} == {
        "track",
        "identify",
        "group",
        "page",
        "screen",
        "alias",
    }
    assert [json.loads(raw[f"sdk-b{i}"])["properties"]["i"] for i in range(20)] == list(range(20))
    assert all("receivedAt" in json.loads(p) for k, p in raw.items() if k.startswith("sdk"))


def _client_loop(
    server: Server,
    path: str,
    make_body: Any,
    headers: Any,
    prefix: str,
    acked: list[str],
    cut: list[str],
    stop: threading.Event,
) -> None:
    """Send batches of 10 over one keep-alive connection until told to stop or the server dies."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        for n in range(200):  # bounded: at most 2,000 events per client
            if stop.is_set():
                return
            ids = [f"{prefix}-{n}-{i}" for i in range(10)]
            body = make_body(ids)
            try:
                conn.request("POST", path, body=body, headers=headers(body))
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                cut.extend(ids)  # killed mid-request: not acknowledged, may or may not be stored
                return
            if response.status == 200:
                acked.extend(ids)
    finally:
        conn.close()


def test_kill_9_under_load_loses_no_acknowledged_event(data: Path, servers: list[Server]) -> None:
    registry = Registry(data)
    conn, creds = registry.add("web")
    server = Server(data)
    servers.append(server)
    acked: list[str] = []  # list.extend is atomic under the GIL
    cut: list[str] = []
    stop = threading.Event()

    def webhook_body(ids: list[str]) -> bytes:
        return json.dumps([{"type": "track", "event": "e", "userId": "u", "messageId": m} for m in ids]).encode()

    def webhook_headers(body: bytes) -> dict[str, str]:
        return {"X-Signature": sign(creds.webhook_secret, body)}

    def api_body(ids: list[str]) -> bytes:
        batch = [{"type": "page", "anonymousId": "a", "messageId": m} for m in ids]
        return json.dumps({"batch": batch, "writeKey": creds.write_key}).encode()

    clients = [
        threading.Thread(
            target=_client_loop,
            args=(server, f"/webhooks/{conn.connection_id}", webhook_body, webhook_headers, f"w{k}", acked, cut, stop),
        )
        for k in range(2)
    ] + [
        threading.Thread(
            target=_client_loop, args=(server, "/v1/batch", api_body, lambda b: {}, f"a{k}", acked, cut, stop)
        )
        for k in range(2)
    ]
    for t in clients:
        t.start()
    deadline = time.monotonic() + 30
    while len(acked) < 2_000 and time.monotonic() < deadline and any(t.is_alive() for t in clients):
        time.sleep(0.005)
    server.proc.send_signal(signal.SIGKILL)  # mid-traffic: several requests are in flight
    server.proc.wait(timeout=10)
    stop.set()
    for t in clients:
        t.join(timeout=15)
    snapshot = list(acked)
    assert len(snapshot) >= 1_000 and cut, "the kill did not land mid-traffic"

    after = Server(data)  # restarts on the same spool: a new segment, the old one's torn tail is skipped
    servers.append(after)
    body = json.dumps({"type": "track", "event": "e", "userId": "u", "messageId": "after-restart"}).encode()
    assert after.request("POST", f"/webhooks/{conn.connection_id}", body, webhook_headers(body))[0] == 200
    assert after.stop()

    stored = load_raw(data)
    missing = set(snapshot) - set(stored)
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:5]}"
    assert "after-restart" in stored


def test_sigterm_lets_an_in_flight_request_finish(data: Path, servers: list[Server]) -> None:
    registry = Registry(data)
    conn, creds = registry.add("web")
    server = Server(data)
    servers.append(server)
    body = json.dumps({"type": "track", "event": "e", "userId": "u", "messageId": "in-flight"}).encode()
    head = (
        f"POST /webhooks/{conn.connection_id} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Length: {len(body)}\r\nX-Signature: {sign(creds.webhook_secret, body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
        sock.sendall(head + body[:10])  # the request has started; the rest of its body is still to come
        time.sleep(0.5)
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert server.proc.poll() is None, "the server quit with a request in flight"
        sock.sendall(body[10:])
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.endswith(b"}"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200"), reply
    assert server.stop()
    from pipelines.spool import SpoolReader

    with SpoolReader(data / "spool") as reader:
        ids = [r.message_id for b in reader.batches() for r in b.records]
    assert ids == ["in-flight"]

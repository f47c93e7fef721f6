"""Slow and greedy clients against a real `serve` process: what only sockets, descriptors and RSS show.

The server runs as users run it (uvicorn, httptools, the guard), with its read deadlines shortened to a second so
that a test waits seconds, not minutes. Memory is read from /proc (Linux).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import json
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.connections import Registry
from pipelines.spool import SpoolReader

pytestmark = [pytest.mark.timeout(120), pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")]

_SERVE = """
import sys
from pipelines.receiver import guard, server
guard.HEADER_SECONDS = guard.BODY_SECONDS = float(sys.argv[2])
server.serve("127.0.0.1", int(sys.argv[1]), access_log=False)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`serve` in its own process; ``open_files`` sets its descriptor limit (soft and hard)."""

    def __init__(self, data: Path, *, deadline_seconds: float = 1.0, open_files: int | None = None) -> None:
        self.port = free_port()
        self.log = data / "serve.log"
        Registry(data).add("web")

        def limit() -> None:
            if open_files is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _SERVE, str(self.port), str(deadline_seconds)],
                env={**os.environ, "SEGMENT_ACCOUNTS_DATA": str(data)},
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=limit,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if self.health() == 200:
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"server did not start: {self.log.read_text()}")

    def health(self) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", "/health")
            return conn.getresponse().status
        finally:
            conn.close()

    def rss_kb(self, field: str = "VmRSS") -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise AssertionError(field)

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path)
    yield s
    s.stop()


def closed_by_server(sock: socket.socket, within: float) -> tuple[bool, bytes]:
    """Wait up to ``within`` s for the server to close ``sock``; returns (closed, what it sent first)."""
    sock.settimeout(within)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except TimeoutError:
        return False, received
    except ConnectionResetError:
        pass
    return True, received


# ---- 2. header flood ----------------------------------------------------------------------------------------------


def test_endless_headers_get_431_and_memory_stays_bounded(server: Server) -> None:
    before = server.rss_kb()
    sock = server.connect()
    sock.sendall(b"POST /v1/batch HTTP/1.1\r\nHost: x\r\n")
    line = b"X-Flood: " + b"a" * 1000 + b"\r\n"
    sent = 0
    try:
        while sent < 32 * 2**20:  # 32 MiB of header lines, never finished
            sock.sendall(line * 64)
            sent += len(line) * 64
    except (BrokenPipeError, ConnectionResetError):
        pass
    closed, reply = closed_by_server(sock, 10)
    assert closed and sent < 32 * 2**20, f"the server read {sent} bytes of headers"
    assert reply.startswith(b"HTTP/1.1 431")
    assert server.rss_kb() - before < 8 * 1024  # KB: one connection holds at most its budget and one read
    assert server.health() == 200


# ---- 3. read deadlines and the connection cap -----------------------------------------------------------------------


def test_idle_slowloris_and_short_body_sockets_are_closed(server: Server) -> None:
    idle = server.connect()
    slow_headers = server.connect()
    short_body = server.connect()
    short_body.sendall(b'POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"batch": [')
    slow_headers.sendall(b"POST /v1/batch HTTP/1.1\r\n")
    try:
        for _ in range(8):  # a header byte every 0.3 s: each one would have reset an idle timer
            slow_headers.sendall(b"X")
            time.sleep(0.3)
    except (BrokenPipeError, ConnectionResetError):
        pass  # closed by the server before the 8th byte: its deadline counts from the connect
    assert closed_by_server(idle, 10)[0]
    closed, reply = closed_by_server(slow_headers, 10)
    assert closed and reply.startswith(b"HTTP/1.1 408")
    assert closed_by_server(short_body, 10)[0]
    assert server.health() == 200


def test_idle_sockets_cannot_exhaust_descriptors(tmp_path: Path) -> None:
    """With 64 descriptors, 60 idle sockets used to make every real request fail with a reset."""
    server = Server(tmp_path, deadline_seconds=60, open_files=64)
    try:
        idle = [server.connect() for _ in range(60)]
        time.sleep(0.5)  # let the server accept them all
        assert server.health() == 200
        assert server.health() == 200
        for sock in idle:
            sock.close()
    finally:
        server.stop()


def test_a_thousand_idle_sockets_leave_the_server_answering(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1100:
        pytest.skip(f"this process may open only {hard} descriptors")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1100) if hard == resource.RLIM_INFINITY else hard, hard))
    server = Server(tmp_path, deadline_seconds=60, open_files=512)
    idle: list[socket.socket] = []
    try:
        for _ in range(1000):
            idle.append(server.connect())
        assert server.health() == 200
        assert server.rss_kb() < 200 * 1024
    finally:
        for sock in idle:
            sock.close()
        server.stop()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# ---- a real full disk -----------------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs mounted for the test (needs root: CI runs as root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root (CI runs as root)")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(path: Path) -> None:
    """Write until the filesystem refuses (ENOSPC), down to its last bytes."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (65536, 4096, 512, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)


def test_full_disk_503_then_recovery_loses_no_acknowledged_event(small_disk: Path) -> None:
    data = small_disk / "data"
    server = Server(data, deadline_seconds=10)
    secret = Registry(data).webhook_secrets(Registry(data).list()[0].connection_id)[0]
    cid = Registry(data).list()[0].connection_id
    acknowledged: list[str] = []
    statuses: list[int] = []

    def post(message_id: str) -> tuple[int, dict[str, str]]:
        body = json.dumps({"type": "track", "event": "E", "userId": "u", "messageId": message_id}).encode()
        signature = hmac.new(secret, body, hashlib.sha1).hexdigest()
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        try:
            conn.request("POST", f"/webhooks/{cid}", body=body, headers={"X-Signature": signature})
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                acknowledged.append(message_id)
            statuses.append(response.status)
            return response.status, dict(response.getheaders())
        finally:
            conn.close()

    try:
        for i in range(20):
            assert post(f"before-{i}")[0] == 200
        _fill(small_disk / "filler")
        refused = 0
        for i in range(40):  # signed webhooks while the disk is full
            status, headers = post(f"full-{i}")
            assert status in (200, 503), status
            if status == 503:
                refused += 1
                assert headers.get("retry-after")
        assert refused > 0
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("GET", "/health")
        health = conn.getresponse()
        assert (health.status, json.loads(health.read())["status"]) == (503, "degraded")
        conn.close()
        (small_disk / "filler").unlink()  # space returns
        assert server.health() == 200
        for i in range(20):
            assert post(f"after-{i}")[0] == 200
    finally:
        server.stop()
    with SpoolReader(data / "spool") as reader:
        spooled = {r.message_id for batch in reader.batches() for r in batch.records if r.kind == "event"}
    lost = [m for m in acknowledged if m not in spooled]
    print(f"\nfull disk: {len(statuses)} webhooks, {len(acknowledged)} acknowledged, {statuses.count(503)} 503")
    print(f"full disk: lost {len(lost)}")
    assert lost == []
    assert not [p for p in (data / "spool").glob("*.seg") if p.stat().st_size <= 8]  # no empty segments left


# ---- bigger floods (long) -------------------------------------------------------------------------------------------


@pytest.mark.long
def test_floods_together_leave_memory_bounded_and_a_normal_client_answered(tmp_path: Path) -> None:
    """8 endless-header sockets (256 MiB between them), 500 idle sockets and gzip member bombs at once, for 20 s,
    while a normal client polls /health: every answer 200, and the server's RSS never 64 MB over its start."""
    import gzip
    import threading

    server = Server(tmp_path, deadline_seconds=2)
    base = server.rss_kb()
    stop = threading.Event()
    peak = [base]

    def flood() -> None:
        line = b"X-Flood: " + b"a" * 1000 + b"\r\n"
        sent = 0
        while not stop.is_set() and sent < 32 * 2**20:
            try:
                with server.connect() as s:
                    s.sendall(b"POST /v1/batch HTTP/1.1\r\n")
                    while not stop.is_set():
                        s.sendall(line * 64)
                        sent += len(line) * 64
            except OSError:
                pass

    def bombs() -> None:
        empty = gzip.compress(b"")
        body = empty * (500 * 1024 // len(empty))
        while not stop.is_set():
            try:
                conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
                conn.request("POST", "/v1/batch", body=body, headers={"Content-Encoding": "gzip"})
                assert conn.getresponse().status == 400
                conn.close()
            except OSError:
                pass

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], server.rss_kb())
            time.sleep(0.02)

    threads = [threading.Thread(target=f) for f in [flood] * 8 + [bombs] * 2 + [sample]]
    idle = [server.connect() for _ in range(500)]
    try:
        for t in threads:
            t.start()
        until = time.monotonic() + 20
        answered = 0
        while time.monotonic() < until:
            assert server.health() == 200
            answered += 1
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        for s in idle:
            s.close()
        server.stop()
    print(f"\nfloods: {answered} health checks answered, RSS {base // 1024} MB -> peak {peak[0] // 1024} MB")
    assert peak[0] - base < 64 * 1024

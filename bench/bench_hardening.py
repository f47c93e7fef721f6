"""The receiver under slow and greedy clients: a normal client's latency during each attack, against the same
client on the idle server in the same run, and the server's memory.

One `serve` process (uvicorn + the guard, default limits) on loopback. A normal client sends signed webhooks
one after another; attackers run in their own processes (so they do not share the client's GIL):

- header flood: sockets streaming endless header lines (each is cut at 64 KB with a 431; they reconnect);
- slowloris: sockets sending one header byte a second (cut at the 10 s header deadline; they reconnect);
- idle: 1,000 sockets that connect and send nothing;
- gzip members: 500 KB bodies of ~25,000 empty gzip members, unauthenticated, back to back;
- gzip ratio: bodies of a few KB that inflate to 8 MB, back to back.

Prints, per attack, the normal client's p50 and p99 as ratios of its idle figures (goal: p99 within 2x) and
the server's peak RSS while it lasted (sampled from /proc every 20 ms). Figures only: the machine is shared.

    .venv/bin/python bench/bench_hardening.py [--seconds 8]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import hmac
import http.client
import json
import multiprocessing
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

SERVE = (
    "from pipelines.receiver import server; import sys; server.serve('127.0.0.1', int(sys.argv[1]), access_log=False)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# ---- attackers (each runs in its own process until killed) -----------------------------------------------------------


def header_flood(port: int) -> None:
    line = b"X-Flood: " + b"a" * 1000 + b"\r\n"
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(b"POST /v1/batch HTTP/1.1\r\nHost: x\r\n")
                while True:
                    s.sendall(line * 64)
        except OSError:
            time.sleep(0.01)


def slowloris(port: int, sockets: int = 200) -> None:
    open_: list[socket.socket] = []
    while True:
        while len(open_) < sockets:
            try:
                s = socket.create_connection(("127.0.0.1", port))
                s.sendall(b"POST /v1/batch HTTP/1.1\r\n")
                open_.append(s)
            except OSError:
                time.sleep(0.05)
                break
        for s in list(open_):
            try:
                s.sendall(b"X")
            except OSError:
                open_.remove(s)
                s.close()
        time.sleep(1)


def idle(port: int, sockets: int = 1000) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, sockets + 100)), hard))
    open_ = []
    for _ in range(sockets):
        try:
            open_.append(socket.create_connection(("127.0.0.1", port)))
        except OSError:
            break
    while True:  # reopen what the server closed
        time.sleep(1)
        for i, s in enumerate(open_):
            try:
                s.setblocking(False)
                if s.recv(1) == b"":
                    s.close()
                    open_[i] = socket.create_connection(("127.0.0.1", port))
            except BlockingIOError:
                pass
            except OSError:
                pass


def _poster(port: int, body: bytes) -> None:
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("POST", "/v1/batch", body=body, headers={"Content-Encoding": "gzip"})
            conn.getresponse().read()
            conn.close()
        except OSError:
            time.sleep(0.01)


def gzip_members(port: int) -> None:
    empty = gzip.compress(b"")
    _poster(port, empty * (500 * 1024 // len(empty)))


def gzip_ratio(port: int) -> None:
    _poster(port, gzip.compress(b"[" + b" " * (8 * 2**20) + b"]"))


ATTACKS: dict[str, tuple[Callable[[int], None], int]] = {
    "header flood (1 socket)": (header_flood, 1),
    "slowloris (200 sockets)": (slowloris, 1),
    "1,000 idle sockets": (idle, 1),
    "gzip member bombs (1 client)": (gzip_members, 1),
    "gzip ratio bombs (1 client)": (gzip_ratio, 1),
}


# ---- the normal client ---------------------------------------------------------------------------------------------


def normal_client(port: int, cid: str, secret: bytes, seconds: float) -> list[float]:
    """Signed single-event webhooks one after another on a keep-alive connection: each latency in ms."""
    latencies = []
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    until = time.monotonic() + seconds
    i = 0
    while time.monotonic() < until:
        i += 1
        body = json.dumps({"type": "track", "event": "E", "userId": "u", "messageId": f"n-{time.time_ns()}-{i}"})
        raw = body.encode()
        headers = {"X-Signature": hmac.new(secret, raw, hashlib.sha1).hexdigest()}
        started = time.perf_counter()
        try:
            conn.request("POST", f"/webhooks/{cid}", body=raw, headers=headers)
            response = conn.getresponse()
            response.read()
            ok = response.status == 200
        except OSError:
            ok = False
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        latencies.append((time.perf_counter() - started) * 1000 if ok else float("inf"))
    conn.close()
    return latencies


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds per measurement")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from pipelines.connections import Registry

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        conn, creds = Registry(data).add("bench")
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-c", SERVE, str(port)],
            env={**os.environ, "SEGMENT_ACCOUNTS_DATA": str(data)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(300):
                try:
                    socket.create_connection(("127.0.0.1", port)).close()
                    break
                except OSError:
                    time.sleep(0.1)
            secret = creds.webhook_secret.encode()
            normal_client(port, conn.connection_id, secret, 1.0)  # warm-up
            base_rss = rss_kb(server.pid)
            idle_lat = normal_client(port, conn.connection_id, secret, args.seconds)
            idle_p50, idle_p99 = p(idle_lat, 0.5), p(idle_lat, 0.99)
            print(
                f"idle: {len(idle_lat)} requests, p50 {idle_p50:.2f} ms, p99 {idle_p99:.2f} ms, "
                f"RSS {base_rss / 1024:.0f} MB"
            )
            print(f"{'attack':32} {'requests':>8} {'failed':>6} {'p50 x':>6} {'p99 x':>6} {'peak RSS':>9}")
            for name, (attack, copies) in ATTACKS.items():
                workers = [multiprocessing.Process(target=attack, args=(port,), daemon=True) for _ in range(copies)]
                for w in workers:
                    w.start()
                time.sleep(1.0)  # let the attack build up
                peak = [rss_kb(server.pid)]
                stop = threading.Event()

                def sample(peak: list[int] = peak, stop: threading.Event = stop) -> None:
                    while not stop.is_set():
                        peak[0] = max(peak[0], rss_kb(server.pid))
                        time.sleep(0.02)

                sampler = threading.Thread(target=sample)
                sampler.start()
                lat = normal_client(port, conn.connection_id, secret, args.seconds)
                stop.set()
                sampler.join()
                for w in workers:
                    w.kill()
                    w.join()
                done = [x for x in lat if x != float("inf")]
                failed = len(lat) - len(done)
                p50 = p(done, 0.5) / idle_p50 if done else float("inf")
                p99 = p(lat, 0.99) / idle_p99
                print(f"{name:32} {len(lat):8d} {failed:6d} {p50:6.2f} {p99:6.2f} {peak[0] / 1024:7.0f} MB")
                time.sleep(12)  # the server closes what the attack left (deadlines are 10 s)
        finally:
            server.terminate()
            server.wait(timeout=60)


if __name__ == "__main__":
    main()

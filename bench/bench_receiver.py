"""Receiver throughput and latency, against the same server answering a bare 200 in the same run.

Prints figures only (no pass/fail): machines are shared and noisy, so what matters is the ratio against the
baseline measured minutes apart on the same machine. Per server (uvicorn+httptools+uvloop, granian):

- bare: a trivial ASGI app that reads the body and answers 200 (the server's own ceiling);
- webhook: signed single-event webhooks, each acknowledged only after its fsync (goal: >= 60% of bare);
- batch: /v1/batch with BATCH events per request, events per second (goal: >= 100,000);
- p50 / p99 latency of each, and of one webhook client alone (the fsync floor).

The load generator is wrk (``apt-get install wrk``) when present: C, one thread, far cheaper per request than
the server. Without it, several processes of keep-alive ``http.client`` loops stand in. Loopback only.

    .venv/bin/python bench/bench_receiver.py [--duration 5] [--connections 32] [--servers uvicorn,granian]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import http.client
import importlib.util
import json
import multiprocessing
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OK = b'{"success":true}'


# ---- the baseline app and the server processes ------------------------------------------------------------------


async def bare_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reads the whole body and answers 200: what any receiver costs before doing its job."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(OK))],
        }
    )
    await send({"type": "http.response.body", "body": OK})


def serve_main(app: str, server: str, port: int, access_log: bool, workers: int = 1) -> None:
    """Child process: ``server`` serving the receiver or the bare app with ``workers`` processes."""
    target = "pipelines.receiver.app:create_app" if app == "receiver" else "bench_receiver:bare_app"
    if server == "uvicorn" and app == "receiver":
        from pipelines.receiver.server import serve

        serve("127.0.0.1", port, workers, access_log=access_log)
    elif server == "uvicorn":
        import uvicorn

        uvicorn.run(
            target, host="127.0.0.1", port=port, workers=workers, loop="uvloop", http="httptools", access_log=False
        )
    else:  # the same app on granian (not a project dependency: measured here to keep checking the choice)
        from granian import Granian
        from granian.constants import Interfaces, Loops

        from pipelines.receiver.server import log_config

        Granian(
            target,
            address="127.0.0.1",
            port=port,
            interface=Interfaces.ASGI,
            workers=workers,
            loop=Loops.uvloop,
            factory=app == "receiver",
            log_access=False,
            log_dictconfig=log_config(access_log),
        ).serve()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its descendants (granian serves from a child process)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, IndexError, ValueError):
            continue
    return total


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    def __init__(self, app: str, server: str, data: Path, access_log: bool = True, workers: int = 1) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            "SEGMENT_ACCOUNTS_DATA": str(data),
            "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent), os.environ.get("PYTHONPATH", "")]),
        }
        args = [sys.executable, __file__, "_serve", app, server, str(self.port), str(int(access_log)), str(workers)]
        self.log = (data / f"{app}-{server}-{self.port}.log").open("wb")
        self.proc = subprocess.Popen(args, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{app} on {server} did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()


# ---- load generators --------------------------------------------------------------------------------------------


@dataclass
class Result:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    per_cpu_second: float = 0.0  # requests per CPU-second of the server: what a busy shared machine cannot skew


WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = io.open(os.getenv("BENCH_BODY"), "rb"):read("*a")
for line in io.lines(os.getenv("BENCH_HEADERS")) do
  local k, v = line:match("^([^:]+): (.*)$")
  if k then wrk.headers[k] = v end
end
local bad = 0
response = function(status, headers, body)
  if status ~= 200 then bad = bad + 1 end
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH %d %d %d %d %d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), e.connect + e.read + e.write + e.timeout + e.status))
end
"""


def run_wrk(port: int, path: str, body: bytes, headers: dict[str, str], connections: int, seconds: float) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "body").write_bytes(body)
        (Path(tmp) / "headers").write_text("".join(f"{k}: {v}\n" for k, v in headers.items()))
        (Path(tmp) / "post.lua").write_text(WRK_SCRIPT)
        env = {**os.environ, "BENCH_BODY": str(Path(tmp) / "body"), "BENCH_HEADERS": str(Path(tmp) / "headers")}
        out = subprocess.run(
            [
                *("wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s"),
                *("-s", str(Path(tmp) / "post.lua"), f"http://127.0.0.1:{port}{path}"),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=True,
        ).stdout
    line = next(x for x in out.splitlines() if x.startswith("BENCH "))
    requests, duration_us, p50, p99, errors = (int(v) for v in line.split()[1:])
    return Result(requests / (duration_us / 1e6), p50 / 1000, p99 / 1000, errors)


def _python_client(port: int, path: str, body: bytes, headers: dict[str, str], until: float, out: Any) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    latencies: list[float] = []
    errors = 0
    while time.monotonic() < until:
        started = time.perf_counter()
        try:
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            errors += response.status != 200
        except (OSError, http.client.HTTPException):
            errors += 1
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        latencies.append(time.perf_counter() - started)
    out.put((latencies, errors))


def run_python(port: int, path: str, body: bytes, headers: dict[str, str], connections: int, seconds: float) -> Result:
    """Fallback generator: one process per connection (bounded to 8), each a keep-alive loop."""
    procs = min(connections, 8)
    queue: Any = multiprocessing.Queue()
    until = time.monotonic() + seconds
    workers = [
        multiprocessing.Process(target=_python_client, args=(port, path, body, headers, until, queue))
        for _ in range(procs)
    ]
    for w in workers:
        w.start()
    latencies: list[float] = []
    errors = 0
    for _ in workers:
        got, bad = queue.get(timeout=seconds + 60)
        latencies += got
        errors += bad
    for w in workers:
        w.join(timeout=10)
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return Result(len(latencies) / seconds, statistics.median(latencies) * 1000, p99 * 1000, errors)


def load(
    server: ServerProcess, path: str, body: bytes, headers: dict[str, str], connections: int, seconds: float
) -> Result:
    runner = run_wrk if shutil.which("wrk") else run_python
    cpu = cpu_seconds(server.proc.pid)
    result = runner(server.port, path, body, headers, connections, seconds)
    used = cpu_seconds(server.proc.pid) - cpu
    result.per_cpu_second = result.requests_per_s * seconds / used if used > 0 else 0.0
    return result


# ---- scenarios --------------------------------------------------------------------------------------------------


def event(i: int) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Order Completed",
        "userId": f"user-{i % 1000}",
        "anonymousId": f"anon-{i}",
        "messageId": f"bench-{i}",
        "timestamp": "2024-05-01T12:00:00.000Z",
        "properties": {"order_id": f"o-{i}", "revenue": 42.5, "currency": "EUR", "items": 3},
        "context": {"ip": "10.0.0.1", "library": {"name": "analytics.js", "version": "4.0.0"}},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--batch", type=int, default=100, help="events per /v1/batch request")
    parser.add_argument("--servers", default="uvicorn,granian", help="granian is skipped when not installed")
    parser.add_argument("--workers", type=int, default=1, help="server processes (for bare and receiver alike)")
    args = parser.parse_args()
    seconds = max(1, round(args.duration))
    servers = [s for s in args.servers.split(",") if s != "granian" or importlib.util.find_spec("granian")]

    from pipelines.connections import Registry

    data = Path(tempfile.mkdtemp(prefix="bench-receiver-"))
    try:
        connection, creds = Registry(data).add("bench")
        single = json.dumps(event(0)).encode()
        signed = {
            "Content-Type": "application/json",
            "X-Signature": hmac.new(creds.webhook_secret.encode(), single, hashlib.sha1).hexdigest(),
        }
        batch = json.dumps({"batch": [event(i) for i in range(args.batch)], "sentAt": "2024-05-01T12:00:01Z"})
        basic = {
            "Content-Type": "application/json",
            "Authorization": "Basic " + base64.b64encode(f"{creds.write_key}:".encode()).decode(),
        }
        hook_path = f"/webhooks/{connection.connection_id}"
        generator = "wrk" if shutil.which("wrk") else "python http.client processes"
        print(
            f"load generator: {generator}; {args.connections} connections; {seconds}s per figure; loopback; "
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
        )
        print(
            f"webhook body {len(single)} B; batch body {len(batch)} B ({args.batch} events); {args.workers} worker(s)"
        )
        print("cpu/s = requests per CPU-second of the server process: the figure a busy shared machine skews least\n")
        head = f"{'server':<8} {'scenario':<32} {'req/s':>7} {'events/s':>9} {'p50 ms':>7} {'p99 ms':>7}"
        print(f"{head} {'errors':>6} {'cpu/s':>7}  vs bare (req/s, cpu/s)")

        def show(server: str, name: str, r: Result, events: int = 1, base: Result | None = None) -> None:
            ratio = ""
            if base is not None:
                ratio = f"{r.requests_per_s / base.requests_per_s:.0%}, {r.per_cpu_second / base.per_cpu_second:.0%}"
            print(
                f"{server:<8} {name:<32} {r.requests_per_s:>7,.0f} {r.requests_per_s * events:>9,.0f} "
                f"{r.p50_ms:>7.2f} {r.p99_ms:>7.2f} {r.errors:>6} {r.per_cpu_second:>7,.0f}  {ratio}",
                flush=True,
            )

        for server in servers:
            # The baseline before and after the receiver runs, averaged: the machine's load drifts in between.
            bare = ServerProcess("bare", server, data, workers=args.workers)
            try:
                before = load(bare, hook_path, single, signed, args.connections, seconds)
            finally:
                bare.stop()
            measured: list[tuple[str, Result, int]] = []
            for access_log in (True, False):
                receiver = ServerProcess("receiver", server, data, access_log=access_log, workers=args.workers)
                suffix = "" if access_log else ", no access log"
                try:
                    hook = load(receiver, hook_path, single, signed, args.connections, seconds)
                    measured.append((f"signed webhook{suffix}", hook, 1))
                    if access_log:
                        alone = load(receiver, hook_path, single, signed, 1, seconds)
                        measured.append(("signed webhook, 1 client", alone, 1))
                    api = load(receiver, "/v1/batch", batch.encode(), basic, args.connections, seconds)
                    measured.append((f"/v1/batch x{args.batch}{suffix}", api, args.batch))
                finally:
                    receiver.stop()
            bare = ServerProcess("bare", server, data, workers=args.workers)
            try:
                after = load(bare, hook_path, single, signed, args.connections, seconds)
            finally:
                bare.stop()
            base = Result(
                (before.requests_per_s + after.requests_per_s) / 2,
                (before.p50_ms + after.p50_ms) / 2,
                (before.p99_ms + after.p99_ms) / 2,
                before.errors + after.errors,
                (before.per_cpu_second + after.per_cpu_second) / 2,
            )
            show(server, "bare 200 (baseline, mean)", base)
            for name, result, events in measured:
                show(server, name, result, events, base if events == 1 and "1 client" not in name else None)
    finally:
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_serve":
        serve_main(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] == "1", int(sys.argv[6]))
    else:
        main()

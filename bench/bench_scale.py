"""Scaling out on one machine: receiver processes (``serve --workers``) and loaders side by side.

Prints figures only, as ratios against a baseline measured in the same run (machines are shared and noisy):

- signed single-event webhooks/s and ``/v1/batch`` events/s with 1, 2 and 4 worker processes, against 1 worker
  (measured in the order 1, 2, 4, 4, 2, 1, each figure the mean of its two, so steady drift cancels);
- two loaders at once (two spools of N events, into one throwaway PostgreSQL server) against one loader
  moving the same 2N events from one spool: events per second of wall time.

Workers share the machine's cores with the load generator, so on 2 cores 4 workers cannot be 4 times 1: the
figures say what one more process buys here, not on a bigger host.

    .venv/bin/python bench/bench_scale.py [--duration 5] [--connections 32] [--events 100000]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]

from bench_receiver import Result, ServerProcess, event, load  # noqa: E402

CLI = str(Path(sys.executable).with_name("segment-accounts"))


def receivers(duration: float, connections: int, batch_size: int) -> None:
    from pipelines.connections import Registry

    data = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    try:
        connection, creds = Registry(data).add("bench")
        single = json.dumps(event(0)).encode()
        signed = {
            "Content-Type": "application/json",
            "X-Signature": hmac.new(creds.webhook_secret.encode(), single, hashlib.sha1).hexdigest(),
        }
        batch = json.dumps({"batch": [event(i) for i in range(batch_size)]}).encode()
        basic = {
            "Content-Type": "application/json",
            "Authorization": "Basic " + base64.b64encode(f"{creds.write_key}:".encode()).decode(),
        }
        hook_path = f"/webhooks/{connection.connection_id}"
        seconds = max(1, round(duration))

        def measure(workers: int) -> tuple[Result, Result]:
            server = ServerProcess("receiver", "uvicorn", data, access_log=True, workers=workers)
            try:
                time.sleep(1.0 if workers > 1 else 0.2)  # every worker up and accepting
                hooks = load(server, hook_path, single, signed, connections, seconds)
                batches = load(server, "/v1/batch", batch, basic, connections, seconds)
            finally:
                server.stop()
            return hooks, batches

        # 1, 2, 4, 4, 2, 1: each figure is the mean of two measurements placed symmetrically in time, so a
        # machine whose load drifts steadily during the run skews no worker count against another
        order = (1, 2, 4, 4, 2, 1)
        measured: dict[int, list[tuple[Result, Result]]] = {1: [], 2: [], 4: []}
        for workers in order:
            measured[workers].append(measure(workers))

        def mean(workers: int, which: int) -> float:
            return sum(pair[which].requests_per_s for pair in measured[workers]) / len(measured[workers])

        base_hooks, base_events = mean(1, 0), mean(1, 1) * batch_size
        print(f"receiver processes ({connections} connections, {seconds}s per figure, /v1/batch x{batch_size}):")
        print(f"{'workers':>8} {'webhooks/s':>11} {'vs 1':>6} {'batch events/s':>15} {'vs 1':>6} {'errors':>7}")
        for workers in (1, 2, 4):
            hooks, events = mean(workers, 0), mean(workers, 1) * batch_size
            errors = sum(h.errors + b.errors for h, b in measured[workers])
            print(
                f"{workers:>8} {hooks:>11,.0f} {hooks / base_hooks:>6.0%} "
                f"{events:>15,.0f} {events / base_events:>6.0%} {errors:>7}"
            )
        first, last = measured[1][0][0].requests_per_s, measured[1][1][0].requests_per_s
        print(f"(drift: 1 worker's webhooks/s measured last were {last / first:.0%} of the first)\n")
    finally:
        shutil.rmtree(data, ignore_errors=True)


def _spool(data: Path, events: Path, env: dict[str, str]) -> None:
    env = {**env, "SEGMENT_ACCOUNTS_DATA": str(data)}
    subprocess.run([CLI, "ingest", str(events), "--connection", "web"], env=env, check=True, capture_output=True)


def loaders(events: int) -> None:
    from pipelines.connections import Registry
    from pipelines.sample_data import write_ndjson
    from tests.pg_server import running_postgres

    work = Path(tempfile.mkdtemp(prefix="bench-scale-loaders-"))
    try:
        with running_postgres() as server:
            registry = work / "registry"
            Registry(registry).add("web")
            base = {
                **os.environ,
                **server.env(),
                "SEGMENT_ACCOUNTS_TARGET": "postgres",
                "SEGMENT_ACCOUNTS_REGISTRY": str(registry),
            }
            halves = [work / "half-1.ndjson", work / "half-2.ndjson"]
            for seed, path in enumerate(halves, start=1):
                write_ndjson(path, events, seed=seed)
            one, again, two = work / "one", work / "one-again", [work / "two-a", work / "two-b"]
            for half in halves:
                _spool(one, half, base)
                _spool(again, half, base)
            for folder, half in zip(two, halves, strict=True):
                _spool(folder, half, base)

            def run(folders: list[Path], schema: str) -> float:
                started = time.perf_counter()
                procs = [
                    subprocess.Popen(
                        [CLI, "load"],
                        env={
                            **base,
                            "SEGMENT_ACCOUNTS_DATA": str(folder),
                            "SEGMENT_ACCOUNTS_RAW_SCHEMA": schema,
                            "SEGMENT_ACCOUNTS_LOADER_NAME": f"loader_{folder.name.replace('-', '_')}",
                        },
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                        text=True,
                    )
                    for folder in folders
                ]
                for proc in procs:
                    _, err = proc.communicate()
                    if proc.returncode:
                        sys.exit(f"load failed: {err[-2000:]}")
                return time.perf_counter() - started

            # each a first load into a schema of its own: every figure includes creating the tables. One loader
            # before and after two, its figure the mean: the machine's load drifts in between.
            first = run([one], "raw_one")
            together = run(two, "raw_two")
            last = run([again], "raw_one_again")
            alone = (first + last) / 2
        total = 2 * events
        print(f"loaders into one PostgreSQL server ({total:,} events either way, wall time incl. process start):")
        print(
            f"  one loader, one spool:     {alone:6.1f}s  {total / alone:>9,.0f} events/s  100%"
            f"  (before and after: {first:.1f}s, {last:.1f}s)"
        )
        ratio = alone / together
        print(f"  two loaders at once:       {together:6.1f}s  {total / together:>9,.0f} events/s  {ratio:.0%}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per receiver figure")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--batch", type=int, default=100, help="events per /v1/batch request")
    parser.add_argument("--events", type=int, default=100_000, help="events per spool for the loader figures")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}\n")
    receivers(args.duration, args.connections, args.batch)
    loaders(args.events)


if __name__ == "__main__":
    main()

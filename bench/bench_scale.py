"""Scaling out on one machine: receiver processes (``serve --workers``) and loaders side by side.

Prints figures only, as ratios against a baseline measured in the same run (machines are shared and noisy):

- signed single-event webhooks/s and ``/v1/batch`` events/s with 1, 2 and 4 worker processes, against 1 worker
  (measured first and again last; the baseline is their mean, so drift in the machine's load shows);
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

        runs = {workers: measure(workers) for workers in (1, 2, 4)}
        again = measure(1)
        base_hooks = (runs[1][0].requests_per_s + again[0].requests_per_s) / 2
        base_events = (runs[1][1].requests_per_s + again[1].requests_per_s) / 2 * batch_size
        print(f"receiver processes ({connections} connections, {seconds}s per figure, /v1/batch x{batch_size}):")
        print(f"{'workers':>8} {'webhooks/s':>11} {'vs 1':>6} {'batch events/s':>15} {'vs 1':>6} {'errors':>7}")
        print(
            f"{'1 (mean)':>8} {base_hooks:>11,.0f} {'100%':>6} {base_events:>15,.0f} {'100%':>6} "
            f"{runs[1][0].errors + runs[1][1].errors + again[0].errors + again[1].errors:>7}"
        )
        for workers in (2, 4):
            hooks, batches = runs[workers]
            events = batches.requests_per_s * batch_size
            print(
                f"{workers:>8} {hooks.requests_per_s:>11,.0f} {hooks.requests_per_s / base_hooks:>6.0%} "
                f"{events:>15,.0f} {events / base_events:>6.0%} {hooks.errors + batches.errors:>7}"
            )
        drift = again[0].requests_per_s / runs[1][0].requests_per_s
        print(f"(1 worker measured again last: {drift:.0%} of the first figure)\n")
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
            one, two = work / "one", [work / "two-a", work / "two-b"]
            for half in halves:
                _spool(one, half, base)
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

            # each a first load into a schema of its own: both figures include creating the tables
            alone = run([one], "raw_one")
            together = run(two, "raw_two")
        total = 2 * events
        print(f"loaders into one PostgreSQL server ({total:,} events either way, wall time incl. process start):")
        print(f"  one loader, one spool:     {alone:6.1f}s  {total / alone:>9,.0f} events/s  100%")
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

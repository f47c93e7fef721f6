"""How the data folder grows on a schedule: a first run, then ten runs of +1% new events each.

Prints each part's size (spool, its archive of loaded segments, warehouse, analytics.duckdb, dlt, logs) after the
first run and after the tenth, as a ratio to the baseline measured in the same run: the bytes of NDJSON the events
arrived as. Also what publishing analytics.duckdb cost in each run, against the run's whole time.

    .venv/bin/python bench/bench_datafolder.py [--events 100000] [--runs 10]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipelines.connections import Registry
from pipelines.datafolder import folder_sizes, human_bytes
from pipelines.jobs import PUBLISHED_LINE
from pipelines.runrecord import read_record
from pipelines.sample_data import write_ndjson
from pipelines.settings import Paths, configure_tools

CLI = str(Path(sys.executable).with_name("segment-accounts"))


def cli(paths: Paths, *args: str) -> float:
    env = dict(os.environ, SEGMENT_ACCOUNTS_DATA=str(paths.data))
    started = time.perf_counter()
    result = subprocess.run([CLI, *args], env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"segment-accounts {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-2000:]}")
    return time.perf_counter() - started


def publish_seconds(paths: Paths) -> float:
    record = read_record(paths)
    found = PUBLISHED_LINE.search(Path(record.log).read_text()) if record and record.log else None
    if not found:  # the run log's wording changed: say so rather than print a figure of nothing
        sys.exit(f"no 'published ...' line in the last run's log ({record.log if record else 'no run record'})")
    return float(found[1])


def table(sizes: dict[str, int], baseline: int) -> str:
    return "\n".join(f"    {part:<14} {human_bytes(size):>10}  {size / baseline:6.2f}x" for part, size in sizes.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    configure_tools()
    work = Path(tempfile.mkdtemp(prefix="bench-datafolder-"))
    try:
        paths = Paths(work / "data")
        Registry(paths.data).add("bench")
        history = work / "history.ndjson"
        write_ndjson(history, args.events, seed=3, compress=False, engage=0.05)
        received = history.stat().st_size
        cli(paths, "ingest", str(history), "--connection", "bench")
        first = cli(paths, "run")
        print(
            f"{args.events} events ({human_bytes(received)} of NDJSON), first run {first:.1f}s, "
            f"publishing {publish_seconds(paths):.1f}s of it"
        )
        print(f"  after the first run (x = size / NDJSON received, {human_bytes(received)}):")
        print(table(folder_sizes(paths), received))
        increment = max(1, args.events // 100)
        shares = []
        for n in range(args.runs):
            fresh = work / f"fresh-{n}.ndjson"
            write_ndjson(fresh, increment, seed=100 + n, compress=False, engage=0.05)
            received += fresh.stat().st_size
            cli(paths, "ingest", str(fresh), "--connection", "bench")
            seconds = cli(paths, "run")
            shares.append(publish_seconds(paths) / seconds)
        print(
            f"  after {args.runs} more runs of +{increment} events (x = size / NDJSON received, "
            f"{human_bytes(received)}):"
        )
        print(table(folder_sizes(paths), received))
        print(f"  publishing analytics.duckdb: {min(shares):.0%}-{max(shares):.0%} of each +1% run's time")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

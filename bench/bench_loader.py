"""Loader throughput: spool -> raw table with dlt, against DuckDB reading the same events itself.

Prints figures only (no pass/fail): the machines are shared and noisy, so the figure that matters is the ratio
against the baseline measured in the same run, on the same file.

    .venv/bin/python bench/bench_loader.py [--events 1000000]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

from pipelines.connections import Registry
from pipelines.ingest import ingest
from pipelines.sample_data import write_ndjson
from pipelines.settings import Paths, configure_tools
from pipelines.spool import SpoolWriter


def duckdb_read_json(source: Path, database: Path) -> float:
    """DuckDB's own fastest way to land the same events while keeping each raw JSON object."""
    con = duckdb.connect(str(database))
    started = time.perf_counter()
    con.execute(
        """
        create table raw_events as
        select
            'c' as connection_id,
            json_extract_string(json, '$.messageId') as message_id,
            now() as received_at,
            json::varchar as payload
        from read_json_objects(?, format = 'newline_delimited')
        """,
        [str(source)],
    )
    elapsed = time.perf_counter() - started
    con.close()
    return elapsed


def loader_in_child(paths: Paths) -> tuple[float, int]:
    """``segment-accounts load`` as users run it, in its own process so its peak memory is its own."""
    code = (
        "import resource, time, sys\n"
        "from pipelines.loader import load\nfrom pipelines.settings import Paths\n"
        f"s = load(Paths(__import__('pathlib').Path({str(paths.data)!r})))\n"
        "print(s.seconds, s.records, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    env = dict(os.environ, SEGMENT_ACCOUNTS_DATA=str(paths.data))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    seconds, records, rss_kb = out.stdout.split()
    print(f"  loader peak RSS: {int(rss_kb) / 1024:.0f} MB")
    return float(seconds), int(records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = parser.parse_args()
    configure_tools()

    work = Path(tempfile.mkdtemp(prefix="bench-loader-"))
    try:
        source = work / "events.ndjson"
        write_ndjson(source, args.events, compress=False)
        print(f"{args.events:,} events, {source.stat().st_size / 2**20:.0f} MB of NDJSON")

        paths = Paths(work / "data")
        connection, _ = Registry(paths.data).add("bench")
        started = time.perf_counter()
        with SpoolWriter(paths.spool) as writer:
            ingest([source], connection.connection_id, writer)
        ingest_seconds = time.perf_counter() - started

        load_seconds, records = loader_in_child(paths)
        baseline_seconds = duckdb_read_json(source, work / "baseline.duckdb")

        loader_rate = records / load_seconds
        baseline_rate = args.events / baseline_seconds
        print(f"  ingest (file -> spool, fsync'd):   {args.events / ingest_seconds:>10,.0f} events/s")
        print(f"  load   (spool -> raw, dlt):        {loader_rate:>10,.0f} events/s  ({load_seconds:.2f}s)")
        print(f"  DuckDB read_json_objects baseline: {baseline_rate:>10,.0f} events/s  ({baseline_seconds:.2f}s)")
        print(f"  loader / baseline: {loader_rate / baseline_rate:.0%} (goal >= 50%)")
        print(f"  bench process peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""The dbt models at scale: `dbt build` on generated events against one DuckDB scan that parses every payload.

Generates realistic Segment traffic (pipelines.sample_data), lands it the way users do (ingest into the spool,
then the dlt loader into the raw table), then in the same run times:
  - scan: one DuckDB query that parses every raw payload once and reads a few fields from it (the floor for
    any model that must look inside every event);
  - `dbt run` (models only) and `dbt build` (seeds, models, unit and data tests) of the whole project, both
    with --full-refresh so that every run rebuilds everything from the raw table (incremental models too);
  - the build a schedule runs (`segment-accounts run`: no unit tests, which check the SQL, not the data);
  - the same full build on an empty copy of the warehouse: dbt's fixed cost (start-up, ~150 nodes, unit
    tests), so that build minus it is what the events themselves cost.
It prints medians and ranges over --repeat runs and the build / scan ratio (goal: build <= 5x the scan), plus
where the build's time goes (dbt's own per-node timings, summed by kind, and the slowest models).

    .venv/bin/python bench/bench_models.py                   # 1M events (~6 min on 2 cores, ~1.5 GB of disk)
    .venv/bin/python bench/bench_models.py --events 100000   # quick
    .venv/bin/python bench/bench_models.py --keep            # keep the data; later: --reuse <printed folder>

Prints figures only (no pass/fail): the machines are shared and noisy, so compare ratios, not seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

from pipelines.connections import Registry
from pipelines.ingest import ingest
from pipelines.jobs import SCHEDULED_BUILD_OPTIONS
from pipelines.sample_data import write_ndjson
from pipelines.settings import Paths, configure_tools
from pipelines.spool import SpoolWriter
from pipelines.transform import dbt_command, dbt_env, run_results_file

# Parse each payload once (DuckDB's multi-path json_extract_string parses the document a single time) and read
# the fields every model needs; the aggregates keep the optimizer from skipping any of the work.
SCAN_SQL = """
select
    count(*),
    count(fields[1]),
    count(distinct fields[2]),
    count(fields[3]),
    count(fields[4]),
    max(fields[5]),
    count(fields[6])
from (
    select json_extract_string(
        payload, ['$.type', '$.messageId', '$.userId', '$.anonymousId', '$.timestamp', '$.context.groupId']
    ) as fields
    from segment_raw.raw_events
) as parsed
"""

SCAN_RUNNER = r"""
import resource, sys, time, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
con.execute("set enable_progress_bar = false")
times = []
for _ in range(int(sys.argv[2])):
    start = time.perf_counter()
    con.execute(sys.argv[3]).fetchall()
    times.append(time.perf_counter() - start)
print(*times, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def prepare(paths: Paths, events: int) -> None:
    """Two connections as in a real installation: a web source mapping accounts by group calls (80% of the
    traffic) and an app source mapping them by the `company.id` trait (20%, its own people and ids)."""
    configure_tools()
    registry = Registry(paths.data)
    web, _ = registry.add("web")
    app, _ = registry.add(
        "app", account_mapping="traits", account_id_trait="company.id", account_name_trait="company.name"
    )
    started = time.perf_counter()
    files = []
    for connection, count, seed in ((web, events - events // 5, 7), (app, events // 5, 8)):
        source = paths.data.parent / f"events-{connection.name}.ndjson"
        write_ndjson(source, count, seed=seed, compress=False)
        files.append((connection, source))
    size = sum(source.stat().st_size for _, source in files)
    print(f"generated {events:,} events, {size / 2**20:.0f} MB of NDJSON, in {time.perf_counter() - started:.0f} s")
    started = time.perf_counter()
    with SpoolWriter(paths.spool) as writer:
        for connection, source in files:
            ingest([source], connection.connection_id, writer)
            source.unlink()
    print(f"ingest (NDJSON -> spool): {time.perf_counter() - started:.0f} s", flush=True)
    code = (
        "import sys\nfrom pathlib import Path\nfrom pipelines.loader import load\n"
        "from pipelines.settings import Paths\nprint(load(Paths(Path(sys.argv[1]))).line())\n"
    )
    env = dict(os.environ, SEGMENT_ACCOUNTS_DATA=str(paths.data))
    out = subprocess.run([sys.executable, "-c", code, str(paths.data)], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"load failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    print(f"load (spool -> raw table, dlt): {out.stdout.strip()}", flush=True)
    shutil.rmtree(paths.spool, ignore_errors=True)  # the raw table has it all now; spare the disk


def scan(paths: Paths, repeat: int) -> tuple[list[float], int]:
    out = subprocess.run(
        [sys.executable, "-c", SCAN_RUNNER, str(paths.warehouse), str(repeat), SCAN_SQL],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [float(x) for x in out[:-1]], int(out[-1])


def dbt(paths: Paths, *args: str) -> tuple[float, int, list[dict]]:
    """One dbt command: wall seconds, peak RSS of the dbt process, its run results."""
    started = time.perf_counter()
    process = subprocess.Popen(
        dbt_command(paths, args), env=dbt_env(paths), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.perf_counter() - started
    if process.returncode != 0:
        sys.exit(f"dbt {' '.join(args)} failed:\n{output[-5000:]}")
    run_results = run_results_file(paths)
    results = json.loads(run_results.read_text())["results"] if args[0] != "parse" else []
    return elapsed, usage.ru_maxrss * 1024, results


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s (range {min(values):.2f}-{max(values):.2f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each measurement")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--reuse", type=Path, help="a folder kept by --keep: skip generating and loading")
    parser.add_argument("--top", type=int, default=8, help="slowest models to list")
    args = parser.parse_args()

    work = args.reuse or Path(tempfile.mkdtemp(prefix="bench-models-"))
    paths = Paths(work / "data")
    try:
        if not args.reuse:
            prepare(paths, args.events)
        with duckdb.connect(str(paths.warehouse), read_only=True) as con:
            raw = con.execute("select count(*) from segment_raw.raw_events").fetchone()[0]
        print(f"raw_events: {raw:,} rows; warehouse {paths.warehouse.stat().st_size / 2**20:.0f} MB", flush=True)

        # the same installation with no events: what a build costs whatever the data
        empty = Paths(work / "empty")
        shutil.rmtree(empty.data, ignore_errors=True)
        empty.data.mkdir(parents=True)
        shutil.copy(paths.warehouse, empty.warehouse)
        with duckdb.connect(str(empty.warehouse)) as con:
            con.execute("delete from segment_raw.raw_events")
            con.execute("checkpoint")

        # a full parse once (a kept folder may hold another checkout's state); the timed commands parse partially
        for installation in (paths, empty):
            dbt(installation, "parse", "--no-partial-parse")
        seed_seconds, _, _ = dbt(paths, "seed", "--full-refresh")  # `dbt run` needs the seeds in place
        scans, builds, runs, scheduled, empty_builds, in_dbt = [], [], [], [], [], []
        peak = 0
        for _ in range(args.repeat):
            # interleaved, so that a neighbour's load on the shared machine hits both sides alike
            scan_times, _ = scan(paths, 1)
            scans += scan_times
            seconds, rss, _ = dbt(paths, "run", "--full-refresh")
            runs.append(seconds)
            seconds, rss, results = dbt(paths, "build", "--full-refresh")
            builds.append(seconds)
            peak = max(peak, rss)
            in_dbt.append(results)
            scheduled.append(dbt(paths, "build", "--full-refresh", *SCHEDULED_BUILD_OPTIONS)[0])
            empty_builds.append(dbt(empty, "build", "--full-refresh")[0])
        _, scan_rss = scan(paths, 1)

        print(f"\nscan (parse every payload once, 6 fields): {spread(scans)}, peak RSS {scan_rss / 2**20:.0f} MiB")
        print(f"dbt seed: {seed_seconds:.2f} s")
        print(f"dbt run   (models only):                   {spread(runs)}")
        print(f"dbt build (seeds, models, unit+data tests): {spread(builds)}, dbt peak RSS {peak / 2**20:.0f} MiB")
        print(f"dbt build as scheduled (no unit tests):     {spread(scheduled)}")
        print(f"dbt build on no events (fixed cost):        {spread(empty_builds)}")
        scan_median = statistics.median(scans)
        ratios = [b / s for b, s in zip(builds, scans, strict=True)]
        print(
            f"build / scan: {statistics.median(builds) / scan_median:.1f}x "
            f"(per run {', '.join(f'{r:.1f}' for r in ratios)}; goal <= 5x); "
            f"scheduled build / scan: {statistics.median(scheduled) / scan_median:.1f}x; "
            f"run / scan: {statistics.median(runs) / scan_median:.1f}x"
        )
        marginal = [b - e for b, e in zip(builds, empty_builds, strict=True)]
        print(
            f"build minus its fixed cost: {spread(marginal)} = "
            f"{statistics.median(marginal) / scan_median:.1f}x the scan (what the events cost)"
        )

        # dbt's own timings (2 threads: sums overlap, so they add up to more than the wall time)
        kinds: dict[str, list[float]] = {}
        nodes: dict[str, list[float]] = {}
        for results in in_dbt:
            per_kind: dict[str, float] = {}
            for result in results:
                # model.<project>.<name>; test.<project>.<name>.<hash>
                kind, name = result["unique_id"].split(".")[0], result["unique_id"].split(".")[2]
                per_kind[kind] = per_kind.get(kind, 0.0) + result["execution_time"]
                if kind in ("model", "test"):
                    nodes.setdefault(f"{kind} {name}", []).append(result["execution_time"])
            for kind, seconds in per_kind.items():
                kinds.setdefault(kind, []).append(seconds)
        print("inside dbt build, summed per kind: " + ", ".join(f"{k} {spread(v)}" for k, v in sorted(kinds.items())))
        for kind in ("model", "test"):
            print(f"slowest {kind}s (median of {args.repeat}):")
            mine = {name.split(" ", 1)[1]: times for name, times in nodes.items() if name.startswith(kind)}
            for name, times in sorted(mine.items(), key=lambda kv: -statistics.median(kv[1]))[: args.top]:
                print(f"  {name[:60]:60s} {spread(times)}")
        return 0
    finally:
        if args.keep or args.reuse:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

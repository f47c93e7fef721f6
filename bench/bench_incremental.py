"""What a scheduled `segment-accounts run` costs: full build, a run with nothing new, a run after 1% new events.

The goal is that cost follows new data, not history: (run after 1% new) - (run with nothing new) should be at
most 5% of the full build. All three are measured in the same run, on the same data folder.

    .venv/bin/python bench/bench_incremental.py [--events 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipelines.connections import Registry
from pipelines.sample_data import write_ndjson
from pipelines.settings import Paths, configure_tools
from pipelines.transform import run_results_file

CLI = str(Path(sys.executable).with_name("segment-accounts"))


def timed(paths: Paths, *args: str) -> float:
    env = dict(os.environ, SEGMENT_ACCOUNTS_DATA=str(paths.data))
    started = time.perf_counter()
    result = subprocess.run([CLI, *args], env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"segment-accounts {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-2000:]}")
    return elapsed


def slowest_nodes(paths: Paths, count: int = 8) -> str:
    """The last dbt build's slowest nodes: where a run's time goes, and so what to make incremental next."""
    results = json.loads(run_results_file(paths).read_text())["results"]
    ranked = sorted(results, key=lambda r: r["execution_time"], reverse=True)[:count]
    total = sum(r["execution_time"] for r in results)
    lines = [f"      {r['execution_time']:6.2f} s  {r['unique_id'].split('.', 2)[-1]}" for r in ranked]
    return f"    dbt nodes, {len(results)} in all, {total:.1f} s summed (2 threads); slowest:\n" + "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()
    configure_tools()
    work = Path(tempfile.mkdtemp(prefix="bench-incremental-"))
    try:
        paths = Paths(work / "data")
        Registry(paths.data).add("bench")
        history = work / "history.ndjson"
        fresh = work / "fresh.ndjson"
        write_ndjson(history, args.events, seed=3, compress=False, engage=0.05)
        write_ndjson(fresh, max(1, args.events // 100), seed=4, compress=False, engage=0.05)
        timed(paths, "ingest", str(history), "--connection", "bench")

        full = timed(paths, "run")
        full_nodes = slowest_nodes(paths)
        nothing_new = timed(paths, "run")
        nothing_new_nodes = slowest_nodes(paths)
        timed(paths, "ingest", str(fresh), "--connection", "bench")
        one_percent = timed(paths, "run")
        one_percent_nodes = slowest_nodes(paths)

        marginal = one_percent - nothing_new
        print(f"{args.events:,} events of history; each `run` = load + dbt build (models and data tests)")
        print(f"  full build (first run):          {full:7.1f} s")
        print(f"  run with nothing new:            {nothing_new:7.1f} s  ({nothing_new / full:.0%} of full)")
        print(f"  run after 1% new events:         {one_percent:7.1f} s  ({one_percent / full:.0%} of full)")
        print(f"  marginal cost of the 1%:         {marginal:7.1f} s  ({marginal / full:.1%} of full; goal <= 5%)")
        for title, nodes in (("full", full_nodes), ("nothing new", nothing_new_nodes), ("1% new", one_percent_nodes)):
            print(f"  {title}:\n{nodes}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""What a scheduled `segment-accounts run` costs: full build, a run with nothing new, a run after 1% new events,
and a run after 1% new events of which a tenth are late aliases merging contacts that already have history.

The goal is that cost follows new data, not history: a run with nothing new is a small share of the full build
(and flat in history: compare this bench at two sizes), and (run after 1% new) - (run with nothing new) is at most
5% of the full build, late aliases included. All four are measured in the same run, on the same data folder. For
each run the bench also splits the time: dbt's own elapsed time (run_results.json) against everything else
(process start-up, load, dbt's parse), and the nodes' summed time; for the runs with new events, by part (load,
dbt, publish, the rest). It also measures the same marginal on a small history of its own (FLOOR_EVENTS): the
part of the marginal cost that does not depend on history at all, in the same run as the rest.

    .venv/bin/python bench/bench_incremental.py [--events 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from pipelines.connections import Registry
from pipelines.jobs import PUBLISHED_LINE
from pipelines.sample_data import TrafficGenerator, write_ndjson
from pipelines.settings import Paths, configure_tools
from pipelines.transform import clock_target_dir, run_results_file

CLI = str(Path(sys.executable).with_name("segment-accounts"))


def timed(paths: Paths, *args: str) -> float:
    env = dict(os.environ, SEGMENT_ACCOUNTS_DATA=str(paths.data))
    started = time.perf_counter()
    result = subprocess.run([CLI, *args], env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"segment-accounts {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-2000:]}")
    return elapsed


def last_run_results(paths: Paths) -> dict:
    """The last dbt build's run_results.json: a run with nothing new builds the clock's models only, and keeps
    their results apart, so the newer of the two."""
    candidates = [run_results_file(paths), run_results_file(paths, clock_target_dir(paths))]
    newest = max((path for path in candidates if path.exists()), key=lambda path: path.stat().st_mtime)
    return json.loads(newest.read_text())


def slowest_nodes(paths: Paths, wall: float, count: int = 8) -> str:
    """The last dbt build's slowest nodes: where a run's time goes, and so what to make incremental next."""
    run_results = last_run_results(paths)
    results = run_results["results"]
    ranked = sorted(results, key=lambda r: r["execution_time"], reverse=True)[:count]
    total = sum(r["execution_time"] for r in results)
    dbt_elapsed = run_results["elapsed_time"]
    lines = [f"      {r['execution_time']:6.2f} s  {r['unique_id'].split('.', 2)[-1]}" for r in ranked]
    return (
        f"    run {wall:.1f} s = dbt executing {dbt_elapsed:.1f} s + {wall - dbt_elapsed:.1f} s outside it (process"
        f" start-up, load, dbt's parse and start)\n"
        f"    dbt nodes, {len(results)} in all, {total:.1f} s summed (2 threads); slowest:\n" + "\n".join(lines)
    )


def run_parts(paths: Paths, wall: float) -> str:
    """The last run's time by part, from its own log (logs/run-*.log) and dbt's run_results.json: loading,
    dbt executing the nodes, publishing analytics.duckdb, and the rest (starting the processes, dbt's parse)."""
    log = max(paths.data.glob("logs/run-*.log"), key=lambda path: path.stat().st_mtime).read_text()
    load = sum(float(found) for found in re.findall(r"^loaded .* in ([0-9.]+)s", log, re.MULTILINE))
    publish = sum(float(found) for found in PUBLISHED_LINE.findall(log))
    dbt = last_run_results(paths)["elapsed_time"]
    rest = wall - load - dbt - publish
    return f"load {load:.1f} s + dbt executing {dbt:.1f} s + publish {publish:.1f} s + start-up and parse {rest:.1f} s"


def write_late_aliases(path: Path, events: int, aliases: int, seed: int) -> None:
    """``events`` new events, ``aliases`` of which are late aliases joining two users of the history.

    The history's users are ``user-0000000`` onwards (one per 40 events, as TrafficGenerator makes them); each
    alias joins two of them, so both contacts, with all their events, merge into one.
    """
    rnd = random.Random(seed)
    people = max(10, events * 100 // 40)  # the history's people: it has 100x these events
    with path.open("wb") as out:
        for event in TrafficGenerator(seed).events(events - aliases):
            out.write(orjson.dumps(event) + b"\n")
        for n in range(aliases):
            old, new = rnd.sample(range(people), 2)
            alias = {
                "type": "alias",
                "previousId": f"user-{old:07d}",
                "userId": f"user-{new:07d}",
                "messageId": f"bench-late-alias-{n}",
                "timestamp": "2026-12-15T00:00:00.000Z",
            }
            out.write(orjson.dumps(alias) + b"\n")


FLOOR_EVENTS = 20_000
"""A history small enough that a run's work on data is negligible: what its +1% run costs over a run with
nothing new is what any run with new data pays whatever the history (dbt's nodes, loading, publishing)."""


def fixed_cost(work: Path) -> tuple[float, float]:
    """(run with nothing new, run after 1% new) on a small history of its own: the marginal cost's floor."""
    work.mkdir()
    paths = Paths(work / "data")
    Registry(paths.data).add("bench")
    history, fresh = work / "history.ndjson", work / "fresh.ndjson"
    write_ndjson(history, FLOOR_EVENTS, seed=3, compress=False, engage=0.05)
    write_ndjson(fresh, FLOOR_EVENTS // 100, seed=4, compress=False, engage=0.05)
    timed(paths, "ingest", str(history), "--connection", "bench")
    timed(paths, "run")
    nothing_new = sorted(timed(paths, "run") for _ in range(3))[1]
    timed(paths, "ingest", str(fresh), "--connection", "bench")
    return nothing_new, timed(paths, "run")


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
        one_percent_events = max(10, args.events // 100)
        write_ndjson(fresh, one_percent_events, seed=4, compress=False, engage=0.05)
        aliased = work / "aliased.ndjson"
        write_late_aliases(aliased, one_percent_events, one_percent_events // 10, seed=5)
        timed(paths, "ingest", str(history), "--connection", "bench")

        full = timed(paths, "run")
        full_nodes = slowest_nodes(paths, full)
        # the smallest figure here, so the most exposed to a shared machine's noise: the median of three
        nothing_new_runs = sorted(timed(paths, "run") for _ in range(3))
        nothing_new = nothing_new_runs[1]
        nothing_new_nodes = slowest_nodes(paths, nothing_new)
        timed(paths, "ingest", str(fresh), "--connection", "bench")
        one_percent = timed(paths, "run")
        one_percent_nodes = slowest_nodes(paths, one_percent)
        one_percent_parts = run_parts(paths, one_percent)
        timed(paths, "ingest", str(aliased), "--connection", "bench")
        with_aliases = timed(paths, "run")
        with_aliases_nodes = slowest_nodes(paths, with_aliases)
        with_aliases_parts = run_parts(paths, with_aliases)
        floor_nothing_new, floor_one_percent = fixed_cost(work / "floor")

        marginal = one_percent - nothing_new
        marginal_aliases = with_aliases - nothing_new
        print(f"{args.events:,} events of history; each `run` = load + dbt build (models and data tests)")
        print(f"  full build (first run):          {full:7.1f} s")
        print(
            f"  run with nothing new:            {nothing_new:7.1f} s  ({nothing_new / full:.0%} of full; goal <= 20%;"
            f" median of {', '.join(f'{run:.1f}' for run in nothing_new_runs)})"
        )
        print(f"  run after 1% new events:         {one_percent:7.1f} s  ({one_percent / full:.0%} of full)")
        print(f"  marginal cost of the 1%:         {marginal:7.1f} s  ({marginal / full:.1%} of full; goal <= 5%)")
        print("  run after 1% new, a tenth of them late aliases merging contacts with history:")
        print(f"                                   {with_aliases:7.1f} s  ({with_aliases / full:.0%} of full)")
        print(
            f"  marginal cost of that 1%:        {marginal_aliases:7.1f} s  ({marginal_aliases / full:.1%} of full;"
            " goal <= 5%)"
        )
        floor = floor_one_percent - floor_nothing_new
        print(
            f"  fixed cost of a run with anything new (the same marginal on {FLOOR_EVENTS:,} events of history,"
            f" {FLOOR_EVENTS // 100} new): {floor:.1f} s = {floor / full:.1%} of this full build"
            f" ({floor_one_percent:.1f} s - {floor_nothing_new:.1f} s)"
        )
        print(f"  1% new, by part:                 {one_percent_parts}")
        print(f"  1% new with late aliases:        {with_aliases_parts}")
        for title, nodes in (
            ("full", full_nodes),
            ("nothing new", nothing_new_nodes),
            ("1% new", one_percent_nodes),
            ("1% new with late aliases", with_aliases_nodes),
        ):
            print(f"  {title}:\n{nodes}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

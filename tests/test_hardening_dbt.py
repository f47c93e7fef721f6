"""kill -9 of `dbt build` in the middle of a scheduled run, then the next `run`: every incremental model still
equals its full refresh (the comparison of tests/test_incremental_equality.py).

A killed build leaves some incremental models updated and others not, and DuckDB with a write-ahead log to
replay. The next run must bring every model to what a full rebuild gives. Each kill costs a few dbt builds, so
the test is a `long` variant (make test-long, CI).
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import duckdb
import orjson
import pytest
from test_incremental_equality import _incremental_models

from pipelines.connections import Registry
from pipelines.sample_data import TrafficGenerator
from pipelines.settings import Paths
from tests.conftest import CLI, RunCli

pytestmark = [pytest.mark.long, pytest.mark.timeout(1800)]


def _ingest(run_cli: RunCli, tmp_path: Path, name: str, events: list[dict]) -> None:
    source = tmp_path / f"{name}.ndjson"
    source.write_bytes(b"\n".join(orjson.dumps(e) for e in events) + b"\n")
    run_cli("ingest", str(source), "--connection", "web")


def _run_killed_after(paths: Paths, models_done: int) -> str:
    """`segment-accounts run`, killed (SIGKILL, with its dbt) once ``models_done`` models were built."""
    env = dict(os.environ, SEGMENT_ACCOUNTS_DATA=str(paths.data))
    proc = subprocess.Popen(
        [CLI, "run", "--verbose"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    seen = 0
    output = []
    for line in proc.stdout:
        output.append(line)
        if "OK created sql" in line:
            seen += 1
            if seen == models_done:
                os.killpg(proc.pid, signal.SIGKILL)
                break
    proc.wait(timeout=60)
    proc.stdout.close()
    assert seen == models_done, "".join(output)[-3000:]
    return "".join(output)


def _assert_incremental_equals_full_refresh(paths: Paths, run_cli: RunCli) -> None:
    incremental = _incremental_models(paths)
    con = duckdb.connect(str(paths.warehouse))
    try:
        for model, relation in incremental.items():
            con.execute(f"create or replace table main.snapshot_{model} as select * from {relation}")
    finally:
        con.close()
    rebuilt = run_cli("run", "--full-refresh", check=False, timeout=900)
    assert rebuilt.returncode == 0, rebuilt.stdout[-3000:]
    con = duckdb.connect(str(paths.warehouse), read_only=True)
    try:
        for model, relation in incremental.items():
            for left, right in ((f"main.snapshot_{model}", relation), (relation, f"main.snapshot_{model}")):
                extra = con.execute(
                    f"select count(*) from (select * from {left} except all select * from {right})"
                ).fetchone()[0]
                assert extra == 0, f"{model}: {extra} rows of {left} are not in {right}"
    finally:
        con.close()


@pytest.mark.parametrize("models_done", [9])
def test_kill_9_of_dbt_build_then_run_equals_full_refresh(
    paths: Paths, run_cli: RunCli, tmp_path: Path, models_done: int
) -> None:
    Registry(paths.data).add("web")
    events = list(TrafficGenerator(seed=5, people=40, engage=0.35).events(1500))
    _ingest(run_cli, tmp_path, "first", events[:700])
    assert run_cli("run", check=False, timeout=900).returncode == 0
    _ingest(run_cli, tmp_path, "second", events[700:1200])
    _run_killed_after(paths, models_done)
    _ingest(run_cli, tmp_path, "third", events[1200:])
    after = run_cli("run", check=False, timeout=900)
    assert after.returncode == 0, after.stdout[-3000:] + after.stderr[-2000:]
    _assert_incremental_equals_full_refresh(paths, run_cli)

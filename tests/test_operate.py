"""Operating side by side on the embedded DuckDB: analysts read analytics.duckdb while scheduled runs go on, a held
warehouse is one line naming its holder, runs are quiet, `status` tells what is going on, the data folder keeps
what it must and no more. Real processes and the real CLI throughout."""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from pipelines.connections import Registry
from pipelines.jobs import EXIT_BUSY, run_lock
from pipelines.loader import PIPELINE_NAME
from pipelines.settings import Paths
from pipelines.warehouse_lock import in_use_message
from tests.conftest import CLI, RunCli

ANSI = "\x1b["

# An analyst's session: opens analytics.duckdb read-only and keeps that connection; on each line from stdin it
# answers how many events it sees through it, so the test can ask between runs.
HELD_READER = """
import sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
print("ready", flush=True)
for _ in sys.stdin:
    print(con.execute("select count(*) from fct_events").fetchone()[0], flush=True)
"""


def _events(tmp_path: Path, start: int, count: int) -> Path:
    source = tmp_path / f"events-{start}.ndjson"
    lines = [
        json.dumps(
            {
                "type": "track",
                "userId": f"u-{i % 7}",
                "messageId": f"m-{i}",
                "event": "Signed Up",
                "timestamp": "2026-11-01T10:00:00Z",
            }
        )
        for i in range(start, start + count)
    ]
    source.write_text("\n".join(lines) + "\n")
    return source


def _fresh_count(database: Path) -> int:
    """A new reader, in its own process (as a reconnecting analyst): no schema prefix needed."""
    code = "import sys, duckdb; print(duckdb.connect(sys.argv[1], read_only=True)"
    code += ".execute('select count(*) from fct_events').fetchone()[0])"
    out = subprocess.run([sys.executable, "-c", code, str(database)], capture_output=True, text=True, check=True)
    return int(out.stdout)


@pytest.mark.slow
def test_an_analyst_holding_analytics_open_never_blocks_three_runs(
    paths: Paths, run_cli: RunCli, tmp_path: Path
) -> None:
    Registry(paths.data).add("web")
    run_cli("ingest", str(_events(tmp_path, 0, 5)), "--connection", "web")
    first = run_cli("run")
    analytics = paths.data / "analytics.duckdb"
    assert _fresh_count(analytics) == 5

    reader = subprocess.Popen(
        [sys.executable, "-c", HELD_READER, str(analytics)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert reader.stdout is not None and reader.stdin is not None
    try:
        assert reader.stdout.readline().strip() == "ready"
        outputs = [first]
        for round_number in range(1, 4):
            run_cli("ingest", str(_events(tmp_path, round_number * 100, 3)), "--connection", "web")
            args = ["run", "--verbose"] if round_number == 2 else ["run"]
            result = run_cli(*args)  # check=True: every run succeeds while the session holds the file
            outputs.append(result)
            assert _fresh_count(analytics) == 5 + 3 * round_number, "a reconnecting reader sees the new rows"
            reader.stdin.write("count\n")
            reader.stdin.flush()
            assert int(reader.stdout.readline()) == 5, "the held session keeps its consistent snapshot"
    finally:
        reader.kill()
        reader.wait()

    # Quiet by default: one line, no colour codes; --verbose streams dbt's log, still without colour off a TTY.
    for quiet in (outputs[0], outputs[1], outputs[3]):
        assert quiet.stdout.strip().splitlines() == [quiet.stdout.strip()], quiet.stdout
        assert quiet.stdout.startswith("run ok: ")
        assert ANSI not in quiet.stdout + quiet.stderr
    verbose = outputs[2].stdout
    assert "Done. PASS=" in verbose and verbose.strip().splitlines()[-1].startswith("run ok: 3 records loaded")
    assert ANSI not in verbose
    logs = sorted((paths.data / "logs").glob("run-*.log"))
    assert len(logs) == 4 and all("Done. PASS=" in log.read_text() and ANSI not in log.read_text() for log in logs)

    with duckdb.connect(str(analytics), read_only=True) as con:
        published = {row[0] for row in con.execute("select table_name from duckdb_tables()").fetchall()}
        described = con.execute("select comment from duckdb_tables() where table_name = 'dim_accounts'").fetchone()
    marts = {path.stem for path in (Path(__file__).parent.parent / "models" / "marts").glob("*.sql")}
    assert published == marts, "every mart, and nothing else, is published"
    assert described and described[0], "dbt's description travels with the table"


def _hold(database: Path) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HELD_READER, str(database)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
    return holder


def test_a_held_warehouse_is_one_line_naming_the_process(paths: Paths, run_cli: RunCli) -> None:
    Registry(paths.data).add("web")
    with duckdb.connect(str(paths.warehouse)) as con:  # the build's file, as an analyst's notebook opens it
        con.execute("create table fct_events as select 1 as event_id")
    holder = _hold(paths.warehouse)
    try:
        for command in ("run", "load", "transform"):
            result = run_cli(command, check=False)
            assert result.returncode == 1, (command, result.stdout, result.stderr)
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1, (command, result.stderr)
            assert f"PID {holder.pid}" in lines[0] and "analytics.duckdb" in lines[0], lines[0]
            assert "credentials" not in lines[0] and "internet" not in lines[0]
            assert result.stdout.strip() == ""
    finally:
        holder.kill()
        holder.wait()


def test_duckdbs_lock_error_inside_another_message_is_found(tmp_path: Path) -> None:
    """dlt wraps DuckDB's error in a paragraph about credentials; the holder is still found in it."""
    database = tmp_path / "held.duckdb"
    duckdb.connect(str(database)).close()
    holder = _hold(database)
    try:
        with pytest.raises(duckdb.Error) as caught:
            duckdb.connect(str(database))
    finally:
        holder.kill()
        holder.wait()
    wrapped = f"Connection failed. Please check if you configured the credentials at all ... {caught.value}"
    message = in_use_message(wrapped)
    assert message is not None and f"PID {holder.pid}" in message


@pytest.mark.parametrize("command", ["run", "transform", "load"])
def test_jobs_share_the_run_lock(paths: Paths, run_cli: RunCli, command: str) -> None:
    with run_lock(paths, wait=False):
        result = run_cli(command, check=False)
    assert result.returncode == EXIT_BUSY
    assert "another run is in progress" in result.stderr and f"pid {os.getpid()}" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_status_shows_a_run_in_progress_then_its_outcome(paths: Paths, run_cli: RunCli, tmp_path: Path) -> None:
    Registry(paths.data).add("web")
    run_cli("ingest", str(_events(tmp_path, 0, 2)), "--connection", "web")
    run_cli("run")
    first = json.loads(run_cli("status", "--json").stdout)["last_run"]
    run_cli("ingest", str(_events(tmp_path, 2, 2)), "--connection", "web")
    env = dict(os.environ, SEGMENT_ACCOUNTS_DATA=str(paths.data))
    running = subprocess.Popen([CLI, "run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    record = paths.data / "last_run.json"
    while not (record.exists() and json.loads(record.read_text())["pid"] == running.pid):
        assert running.poll() is None and time.monotonic() < deadline, "the run never recorded its start"
        time.sleep(0.05)
    during = json.loads(run_cli("status", "--json").stdout)
    text = run_cli("status").stdout
    _, err = running.communicate(timeout=300)
    assert running.returncode == 0, err
    assert during["run_in_progress"] is True
    assert during["last_run"]["outcome"] == "in progress" and during["last_run"]["pid"] == running.pid
    # a script reads the last finished run without unpacking the one in progress
    assert during["last_finished_run"]["started_at"] == first["started_at"]
    assert during["last_finished_run"]["outcome"] == "ok"
    assert f"run in progress: run started {during['last_run']['started_at']} (pid {running.pid})" in text
    # the run before it still shows, as finished (it was lost while a run went on)
    assert f"last run: ok: run started {first['started_at']}, finished {first['finished_at']}" in text
    assert "last build: being built by the run in progress" in text or "last build: passed" in text

    after = json.loads(run_cli("status", "--json").stdout)
    text = run_cli("status").stdout
    assert after["run_in_progress"] is False
    last = after["last_run"]
    assert after["last_finished_run"] == last
    assert (last["outcome"], last["records_loaded"], last["warnings"]) == ("ok", 2, [])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", last["finished_at"])
    assert f"last run: ok: run started {last['started_at']}, finished {last['finished_at']}" in text
    assert "2 records loaded" in text
    # For a person: no Python reprs, no epoch seconds, sizes by part.
    assert "{" not in text and "'" not in text and not re.search(r"\d{9,}\.\d", text), text
    sizes = after["disk_bytes"]
    assert {"spool", "spool_archive", "warehouse", "analytics", "dlt", "logs", "total"} <= set(sizes)
    assert sizes["warehouse"] > 0 and sizes["analytics"] > 0 and sizes["logs"] > 0
    assert re.search(r"disk: [\d.]+ [KM]B: spool [\d.]+ K?B, spool archive [\d.]+ K?B, warehouse [\d.]+ MB", text), text


def _raw_message_ids(paths: Paths) -> list[str]:
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        return sorted(row[0] for row in con.execute("select message_id from segment_raw.raw_events").fetchall())


def test_loaded_segments_are_archived_compressed_and_read_back(paths: Paths, run_cli: RunCli, tmp_path: Path) -> None:
    """The spool stays the system of record: a loaded segment is kept gzip-compressed, and `restore-spool` puts it
    back so that it loads again (a lost warehouse rebuilt from it). dlt's copies of completed loads are not kept."""
    Registry(paths.data).add("web")
    run_cli("ingest", str(_events(tmp_path, 0, 6)), "--connection", "web")
    run_cli("load")
    assert list(paths.spool.glob("*.seg")) == []
    (archived,) = (paths.spool / "loaded").glob("*.seg.gz")
    loaded_packages = paths.dlt_dir / PIPELINE_NAME / "load" / "loaded"
    assert not [job for job in loaded_packages.rglob("completed_jobs/*") if job.is_file()]
    assert _raw_message_ids(paths) == sorted(f"m-{i}" for i in range(6))

    with gzip.open(archived) as packed:  # the archive is the segment's bytes, unchanged
        assert packed.read(8) == b"SASPOOL\x01"
    assert run_cli("restore-spool").stdout.startswith("restored 1 archived spool segments")
    run_cli("load")
    assert _raw_message_ids(paths) == sorted(f"m-{i}" for i in range(6) for _ in range(2))


def test_spool_retention_is_a_setting(paths: Paths, run_cli: RunCli, tmp_path: Path) -> None:
    Registry(paths.data).add("web")
    run_cli("ingest", str(_events(tmp_path, 0, 2)), "--connection", "web")
    env_bad = dict(os.environ, SEGMENT_ACCOUNTS_DATA=str(paths.data), SEGMENT_ACCOUNTS_SPOOL_KEEP_DAYS="a week")
    bad = subprocess.run([CLI, "load"], env=env_bad, capture_output=True, text=True, check=False)
    assert bad.returncode == 1 and "SEGMENT_ACCOUNTS_SPOOL_KEEP_DAYS must be a number of days" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and len(list(paths.spool.glob("*.seg"))) == 1

    env_now = dict(env_bad, SEGMENT_ACCOUNTS_SPOOL_KEEP_DAYS="0")
    subprocess.run([CLI, "load"], env=env_now, capture_output=True, check=True)
    assert list(paths.spool.glob("*.seg")) == [] and not list(paths.spool.glob("loaded/*"))

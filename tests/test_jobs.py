"""`segment-accounts run` on a schedule: never two at once, distinct exit codes, idempotent re-runs."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import duckdb
import pytest

from pipelines.build_inputs import forget
from pipelines.connections import Registry
from pipelines.jobs import EXIT_BUSY, EXIT_OK, run_lock
from pipelines.settings import Paths
from tests.conftest import CLI, RunCli

EVENT = '{"type":"track","userId":"u-1","messageId":"m-1","event":"Signed Up","timestamp":"2026-11-01T10:00:00Z"}'


def test_second_run_exits_busy_with_a_clear_message(paths: Paths, run_cli: RunCli) -> None:
    with run_lock(paths, wait=False):
        result = run_cli("run", check=False)
    assert result.returncode == EXIT_BUSY
    assert "another run is in progress" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_with_wait_waits_for_the_lock(paths: Paths, data_dir: Path) -> None:
    Registry(paths.data).add("web")
    released = threading.Event()

    def hold() -> None:
        with run_lock(paths, wait=False):
            released.wait(timeout=30)

    holder = threading.Thread(target=hold)
    holder.start()
    time.sleep(0.2)
    env = dict(os.environ, SEGMENT_ACCOUNTS_DATA=str(data_dir))
    waiter = subprocess.Popen(
        [CLI, "run", "--wait"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    time.sleep(2.0)
    assert waiter.poll() is None, "run --wait did not wait for the lock"
    # Nothing may have started: a run that skipped the lock would have opened the pipeline and the warehouse.
    assert not paths.warehouse.exists() and not paths.dlt_dir.exists(), "run --wait worked without the lock"
    released.set()
    holder.join()
    out, err = waiter.communicate(timeout=300)
    assert waiter.returncode == EXIT_OK, err
    assert out.strip().splitlines()[-1].startswith("run ok:")


def test_run_is_idempotent_and_reports_one_line(paths: Paths, run_cli: RunCli, tmp_path: Path) -> None:
    Registry(paths.data).add("web")
    source = tmp_path / "e.ndjson"
    source.write_text(EVENT + "\n")
    run_cli("ingest", str(source), "--connection", "web")
    first = run_cli("run")
    second = run_cli("run")
    assert first.stdout.strip().splitlines()[-1].startswith("run ok: 1 records loaded")
    assert second.stdout.strip().splitlines()[-1].startswith("run ok: 0 records loaded")


def test_run_fails_with_exit_1_when_the_warehouse_is_unusable(paths: Paths, run_cli: RunCli) -> None:
    Registry(paths.data).add("web")
    paths.warehouse.parent.mkdir(parents=True, exist_ok=True)
    paths.warehouse.write_bytes(b"this is not a duckdb file")
    result = run_cli("run", check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("run failed: load:")


def test_run_after_an_upgrade_changed_columns_says_how_to_rebuild(
    paths: Paths, run_cli: RunCli, tmp_path: Path
) -> None:
    """A new version that changes an incremental model's columns stops the schedule with one line saying what to
    do, and that rebuild keeps every event."""
    Registry(paths.data).add("web")
    source = tmp_path / "e.ndjson"
    source.write_text(EVENT + "\n")
    run_cli("ingest", str(source), "--connection", "web")
    run_cli("run")
    with duckdb.connect(str(paths.warehouse)) as con:  # the table as an older version built it
        con.execute("alter table staging.stg_segment__events add column legacy_column varchar")
    forget(paths)  # a new version's files differ from those the last build read: the run builds

    failed = run_cli("run", check=False)
    assert failed.returncode == 1
    lines = failed.stdout.strip().splitlines()
    assert lines[0].startswith("run failed: dbt build exited 1") and "; failed: stg_segment__events" in lines[0]
    # the failing node's own error, and where the whole log is: not dbt's 300 lines
    assert lines[1].startswith("  stg_segment__events: ") and "out of sync" in lines[1], lines
    log = Path(lines[2].removeprefix("  full log: "))
    assert "Done. PASS=" in log.read_text() and log.parent == paths.data / "logs"
    last = lines[-1]
    assert len(lines) == 4, lines
    assert last.startswith("run failed: the columns of stg_segment__events changed"), last
    assert "segment-accounts run --full-refresh" in last
    status = json.loads(run_cli("status", "--json").stdout)["last_run"]
    assert (status["outcome"], status["failures"], status["log"]) == ("failed", ["stg_segment__events"], str(log))
    assert "last run: failed: run started" in run_cli("status").stdout

    rebuilt = run_cli("run", "--full-refresh")
    assert rebuilt.stdout.strip().splitlines()[-1].startswith("run ok: 0 records loaded")
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        assert con.execute("select count(*) from analytics.fct_events").fetchone()[0] == 1
        columns = [row[0] for row in con.execute("describe staging.stg_segment__events").fetchall()]
    assert "legacy_column" not in columns


@pytest.mark.parametrize("model", ["intermediate.int_events_identified", "analytics.fct_events"])
def test_run_after_an_upgrade_made_a_table_incremental_says_how_to_rebuild(
    paths: Paths, run_cli: RunCli, tmp_path: Path, model: str
) -> None:
    """The version before this one built the per-event tables in full, without the load id an incremental run
    reads from them: the schedule stops with the one line naming the model, not with a missing-column error."""
    Registry(paths.data).add("web")
    source = tmp_path / "e.ndjson"
    source.write_text(EVENT + "\n")
    run_cli("ingest", str(source), "--connection", "web")
    run_cli("run")
    with duckdb.connect(str(paths.warehouse)) as con:  # the table as the older version built it
        con.execute(f"alter table {model} drop column _dlt_load_id")
    forget(paths)  # a new version's files differ from those the last build read: the run builds

    failed = run_cli("run", check=False)
    assert failed.returncode == 1
    last = failed.stdout.strip().splitlines()[-1]
    assert last.startswith(f"run failed: the columns of {model.split('.')[1]} changed"), last
    assert "segment-accounts run --full-refresh" in last
    assert run_cli("run", "--full-refresh").returncode == 0


def test_merge_protection_warning_reaches_the_run_line_and_status(
    paths: Paths, run_cli: RunCli, tmp_path: Path
) -> None:
    """A contact that gathers more user ids than var segment_accounts__max_user_ids_per_contact (100) is a warning,
    not a failure: the scheduled run's one log line and `status` must name it, or nobody sees it."""
    Registry(paths.data).add("web")
    aliases = [
        json.dumps(
            {
                "type": "alias",
                "messageId": f"a-{i}",
                "previousId": f"u-{i}",
                "userId": f"u-{i + 1}",
                "timestamp": "2026-11-01T10:00:00Z",
            }
        )
        for i in range(101)  # 102 user ids in one chain
    ]
    source = tmp_path / "aliases.ndjson"
    source.write_text("\n".join(aliases) + "\n")
    run_cli("ingest", str(source), "--connection", "web")

    result = run_cli("run")
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("run ok: 101 records loaded, dbt build passed with 1 warning"), last
    assert "(assert_contacts_within_max_user_ids)" in last

    report = json.loads(run_cli("status", "--json").stdout)["last_build"]
    assert report["warnings"] == ["assert_contacts_within_max_user_ids"]
    assert report["failures"] == []
    assert "passed with 1 warning" in run_cli("status").stdout


def test_freshness_follows_the_age_of_the_last_event(paths: Paths, run_cli: RunCli, tmp_path: Path) -> None:
    """Segment going quiet is silent at the receiver; `freshness` is the alarm: pass, then warn after 24 h, then
    exit 1 after 72 h without a new event (the thresholds on the `segment` source)."""
    Registry(paths.data).add("web")
    source = tmp_path / "e.ndjson"
    source.write_text(EVENT + "\n")
    run_cli("ingest", str(source), "--connection", "web")
    run_cli("run")

    fresh = run_cli("freshness")
    assert fresh.stdout.strip().startswith("freshness pass: raw_events last received"), fresh.stdout

    def age_events_by(hours: int) -> None:
        with duckdb.connect(str(paths.warehouse)) as con:
            con.execute(f"update segment_raw.raw_events set received_at = received_at - interval {hours} hour")

    age_events_by(30)
    stale = run_cli("freshness")
    assert stale.stdout.strip().startswith("freshness warn: raw_events last received 30."), stale.stdout
    assert "(warn after 24 hours, error after 72 hours)" in stale.stdout

    age_events_by(50)
    silent = run_cli("freshness", check=False)
    assert silent.returncode == 1
    assert silent.stdout.strip().startswith("freshness error: raw_events last received 3.3 days ago"), silent.stdout

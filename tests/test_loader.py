"""ingest -> spool -> load: every event lands once, exactly as received, and a crash loses nothing."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from pipelines.connections import Registry
from pipelines.loader import PIPELINE_NAME, load
from pipelines.sample_data import write_ndjson
from pipelines.settings import Paths
from tests.conftest import CLI, RunCli

# Exactness matters: these are the payloads a re-serializing pipeline would change.
TRICKY_EVENTS = [
    '{"type":"identify","userId":"u-1","messageId":"m-1",'
    '"traits":{"name":"Zoë Ångström 東京 🚀","plan":{"seats":{"max":10}}}}',
    '{"type":"track","userId":"u-1","messageId":"m-2","event":"Big",'
    '"properties":{"n":123456789012345678901234567890,"f":1.0000000000000001,"e":-0.0}}',
    '{"type":"page","anonymousId":"a-1","messageId":"m-3","name":"Home",  "properties": {"spaced" : true}}',
    '{"type":"group","userId":"u-1","messageId":"m-4","groupId":"acme","traits":{"company":{"id":"acme","tags":["a","b"]}}}',
    '{"type":"alias","userId":"u-1","previousId":"a-1","messageId":"m-5","text":"line\\nbreak \\"quoted\\" \\u00e9"}',
]
BAD_LINES = {
    "not json at all": "not JSON",
    # Valid JSON grammar, but no parser can hold it: quarantined (raw kept) rather than turned into null later.
    '{"type":"track","userId":"u-2","messageId":"b-0","event":"Huge","properties":{"e":1e400}}': "not JSON",
    '{"type":"track","userId":"u-2","messageId":"b-1"}': "track without event",
    '{"type":"teleport","userId":"u-2","messageId":"b-2"}': "invalid type",
    '{"type":"page","messageId":"b-3"}': "missing userId and anonymousId",
    '{"type":"alias","userId":"u-2","messageId":"b-4"}': "alias without previousId",
    '{"type":"group","userId":"u-2","messageId":"b-5"}': "group without groupId",
    '{"type":"page","userId":"u-2","messageId":"' + "x" * 101 + '"}': "messageId over 100 characters",
    # Valid JSON grammar, but half a character: every warehouse's JSON cast refuses it, failing the whole build.
    '{"type":"track","userId":"u-2","messageId":"b-6","event":"Half \\ud800 pair"}': "lone surrogate escape",
}


RAW_COLUMNS_SQL = (
    "select column_name, data_type from information_schema.columns"
    " where table_schema = 'segment_raw' and table_name = 'raw_events' order by all"
)


def _query(paths: Paths, sql: str) -> list[tuple]:
    con = duckdb.connect(str(paths.warehouse), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _connection(paths: Paths, name: str = "web") -> str:
    connection, _ = Registry(paths.data).add(name)
    return connection.connection_id


def test_ingest_then_load_keeps_every_payload_exact(paths: Paths, run_cli: RunCli, tmp_path: Path) -> None:
    connection_id = _connection(paths)
    source = tmp_path / "events.ndjson"
    source.write_text("\n".join(TRICKY_EVENTS + list(BAD_LINES)) + "\n", encoding="utf-8")

    ingested = run_cli("ingest", str(source), "--connection", "web")
    assert "accepted 5 events, quarantined 9" in ingested.stdout
    run_cli("load")

    rows = _query(paths, "select message_id, payload, connection_id from segment_raw.raw_events order by message_id")
    assert [(r[0], r[1]) for r in rows] == [(f"m-{i}", TRICKY_EVENTS[i - 1]) for i in range(1, 6)]
    assert {r[2] for r in rows} == {connection_id}
    # The JSON is intact for SQL too: big numbers and non-ASCII read back from the stored text.
    assert (
        _query(paths, "select payload::json->>'$.properties.n' from segment_raw.raw_events where message_id = 'm-2'")[
            0
        ][0]
        == "123456789012345678901234567890"
    )

    rejected = _query(paths, "select reason, payload from segment_raw.rejected_events")
    assert len(rejected) == len(BAD_LINES)
    by_payload = {payload: reason for reason, payload in rejected}
    for line, reason in BAD_LINES.items():
        assert reason in by_payload[line]


def test_json_array_and_gzip_files_and_second_load_adds_nothing(paths: Paths, run_cli: RunCli, tmp_path: Path) -> None:
    _connection(paths)
    array_file = tmp_path / "archive.json.gz"
    with gzip.open(array_file, "wt", encoding="utf-8") as out:
        out.write("[\n  " + ",\n  ".join(TRICKY_EVENTS) + "\n]\n")
    run_cli("ingest", str(array_file), "--connection", "web")
    run_cli("load")
    second = run_cli("load")
    assert "loaded 0 spooled records" in second.stdout
    rows = _query(paths, "select payload from segment_raw.raw_events order by message_id")
    assert [r[0] for r in rows] == TRICKY_EVENTS


def test_raw_columns_do_not_change_with_new_traits(paths: Paths, run_cli: RunCli, tmp_path: Path) -> None:
    _connection(paths)
    first = tmp_path / "first.ndjson"
    first.write_text(TRICKY_EVENTS[0] + "\n")
    run_cli("ingest", str(first), "--connection", "web")
    run_cli("load")
    columns_before = _query(
        paths,
        RAW_COLUMNS_SQL,
    )
    novel = {
        "type": "identify",
        "userId": "u-9",
        "messageId": "m-novel",
        "traits": {"brand_new": {"deeply": {"nested": [1, {"x": 2}]}}, "another": True},
    }
    second = tmp_path / "second.ndjson"
    second.write_text(json.dumps(novel) + "\n")
    run_cli("ingest", str(second), "--connection", "web")
    run_cli("load")
    columns_after = _query(
        paths,
        RAW_COLUMNS_SQL,
    )
    assert columns_after == columns_before
    assert {name for name, _ in columns_before} == {
        "connection_id",
        "message_id",
        "received_at",
        "payload",
        "_dlt_load_id",
    }
    tables = {
        r[0]
        for r in _query(paths, "select table_name from information_schema.tables where table_schema = 'segment_raw'")
    }
    assert not any(t.startswith("raw_events__") for t in tables), "dlt made child tables from nested JSON"


def test_connections_table_has_settings_and_no_secrets(paths: Paths) -> None:
    registry = Registry(paths.data)
    _, credentials = registry.add("app", account_mapping="traits", account_id_trait="company.id")
    load(paths)
    rows = _query(paths, "select name, account_mapping, account_id_trait, email_fallback from segment_raw.connections")
    assert rows == [("app", "traits", "company.id", True)]
    dump = str(_query(paths, "select * from segment_raw.connections"))
    assert credentials.webhook_secret not in dump and credentials.write_key not in dump


def test_ingest_unknown_connection_is_one_clear_line(run_cli: RunCli, tmp_path: Path) -> None:
    source = tmp_path / "e.ndjson"
    source.write_text(TRICKY_EVENTS[0] + "\n")
    result = run_cli("ingest", str(source), "--connection", "nope", check=False)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "nope" in result.stderr


# Where a load can be killed, each seen in dlt's working folder rather than guessed from a clock: the machine that
# runs CI may be faster or slower than ours. (dlt's layout: normalize/<schema hash>/<load id> while extracting,
# load/normalized/<load id> while the warehouse copies the package, load/loaded/<load id> once it committed.)
LOAD_PHASES = {
    "extracting": "normalize/*/*",
    "loading into the warehouse": "load/normalized/*",
}

# Runs ``segment-accounts load`` with the cursor commit replaced by a kill -9: the warehouse has committed the rows,
# the spool still thinks they are new. No clock can hit that window reliably; this hits it every time.
KILLED_BEFORE_CURSOR_COMMIT = """
import os, signal, sys
from pipelines import spool
spool.SpoolReader.commit = lambda self, cursor: os.kill(os.getpid(), signal.SIGKILL)
from pipelines.cli import main
sys.argv = ["segment-accounts", "load"]
main()
"""


def _spooled_events(paths: Paths, run_cli: RunCli, tmp_path: Path) -> set[str]:
    _connection(paths)
    source = tmp_path / "many.ndjson.gz"
    write_ndjson(source, 60_000, seed=11)
    with gzip.open(source, "rt") as handle:
        expected = {json.loads(line)["messageId"] for line in handle}
    run_cli("ingest", str(source), "--connection", "web")
    return expected


def _loader_env(paths: Paths) -> dict[str, str]:
    env = dict(os.environ, SEGMENT_ACCOUNTS_DATA=str(paths.data))
    # Small batches make extraction long enough to be caught in the middle of it.
    env["SOURCES__SEGMENT_SPOOL__BATCH_SIZE"] = "2000"
    return env


def _assert_all_landed_after_reload(paths: Paths, run_cli: RunCli, expected: set[str]) -> None:
    run_cli("load")
    landed = _query(paths, "select message_id, count(*) from segment_raw.raw_events group by 1")
    assert {m for m, _ in landed} == expected
    # Whatever raw repeated, staging will dedupe; here we only require that nothing is missing.
    assert sum(n for _, n in landed) >= len(expected)


@pytest.mark.parametrize("phase", sorted(LOAD_PHASES))
def test_kill_during_load_then_load_again_loses_nothing(
    paths: Paths, run_cli: RunCli, tmp_path: Path, phase: str
) -> None:
    expected = _spooled_events(paths, run_cli, tmp_path)
    victim = subprocess.Popen(
        [CLI, "load"], env=_loader_env(paths), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    pipeline_dir = paths.dlt_dir / PIPELINE_NAME
    deadline = time.monotonic() + 300
    while not any(pipeline_dir.glob(LOAD_PHASES[phase])):
        assert victim.poll() is None, f"load finished before it was seen {phase}: the test would prove nothing"
        assert time.monotonic() < deadline, f"load never reached {phase}"
        time.sleep(0.002)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    _assert_all_landed_after_reload(paths, run_cli, expected)


def test_kill_after_warehouse_commit_before_cursor_commit_loses_nothing(
    paths: Paths, run_cli: RunCli, tmp_path: Path
) -> None:
    expected = _spooled_events(paths, run_cli, tmp_path)
    victim = subprocess.run(
        [sys.executable, "-c", KILLED_BEFORE_CURSOR_COMMIT], env=_loader_env(paths), capture_output=True, timeout=300
    )
    assert victim.returncode == -signal.SIGKILL, victim.stderr
    committed = _query(paths, "select distinct message_id from segment_raw.raw_events")
    assert {m for (m,) in committed} == expected, "the warehouse had not committed before the kill"
    _assert_all_landed_after_reload(paths, run_cli, expected)

"""What an analyst meets first, on the demo's warehouse: every mart filled, one company one account (domain
consolidation), every example query of analyses/ compiling and answering, and the dbt docs site built and
served by `segment-accounts docs`.

The demo runs once for the module (a real receiver, the loader, dbt), in a temporary data folder.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import urllib.request
from pathlib import Path

import duckdb
import pytest

from pipelines.demo import DEMO_CONNECTION
from pipelines.settings import MARTS_SCHEMA, Paths
from pipelines.transform import run_dbt, run_results_file
from tests.conftest import CLI, RunCli

ROOT = Path(__file__).resolve().parents[1]
MARTS = sorted(path.stem for path in (ROOT / "models" / "marts").glob("*.sql"))
ANALYSES = sorted(path.stem for path in (ROOT / "analyses").glob("*.sql"))

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Paths, str]:
    """`segment-accounts demo` once; returns the installation and what it printed."""
    data = tmp_path_factory.mktemp("analysts") / "data"
    env = dict(os.environ, SEGMENT_ACCOUNTS_DATA=str(data))
    env.pop("SEGMENT_ACCOUNTS_REGISTRY", None)
    result = subprocess.run([CLI, "demo"], env=env, capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return Paths(data), result.stdout


def _query(paths: Paths, sql: str) -> list[tuple]:
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_demo_fills_every_mart_and_prints_its_row_count(demo: tuple[Paths, str]) -> None:
    paths, output = demo
    tables = {
        name
        for (name,) in _query(
            paths, f"select table_name from information_schema.tables where table_schema = '{MARTS_SCHEMA}'"
        )
    }
    assert tables == set(MARTS), "the analytics schema holds the marts and nothing else"
    for mart in MARTS:
        count = _query(paths, f"select count(*) from {MARTS_SCHEMA}.{mart}")[0][0]
        assert count > 0, f"{mart} is empty on the demo"
        assert f"  {mart:<26} {count:>8} rows" in output, f"the demo did not print {mart}'s row count"
    # user-to-user alias chains: a contact with three user ids or more
    longest_chain = _query(
        paths,
        f"select max(n) from (select count(*) as n from {MARTS_SCHEMA}.dim_contact_identifiers"
        " where identifier_type = 'user_id' group by contact_id)",
    )[0][0]
    assert longest_chain >= 3
    rejected = _query(paths, "select count(distinct reason) from segment_raw.rejected_events")[0][0]
    assert rejected >= 3


def test_demo_explains_its_counts(demo: tuple[Paths, str]) -> None:
    """The run's "records loaded", the raw events and fct_events' rows differ: the demo says by what, so a
    newcomer is not left wondering where ten events went."""
    paths, output = demo
    raw, quarantined, events = _query(
        paths,
        "select (select count(*) from segment_raw.raw_events), (select count(*) from segment_raw.rejected_events),"
        f" (select count(*) from {MARTS_SCHEMA}.fct_events)",
    )[0]
    assert f"demo: sent {raw + quarantined} events ({raw} of product traffic" in output
    assert f"and {quarantined} malformed ones" in output
    assert f"run ok: {raw + quarantined} records loaded" in output
    assert f"raw events landed: {raw}, and {quarantined} quarantined in rejected_events" in output
    assert f"fct_events holds {events} of them: {raw - events} were retried deliveries" in output
    assert raw > events, "the demo sends retries, which fct_events keeps once"


def test_demo_consolidates_domain_accounts(demo: tuple[Paths, str], tmp_path: Path) -> None:
    """The same demo built without consolidation has domain accounts that the default build merged."""
    paths, output = demo
    with_consolidation = dict(_query(paths, f"select account_id, contact_count from {MARTS_SCHEMA}.dim_accounts"))
    matched = _query(
        paths,
        f"select account_id, split_part(email, '@', 2) from {MARTS_SCHEMA}.dim_contacts"
        " where account_assigned_by = 'email_domain_matched'",
    )
    assert matched, "no contact joined an account by its email domain"
    assert "domain consolidation: " in output

    without = Paths(tmp_path / "without")
    shutil.copytree(paths.data, without.data, ignore=shutil.ignore_patterns("dbt"))
    vars_off = json.dumps({"segment_accounts__consolidate_email_domains": False})
    assert run_dbt(without, ["run", "--vars", vars_off], quiet=True) == 0
    without_consolidation = dict(_query(without, f"select account_id, contact_count from {MARTS_SCHEMA}.dim_accounts"))

    merged = {domain for _, domain in matched}
    assert merged <= set(without_consolidation), "each matched domain was an account of its own without consolidation"
    assert not merged & set(with_consolidation), "and is not one with it"
    assert sum(with_consolidation.values()) == sum(without_consolidation.values()), "no contact gained or lost"
    for account_id, domain in matched:
        assert with_consolidation[account_id] > without_consolidation[account_id], (account_id, domain)


@pytest.fixture(scope="module")
def compiled_analyses(demo: tuple[Paths, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`dbt compile` of every analysis, into a folder of its own (not the build's target/)."""
    paths, _ = demo
    target = tmp_path_factory.mktemp("analyses_target")
    assert run_dbt(paths, ["compile", "--select", "resource_type:analysis"], quiet=True, target_dir=target) == 0
    return target / "compiled" / "segment_accounts" / "analyses"


@pytest.mark.parametrize("analysis", ANALYSES)
def test_analysis_compiles_and_answers_on_the_demo(
    analysis: str, demo: tuple[Paths, str], compiled_analyses: Path
) -> None:
    paths, _ = demo
    sql = (compiled_analyses / f"{analysis}.sql").read_text()
    rows = _query(paths, sql)
    assert rows, f"analyses/{analysis}.sql answered nothing on the demo"


MART_ONLY_ANALYSES = {
    "most_active_accounts_this_week",
    "contacts_of_an_account",
    "users_merged_last_7_days",
    "audience_entries_and_exits",
}


def test_docs_writes_the_mart_only_analyses_for_analytics_duckdb(
    demo: tuple[Paths, str], compiled_analyses: Path
) -> None:
    """An analyst with analytics.duckdb open runs the example queries as `docs` wrote them, and gets what the
    compiled analysis gets on the build's warehouse; those reading tables analytics.duckdb lacks are left out."""
    paths, _ = demo
    env = dict(os.environ, SEGMENT_ACCOUNTS_DATA=str(paths.data))
    result = subprocess.run([CLI, "docs"], env=env, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("example queries"))
    folder = Path(line.split(": ", 1)[1].strip())
    assert {path.stem for path in folder.glob("*.sql")} == MART_ONLY_ANALYSES
    with duckdb.connect(str(paths.data / "analytics.duckdb"), read_only=True) as analytics:
        for name in sorted(MART_ONLY_ANALYSES):
            ours = sorted(analytics.execute((folder / f"{name}.sql").read_text()).fetchall(), key=repr)
            built = sorted(_query(paths, (compiled_analyses / f"{name}.sql").read_text()), key=repr)
            assert ours == built and ours, name


def test_analyses_cover_the_first_questions() -> None:
    assert set(ANALYSES) >= {
        "most_active_accounts_this_week",
        "contacts_of_an_account",
        "users_merged_last_7_days",
        "audience_entries_and_exits",
        "events_without_account",
        "rejected_events_by_reason",
    }


def test_docs_command_builds_and_serves_the_site(demo: tuple[Paths, str], run_cli: RunCli, data_dir: Path) -> None:
    paths, _ = demo
    build_report = run_results_file(paths).read_bytes()
    env = dict(os.environ, SEGMENT_ACCOUNTS_DATA=str(paths.data))
    server = subprocess.Popen(
        [CLI, "docs", "--serve", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # started with SIGINT ignored, as a script's background job (or a pytest-xdist worker) starts it:
        # Ctrl-C must stop it all the same
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        lines = []
        assert server.stdout is not None
        for line in server.stdout:
            lines.append(line)
            if line.startswith("serving the docs site on "):
                break
        assert lines and lines[-1].startswith("serving"), "".join(lines) + (
            server.stderr.read() if server.poll() is not None else ""
        )
        url = lines[-1].split(" on ", 1)[1].split(" ", 1)[0]
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url, timeout=10) as page:
            assert page.status == 200 and b"dbt" in page.read()
        with urllib.request.urlopen(url + "manifest.json", timeout=10) as manifest:
            nodes = json.loads(manifest.read())["nodes"]
        documented = nodes["model.segment_accounts.fct_identity_merges"]["columns"]
        assert documented["merged_by_call"]["description"]
        site = Path(lines[0].removeprefix("docs site: ").strip())
        assert site.name == "index.html" and (site.parent / "static_index.html").exists()
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
    assert server.returncode == 0
    # the build report `run` and `status` read is still the last build's
    assert run_results_file(paths).read_bytes() == build_report


def test_docs_command_says_in_one_line_when_the_warehouse_is_busy(run_cli: RunCli, data_dir: Path) -> None:
    """DuckDB admits one writer process: while another holds the warehouse, `docs` fails with one clear line."""
    with duckdb.connect(str(data_dir / "warehouse.duckdb")):
        result = run_cli("docs", check=False, timeout=300)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("Error: dbt docs generate failed: IO Error: Could not set lock on file")
    assert len(result.stderr.strip().splitlines()) == 1


def test_rejected_events_by_reason_tells_a_second_delivery_from_a_new_payload(
    demo: tuple[Paths, str], compiled_analyses: Path, tmp_path: Path
) -> None:
    """The same archive ingested twice quarantines its bad line twice: two deliveries, one payload."""
    paths, _ = demo
    data = tmp_path / "data"
    shutil.copytree(paths.data, data)  # a copy: the demo's own counts stay as it printed them
    archive = tmp_path / "archive.ndjson"
    archive.write_text('{"type": "track", "event": "Signed Up", "userId": "u-1"\n')  # cut off: not JSON
    env = dict(os.environ, SEGMENT_ACCOUNTS_DATA=str(data))
    env.pop("SEGMENT_ACCOUNTS_REGISTRY", None)
    for args in (["ingest", str(archive), "--connection", DEMO_CONNECTION],) * 2 + (["load"],):
        result = subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=300, check=False)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    sql = (compiled_analyses / "rejected_events_by_reason.sql").read_text()
    with duckdb.connect(str(Paths(data).warehouse), read_only=True) as con:
        cursor = con.execute(sql)
        columns = [column[0] for column in cursor.description]
        rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    ours = [row for row in rows if row["reason"] == "archive.ndjson: not JSON"]
    assert [(row["rejected_count"], row["distinct_payload_count"]) for row in ours] == [(2, 1)]

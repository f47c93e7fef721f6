"""The same dbt project on Apache Spark (local mode, dbt-spark's `session` method), fed by the loader's Parquet
lake, compared with DuckDB on the same spool.

Runs only in the Spark venv: `make test-spark` (the main suite deselects the `spark` marker). One module-scoped
fixture generates a few hundred events, loads them into DuckDB from one host, and into Parquet files for Spark
(SEGMENT_ACCOUNTS_TARGET=spark) from two hosts whose loaders run at once, then runs `dbt build` on both. dbt
runs with its working directory in the temporary folder, and the profile keeps Spark's metastore, warehouse and
derby.log in the data folder: nothing lands in the repository.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.sample_data import write_ndjson
from pipelines.settings import Paths
from pipelines.transform import dbt_command
from tests.conftest import target_env

# Spark in local mode on a shared 2-core machine: the module's one build outlasts pytest's default 600 s timeout.
pytestmark = [pytest.mark.spark, pytest.mark.timeout(1800)]

CLI = str(Path(sys.executable).with_name("segment-accounts"))
EVENTS = 400
AS_OF = '{"segment_accounts__account_activity_as_of": "2026-12-01T00:00:00Z"}'
MARTS = ["fct_events", "dim_contacts", "dim_accounts", "dim_contact_identifiers", "fct_audience_history"]


def _cli(data: Path, target: str, *args: str) -> None:
    result = subprocess.run(
        [CLI, *args], env=target_env(data, target), capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, f"segment-accounts {' '.join(args)}:\n{result.stdout}\n{result.stderr}"


def _dbt(data: Path, target: str, *args: str, timeout: float = 600) -> tuple[subprocess.CompletedProcess, float]:
    """dbt as `segment-accounts transform` runs it (pipelines.transform), from a working folder in tmp."""
    work = data / "dbt"
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    result = subprocess.run(
        dbt_command(Paths(data), [*args, "--target", target]),
        cwd=work,
        env=target_env(data, target),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return result, time.perf_counter() - started


def _results(data: Path) -> dict[str, dict]:
    run_results = json.loads((data / "dbt" / "target" / "run_results.json").read_text())
    return {r["unique_id"]: r for r in run_results["results"]}


def _host_env(data: Path, registry: Path, loader: str) -> dict[str, str]:
    return {
        **target_env(data, "spark"),
        "SEGMENT_ACCOUNTS_REGISTRY": str(registry),
        "SEGMENT_ACCOUNTS_LOADER_NAME": loader,
    }


def _loads_together(hosts: dict[Path, dict[str, str]]) -> None:
    """Both hosts' `load` started at the same moment, into one lake."""
    running = {
        data: subprocess.Popen([CLI, "load"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for data, env in hosts.items()
    }
    for data, process in running.items():
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, f"load of {data.name} failed:\n{out}\n{err}"


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """One set of events, loaded into DuckDB by one host and into the Parquet lake by two hosts at once.

    The lake side is two hosts as docs/scaling-out.md sets them up: each its own data folder and spool, one
    registry (SEGMENT_ACCOUNTS_REGISTRY), one lake (the second host's lake folder is the first's, as a shared
    volume mounted on both would be). Each host gets part of the events, some to both (a Segment retry that
    reached two receivers), in two rounds of loads started together, the first creating the lake's tables.
    """
    tmp = tmp_path_factory.mktemp("spark")
    events = tmp / "events.ndjson"
    write_ndjson(events, EVENTS, seed=11, engage=0.1)
    lines = events.read_text().splitlines(keepends=True)

    spark_data = tmp / "spark"
    _cli(spark_data, "spark", "connections", "add", "web")
    _cli(
        spark_data,
        "spark",
        *("connections", "add", "crm", "--account-mapping", "traits"),
        *("--account-id-trait", "company.id", "--account-name-trait", "company.name"),
    )
    # the same registry for DuckDB, which ingests every event on one host
    duckdb_data = tmp / "duckdb"
    shutil.copytree(spark_data, duckdb_data)
    _cli(duckdb_data, "duckdb", "ingest", str(events), "--connection", "web")

    second_host = tmp / "spark-b"
    (spark_data / "lake").mkdir()
    second_host.mkdir()
    (second_host / "lake").symlink_to(spark_data / "lake")
    hosts = {
        spark_data: _host_env(spark_data, spark_data, "segment_accounts_a"),
        second_host: _host_env(second_host, spark_data, "segment_accounts_b"),
    }
    quarter = len(lines) // 4
    overlap = quarter // 3
    parts = {  # (first host's lines, second host's lines) per round; `overlap` lines go to both
        1: (lines[:quarter], lines[quarter - overlap : 2 * quarter]),
        2: (lines[2 * quarter : 3 * quarter], lines[3 * quarter - overlap :]),
    }
    for round_number, (first, second) in parts.items():
        for data, part in ((spark_data, first), (second_host, second)):
            chunk = tmp / f"{data.name}-{round_number}.ndjson"
            chunk.write_text("".join(part))
            ingested = subprocess.run(
                [CLI, "ingest", str(chunk), "--connection", "web"],
                env=hosts[data],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            assert ingested.returncode == 0, ingested.stderr
        _loads_together(hosts)
    _cli(duckdb_data, "duckdb", "load")

    duckdb_build, duckdb_seconds = _dbt(duckdb_data, "duckdb", "build", "--vars", AS_OF)
    # One unit test is left out on Spark: with its inline fixture, Spark 4.3 fails to deserialize the task's plan
    # (ClassCastException: DefaultSerializationProxy -> UnionExec.children), a Spark bug with shared subplans.
    # The same model on real tables, and its six other unit tests, pass.
    spark_build, spark_seconds = _dbt(
        spark_data, "spark", "build", "--vars", AS_OF, "--exclude", "test_alias_chain_received_backwards", timeout=1500
    )
    print(f"\ndbt build of {EVENTS} events: duckdb {duckdb_seconds:.0f}s, spark {spark_seconds:.0f}s")
    return {
        "duckdb": (duckdb_data, duckdb_build),
        "spark": (spark_data, spark_build),
    }


COUNT_QUERIES = {mart: f"select count(*) as n from {{schema}}.{mart}" for mart in MARTS} | {
    "contacts_with_account": "select count(*) as n from {schema}.dim_contacts where account_id is not null",
    "anonymous_contacts": "select count(*) as n from {schema}.dim_contacts where is_anonymous",
}


def _counts_duckdb(data: Path) -> dict[str, int]:
    import duckdb

    con = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
    try:
        return {name: con.execute(sql.format(schema="analytics")).fetchone()[0] for name, sql in COUNT_QUERIES.items()}
    finally:
        con.close()


def _counts_spark(data: Path) -> dict[str, int]:
    """Counts through dbt itself (`dbt show`), so the test needs no Spark session of its own."""
    union = " union all ".join(
        f"select '{name}' as k, n from ({sql.format(schema='analytics')}) as q" for name, sql in COUNT_QUERIES.items()
    )
    result, _ = _dbt(data, "spark", "show", "--inline", union, "--limit", "100", "--output", "json", "--quiet")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    start = result.stdout.index("{")
    rows = json.loads(result.stdout[start:])["show"]
    return {row["k"]: int(row["n"]) for row in rows}


def test_spark_build_passes(builds):
    data, result = builds["spark"]
    results = _results(data)
    failed = {uid: r["status"] for uid, r in results.items() if r["status"] not in {"success", "pass"}}
    assert result.returncode == 0 and not failed, f"{failed}\n{result.stdout[-6000:]}\n{result.stderr[-2000:]}"
    kinds = [uid.split(".")[0] for uid in results]
    assert kinds.count("model") >= 20
    assert kinds.count("unit_test") >= 24
    assert kinds.count("test") >= 80


def test_duckdb_build_of_the_same_spool_passes(builds):
    _, result = builds["duckdb"]
    assert result.returncode == 0, result.stdout[-6000:]


def test_spark_marts_match_duckdb(builds):
    duckdb_counts = _counts_duckdb(builds["duckdb"][0])
    spark_counts = _counts_spark(builds["spark"][0])
    assert duckdb_counts["fct_events"] > 0.9 * EVENTS
    assert spark_counts == duckdb_counts

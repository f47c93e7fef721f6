"""A scheduled run with nothing new builds only the clock's models; anything new (events, another process's load,
a registry change, an edited project) builds the schedule again, and a failed build is never trusted."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import duckdb
import pytest

from pipelines.build_inputs import (
    PROJECT_ENVIRONMENT,
    BuildInputs,
    forget,
    project_digest,
    project_unchanged,
    read_recorded,
    remember,
)
from pipelines.connections import Registry
from pipelines.settings import PROJECT_DIR, Paths
from pipelines.transform import built_models, clock_target_dir
from tests.conftest import RunCli

EVENT = '{{"type":"track","userId":"u-{n}","messageId":"m-{n}","event":"Signed Up","timestamp":"2026-11-01T10:00:00Z"}}'


GROUP = '{"type":"group","userId":"u-1","groupId":"acme","messageId":"g-1","timestamp":"2026-11-01T10:00:00Z"}'


def _ingest(run_cli: RunCli, tmp_path: Path, *numbers: int, group: bool = False) -> None:
    source = tmp_path / f"events-{numbers[0]}.ndjson"
    source.write_text("".join(EVENT.format(n=n) + "\n" for n in numbers) + (GROUP + "\n" if group else ""))
    run_cli("ingest", str(source), "--connection", "web")


def _completed_loads(paths: Paths) -> int:
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        return con.execute("select count(*) from segment_raw._dlt_loads where status = 0").fetchone()[0]


def _published(paths: Paths, sql: str) -> list[tuple]:
    with duckdb.connect(str(paths.data / "analytics.duckdb"), read_only=True) as con:
        return con.execute(sql).fetchall()


def _seeds_loaded(paths: Paths) -> set[str]:
    """The seeds the last build loaded, from its run_results.json."""
    results = json.loads((paths.data / "dbt" / "target" / "run_results.json").read_text())["results"]
    return {r["unique_id"].split(".")[-1] for r in results if r["unique_id"].startswith("seed.")}


def _last_line(result: object) -> str:
    return result.stdout.strip().splitlines()[-1]  # type: ignore[attr-defined]


def test_nothing_new_builds_the_clocks_models_and_anything_new_builds_the_schedule(
    paths: Paths, run_cli: RunCli, tmp_path: Path
) -> None:
    Registry(paths.data).add("web")
    _ingest(run_cli, tmp_path, 1, 2, group=True)
    assert _last_line(run_cli("run")).startswith("run ok: 3 records loaded, dbt build passed")
    scheduled = built_models(paths)
    assert {"fct_events", "dim_contacts", "dim_account_rollups"} <= scheduled
    assert _seeds_loaded(paths) == {"free_email_domains", "email_domain_overrides", "junk_identifiers"} | {
        "segment_message_types"
    }, "a first build loads every seed"
    loads = _completed_loads(paths)
    assert _published(paths, "select account_id, contact_count from dim_account_rollups") == [("acme", 1)]
    (first_as_of,) = _published(paths, "select max(as_of_at) from dim_account_rollups")[0]

    quiet = run_cli("run")
    assert _last_line(quiet).startswith("run ok: 0 records loaded, nothing new to build, clock's models refreshed")
    clock = clock_target_dir(paths)
    assert built_models(paths, clock) == {"dim_account_rollups"}, "only the model whose windows move with the clock"
    assert built_models(paths) == scheduled, "status still reports the schedule's last build and its tests"
    assert _completed_loads(paths) == loads, "no empty load committed"
    (second_as_of,) = _published(paths, "select max(as_of_at) from dim_account_rollups")[0]
    assert second_as_of > first_as_of, "the rollups' windows end at this run"
    tables = {row[0] for row in _published(paths, "select table_name from duckdb_tables()")}
    marts = {path.stem for path in (PROJECT_DIR / "models" / "marts").glob("*.sql")}
    assert tables == marts, "the published copy still has every mart"
    assert _published(paths, "select count(*) from fct_events") == [(3,)]
    status = json.loads(run_cli("status", "--json").stdout)["last_run"]
    assert status["nothing_new"] is True and "nothing new to build" in run_cli("status").stdout

    # new events: the schedule again, without loading the seeds the last build loaded from these same files
    _ingest(run_cli, tmp_path, 3)
    assert _last_line(run_cli("run")).startswith("run ok: 1 records loaded, dbt build passed")
    assert built_models(paths) == scheduled
    assert not _seeds_loaded(paths), "the project did not change: its seeds are loaded already"
    assert _published(paths, "select count(*) from fct_events") == [(4,)]

    # a load this run did not make (another loader, or `load` by hand): the warehouse's loads changed, so it builds
    _ingest(run_cli, tmp_path, 4)
    run_cli("load")
    assert _last_line(run_cli("run")).startswith("run ok: 0 records loaded, dbt build passed")
    assert _published(paths, "select count(*) from fct_events") == [(5,)]

    # a registry change is loaded (a new snapshot) and built, and the run's log says why it built
    Registry(paths.data).add("app")
    assert _last_line(run_cli("run")).startswith("run ok: 0 records loaded, dbt build passed")
    log = Path(json.loads(run_cli("status", "--json").stdout)["last_run"]["log"]).read_text()
    assert "building --selector scheduled_seeds_loaded: loads committed since the last build" in log
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        assert con.execute("select count(*) from staging.stg_segment__connections").fetchone()[0] == 2

    # --full-refresh always builds, seeds included
    assert "dbt build passed" in _last_line(run_cli("run", "--full-refresh"))
    assert "junk_identifiers" in _seeds_loaded(paths)
    assert "nothing new" in _last_line(run_cli("run"))


def test_a_failed_build_is_never_trusted(paths: Paths, run_cli: RunCli, tmp_path: Path) -> None:
    """A failing build may have rebuilt some models and not others: until a build succeeds, every run builds."""
    Registry(paths.data).add("web")
    _ingest(run_cli, tmp_path, 1)
    run_cli("run")
    assert read_recorded(paths) is not None
    _ingest(run_cli, tmp_path, 2)
    with duckdb.connect(str(paths.warehouse)) as con:  # fct_events as no version of the project builds it
        con.execute("alter table analytics.fct_events add column stray varchar")
    assert run_cli("run", check=False).returncode == 1
    assert read_recorded(paths) is None
    again = run_cli("run", check=False)  # nothing new was loaded, yet it builds (and fails) again
    assert again.returncode == 1 and "fct_events" in again.stdout
    assert "nothing new" not in again.stdout
    assert run_cli("run", "--full-refresh").returncode == 0
    assert read_recorded(paths) is not None


def _project_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "project"
    for folder in ("models", "macros", "seeds", "tests/dbt", "analyses"):
        shutil.copytree(PROJECT_DIR / folder, copy / folder)
    for name in ("dbt_project.yml", "selectors.yml", "profiles.yml"):
        shutil.copy(PROJECT_DIR / name, copy / name)
    return copy


def test_the_project_digest_follows_what_dbt_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = _project_copy(tmp_path)
    before = project_digest(project)
    assert project_digest(project) == before

    analysis = next((project / "analyses").glob("*.sql"))
    analysis.write_text(analysis.read_text() + "\n-- an analyst's note\n")
    assert project_digest(project) == before, "analyses are compiled, never built"

    seed = project / "seeds" / "free_email_domains.csv"
    seed.write_text(seed.read_text() + "example-free-mail.test\n")
    after_seed = project_digest(project)
    assert after_seed != before

    model = project / "models" / "marts" / "dim_accounts.sql"
    model.write_text(model.read_text() + "\n")
    after_model = project_digest(project)
    assert after_model != after_seed

    monkeypatch.setenv("SEGMENT_ACCOUNTS_RAW_SCHEMA", "another_raw_schema")
    assert project_digest(project) != after_model
    monkeypatch.setenv("SEGMENT_ACCOUNTS_PG_PASSWORD", "changed")
    monkeypatch.delenv("SEGMENT_ACCOUNTS_RAW_SCHEMA")
    assert project_digest(project) == after_model, "a password changes who connects, not what is built"


def test_the_digest_reads_every_environment_variable_the_project_reads() -> None:
    used: set[str] = set()
    sources = [PROJECT_DIR / "dbt_project.yml", PROJECT_DIR / "profiles.yml"]
    for folder in ("models", "macros", "tests/dbt"):
        sources.extend((PROJECT_DIR / folder).rglob("*.*"))
    for source in sources:
        used.update(re.findall(r"env_var\(\s*['\"]([A-Z0-9_]+)['\"]", source.read_text()))
    secrets = {name for name in used if re.search(r"PASSWORD|SECRET|TOKEN|KEYFILE", name)}
    assert secrets, "the profiles read passwords: the pattern must find them"
    assert used - secrets == set(PROJECT_ENVIRONMENT)


def test_seeds_are_skipped_only_while_the_project_is_the_last_successful_builds(paths: Paths) -> None:
    """A changed project (a seed file, dbt's version, an environment variable the project reads) loads the seeds
    again; so does a run after a failed build, which has no successful build on record."""
    built = BuildInputs(project="digest-a", raw_loads="1:100")
    assert not project_unchanged(paths, built), "no build on record"
    remember(paths, built)
    assert project_unchanged(paths, BuildInputs(project="digest-a", raw_loads="2:200")), "new loads, same project"
    assert not project_unchanged(paths, BuildInputs(project="digest-b", raw_loads="1:100"))
    forget(paths)
    assert not project_unchanged(paths, built)

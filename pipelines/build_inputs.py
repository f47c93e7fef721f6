"""Whether a scheduled run has anything to build: what the last successful build read, against what is there now.

A schedule every 15 minutes finds nothing new most of the night and all weekend, and a dbt build that finds
nothing new still pays for every model that reads all history (the per-contact models, the dimensions, the
tests) and for publishing the marts. So the last successful build's inputs are written down, and a run whose
inputs are the same builds only what depends on the clock (``dim_account_rollups``' 7- and 30-day windows: the
``refresh_clock`` selector) instead of everything.

Inputs, both of which must match:

- the raw layer: dlt's completed loads (``_dlt_loads``: their count and newest id). Every loader sharing the
  warehouse, on any host, adds a row there when it commits, and only then; the loader commits no load at all
  when it has nothing to move (``pipelines.loader``). Read through dlt's own SQL client, so it works on every SQL
  destination; where it cannot be read (a file lake, a warehouse not created yet) every run builds.
- the project: the files dbt reads (models, macros, seeds, data tests, the project, selectors and profiles), the
  installed dbt and adapter versions, and the environment variables the project reads (not secrets). An upgrade or
  an edited model or seed rebuilds.

The record is removed before every build and written after one that succeeded, so a failed or interrupted build
never lets a later run trust tables it may have left half-updated.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from pipelines.atomic_file import write_json_atomically
from pipelines.settings import PROJECT_DIR, Paths

PROJECT_FILES = ("dbt_project.yml", "selectors.yml", "profiles.yml", "packages.yml", "dependencies.yml")
PROJECT_FOLDERS = ("models", "macros", "seeds", "tests/dbt")
"""What dbt reads to build (analyses/ are compiled, never built: they change nothing in the warehouse)."""

PROJECT_ENVIRONMENT = (
    "SEGMENT_ACCOUNTS_DATA",
    "SEGMENT_ACCOUNTS_TARGET",
    "SEGMENT_ACCOUNTS_RAW_SCHEMA",
    "SEGMENT_ACCOUNTS_PG_HOST",
    "SEGMENT_ACCOUNTS_PG_PORT",
    "SEGMENT_ACCOUNTS_PG_DATABASE",
    "SEGMENT_ACCOUNTS_PG_USER",
    "BIGQUERY_PROJECT",
    "SNOWFLAKE_ACCOUNT",
    "SNOWFLAKE_DATABASE",
    "SNOWFLAKE_WAREHOUSE",
    "SNOWFLAKE_ROLE",
    "SNOWFLAKE_USER",
)
"""The environment variables the dbt project reads (``env_var``) that say what is built where. Passwords and key
files are left out: they change who connects, not what is built (tests/test_build_inputs.py checks this list
against the project)."""

DBT_DISTRIBUTIONS = ("dbt-core", "dbt-duckdb", "dbt-postgres", "dbt-spark", "dbt-snowflake", "dbt-bigquery")


@dataclass(frozen=True)
class BuildInputs:
    project: str  # digest of the project's files, dbt's version and the environment it reads
    raw_loads: str | None  # dlt's completed loads, or None when they cannot be read (then always build)


def record_path(paths: Paths) -> Path:
    return paths.data / "dbt" / "last_build_inputs.json"


def project_digest(project_dir: Path = PROJECT_DIR) -> str:
    digest = hashlib.sha256()
    files = [project_dir / name for name in PROJECT_FILES if (project_dir / name).is_file()]
    for folder in PROJECT_FOLDERS:
        files.extend(path for path in (project_dir / folder).rglob("*") if path.is_file())
    for path in sorted(files):
        if "__pycache__" in path.parts:
            continue
        digest.update(str(path.relative_to(project_dir)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    for name in DBT_DISTRIBUTIONS:
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            version = "-"
        digest.update(f"{name}={version}\0".encode())
    for name in PROJECT_ENVIRONMENT:
        digest.update(f"{name}={os.environ.get(name, '')}\0".encode())
    return digest.hexdigest()


def read_recorded(paths: Paths) -> BuildInputs | None:
    try:
        return BuildInputs(**json.loads(record_path(paths).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def forget(paths: Paths) -> None:
    """Before a build: until it succeeds, no run may skip on the strength of an earlier one."""
    record_path(paths).unlink(missing_ok=True)


def remember(paths: Paths, inputs: BuildInputs) -> None:
    """After a successful build of (at least) the schedule's selection."""
    target = record_path(paths)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomically(target, asdict(inputs))


def nothing_new(paths: Paths, inputs: BuildInputs) -> bool:
    """True when the last successful build read exactly these inputs (and they could be read)."""
    if inputs.raw_loads is None:
        return False
    return read_recorded(paths) == inputs


def project_unchanged(paths: Paths, inputs: BuildInputs) -> bool:
    """True when the last successful build ran this same project: its seeds are loaded as their files say."""
    recorded = read_recorded(paths)
    return recorded is not None and recorded.project == inputs.project


def build_reason(paths: Paths, inputs: BuildInputs, full_refresh: bool) -> str:
    """Why a run builds, for its log: an operator who sees `0 records loaded, dbt build` wants to know."""
    recorded = read_recorded(paths)
    if full_refresh:
        return "--full-refresh"
    if recorded is None:
        return "no successful build on record (a first run, or the last build failed or was interrupted)"
    if inputs.raw_loads is None:
        return "this warehouse's loads cannot be read, so every run builds"
    reasons = []
    if recorded.raw_loads != inputs.raw_loads:
        reasons.append(f"loads committed since the last build (dlt loads {recorded.raw_loads} -> {inputs.raw_loads})")
    if recorded.project != inputs.project:
        reasons.append("the project, dbt's version or its environment changed")
    return "; ".join(reasons) or "nothing new (a job that always builds)"

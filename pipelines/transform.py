"""``segment-accounts transform``: dbt as its own process, after (never inside) the dlt load.

A separate process because DuckDB admits one writer process at a time and dbt keeps global state; its
target/ and logs/ live in the data folder so two installations (or two test runs) never share them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from pipelines.settings import PROJECT_DIR, Paths


def dbt_executable() -> str:
    """The dbt installed beside this interpreter, so the venv's pinned dbt runs even when PATH lacks the venv."""
    candidate = Path(sys.executable).with_name("dbt")
    return str(candidate) if candidate.exists() else "dbt"


def dbt_env(paths: Paths) -> dict[str, str]:
    env = dict(os.environ)
    env["SEGMENT_ACCOUNTS_DATA"] = str(paths.data)
    env["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    return env


def dbt_work_dir(paths: Paths) -> Path:
    """dbt's target/ and logs/ for this installation."""
    return paths.data / "dbt"


def run_results_file(paths: Paths) -> Path:
    return dbt_work_dir(paths) / "target" / "run_results.json"


def dbt_command(paths: Paths, args: Sequence[str]) -> list[str]:
    work = dbt_work_dir(paths)
    return [
        dbt_executable(),
        *args,
        "--project-dir",
        str(PROJECT_DIR),
        "--profiles-dir",
        str(PROJECT_DIR),
        "--target-path",
        str(work / "target"),
        "--log-path",
        str(work / "logs"),
    ]


def run_dbt(paths: Paths, args: Sequence[str], *, quiet: bool = False) -> int:
    """Run one dbt command; its own output is the progress report. Returns dbt's exit code."""
    paths.data.mkdir(parents=True, exist_ok=True)
    command = dbt_command(paths, args)
    if quiet:
        result = subprocess.run(command, env=dbt_env(paths), capture_output=True, text=True, check=False)
        if result.returncode != 0:
            sys.stderr.write(result.stdout[-20_000:])
            sys.stderr.write(result.stderr[-5_000:])
        return result.returncode
    return subprocess.run(command, env=dbt_env(paths), check=False).returncode


def build(paths: Paths, extra: Sequence[str] = (), *, quiet: bool = False) -> int:
    """``dbt build``: seeds, models, unit tests and data tests, in dependency order."""
    # schema_change_hint reads this build's results, never an earlier build's
    run_results_file(paths).unlink(missing_ok=True)
    return run_dbt(paths, ["build", *extra], quiet=quiet)


# dbt's own words when an incremental model's columns differ from its table (on_schema_change: fail)
SCHEMA_CHANGE_ERROR = "incremental model are out of sync"


def schema_change_hint(paths: Paths, command: str) -> str | None:
    """After a failed build: one line naming the incremental models whose columns changed, and the way out.

    An upgrade that adds or drops a column of an incremental model stops every scheduled run with dbt's long
    error; a rebuild from the raw layer (which keeps everything) is the fix, and the operator should not have to
    dig it out of dbt's output.
    """
    try:
        results = json.loads(run_results_file(paths).read_text())["results"]
    except (OSError, ValueError, KeyError):
        return None
    models = sorted(
        result["unique_id"].split(".")[-1]
        for result in results
        if result.get("status") == "error" and SCHEMA_CHANGE_ERROR in (result.get("message") or "")
    )
    if not models:
        return None
    return (
        f"the columns of {', '.join(models)} changed (a new version?): rebuild once from the raw layer, "
        f"which loses nothing, with `segment-accounts {command} --full-refresh`"
    )

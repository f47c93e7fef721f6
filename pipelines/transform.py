"""``segment-accounts transform``: dbt as its own process, after (never inside) the dlt load.

A separate process because DuckDB admits one writer process at a time and dbt keeps global state; its
target/ and logs/ live in the data folder so two installations (or two test runs) never share them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pipelines.settings import PROJECT_DIR, Paths


def dbt_executable() -> str:
    """The dbt installed beside this interpreter, so the venv's pinned dbt runs even when PATH lacks the venv."""
    candidate = Path(sys.executable).with_name("dbt")
    return str(candidate) if candidate.exists() else "dbt"


def dbt_env(paths: Paths) -> dict[str, str]:
    env = dict(os.environ)
    env["SEGMENT_ACCOUNTS_DATA"] = str(paths.data)
    env["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    # dbt's own debug log (dbt/logs/dbt.log) grows ~0.6 MB a run and rotates at 10 MB with 5 old files: 60 MB of a
    # log the run's own (logs/) mostly repeats. 2 MB keeps the last few runs' debug detail.
    env.setdefault("DBT_LOG_FILE_MAX_BYTES", str(2 * 2**20))
    return env


def dbt_work_dir(paths: Paths) -> Path:
    """dbt's target/ and logs/ for this installation."""
    return paths.data / "dbt"


def dbt_artifact(paths: Paths, name: str) -> Path:
    """A file dbt writes into target/: run_results.json (build), sources.json (source freshness)."""
    return dbt_work_dir(paths) / "target" / name


def run_results_file(paths: Paths, target_dir: Path | None = None) -> Path:
    return (target_dir or dbt_work_dir(paths) / "target") / "run_results.json"


PARTIAL_PARSE_FILE = "partial_parse.msgpack"


def clock_target_dir(paths: Paths) -> Path:
    """target/ of the builds that refresh only the clock's models (a run with nothing new): their results stay
    apart, so ``status`` keeps showing the last build of the schedule, whose data tests it reports."""
    return dbt_work_dir(paths) / "target-clock"


def dbt_command(paths: Paths, args: Sequence[str], *, target_dir: Path | None = None) -> list[str]:
    """dbt with this installation's project, profiles, target/ (or ``target_dir``) and logs/."""
    work = dbt_work_dir(paths)
    return [
        dbt_executable(),
        *args,
        "--project-dir",
        str(PROJECT_DIR),
        "--profiles-dir",
        str(PROJECT_DIR),
        "--target-path",
        str(target_dir or work / "target"),
        "--log-path",
        str(work / "logs"),
    ]


def run_dbt(paths: Paths, args: Sequence[str], *, quiet: bool = False, target_dir: Path | None = None) -> int:
    """Run one dbt command; its own output is the progress report. Returns dbt's exit code."""
    paths.data.mkdir(parents=True, exist_ok=True)
    command = dbt_command(paths, args, target_dir=target_dir)
    if quiet:
        result = subprocess.run(command, env=dbt_env(paths), capture_output=True, text=True, check=False)
        if result.returncode != 0:
            sys.stderr.write(result.stdout[-20_000:])
            sys.stderr.write(result.stderr[-5_000:])
        return result.returncode
    return subprocess.run(command, env=dbt_env(paths), check=False).returncode


class Sink(Protocol):
    """Where a job's log goes (``RunLog``): every line of dbt's output, in order."""

    def write(self, text: str) -> None: ...


def run_dbt_logged(
    paths: Paths, args: Sequence[str], log: Sink, *, echo: bool = False, target_dir: Path | None = None
) -> int:
    """Run one dbt command with its whole output in ``log``, and on our stdout too when ``echo`` (``--verbose``).

    Colour codes only when they reach a terminal: dbt colours its output even when it is redirected, which fills
    a cron log with escape sequences.
    """
    paths.data.mkdir(parents=True, exist_ok=True)
    env = dbt_env(paths)
    colours = echo and sys.stdout.isatty()
    env["DBT_USE_COLORS"] = "true" if colours else "false"
    env["DBT_USE_COLORS_FILE"] = "false"
    process = subprocess.Popen(
        dbt_command(paths, args, target_dir=target_dir),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    assert process.stdout is not None
    for line in process.stdout:
        log.write(line)
        if echo:
            sys.stdout.write(line)
            sys.stdout.flush()
    return process.wait()


def build(
    paths: Paths,
    extra: Sequence[str] = (),
    *,
    log: Sink | None = None,
    echo: bool = False,
    target_dir: Path | None = None,
) -> int:
    """``dbt build``: seeds, models, unit tests and data tests, in dependency order."""
    # read_build_report then reads this build's results, never an earlier build's
    run_results_file(paths, target_dir).unlink(missing_ok=True)
    if target_dir is not None:
        _share_parse_cache(dbt_work_dir(paths) / "target", target_dir)
    if log is None:
        return run_dbt(paths, ["build", *extra], target_dir=target_dir)
    return run_dbt_logged(paths, ["build", *extra], log, echo=echo, target_dir=target_dir)


def _share_parse_cache(main: Path, other: Path) -> None:
    """Start another target/ with dbt's partial-parse cache from the main one when that is newer: the same
    project, so dbt reuses it (it checks the project's files, vars and version itself) instead of parsing it all."""
    cache = main / PARTIAL_PARSE_FILE
    copy = other / PARTIAL_PARSE_FILE
    try:
        if copy.exists() and copy.stat().st_mtime >= cache.stat().st_mtime:
            return
        other.mkdir(parents=True, exist_ok=True)
        shutil.copy2(cache, copy)
    except OSError:  # no cache yet: dbt parses everything, as it would anyway
        return


def built_models(paths: Paths, target_dir: Path | None = None) -> set[str]:
    """The models the last build wrote, by name, from its run_results.json."""
    try:
        results = json.loads(run_results_file(paths, target_dir).read_text())["results"]
    except (OSError, ValueError, KeyError):
        return set()
    return {
        result["unique_id"].split(".")[-1]
        for result in results
        if result["unique_id"].startswith("model.") and result.get("status") == "success"
    }


# dbt's own words when an incremental model's columns differ from its table (on_schema_change: fail)
SCHEMA_CHANGE_ERROR = "incremental model are out of sync"


@dataclass(frozen=True)
class BuildReport:
    """The last build as an operator needs it, from dbt's run_results.json: a scheduled run's one log line and
    `status` name the data tests that warned (merge protection) or failed, which dbt's long output buries."""

    finished_at: str
    elapsed_seconds: float
    nodes: int
    warnings: list[str]
    failures: list[str]
    schema_changed: list[str]
    errors: dict[str, str] = field(default_factory=dict)  # failing node -> the first lines of dbt's message

    def outcome(self) -> str:
        """`passed`, `passed with 1 warning (name)`, or `failed: names`: what a log line needs."""
        if self.failures:
            return f"failed: {', '.join(self.failures)}"
        count = len(self.warnings)
        if not count:
            return "passed"
        return f"passed with {count} warning{'s' if count != 1 else ''} ({', '.join(self.warnings)})"

    def line(self) -> str:
        return f"{self.outcome()} ({self.nodes} nodes in {self.elapsed_seconds} s, finished {self.finished_at})"


def read_build_report(paths: Paths, target_dir: Path | None = None) -> BuildReport | None:
    """None when no build has finished (or dbt stopped before writing its results)."""
    try:
        document = json.loads(run_results_file(paths, target_dir).read_text())
        results = document["results"]
        finished_at = document["metadata"]["generated_at"]
    except (OSError, ValueError, KeyError):
        return None
    warnings, failures, schema_changed = [], [], []
    errors: dict[str, str] = {}
    for result in sorted(results, key=lambda result: result["unique_id"]):
        name = result["unique_id"].split(".")[2]  # <kind>.<project>.<name>[.<hash>]
        status = result.get("status")
        if status == "warn":
            warnings.append(name)
        elif status in ("error", "fail"):
            failures.append(name)
            errors[name] = _first_lines(result.get("message") or "")
            if SCHEMA_CHANGE_ERROR in (result.get("message") or ""):
                schema_changed.append(name)
    return BuildReport(
        finished_at=finished_at[:19] + "Z" if len(finished_at) >= 19 else finished_at,  # to the second, UTC
        elapsed_seconds=round(float(document.get("elapsed_time") or 0.0), 1),
        nodes=sum(1 for result in results if not result["unique_id"].startswith("operation.")),  # not hooks
        warnings=warnings,
        failures=failures,
        schema_changed=schema_changed,
        errors=errors,
    )


def _first_lines(message: str, lines: int = 3, width: int = 300) -> str:
    """The start of a node's error: enough to see what broke; the full text is in the run's log."""
    kept = [line.strip() for line in message.strip().splitlines() if line.strip()][:lines]
    return " / ".join(line[:width] for line in kept)


def schema_change_hint(report: BuildReport | None, command: str) -> str | None:
    """After a failed build: one line naming the incremental models whose columns changed, and the way out.

    An upgrade that adds or drops a column of an incremental model stops every scheduled run with dbt's long
    error; a rebuild from the raw layer (which keeps everything) is the fix, and the operator should not have to
    dig it out of dbt's output.
    """
    if report is None or not report.schema_changed:
        return None
    return (
        f"the columns of {', '.join(report.schema_changed)} changed (a new version?): rebuild once from the raw "
        f"layer, which loses nothing, with `segment-accounts {command} --full-refresh`"
    )

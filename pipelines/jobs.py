"""The scheduled job (``run``) and the installation's health report (``status``).

``run`` is what cron or an orchestrator calls: it must be safe to start while another run is still going, so it
takes an exclusive lock on a file in the data folder; the second run waits (``--wait``) or exits with
``EXIT_BUSY`` and a clear message, and a scheduler can tell that apart from a failure.
"""

from __future__ import annotations

import fcntl
import os
import re
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipelines.runrecord import (
    IN_PROGRESS,
    RunLog,
    RunRecord,
    finished,
    iso,
    now_utc,
    prune_logs,
    read_record,
    write_record,
)
from pipelines.settings import MARTS_SCHEMA, Paths, raw_schema

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BUSY = 75  # EX_TEMPFAIL from sysexits.h: "try again later"

# The scheduled selection is dbt's own (selectors.yml), so an orchestrator's `dbt build --selector scheduled`
# builds what `run` builds (which also skips loading seeds that the last successful build loaded).
SCHEDULED_BUILD_OPTIONS = ("--selector", "scheduled")
# The same, when the project is the one the last successful build ran: its seeds are loaded already.
SEEDS_LOADED_BUILD_OPTIONS = ("--selector", "scheduled_seeds_loaded")
REFRESH_CLOCK_OPTIONS = ("--selector", "refresh_clock")

ERRORS_SHOWN = 5

PUBLISHED_LINE = re.compile(r"^published \d+ of \d+ marts to .* in ([\d.]+)s \(", re.MULTILINE)
"""The run log's line for publishing (``_steps`` writes it), with its seconds: the benches read it by this
pattern, kept beside the line so that the two change together."""
"""Failing nodes whose error a failed run prints under its line; the rest are in the run's log."""


class Busy(RuntimeError):
    """Another run holds the lock."""


@contextmanager
def run_lock(paths: Paths, *, wait: bool) -> Iterator[None]:
    """Exclusive for the whole run; released by the OS if the process dies, so a crash never wedges the schedule."""
    paths.data.mkdir(parents=True, exist_ok=True)
    fd = os.open(paths.run_lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise Busy(f"another run is in progress ({_holder(paths, fd)}lock {paths.run_lock})") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)


def _holder(paths: Paths, fd: int) -> str:
    """Which process holds the lock (its pid is the lock file's content), and what it is doing if we know."""
    try:
        pid = int(os.pread(fd, 32, 0).decode().strip())
    except (OSError, ValueError):
        return ""
    record = read_record(paths)
    if record is not None and record.pid == pid and record.outcome == IN_PROGRESS:
        return f"pid {pid}: `{record.command}` started {record.started_at}; "
    return f"pid {pid}; "


def lock_is_held(paths: Paths) -> bool:
    """Whether a job holds the run lock now (without waiting, and releasing it at once)."""
    if not paths.run_lock.exists():
        return False
    fd = os.open(paths.run_lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@dataclass(frozen=True)
class Job:
    """What a locked job does: ``run`` loads then builds the scheduled selection, or only the clock's models when
    nothing is new since the last successful build (pipelines/build_inputs.py); ``transform`` builds all."""

    command: str
    load_first: bool
    build_options: tuple[str, ...]
    skips_when_nothing_new: bool


RUN = Job("run", load_first=True, build_options=SCHEDULED_BUILD_OPTIONS, skips_when_nothing_new=True)
TRANSFORM = Job("transform", load_first=False, build_options=(), skips_when_nothing_new=False)


def run_job(
    paths: Paths, *, job: Job = RUN, full_refresh: bool = False, wait: bool = False, verbose: bool = False
) -> int:
    """The job under the run lock; prints one summary line (and on failure what failed and where the log is)
    and returns the exit code. dbt's output goes to the job's log file, and to stdout too when ``verbose``."""
    started = time.perf_counter()
    try:
        with run_lock(paths, wait=wait):
            return _recorded(paths, job, full_refresh=full_refresh, verbose=verbose, started=started)
    except Busy as busy:
        print(f"{job.command} skipped: {busy}", file=sys.stderr)
        return EXIT_BUSY


def _recorded(paths: Paths, job: Job, *, full_refresh: bool, verbose: bool, started: float) -> int:
    """The job with its record (``last_run.json``: in progress, then its outcome) and its log file."""
    began = now_utc()
    before = read_record(paths)
    previous = before if before and before.outcome != IN_PROGRESS else (before and before.previous_record())
    record = RunRecord(
        command=job.command,
        pid=os.getpid(),
        started_at=iso(began),
        previous=asdict(previous) if previous else None,
    )
    write_record(paths, record)
    log = RunLog(paths, job.command, began)
    log.line(f"{job.command} started {record.started_at}, pid {record.pid}, data folder {paths.data}")
    outcome: dict[str, Any] = {"error": "interrupted"}
    code = EXIT_FAILED
    try:
        code, outcome = _steps(paths, job, log, full_refresh=full_refresh, verbose=verbose, started=started)
        return code
    except BaseException:
        log.write(traceback.format_exc())
        raise
    finally:
        result = "ok" if code == EXIT_OK else "failed"
        write_record(paths, finished(record, began, result, log=str(log.path), **outcome))
        log.close()
        prune_logs(paths)


def _steps(
    paths: Paths, job: Job, log: RunLog, *, full_refresh: bool, verbose: bool, started: float
) -> tuple[int, dict[str, Any]]:
    from pipelines.build_inputs import (
        BuildInputs,
        build_reason,
        forget,
        nothing_new,
        project_digest,
        project_unchanged,
        remember,
    )
    from pipelines.loader import load, raw_loads, target_name
    from pipelines.publish import PublishError, publish
    from pipelines.transform import build, built_models, clock_target_dir, read_build_report, schema_change_hint
    from pipelines.warehouse_lock import WarehouseInUse, check_warehouse_free, error_chain_text, in_use_message

    def say(text: str, *, err: bool = False) -> None:
        print(text, file=sys.stderr if err else sys.stdout, flush=True)
        log.line(text)

    def failed(error: str, *, err: bool = True, **values: Any) -> tuple[int, dict[str, Any]]:
        say(f"{job.command} failed: {error} (log {log.path})", err=err)
        return EXIT_FAILED, {"error": error, **values}

    embedded = target_name() == "duckdb"
    if embedded:
        try:
            check_warehouse_free(paths)
        except WarehouseInUse as busy:
            return failed(str(busy))
    records: int | None = None
    loads: str | None = None
    if job.load_first:
        try:
            loaded = load(paths)
        except Exception as error:  # any loader failure: report it, leave the cursor where it was
            log.write(traceback.format_exc())
            return failed(in_use_message(error_chain_text(error)) or f"load: {root_cause(error)}")
        records, loads = loaded.records, loaded.raw_loads
        log.line(loaded.line())
    else:
        loads = raw_loads(paths)
    inputs = BuildInputs(project=project_digest(), raw_loads=loads)
    clock_only = job.skips_when_nothing_new and not full_refresh and nothing_new(paths, inputs)
    target_dir = clock_target_dir(paths) if clock_only else None
    if clock_only:
        log.line("nothing new since the last successful build: building the clock's models only (refresh_clock)")
        options = list(REFRESH_CLOCK_OPTIONS)
    else:
        selection = job.build_options
        if job.skips_when_nothing_new and not full_refresh and project_unchanged(paths, inputs):
            selection = SEEDS_LOADED_BUILD_OPTIONS
        log.line(f"building {' '.join(selection) or 'everything'}: {build_reason(paths, inputs, full_refresh)}")
        forget(paths)  # until this build succeeds, no later run may trust the tables it is about to change
        options = [*selection, *(["--full-refresh"] if full_refresh else [])]
    code = build(paths, options, log=log, echo=verbose, target_dir=target_dir)
    elapsed = time.perf_counter() - started
    report = read_build_report(paths, target_dir)
    values: dict[str, Any] = {
        "records_loaded": records,
        "warnings": report.warnings if report else [],
        "failures": report.failures if report else [],
    }
    loaded_text = "" if records is None else f" ({records} records loaded)"
    if code != 0:
        holder = in_use_message(log.path.read_text(errors="replace"))
        if holder:  # someone opened the warehouse between our check and dbt's connection
            return failed(holder, **values)
        failures = f"; {report.outcome()}" if report and report.failures else ""
        summary = f"dbt build exited {code} after {elapsed:.1f}s{loaded_text}{failures}"
        say(f"{job.command} failed: {summary}")
        errors = list((report.errors if report else {}).items())
        for name, message in errors[:ERRORS_SHOWN]:
            say(f"  {name}: {message}")
        if len(errors) > ERRORS_SHOWN:
            say(f"  ... and {len(errors) - ERRORS_SHOWN} more failing nodes")
        say(f"  full log: {log.path}")
        hint = schema_change_hint(report, job.command)
        if hint:
            say(f"{job.command} failed: {hint}")
        return EXIT_FAILED, {"error": summary, **values}
    if embedded:
        try:
            published = publish(paths, only=built_models(paths, target_dir) if clock_only else None)
        except (PublishError, OSError) as error:
            log.write(traceback.format_exc())
            return failed(f"publishing analytics.duckdb: {error}", **values)
        except Exception as error:  # duckdb's errors: one line, the traceback in the log
            log.write(traceback.format_exc())
            return failed(f"publishing analytics.duckdb: {root_cause(error)}", **values)
        by_rows = (
            f"; {', '.join(published.from_rewritten_rows)} by the rows the build rewrote"
            if published.from_rewritten_rows
            else ""
        )
        log.line(
            f"published {published.tables} of {published.total} marts to {published.path} in {published.seconds:.1f}s"
            f" (the {published.total} hold {published.rows} rows{by_rows})"
        )
    if not clock_only:  # built and published: a run that finds these same inputs has nothing new to build
        remember(paths, inputs)
    outcome = report.outcome() if report else "passed"
    loaded_part = "" if records is None else f"{records} records loaded, "
    built = f"nothing new to build, clock's models refreshed: {outcome}" if clock_only else f"dbt build {outcome}"
    say(f"{job.command} ok: {loaded_part}{built}, {time.perf_counter() - started:.1f}s")
    values["nothing_new"] = clock_only
    return EXIT_OK, values


def root_cause(error: BaseException) -> str:
    """One line for a log: the innermost cause (dlt wraps the real error in step failures), its first line."""
    while True:
        inner = getattr(error, "exception", None) or error.__cause__
        if not isinstance(inner, BaseException) or inner is error:
            break
        error = inner
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:500]


def collect_status(paths: Paths) -> dict[str, Any]:
    """What an operator asks first: is a run going on, how did the last one end (warnings included, e.g. merge
    protection), is anything stuck in the spool, what have the warehouse and the analysts' copy got, and how much
    disk each part of the data folder takes. Plain values only (ISO times, byte counts): ``--json`` prints it."""
    from pipelines.connections import Registry
    from pipelines.datafolder import folder_sizes
    from pipelines.spool import SpoolReader
    from pipelines.transform import read_build_report

    report: dict[str, Any] = {"data_folder": str(paths.data)}
    report["connections"] = len(Registry(paths.data).list())
    running = lock_is_held(paths)
    report["run_in_progress"] = running
    record = read_record(paths)
    report["last_run"] = asdict(record) if record else None  # the run in progress, when one is
    # what the text form shows as "last run": the last one that finished, even while another runs
    finished_run = record.previous_record() if record and record.outcome == IN_PROGRESS else record
    report["last_finished_run"] = asdict(finished_run) if finished_run else None
    build = read_build_report(paths)
    report["last_build"] = asdict(build) if build else None
    if paths.spool.exists():
        stats = SpoolReader(paths.spool).stats()  # stats() takes no lock: safe during a load
        oldest = stats.oldest_pending_received_at_us
        report["spool"] = {
            "segments": stats.segments,
            "pending_records": stats.pending_records,
            "pending_bytes": stats.pending_bytes,
            "oldest_pending_received_at": None if oldest is None else iso(_from_us(oldest)),
        }
    else:
        report["spool"] = None
    report["warehouse"] = _warehouse_counts(paths)
    report["analytics"] = _analytics_counts(paths)
    report["disk_bytes"] = folder_sizes(paths)
    return report


def _from_us(microseconds: int) -> datetime:
    return datetime.fromtimestamp(microseconds / 1_000_000, UTC)


def _warehouse_counts(paths: Paths) -> dict[str, Any] | str:
    """Row counts from the build's database, read under the run lock so that a run never finds it open."""
    if not paths.warehouse.exists():
        return "not created yet (run `segment-accounts run`)"
    try:
        with run_lock(paths, wait=False):
            return _counts(paths.warehouse, _warehouse_counted())
    except Busy:
        return "a run is in progress: counts once it ends (the analysts' copy below meanwhile)"


def _analytics_counts(paths: Paths) -> dict[str, Any] | None:
    from pipelines.publish import analytics_file

    target = analytics_file(paths)
    if not target.exists():
        return None
    published = iso(datetime.fromtimestamp(target.stat().st_mtime, UTC))
    return {"path": str(target), "published_at": published, "rows": _counts(target, None)}


def _warehouse_counted() -> set[tuple[str, str]]:
    """The raw tables in the loader's schema and the main marts in theirs (tables an older version built in
    another schema are stale and not counted)."""
    raw = {(raw_schema(), table) for table in ("raw_events", "rejected_events")}
    return raw | {(MARTS_SCHEMA, table) for table in ("dim_contacts", "dim_accounts", "fct_events")}


def _counts(database: Path, tables: set[tuple[str, str]] | None) -> dict[str, Any] | str:
    """Rows per table (``tables`` as (schema, table), or every table when None), opened read-only."""
    import duckdb

    try:
        con = duckdb.connect(str(database), read_only=True)
    except duckdb.Error as error:
        return f"cannot open it: {str(error).splitlines()[0][:200]}"
    try:
        found = con.execute(
            "select table_schema, table_name from information_schema.tables where table_type = 'BASE TABLE'"
            " order by table_name"
        ).fetchall()
        counts: dict[str, Any] = {}
        for schema, table in found:
            if tables is not None and (schema, table) not in tables:
                continue
            row = con.execute(f'select count(*) from "{schema}"."{table}"').fetchone()
            counts[table] = row[0] if row else 0
        return counts
    finally:
        con.close()


def status_lines(report: dict[str, Any]) -> list[str]:
    """``status`` for a person: one line per topic, times in UTC to the second, sizes in MB."""
    from pipelines.datafolder import human_bytes
    from pipelines.transform import BuildReport

    lines = [("data folder", report["data_folder"]), ("connections", str(report["connections"]))]
    record = report["last_run"]
    running = report["run_in_progress"]
    if running:
        now = RunRecord(**record).line(running=True) if record and record["outcome"] == IN_PROGRESS else "yes"
        lines.append(("run in progress", now))
    else:
        lines.append(("run in progress", "no"))
    shown = record
    if record and running and record["outcome"] == IN_PROGRESS:
        shown = record.get("previous")  # the one before the run in progress
    if shown:
        lines.append(("last run", RunRecord(**shown).line(running=False)))
    else:
        lines.append(("last run", "none yet (run `segment-accounts run`)"))
    build = report["last_build"]
    if build:
        lines.append(("last build", BuildReport(**build).line()))
    else:
        lines.append(("last build", "being built by the run in progress" if running else "none yet"))
    spool = report["spool"]
    if spool:
        oldest = spool["oldest_pending_received_at"]
        lines.append(
            (
                "spool",
                f"{spool['pending_records']} records waiting to load ({human_bytes(spool['pending_bytes'])}) in "
                f"{spool['segments']} segment file{'' if spool['segments'] == 1 else 's'}"
                + (f", oldest received {oldest}" if oldest else ""),
            )
        )
    else:
        lines.append(("spool", "empty (nothing received yet)"))
    lines.append(("warehouse", _counts_text(report["warehouse"])))
    analytics = report["analytics"]
    if analytics:
        text = f"{analytics['path']}, published {analytics['published_at']}: {_counts_text(analytics['rows'])}"
        lines.append(("analytics", text))
    else:
        lines.append(("analytics", "not published yet (each successful run publishes the marts)"))
    sizes = report["disk_bytes"]
    parts = ", ".join(
        f"{part.replace('_', ' ')} {human_bytes(size)}" for part, size in sizes.items() if part != "total"
    )
    lines.append(("disk", f"{human_bytes(sizes['total'])}: {parts}"))
    width = max(len(key) for key, _ in lines)
    return [f"{key:>{width}}: {value}" for key, value in lines]


def _counts_text(counts: dict[str, Any] | str) -> str:
    if isinstance(counts, str):
        return counts
    if not counts:
        return "no tables yet"
    return ", ".join(f"{table} {rows:,}" for table, rows in counts.items())

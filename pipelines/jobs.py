"""The scheduled job (``run``) and the installation's health report (``status``).

``run`` is what cron or an orchestrator calls: it must be safe to start while another run is still going, so it
takes an exclusive lock on a file in the data folder; the second run waits (``--wait``) or exits with
``EXIT_BUSY`` and a clear message, and a scheduler can tell that apart from a failure.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

from pipelines.settings import MARTS_SCHEMA, Paths, raw_schema

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BUSY = 75  # EX_TEMPFAIL from sysexits.h: "try again later"

# The scheduled selection is dbt's own (selectors.yml), so an orchestrator's `dbt build --selector scheduled`
# builds exactly what `run` builds.
SCHEDULED_BUILD_OPTIONS = ("--selector", "scheduled")


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
            raise Busy(f"another run is in progress (lock {paths.run_lock})") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)


def run_job(paths: Paths, *, full_refresh: bool = False, wait: bool = False, quiet: bool = False) -> int:
    """Load then transform under the run lock; prints one summary line and returns the exit code."""
    from pipelines.loader import load
    from pipelines.transform import build, read_build_report, schema_change_hint

    started = time.perf_counter()
    try:
        with run_lock(paths, wait=wait):
            try:
                loaded = load(paths)
            except Exception as error:  # any loader failure: report it, leave the cursor where it was
                print(f"run failed: load: {root_cause(error)}", file=sys.stderr)
                return EXIT_FAILED
            options = [*SCHEDULED_BUILD_OPTIONS, *(["--full-refresh"] if full_refresh else [])]
            code = build(paths, options, quiet=quiet)
    except Busy as busy:
        print(f"run skipped: {busy}", file=sys.stderr)
        return EXIT_BUSY
    elapsed = time.perf_counter() - started
    report = read_build_report(paths)
    if code != 0:
        failed = f"; {report.outcome()}" if report and report.failures else ""
        print(f"run failed: dbt build exited {code} after {elapsed:.1f}s ({loaded.records} records loaded){failed}")
        hint = schema_change_hint(report, "run")
        if hint:
            print(f"run failed: {hint}")
        return EXIT_FAILED
    outcome = report.outcome() if report else "passed"
    print(f"run ok: {loaded.records} records loaded, dbt build {outcome}, {elapsed:.1f}s")
    return EXIT_OK


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
    """What an operator asks first: is anything stuck in the spool, what has the warehouse got, and how did the
    last build end (its warnings, e.g. merge protection, included)."""
    from pipelines.connections import Registry
    from pipelines.spool import SpoolReader
    from pipelines.transform import read_build_report

    report: dict[str, Any] = {"data_folder": str(paths.data)}
    report["connections"] = len(Registry(paths.data).list())
    if paths.spool.exists():
        report["spool"] = asdict(SpoolReader(paths.spool).stats())  # stats() takes no lock: safe during a load
    else:
        report["spool"] = None
    report["warehouse"] = _warehouse_counts(paths)
    build = read_build_report(paths)
    report["last_build"] = asdict(build) if build else None
    return report


def _warehouse_counts(paths: Paths) -> dict[str, Any] | str:
    if not paths.warehouse.exists():
        return "not created yet (run `segment-accounts load`)"
    import duckdb

    try:
        con = duckdb.connect(str(paths.warehouse), read_only=True)
    except duckdb.Error:
        return "busy (another process is writing to it)"
    try:
        counts: dict[str, Any] = {}
        # the raw tables in the loader's schema, the marts in `analytics` (tables an older version built in
        # `main` are stale and not counted)
        tables = con.execute(
            "select table_schema, table_name from information_schema.tables"
            " where (table_schema = ? and table_name in ('raw_events', 'rejected_events'))"
            " or (table_schema = ? and table_name in ('dim_contacts', 'dim_accounts', 'fct_events'))",
            [raw_schema(), MARTS_SCHEMA],
        ).fetchall()
        for schema, table in tables:
            row = con.execute(f'select count(*) from "{schema}"."{table}"').fetchone()
            counts[table] = row[0] if row else 0
        return counts
    finally:
        con.close()

"""What the last job (``run`` or ``transform``) did, and its full log, kept in the data folder.

A scheduled run prints one line; everything else (dbt's whole output) goes to a log file per run under
``logs/``, whose path the failure lines give. ``last_run.json`` is written when a job starts ("in progress", with
its pid) and again when it ends, so ``status`` can tell a finished run from one still going or one that died.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from pipelines.atomic_file import write_json_atomically
from pipelines.settings import Paths

RUN_LOGS_KEPT = 50
"""Per-run log files kept in ``logs/`` (the newest); at 15-minute runs, half a day of full dbt logs."""

IN_PROGRESS = "in progress"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def now_utc() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """UTC to the second, as people and scripts read it: ``2026-12-07T11:45:02Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class RunRecord:
    """One job's outcome as ``status`` shows it. Plain values only: ``status --json`` prints it as it is."""

    command: str
    pid: int
    started_at: str
    outcome: str = IN_PROGRESS  # in progress, ok, failed
    finished_at: str | None = None
    seconds: float | None = None
    records_loaded: int | None = None
    warnings: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    error: str | None = None
    nothing_new: bool = False  # a run that found nothing new to build (only the clock's models were refreshed)
    log: str | None = None
    previous: dict[str, Any] | None = None  # while in progress: the last finished job, which status still shows

    def previous_record(self) -> RunRecord | None:
        """The last finished job before this one (kept while this one is in progress)."""
        return RunRecord(**self.previous) if self.previous else None

    def line(self, *, running: bool) -> str:
        """One line for a person, e.g. `ok: run started 2026-12-07T11:45:02Z, took 14.2 s, 120 records loaded`."""
        if self.outcome == IN_PROGRESS:
            if running:
                return f"{self.command} started {self.started_at} (pid {self.pid})"
            return f"interrupted (process {self.pid} is gone): {self.command} started {self.started_at}"
        parts = [f"{self.outcome}: {self.command} started {self.started_at}, finished {self.finished_at}"]
        if self.seconds is not None:
            parts.append(f"took {self.seconds:.1f} s")
        if self.records_loaded is not None:
            parts.append(f"{self.records_loaded} records loaded")
        if self.nothing_new:
            parts.append("nothing new to build")
        if self.warnings:
            count = len(self.warnings)
            parts.append(f"{count} warning{'s' if count != 1 else ''} ({', '.join(self.warnings)})")
        if self.failures:
            parts.append(f"failed: {', '.join(self.failures)}")
        if self.error:
            parts.append(self.error)
        if self.outcome != "ok" and self.log:
            parts.append(f"log {self.log}")
        return ", ".join(parts)


def record_file(paths: Paths) -> Path:
    return paths.data / "last_run.json"


def logs_dir(paths: Paths) -> Path:
    return paths.data / "logs"


def write_record(paths: Paths, record: RunRecord) -> None:
    """Atomically (a reader sees the old record or the new one, never half of one)."""
    write_json_atomically(record_file(paths), asdict(record), indent=2)


def read_record(paths: Paths) -> RunRecord | None:
    try:
        document = json.loads(record_file(paths).read_text())
        return RunRecord(**document)
    except (OSError, ValueError, TypeError):
        return None


def finished(record: RunRecord, started: datetime, outcome: str, **values: Any) -> RunRecord:
    end = now_utc()
    return replace(
        record,
        outcome=outcome,
        finished_at=iso(end),
        seconds=round((end - started).total_seconds(), 1),
        previous=None,
        **values,
    )


class RunLog:
    """The full log of one job: our lines and dbt's whole output, without colour codes."""

    def __init__(self, paths: Paths, command: str, started: datetime) -> None:
        folder = logs_dir(paths)
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{command}-{started.astimezone(UTC).strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.log"
        self.file: IO[str] = self.path.open("a", encoding="utf-8")

    def write(self, text: str) -> None:
        self.file.write(_ANSI.sub("", text))
        self.file.flush()

    def line(self, text: str) -> None:
        self.write(text.rstrip("\n") + "\n")

    def close(self) -> None:
        self.file.close()


def prune_logs(paths: Paths, keep: int = RUN_LOGS_KEPT) -> None:
    """Keep the newest ``keep`` job logs; older ones go (their outcome stays in ``last_run.json`` and dbt's own
    rotating log)."""
    folder = logs_dir(paths)
    if not folder.is_dir():
        return
    logs = sorted(folder.glob("*.log"), key=lambda path: path.stat().st_mtime, reverse=True)
    for old in logs[keep:]:
        old.unlink(missing_ok=True)

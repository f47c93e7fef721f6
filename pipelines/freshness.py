"""``segment-accounts freshness``: has Segment stopped delivering?

A webhook receiver fails quietly: when Segment stops calling it (a disabled destination, a rotated secret that
never reached Segment), nothing errors, the data just ages. dbt's source freshness (the thresholds live on the
`segment` source in `_segment__sources.yml`) is the check; this command runs it with the installation's paths
and prints one line per source table, so an orchestrator can alert on its exit code like dbt's: 0 pass or warn,
1 error.

Per connection, the check reads the receiver's own activity counts (``pipelines/activity.py``), not the warehouse:
``raw_events`` is one table for every connection, so a source that went quiet hides behind one that still sends,
and the warehouse is only as fresh as the last load, so a lagging loader would look like a silent Segment. The
counts know when each connection last delivered, whether or not anything has been loaded since. They count live
deliveries only: a backfill with ``ingest`` is history, not a sign that Segment is sending. The thresholds are
the ones on the source, so one place sets both.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import yaml

from pipelines.activity import iso_us, summaries
from pipelines.connections import Registry
from pipelines.settings import PROJECT_DIR, Paths
from pipelines.transform import dbt_artifact, run_dbt

SOURCES_FILE = PROJECT_DIR / "models" / "staging" / "segment" / "_segment__sources.yml"
_PERIOD_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


@dataclass(frozen=True)
class SourceFreshness:
    table: str
    status: str  # dbt's: pass, warn, error, runtime error
    age_seconds: float | None
    criteria: dict[str, dict[str, object] | None]
    message: str = ""

    def line(self) -> str:
        if self.age_seconds is None:
            return f"freshness {self.status}: {self.table}: {self.message or 'no result'}"
        limits = ", ".join(
            f"{kind.replace('_', ' ')} {limit['count']} {limit['period']}{'s' if limit['count'] != 1 else ''}"
            for kind, limit in self.criteria.items()
            if kind in ("warn_after", "error_after") and limit and limit.get("count")
        )
        return f"freshness {self.status}: {self.table} last received {_age(self.age_seconds)} ago ({limits})"


def _age(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 72 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def check_freshness(paths: Paths) -> tuple[int, list[SourceFreshness]]:
    """Run `dbt source freshness`; its exit code and one result per source table that has a threshold."""
    sources_file = dbt_artifact(paths, "sources.json")
    sources_file.unlink(missing_ok=True)  # never report an earlier check
    code = run_dbt(paths, ["source", "freshness"], quiet=True)
    try:
        results = json.loads(sources_file.read_text())["results"]
    except (OSError, ValueError, KeyError):
        return code or 1, []
    return code, [
        SourceFreshness(
            table=result["unique_id"].split(".")[-1],
            status=result.get("status") or "error",
            age_seconds=result.get("max_loaded_at_time_ago_in_s"),
            criteria=result.get("criteria") or {},
            message=_first_line(result.get("error") or result.get("message") or ""),
        )
        for result in results
    ]


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0][:300] if lines else ""


@dataclass(frozen=True)
class ConnectionFreshness:
    name: str
    status: str  # pass, warn or error, with the source's thresholds
    last_event_us: int | None
    age_seconds: float | None
    warn_seconds: float
    error_seconds: float
    since_added_seconds: float = 0.0  # how long ago the connection was added (judged by this while it is silent)

    def line(self) -> str:
        limits = f"warn after {_age(self.warn_seconds)}, error after {_age(self.error_seconds)}"
        if self.age_seconds is None:
            return (
                f"freshness {self.status}: connection {self.name} has received no event yet, added "
                f"{_age(self.since_added_seconds)} ago ({limits})"
            )
        return (
            f"freshness {self.status}: connection {self.name} last received {_age(self.age_seconds)} ago, "
            f"at {iso_us(self.last_event_us)} ({limits})"
        )


def source_thresholds(path: Path = SOURCES_FILE) -> tuple[float, float]:
    """The warn and error ages (seconds) set on ``raw_events`` in the dbt project."""
    doc = yaml.safe_load(path.read_text())
    for source in doc["sources"]:
        for table in source.get("tables", []):
            if table["name"] == "raw_events":
                rule = table["config"]["freshness"]
                warn, error = rule["warn_after"], rule["error_after"]
                return (
                    warn["count"] * _PERIOD_SECONDS[warn["period"]],
                    error["count"] * _PERIOD_SECONDS[error["period"]],
                )
    raise ValueError(f"no freshness on raw_events in {path}")


def check_connections(paths: Paths, now_us: int | None = None) -> list[ConnectionFreshness]:
    """One result per connection from the receiver's counts: no warehouse, no dbt."""
    now = now_us if now_us is not None else time.time_ns() // 1000
    warn, error = source_thresholds()
    activity = summaries(paths.data, now)
    out = []
    for connection in Registry(paths.data).list():
        found = activity.get(connection.connection_id)
        last = found.last_event_us if found else None
        age = None if last is None else max(0.0, (now - last) / 1_000_000)
        # a connection that never received anything is as stale as the time since it was added: one added
        # minutes ago (Segment not set up yet) passes, one silent for a day warns
        added = datetime.fromisoformat(connection.created_at).timestamp()  # ISO with Z, as the registry writes it
        since_added = max(0.0, now / 1_000_000 - added)
        silent = since_added if age is None else age
        status = "error" if silent >= error else "warn" if silent >= warn else "pass"
        out.append(ConnectionFreshness(connection.name, status, last, age, warn, error, since_added))
    return out

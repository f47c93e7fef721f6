"""``segment-accounts freshness``: has Segment stopped delivering?

A webhook receiver fails quietly: when Segment stops calling it (a disabled destination, a rotated secret that
never reached Segment), nothing errors, the data just ages. dbt's source freshness (the thresholds live on the
`segment` source in `_segment__sources.yml`) is the check; this command runs it with the installation's paths
and prints one line per source table, so an orchestrator can alert on its exit code like dbt's: 0 pass or warn,
1 error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pipelines.settings import Paths
from pipelines.transform import dbt_artifact, run_dbt


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

"""Where an installation keeps its state.

One variable, ``SEGMENT_ACCOUNTS_DATA``, moves everything (spool, connection registry, warehouse, dlt state), so
an installation can be backed up or relocated as one folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
"""The repository root: it holds dbt_project.yml and profiles.yml."""

RAW_DATASET = "segment_raw"
"""Schema (dlt dataset) of the raw tables that dbt reads as sources."""

MARTS_SCHEMA = "analytics"
"""Schema of the marts analysts query (dbt_project.yml's `+schema`, kept exact by macro generate_schema_name)."""


def raw_schema() -> str:
    """The raw tables' schema: ``SEGMENT_ACCOUNTS_RAW_SCHEMA`` (the loader and dbt read the same variable)."""
    return os.environ.get("SEGMENT_ACCOUNTS_RAW_SCHEMA", RAW_DATASET)


@dataclass(frozen=True)
class Paths:
    """Every file and folder of one installation, derived from its data folder."""

    data: Path

    @property
    def spool(self) -> Path:
        return self.data / "spool"

    @property
    def registry(self) -> Path:
        """The folder of the connection registry: the data folder, unless ``SEGMENT_ACCOUNTS_REGISTRY`` names
        another, so that receivers and loaders on several hosts read one registry (a shared volume or a mounted
        secret) while each keeps its own spool."""
        shared = os.environ.get("SEGMENT_ACCOUNTS_REGISTRY")
        return Path(shared).resolve() if shared else self.data

    @property
    def connections(self) -> Path:
        return self.registry / "connections.json"

    @property
    def connection_secrets(self) -> Path:
        return self.registry / "connections.secret.json"

    @property
    def warehouse(self) -> Path:
        return self.data / "warehouse.duckdb"

    @property
    def lake(self) -> Path:
        """Parquet files of the raw layer, for targets that read files (Spark)."""
        return self.data / "lake"

    @property
    def dlt_dir(self) -> Path:
        return self.data / "dlt"

    @property
    def run_lock(self) -> Path:
        return self.data / "run.lock"


SPOOL_KEEP_DAYS_VARIABLE = "SEGMENT_ACCOUNTS_SPOOL_KEEP_DAYS"


def spool_keep_days() -> float | None:
    """How long loaded spool segments are kept (compressed) after a load: ``$SEGMENT_ACCOUNTS_SPOOL_KEEP_DAYS``.

    Unset keeps them for good: the spool is the system of record, from which the raw layer can be reloaded if
    the warehouse is ever lost. A number of days (``0``: delete at once) bounds the disk it takes."""
    raw = os.environ.get(SPOOL_KEEP_DAYS_VARIABLE, "").strip()
    if not raw:
        return None
    try:
        days = float(raw)
    except ValueError:
        days = -1.0
    if not days >= 0 or days == float("inf"):
        raise ValueError(f"{SPOOL_KEEP_DAYS_VARIABLE} must be a number of days, 0 or more (got {raw!r})")
    return days


def data_dir() -> Path:
    """The data folder: ``$SEGMENT_ACCOUNTS_DATA`` or ``./data``, made absolute so child processes agree."""
    return Path(os.environ.get("SEGMENT_ACCOUNTS_DATA") or "data").resolve()


def paths() -> Paths:
    return Paths(data_dir())


PRIVATE_UMASK = 0o077
"""Files this process creates (spool, warehouse, dlt's folder, the registry) are readable by their owner only:
they hold every event Segment sent, as sensitive as the secrets file. Set at start-up, so it reaches files that
libraries (DuckDB, dlt, dbt) create too."""


def restrict_new_files() -> None:
    """New files 0600 and folders 0700: the data folder of an installation is private by default."""
    os.umask(PRIVATE_UMASK)


def configure_tools() -> None:
    """Environment every child tool must see: no telemetry (no network), dlt reads this project's ``.dlt/``.

    Set with ``setdefault`` so an operator's explicit setting wins.
    """
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    os.environ.setdefault("DLT_PROJECT_DIR", str(PROJECT_DIR))

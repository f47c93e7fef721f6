"""How much disk each part of an installation's data folder takes, for ``status``.

A data folder grows in several places at once (the spool and its archive, the build's warehouse, the analysts'
copy, dlt's working folder, logs); an operator who sees the disk fill needs to know which.
"""

from __future__ import annotations

import os
from pathlib import Path

from pipelines.docs_site import docs_folder
from pipelines.settings import Paths
from pipelines.transform import clock_target_dir, dbt_work_dir


def _size(path: Path) -> int:
    """Bytes in a file or a folder tree (files only; nothing followed through a symlink)."""
    try:
        if path.is_symlink():
            return 0
        if path.is_file():
            return path.stat().st_size
    except OSError:
        return 0
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue  # removed while we walked
    return total


def parts(paths: Paths) -> dict[str, list[Path]]:
    """Which files and folders make up each part."""
    data = paths.data
    return {
        "spool": [paths.spool],  # the archive of loaded segments is counted apart, below
        "spool_archive": [paths.spool / "loaded"],
        "warehouse": [paths.warehouse, data / "warehouse.duckdb.wal", paths.lake, data / "spark"],
        "analytics": [data / "analytics.duckdb"],
        "dlt": [paths.dlt_dir],
        "logs": [data / "logs", data / "dbt" / "logs"],
        # the receiver's live counters and last events per connection (the admin page, `connections tail`)
        "receiver_activity": [data / f"activity.sqlite3{suffix}" for suffix in ("", "-wal", "-shm")],
        # dbt's manifest, compiled SQL and parse cache (rewritten by each build, so bounded) and the docs site
        "dbt_artifacts": [dbt_work_dir(paths) / "target", clock_target_dir(paths), docs_folder(paths)],
    }


def folder_sizes(paths: Paths) -> dict[str, int]:
    """Bytes per part, the rest of the folder as ``other`` (the connection registry, locks, run records), and the
    ``total``."""
    sizes = {part: sum(_size(path) for path in members if path.exists()) for part, members in parts(paths).items()}
    sizes["spool"] -= sizes["spool_archive"]
    total = _size(paths.data) if paths.data.exists() else 0
    sizes["other"] = max(0, total - sum(sizes.values()))
    sizes["total"] = total
    return sizes


def human_bytes(count: int) -> str:
    """``12.3 MB``: what a person reads; ``--json`` keeps the byte count."""
    value = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"

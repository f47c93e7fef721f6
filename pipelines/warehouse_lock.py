"""Who holds the embedded warehouse, in one line an operator can act on.

DuckDB admits one writer process per database file, and a reader (an analyst's notebook, the DuckDB CLI) blocks
the writer too. When that happens dlt reports it as a connection failure about credentials and "your internet
connection", and dbt as a long stack of errors; the real cause is one sentence inside DuckDB's message, which
carries the holder's PID. This module finds that sentence and says what to do instead.
"""

from __future__ import annotations

import re
from pathlib import Path

from pipelines.settings import Paths

_LOCK_ERROR = re.compile(
    r'Could not set lock on file "(?P<file>[^"]+)": Conflicting lock is held in (?P<program>.+?) \(PID (?P<pid>\d+)\)'
)


class WarehouseInUse(RuntimeError):
    """Another process holds the build's DuckDB file; the message is the one line to print."""


def in_use_message(text: str) -> str | None:
    """The one line for a DuckDB lock conflict found anywhere in ``text`` (an error chain, dbt's output), or None."""
    found = _LOCK_ERROR.search(text)
    if not found:
        return None
    pid = int(found["pid"])
    holder = f"PID {pid}, {_process_name(pid) or Path(found['program']).name}"
    return (
        f"{found['file']} is open in another process ({holder}): close that session and run again; "
        "analysts open analytics.duckdb in the same folder instead, which runs never lock"
    )


def _process_name(pid: int) -> str | None:
    """The holder's short name (``comm``, never its command line, which may carry a password)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() or None
    except OSError:
        return None


def error_chain_text(error: BaseException) -> str:
    """Every message in an exception chain: dlt wraps DuckDB's error in its own, sometimes twice."""
    seen: list[str] = []
    current: BaseException | None = error
    visited: set[int] = set()
    while current is not None and id(current) not in visited:
        visited.add(id(current))
        seen.append(str(current))
        inner = getattr(current, "exception", None)
        current = inner if isinstance(inner, BaseException) else (current.__cause__ or current.__context__)
    return "\n".join(seen)


def check_warehouse_free(paths: Paths) -> None:
    """Open the embedded warehouse for writing and close it again: raises ``WarehouseInUse`` when another
    process holds it. A job checks this before it starts, so neither dlt nor dbt gets to bury the cause."""
    if not paths.warehouse.exists():
        return
    import duckdb

    try:
        duckdb.connect(str(paths.warehouse)).close()
    except duckdb.Error as error:
        message = in_use_message(str(error))
        if message:
            raise WarehouseInUse(message) from None
        # Anything else (a damaged file) is the loader's to report, as it always has been.

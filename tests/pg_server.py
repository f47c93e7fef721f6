"""A throwaway PostgreSQL server for the Postgres suite: initdb in a temp folder, a free loopback port, stopped after.

Not pytest-postgresql: it runs initdb as the current user, and CI runs as root, which initdb refuses. Here the
server runs as the ``postgres`` OS user when we are root (initdb and postgres refuse to run as root), as ourselves
otherwise.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    database: str

    def env(self) -> dict[str, str]:
        """The variables profiles.yml and the loader read to reach this server."""
        return {
            "SEGMENT_ACCOUNTS_PG_HOST": self.host,
            "SEGMENT_ACCOUNTS_PG_PORT": str(self.port),
            "SEGMENT_ACCOUNTS_PG_USER": self.user,
            # Trust auth ignores it, but dlt refuses Postgres credentials without a password.
            "SEGMENT_ACCOUNTS_PG_PASSWORD": "unused-with-trust-auth",
            "SEGMENT_ACCOUNTS_PG_DATABASE": self.database,
        }


def postgres_bin() -> Path:
    """The newest installed server's bin folder; the Makefile installs Debian's package when there is none."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).resolve().parent
    raise RuntimeError("PostgreSQL server binaries not found: run `make test`, which installs them")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_server_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@contextmanager
def running_postgres(database: str = "segment_accounts", timezone: str = "UTC") -> Iterator[PostgresServer]:
    """A server whose text sorts by code point (collation C, as DuckDB compares strings) with Unicode case
    mapping (ctype C.UTF-8, for lower()), whatever the caller's locale; ``timezone`` is the sessions' default."""
    bin_dir = postgres_bin()
    work = Path(tempfile.mkdtemp(prefix="segment-accounts-pg-"))
    data = work / "data"
    if os.geteuid() == 0:
        shutil.chown(work, "postgres", "postgres")
    port = _free_port()
    run = {"check": True, "capture_output": True, "text": True, "timeout": 120}
    try:
        subprocess.run(
            _as_server_user(
                [
                    str(bin_dir / "initdb"),
                    *("-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"),
                    *("--lc-collate=C", "--lc-ctype=C.UTF-8"),
                ]
            ),
            **run,
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -p {port} -k {work} -c fsync=off -c full_page_writes=off"
            f" -c timezone={timezone}"
        )
        subprocess.run(
            _as_server_user(
                [str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(work / "log"), "-w", "start"]
            ),
            **run,
        )
        subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-c", f'create database "{database}"'],
            **run,
        )
        yield PostgresServer("127.0.0.1", port, "postgres", database)
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                _as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
                capture_output=True,
                timeout=60,
                check=False,
            )
        shutil.rmtree(work, ignore_errors=True)

"""``segment-accounts docs``: the dbt docs site of this installation (every model, column and rule, with the
lineage graph), built from the same project, profiles and warehouse as ``transform``, and served on loopback.

The site is written to its own folder beside transform's target/: ``dbt docs generate`` rewrites
run_results.json, which ``run`` and ``status`` read as the last build's report.
"""

from __future__ import annotations

import functools
import http.server
import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pipelines.publish import is_published_mart
from pipelines.settings import Paths
from pipelines.transform import dbt_command, dbt_env, dbt_work_dir


class DocsError(RuntimeError):
    """The site could not be built or served; the message is one line for the user."""


@dataclass(frozen=True)
class DocsSite:
    folder: Path

    @property
    def index(self) -> Path:
        """The site's page; it loads manifest.json and catalog.json beside it, so it needs a web server."""
        return self.folder / "index.html"

    @property
    def static_index(self) -> Path:
        """The same site in one file (manifest and catalog inside): opens from disk, can be mailed."""
        return self.folder / "static_index.html"

    @property
    def analytics_queries(self) -> Path:
        """The example queries (analyses/) that read only marts, written to run on analytics.duckdb."""
        return self.folder / ANALYTICS_QUERIES


ANALYTICS_QUERIES = "analytics_queries"


def docs_folder(paths: Paths) -> Path:
    return dbt_work_dir(paths) / "docs"


ERROR_LINE = re.compile(r"[A-Za-z ]*Error:.*")
"""dbt's error lines: "Runtime Error: ...", DuckDB's "IO Error: ...", "Database Error: ..."."""


def _first_error(output: str) -> str:
    """dbt's own error line (e.g. DuckDB's "IO Error: Could not set lock ..."), without its log timestamp."""
    for line in reversed(output.splitlines()):
        found = ERROR_LINE.search(line)
        if found:
            return found.group(0).strip()[:300]
    return "see dbt's log in the data folder's dbt/logs"


def build_docs(paths: Paths) -> DocsSite:
    """``dbt docs generate --static``: the manifest, the warehouse's catalog (column types, row counts) and the
    site. Raises DocsError with dbt's own error line when dbt fails (a run holding the DuckDB warehouse, say)."""
    site = DocsSite(docs_folder(paths))
    paths.data.mkdir(parents=True, exist_ok=True)
    command = dbt_command(paths, ["docs", "generate", "--static"], target_dir=site.folder)
    result = subprocess.run(command, env=dbt_env(paths), capture_output=True, text=True, check=False)
    if result.returncode != 0 or not site.index.exists():
        raise DocsError(f"dbt docs generate failed: {_first_error(result.stdout + result.stderr)}")
    write_analytics_queries(site)
    return site


def write_analytics_queries(site: DocsSite) -> list[Path]:
    """Each analysis that reads only marts, as SQL an analyst runs on analytics.duckdb as it is.

    dbt compiles analyses for the build's warehouse (``"warehouse"."analytics"."fct_events"``), which on the
    embedded DuckDB is the jobs' own file; analytics.duckdb holds the same marts under their bare names. Each
    mart's relation, exactly as the manifest names it, becomes that name. An analysis that also reads staging,
    intermediate or raw tables is left out: analytics.duckdb does not have them.
    """
    try:
        nodes = json.loads((site.folder / "manifest.json").read_text())["nodes"]
    except (OSError, ValueError, KeyError) as error:
        raise DocsError(f"cannot read the docs site's manifest: {error}") from None
    marts = {unique_id: node for unique_id, node in nodes.items() if is_published_mart(node)}
    folder = site.analytics_queries
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.sql"):
        stale.unlink()
    written = []
    for node in sorted(nodes.values(), key=lambda node: node["name"]):
        upstream = node.get("depends_on", {}).get("nodes") or []
        sql = node.get("compiled_code")
        if node.get("resource_type") != "analysis" or not sql or not upstream:
            continue
        if any(unique_id not in marts for unique_id in upstream):
            continue
        for unique_id in upstream:
            mart = marts[unique_id]
            sql = sql.replace(mart["relation_name"], '"' + (mart.get("alias") or mart["name"]) + '"')
        target = folder / f"{node['name']}.sql"
        target.write_text(f"-- analyses/{node['name']}.sql, for analytics.duckdb (segment-accounts docs)\n{sql}")
        written.append(target)
    return written


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Files of the site folder; no access log on the terminal (the command prints where to look instead)."""

    def log_message(self, format: str, *args: object) -> None:
        return


def docs_server(site: DocsSite, port: int, host: str = "127.0.0.1") -> http.server.ThreadingHTTPServer:
    """A server for the site folder on loopback (the site shows every model's SQL: keep it private)."""
    handler = functools.partial(_QuietHandler, directory=str(site.folder))
    try:
        return http.server.ThreadingHTTPServer((host, port), handler)
    except OSError as error:
        raise DocsError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None

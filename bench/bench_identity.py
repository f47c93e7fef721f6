"""Identity resolution at scale: the dbt identity models against a plain recursive-CTE baseline.

Generates raw-shaped events (identify calls pairing anonymous ids with user ids, alias chains up to
--max-depth long, some closed into cycles), runs `dbt build` on the identity models once, checks the result
against a union-find computed in Python, then times the identity SQL again in a fresh process (wall time and
peak RSS) next to a plain recursive-CTE min-label propagation over the same alias edges.

    .venv/bin/python bench/bench_identity.py                 # default size, ~1-2 min
    .venv/bin/python bench/bench_identity.py --pairs 1000000 # the 1M target (identity SQL <= 3 s, <= 1 GB)

Prints figures; exits 1 only when the result is wrong. Machines are shared: compare ratios, not seconds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]
RAW_DDL = (ROOT / "tests" / "fixtures" / "dbt_project" / "raw_tables.sql").read_text()
IDENTITY_MODELS = [
    "int_identifiers_cleaned",
    "int_identifier_calls_summarized",
    "int_user_id_components",
    "int_user_ids_merged",
    "int_anonymous_ids_stitched",
    "int_contact_identifiers_resolved",
    "int_events_identified",
]

# Runs in a fresh interpreter so that its peak RSS is the SQL's alone. argv: database, timeout, then SQL files.
TIMED_RUNNER = r"""
import resource, sys, time, duckdb
con = duckdb.connect(sys.argv[1])
con.execute("set threads = 2"); con.execute("set enable_progress_bar = false")
statements = [open(path).read() for path in sys.argv[3:]]
start = time.perf_counter()
for sql in statements:
    con.execute(sql)
elapsed = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_SELF)
print(usage.ru_utime + usage.ru_stime, elapsed, usage.ru_maxrss * 1024)
"""


def generate(con: duckdb.DuckDBPyConnection, pairs: int, alias_share: float, max_depth: int, cycle_pct: int):
    """Raw events: (1 - alias_share) * pairs identify calls and alias_share * pairs alias edges."""
    con.execute(RAW_DDL)
    con.execute(
        "insert into segment_raw.connections (connection_id, name, account_mapping, email_fallback, created_at, "
        "_dlt_load_id, _dlt_id) values ('conn_bench', 'bench', 'group', true, '2024-01-01T00:00:00Z', '1', 'c1')"
    )
    alias_pairs = int(pairs * alias_share)
    identify_pairs = pairs - alias_pairs
    n_chains = max(1, round(alias_pairs / ((max_depth + 1) / 2)))
    n_plain_users = max(1, identify_pairs // 3)
    n_anonymous = max(1, int(identify_pairs * 0.9))  # some anonymous ids are seen with several users
    ts = "strftime(timestamp '2024-01-01' + to_seconds({}), '%Y-%m-%dT%H:%M:%S.%gZ')"
    con.execute(
        f"""
        create temp table chains as
        select k, 1 + (hash(k, 'depth') % {max_depth})::integer as depth
        from range({n_chains}) as t(k)
        """
    )
    # alias chains c{k}-0 -> c{k}-1 -> ... ; a few closed into a cycle by a last alias back to the start
    con.execute(
        f"""
        insert into segment_raw.raw_events (connection_id, message_id, received_at, payload, _dlt_load_id)
        select
            'conn_bench', message_id, timestamp '2024-01-01' + to_seconds(at_second) + interval 1 second,
            '{{"type":"alias","messageId":"' || message_id || '","previousId":"' || previous_id
                || '","userId":"' || user_id || '","timestamp":"' || {ts.format("at_second")} || '"}}',
            '1'
        from (
            select
                'a' || k || '-' || j as message_id,
                'c' || k || '-' || j as previous_id,
                'c' || k || '-' || (j + 1) as user_id,
                k * 60 + j * 3600 as at_second
            from (select k, unnest(range(depth)) as j from chains)
            union all
            select 'a' || k || '-cycle', 'c' || k || '-' || depth, 'c' || k || '-0', k * 60 + depth * 3600
            from chains
            where depth > 1 and hash(k, 'cycle') % 100 < {cycle_pct}
        )
        """
    )
    # identify calls: anonymous id -> user id; a quarter of the users are chain members
    con.execute(
        f"""
        insert into segment_raw.raw_events (connection_id, message_id, received_at, payload, _dlt_load_id)
        select
            'conn_bench', message_id, timestamp '2024-01-01' + to_seconds(at_second) + interval 1 second,
            '{{"type":"identify","messageId":"' || message_id || '","anonymousId":"' || anonymous_id
                || '","userId":"' || user_id || '","timestamp":"' || {ts.format("at_second")} || '"}}',
            '1'
        from (
            select
                'i' || i as message_id,
                'anon-' || (i % {n_anonymous}) as anonymous_id,
                case
                    when hash(i, 'kind') % 4 = 0
                        then 'c' || (hash(i, 'chain') % {n_chains}) || '-' || (hash(i, 'node') % 2)
                    else 'user-' || (hash(i, 'user') % {n_plain_users})
                end as user_id,
                (hash(i, 'time') % 10000000)::bigint as at_second
            from range({identify_pairs}) as t(i)
        )
        """
    )
    con.execute("insert into segment_raw._dlt_loads values ('1', 'segment_spool', 0, now(), '')")  # load complete
    return con.execute("select count(*) from segment_raw.raw_events").fetchone()[0]


def dbt(tmp: Path, *args: str) -> None:
    env = dict(
        os.environ,
        SEGMENT_ACCOUNTS_DATA=str(tmp / "data"),
        SEGMENT_ACCOUNTS_TARGET="duckdb",
        DBT_SEND_ANONYMOUS_USAGE_STATS="false",
        DBT_TARGET_PATH=str(tmp / "target"),
        DBT_LOG_PATH=str(tmp / "logs"),
    )
    env.pop("SEGMENT_ACCOUNTS_RAW_SCHEMA", None)
    command = [str(Path(sys.executable).parent / "dbt"), *args]
    command += ["--project-dir", str(ROOT), "--profiles-dir", str(ROOT)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"dbt {' '.join(args)} failed:\n{result.stdout[-4000:]}")


def timed(database: Path, sql_files: list[Path], timeout: float) -> tuple[float, int, float] | None:
    """Wall seconds, peak RSS and CPU seconds (user + system: steadier than wall time on a busy machine)."""
    try:
        out = subprocess.run(
            [sys.executable, "-c", TIMED_RUNNER, str(database), str(timeout), *map(str, sql_files)],
            capture_output=True,
            text=True,
            check=True,
            timeout=timeout,
        ).stdout.split()[-3:]
    except subprocess.TimeoutExpired:
        return None
    return float(out[1]), int(out[2]), float(out[0])


def check(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Union-find over the alias edges, latest-alias canonical ids, latest-event anonymous ids: compare."""
    problems = []
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        root = x
        while parent.setdefault(root, root) != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    aliases = con.execute(
        """
        select previous_id, user_id from intermediate.int_identifiers_cleaned
        where message_type = 'alias' and previous_id is not null and user_id is not null
        order by occurred_at, received_at, message_id
        """
    ).fetchall()
    latest_alias_user: dict[str, str] = {}
    for previous_id, user_id in aliases:
        a, b = find(previous_id), find(user_id)
        if a != b:
            parent[a] = b
    for _, user_id in aliases:  # in time order: the last one written wins
        latest_alias_user[find(user_id)] = user_id
    expected_canonical = {node: latest_alias_user[find(node)] for node in list(parent)}

    actual = dict(con.execute("select user_id, canonical_user_id from intermediate.int_user_ids_merged").fetchall())
    for node, canonical in expected_canonical.items():
        if actual.get(node) != canonical:
            problems.append(f"user id {node}: expected {canonical}, got {actual.get(node)}")
            break
    for node, canonical in actual.items():
        if node not in expected_canonical and canonical != node:
            problems.append(f"unaliased user id {node} resolved to {canonical}")
            break

    latest_user: dict[str, str] = {}
    for anonymous_id, user_id in con.execute(
        """
        select anonymous_id, user_id from intermediate.int_identifiers_cleaned
        where anonymous_id is not null and user_id is not null
        order by occurred_at, received_at, message_id
        """
    ).fetchall():
        latest_user[anonymous_id] = user_id
    stitched = dict(
        con.execute("select anonymous_id, canonical_user_id from intermediate.int_anonymous_ids_stitched").fetchall()
    )
    for anonymous_id, user_id in latest_user.items():
        if stitched.get(anonymous_id) != actual.get(user_id, user_id):
            problems.append(f"anonymous id {anonymous_id}: expected {user_id}, got {stitched.get(anonymous_id)}")
            break
    return problems


BASELINE_SQL = """
-- plain recursive CTE: every node collects every label it can reach (UNION ends on cycles), keep the least
create or replace table main.bench_baseline_components as
with recursive
alias_edges as (
    select previous_id as node_a, user_id as node_b from intermediate.int_identifiers_cleaned
    where message_type = 'alias' and previous_id is not null and user_id is not null
),
both_directions as (
    select node_a, node_b from alias_edges
    union all
    select node_b, node_a from alias_edges
),
reach(node, label) as (
    select node_a, node_a from both_directions
    union
    select both_directions.node_b, reach.label
    from reach
    inner join both_directions on reach.node = both_directions.node_a
)
select node, min(label) as component from reach group by node
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=200_000, help="identity pairs (identify + alias)")
    parser.add_argument("--alias-share", type=float, default=0.3, help="share of pairs that are alias edges")
    parser.add_argument("--max-depth", type=int, default=50, help="longest alias chain")
    parser.add_argument("--cycle-pct", type=int, default=5, help="percent of chains closed into a cycle")
    parser.add_argument("--baseline-timeout", type=float, default=300.0, help="seconds before giving up")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of the identity SQL (median shown)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-identity-"))
    try:
        (tmp / "data").mkdir()
        database = tmp / "data" / "warehouse.duckdb"
        with duckdb.connect(str(database)) as con:
            started = time.perf_counter()
            events = generate(con, args.pairs, args.alias_share, args.max_depth, args.cycle_pct)
            print(f"generated {events:,} raw events in {time.perf_counter() - started:.1f} s", flush=True)

        started = time.perf_counter()
        selector = "+int_events_identified"
        dbt(tmp, "build", "--select", selector, "--exclude", "test_type:unit", "--indirect-selection", "cautious")
        print(f"dbt build {selector} (staging, identity, their data tests): {time.perf_counter() - started:.1f} s")
        results = json.loads((tmp / "target" / "run_results.json").read_text())["results"]
        in_dbt = {r["unique_id"].split(".")[-1]: r["execution_time"] for r in results}
        print(
            "  in dbt: staging "
            f"{in_dbt.get('stg_segment__events', 0):.2f} s, identity models "
            f"{sum(in_dbt.get(m, 0) for m in IDENTITY_MODELS):.2f} s "
            f"({', '.join(f'{m} {in_dbt.get(m, 0):.2f}' for m in IDENTITY_MODELS)})"
        )

        with duckdb.connect(str(database), read_only=True) as con:
            problems = check(con)
            rounds = con.execute("select max(alias_rounds_used) from intermediate.int_user_ids_merged").fetchone()[0]
            depth = con.execute(
                """select max(n) from (select canonical_user_id, count(*) as n from intermediate.int_user_ids_merged
                   where is_aliased group by 1)"""
            ).fetchone()[0]
            edges = con.execute(
                "select count(*) from intermediate.int_identifiers_cleaned where message_type = 'alias'"
            ).fetchone()[0]
        print(
            f"correct vs union-find: {'yes' if not problems else 'NO: ' + problems[0]}; "
            f"{edges:,} alias edges, largest component {depth} ids, "
            f"contraction rounds used {rounds} (log3 of it ~ {math.log(max(depth or 1, 2), 3):.1f})"
        )

        # the same SQL again, alone in a fresh process: identity models, then only the components model
        compiled = tmp / "target" / "compiled" / "segment_accounts" / "models" / "intermediate" / "identity"
        # each model as dbt materializes it (a view costs nothing here, its readers pay for it)
        nodes = json.loads((tmp / "target" / "manifest.json").read_text())["nodes"]
        materialized = {node["name"]: node["config"]["materialized"] for node in nodes.values()}
        statements = []
        for model in IDENTITY_MODELS:
            path = tmp / f"{model}.sql"
            kind = "view" if materialized[model] == "view" else "table"
            sql = (compiled / f"{model}.sql").read_text()
            path.write_text(f"create or replace {kind} intermediate.{model} as\n{sql}")
            statements.append(path)
        baseline = tmp / "baseline.sql"
        baseline.write_text(BASELINE_SQL)
        runs = [timed(database, statements, args.baseline_timeout) for _ in range(args.repeat)]
        ours_all = sorted(runs)[len(runs) // 2]  # the median run (by wall time)
        spread = f"range {min(r[0] for r in runs):.2f}-{max(r[0] for r in runs):.2f} s over {len(runs)} runs"
        components = IDENTITY_MODELS.index("int_user_id_components")
        ours_components = timed(database, statements[components : components + 1], args.baseline_timeout)
        theirs = timed(database, [baseline], args.baseline_timeout)
        print(
            f"identity SQL ({len(IDENTITY_MODELS)} models), fresh process: {ours_all[0]:.2f} s ({spread}), "
            f"peak RSS {ours_all[1] / 2**20:.0f} MiB, "
            f"CPU {ours_all[2]:.2f} s ({', '.join(f'{m} {materialized[m]}' for m in IDENTITY_MODELS)})"
        )
        print(
            f"components only ({IDENTITY_MODELS[components]}): {ours_components[0]:.2f} s, "
            f"peak RSS {ours_components[1] / 2**20:.0f} MiB, CPU {ours_components[2]:.2f} s"
        )
        if theirs is None:
            print(f"baseline recursive CTE: gave up after {args.baseline_timeout:.0f} s")
        else:
            print(
                f"baseline recursive CTE min-label: {theirs[0]:.2f} s, peak RSS {theirs[1] / 2**20:.0f} MiB; "
                f"ratio baseline/ours {theirs[0] / ours_components[0]:.1f}x time, "
                f"{theirs[1] / ours_components[1]:.1f}x memory"
            )
        return 1 if problems else 0
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

"""Incremental always equals full refresh, for every incremental model of the project.

Events arrive in shuffled batches (so many are late: older than events already processed), with re-delivered
duplicates, copies received *before* the copy already processed (a receiver with a slow clock: the staging model
must replace its winner, some of them a user's latest call) and aliases that merge contacts after their Engage
history was built; `segment-accounts run` follows each batch, as a schedule would. Two last batches change who and
which account the events already built belong to: late aliases merge contacts that have history, group calls move
contacts to another account, email changes move contacts to another domain account; then the same moves back. Then
every incremental model is snapshotted, rebuilt with --full-refresh from the same raw data, and compared both ways
(EXCEPT ALL), so a row too many or too few fails. A company's domain moves to a new account between runs (domain
consolidation): its people follow.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import duckdb
import orjson
import pytest

from pipelines.connections import Registry
from pipelines.sample_data import TrafficGenerator
from pipelines.settings import Paths
from pipelines.spool import Record, SpoolWriter
from tests.conftest import RunCli

BATCHES = 4


def _late_alias_merges(events: list[dict]) -> list[dict]:
    """Aliases that join pairs of users who both have Engage history, dated after it: their contacts merge."""
    users = sorted({e["userId"] for e in events if e.get("context", {}).get("personas") and e.get("userId")})
    merges = []
    for n, (old, new) in enumerate(zip(users[0:20:2], users[1:20:2], strict=False)):
        merges.append(
            {
                "type": "alias",
                "previousId": old,
                "userId": new,
                "messageId": f"late-merge-{n}",
                "timestamp": "2026-12-15T00:00:00.000Z",
            }
        )
    return merges


def _domain_move() -> tuple[list[dict], list[dict]]:
    """Domain consolidation across runs: first a company's group call names its website and a colleague is known
    only by a work email there (she joins that account); later the admin's new group call moves the company to a
    new groupId, whose website is the same domain, and the colleague must follow it."""

    def event(message_id: str, at: str, **fields: object) -> dict:
        return {"messageId": message_id, "timestamp": f"2026-11-{at}Z", **fields}

    first = [
        event(
            "move-1",
            "02T09:00:00",
            type="group",
            userId="mover-admin",
            groupId="mover-old",
            traits={"name": "Mover", "website": "https://www.mover.example/"},
        ),
        event("move-2", "02T10:00:00", type="identify", userId="mover-pat", traits={"email": "pat@Mover.example"}),
        event("move-3", "03T10:00:00", type="track", userId="mover-pat", event="Report Viewed"),
    ]
    later = [
        event(
            "move-4",
            "20T09:00:00",
            type="group",
            userId="mover-admin",
            groupId="mover-new",
            traits={"name": "Mover", "website": "mover.example"},
        ),
    ]
    return first, later


def _account_of(paths: Paths, user_id: str) -> tuple[str, str, set[str]]:
    """The contact's account, how it got it, and the accounts its events count for."""
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        account_id, assigned_by = con.execute(
            "select account_id, account_assigned_by from analytics.dim_contacts where user_id = ?", [user_id]
        ).fetchone()
        events = con.execute(
            "select distinct e.account_id from analytics.fct_events as e"
            " inner join analytics.dim_contacts as c using (contact_id) where c.user_id = ?",
            [user_id],
        ).fetchall()
    return account_id, assigned_by, {row[0] for row in events}


def _identity_changes(events: list[dict], timestamp: str, *, back: bool) -> list[dict]:
    """Calls that change the contact or the account of events already built, all dated after the traffic.

    ``back=False``: aliases merging pairs of users with history, group calls to another account, identifies
    with an email at another work domain. ``back=True`` (later): the group calls and emails return to what they
    were, so a contact's account changes and then changes back between two runs.
    """
    users = sorted({e["userId"] for e in events if e.get("userId") and not e.get("context", {}).get("personas")})
    group_of = {e["userId"]: e["groupId"] for e in events if e.get("type") == "group"}
    email_of = {
        e["userId"]: e["traits"]["email"]
        for e in events
        if e.get("type") == "identify" and isinstance(e.get("traits"), dict) and "email" in e["traits"]
    }
    grouped = [u for u in users if u in group_of][:6]
    emailed = [u for u in users if u not in group_of and u in email_of][:6]
    merged = [u for u in users if u not in grouped and u not in emailed][-12:]
    tag = "back" if back else "move"
    changes: list[dict] = []
    if not back:
        for n, (old, new) in enumerate(zip(merged[0::2], merged[1::2], strict=False)):
            changes.append(
                {
                    "type": "alias",
                    "previousId": old,
                    "userId": new,
                    "messageId": f"history-merge-{n}",
                    "timestamp": timestamp,
                }
            )
    for n, user in enumerate(grouped):
        group_id = group_of[user] if back else f"moved-group-{n}"
        changes.append(
            {
                "type": "group",
                "userId": user,
                "groupId": group_id,
                "messageId": f"{tag}-group-{n}",
                "timestamp": timestamp,
            }
        )
    for n, user in enumerate(emailed):
        email = email_of[user] if back else f"moved{n}@moved-domain-{n}.example"
        changes.append(
            {
                "type": "identify",
                "userId": user,
                "traits": {"email": email},
                "messageId": f"{tag}-email-{n}",
                "timestamp": timestamp,
            }
        )
    return changes


RECEIVED_IN_2001_US = 1_000_000_000 * 10**6  # before any ingest of this test, by our clock
RECEIVED_IN_2033_US = 2_000_000_000 * 10**6  # after any ingest of this test


def _spool_copies(paths: Paths, connection_id: str, events: list[dict], received_at_us: int) -> None:
    """Copies of already processed events as a receiver would spool them, stamped with the given receipt time.

    Each copy's payload differs from the original (a property), so the models show which copy won.
    """
    records = []
    for event in events:
        copy = dict(event, properties={**event.get("properties", {}), "copy": "late-delivered"})
        records.append(Record("event", connection_id, received_at_us, orjson.dumps(copy), event["messageId"]))
    writer = SpoolWriter(paths.spool)
    try:
        writer.append(records)
    finally:
        writer.close()


def _latest_calls_of_users(batches: list[list[dict]], first_batch_from: int) -> list[dict]:
    """Events of the first batch (from position ``first_batch_from`` on) that are their user's latest event,
    latest identify, or latest event carrying an email, of all the traffic batches: a copy of one received
    earlier replaces it in staging and sorts before it, so the user's last call (or the last call setting its
    traits, or its email) is another, which int_identifier_calls_summarized must find by computing that user
    again."""

    def kinds(event: dict) -> list[str]:
        identify = event.get("type") == "identify"
        traits_email = event.get("traits", {}).get("email") if identify else None
        context_email = event.get("context", {}).get("traits", {}).get("email")
        has_email = any("@" in str(email) for email in (traits_email, context_email) if email)
        return ["any", *(["identify"] if identify else []), *(["email"] if has_email else [])]

    latest: dict[tuple[str, str], dict] = {}
    for batch in batches:
        for event in batch:
            user_id, at = event.get("userId"), event.get("timestamp")
            for key in ((user_id, kind) for kind in kinds(event)):
                if user_id and at and (key not in latest or at > latest[key]["timestamp"]):
                    latest[key] = event
    candidates = {event["messageId"] for event in batches[0][first_batch_from:]}
    chosen = {e["messageId"]: e for e in latest.values() if e["messageId"] in candidates}
    return [chosen[message_id] for message_id in sorted(chosen)][:15]


def _incremental_models(paths: Paths) -> dict[str, str]:
    """Each incremental model's name and its relation (`schema.name`): models live in their layer's schema."""
    manifest = json.loads((paths.data / "dbt" / "target" / "manifest.json").read_text())
    return {
        node["name"]: f"{node['schema']}.{node['name']}"
        for node in sorted(manifest["nodes"].values(), key=lambda node: node["name"])
        if node["resource_type"] == "model" and node["config"].get("materialized") == "incremental"
    }


def _accounts_and_contacts(paths: Paths) -> set[tuple]:
    """Each event's contact and account as fct_events has them now."""
    con = duckdb.connect(str(paths.warehouse), read_only=True)
    try:
        return set(con.execute("select event_id, contact_id, account_id from analytics.fct_events").fetchall())
    finally:
        con.close()


@pytest.mark.slow
def test_incremental_runs_equal_a_full_refresh(paths: Paths, run_cli: RunCli, tmp_path: Path) -> None:
    connection, _ = Registry(paths.data).add("web")
    events = list(TrafficGenerator(seed=21, people=60, engage=0.35).events(3000))
    events += _late_alias_merges(events)
    rnd = random.Random(8)
    rnd.shuffle(events)  # a batch holds events of any age: most batches bring late events
    batches = [events[i::BATCHES] for i in range(BATCHES)]
    for later in range(1, BATCHES):  # Segment re-delivers: copies of earlier events in later batches
        batches[later] += rnd.sample(batches[later - 1], 40)
    domain_first, domain_later = _domain_move()
    batches[0] += domain_first
    batches[-1] += domain_later  # the last batch of traffic, before the two of identity changes
    batches.append(_identity_changes(events, "2026-12-20T00:00:00.000Z", back=False))
    batches.append(_identity_changes(events, "2026-12-25T00:00:00.000Z", back=True))

    for number, batch in enumerate(batches):
        source = tmp_path / f"batch-{number}.ndjson"
        source.write_bytes(b"\n".join(orjson.dumps(e) for e in batch) + b"\n")
        run_cli("ingest", str(source), "--connection", "web")
        if number == BATCHES - 1:
            # Copies of first-batch events: some received before (they must replace the processed copy), some
            # after (they must lose).
            _spool_copies(paths, connection.connection_id, batches[0][:30], RECEIVED_IN_2001_US)
            _spool_copies(paths, connection.connection_id, batches[0][30:60], RECEIVED_IN_2033_US)
            latest_calls = _latest_calls_of_users(batches[:BATCHES], first_batch_from=60)
            _spool_copies(paths, connection.connection_id, latest_calls, RECEIVED_IN_2001_US)
        result = run_cli("run", check=False, timeout=600)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
        if number == 0:
            assert _account_of(paths, "mover-pat") == ("mover-old", "email_domain_matched", {"mover-old"})
        if number == BATCHES:
            moved = _accounts_and_contacts(paths)
    # the domain moved with the new group call: the colleague and all her past events follow it
    assert _account_of(paths, "mover-pat") == ("mover-new", "email_domain_matched", {"mover-new"})

    incremental = _incremental_models(paths)
    assert {"fct_audience_history", "int_events_identified", "fct_events"} <= set(incremental)
    # the identity batches did move events: the comparison below covers those moves
    assert moved != _accounts_and_contacts(paths), "the moves back changed no event"

    con = duckdb.connect(str(paths.warehouse))
    try:
        for model, relation in incremental.items():
            con.execute(f"create table main.snapshot_{model} as select * from {relation}")
        rows = {m: con.execute(f"select count(*) from {relation}").fetchone()[0] for m, relation in incremental.items()}
        # Cost follows new data: after a run every pair's stored fingerprint is current, so a run with nothing
        # new rebuilds no pair at all.
        stale = con.execute(
            "select count(*) from intermediate.int_engage_pairs_fingerprinted as p"
            " left join (select distinct contact_id, computation_key, source_fingerprint"
            " from analytics.fct_audience_history) as h"
            " on h.contact_id = p.contact_id and h.computation_key = p.computation_key"
            " where h.source_fingerprint is distinct from p.source_fingerprint"
        ).fetchone()[0]
        # Likewise the per-event tables: the mapping each was built with is the current one.
        mapping_drift = (
            con.execute(
                "select count(*) from (select identifier, identifier_type, contact_id"
                " from intermediate.int_contact_identifiers_resolved"
                " except select * from intermediate.int_events_identified__mapping) as drift"
            ).fetchone()[0]
            + con.execute(
                "select count(*) from (select i.identifier, i.identifier_type, i.contact_id, a.account_id"
                " from intermediate.int_contact_identifiers_resolved as i"
                " left join intermediate.int_contact_accounts_resolved as a on a.contact_id = i.contact_id"
                " except select * from intermediate.fct_events__mapping) as drift"
            ).fetchone()[0]
        )
        copies_won = con.execute(
            "select count(*) from staging.stg_segment__events where properties->>'copy' = 'late-delivered'"
        ).fetchone()[0]
    finally:
        con.close()
    assert latest_calls, "no copy replaces a user's latest call: the comparison would not cover it"
    expected_copies = 30 + len(latest_calls)
    assert copies_won == expected_copies, f"{copies_won} of the {expected_copies} copies received earlier won"
    assert all(rows.values()), f"an incremental model is empty, the comparison would prove nothing: {rows}"
    assert stale == 0, f"{stale} pairs would be rebuilt by a run with no new data"
    assert mapping_drift == 0, f"{mapping_drift} identifiers' events would be rewritten by a run with no new data"

    rebuilt = run_cli("run", "--full-refresh", check=False, timeout=600)
    assert rebuilt.returncode == 0, rebuilt.stdout[-3000:]

    con = duckdb.connect(str(paths.warehouse), read_only=True)
    try:
        for model, relation in incremental.items():
            for left, right in ((f"main.snapshot_{model}", relation), (relation, f"main.snapshot_{model}")):
                extra = con.execute(
                    f"select count(*) from (select * from {left} except all select * from {right})"
                ).fetchone()[0]
                assert extra == 0, f"{model}: {extra} rows of {left} are not in {right}"
        merged_away = con.execute(
            "select count(*) from analytics.fct_audience_history as h"
            " where not exists (select 1 from analytics.dim_contacts as c where c.contact_id = h.contact_id)"
        ).fetchone()[0]
        assert merged_away == 0, "history rows point at contacts that no longer exist"
    finally:
        con.close()

"""The operator's view without a browser: the activity counts the receiver keeps, the admin token, the admin
app's refusals, and the CLI's `connections list`, `tail` and per-connection `freshness`."""

from __future__ import annotations

import asyncio
import json
import os
import re
import stat
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipelines import activity, public_url
from pipelines.activity import ActivityRecorder, RecordingWriter
from pipelines.admin import token
from pipelines.admin.app import AdminApp
from pipelines.connections import Registry
from pipelines.freshness import check_connections, source_thresholds
from pipelines.settings import Paths
from pipelines.spool import Record, SpoolReader, SpoolWriter
from tests.conftest import RunCli

NOW_US = time.time_ns() // 1000
HOUR_US = 3600 * 1_000_000


def event(cid: str, at: int, n: int, **extra: Any) -> Record:
    payload = json.dumps({"type": "track", "event": "Viewed", "userId": "u", "messageId": f"m{n}", **extra})
    return Record("event", cid, at, payload.encode(), f"m{n}")


def rejected(cid: str, at: int, reason: str, payload: bytes = b'{"type":"track"}') -> Record:
    return Record("rejected", cid, at, payload, None, reason)


# ---- the activity counts ----------------------------------------------------------------------------------------


def test_counts_survive_a_restart_and_come_from_every_process(data_dir: Path) -> None:
    """Two receiver processes (two recorders on one file) and a restart: the counts add up, nothing is lost that
    was flushed, and reading needs neither the spool nor the warehouse."""
    first, second = ActivityRecorder(data_dir), ActivityRecorder(data_dir)
    first.record([event("a", NOW_US - 10, 1), event("a", NOW_US - 2 * HOUR_US, 2), event("b", NOW_US, 3)])
    second.record([event("a", NOW_US - 5, 4), rejected("a", NOW_US, "track without event")])
    second.record([rejected("a", NOW_US - 1, "track without event", b'{"type":"track","n":2}')])
    second.refused("a", "wrong signature", NOW_US)
    first.close()
    second.close()
    assert stat.S_IMODE(os.stat(activity.activity_path(data_dir)).st_mode) == 0o600  # it holds payloads

    restarted = ActivityRecorder(data_dir)  # a new process after a restart adds to what was there
    restarted.record([event("a", NOW_US - 25 * HOUR_US, 5)])  # older than a day: counted nowhere but last_seen
    restarted.close()

    got = activity.summaries(data_dir, NOW_US)
    a = got["a"]
    assert (a.events_last_hour, a.events_last_day, a.rejected_last_day, a.refused_last_day) == (2, 3, 2, 1)
    assert a.last_event_us == NOW_US - 5 and a.last_rejected_us == NOW_US
    reasons = {r.reason: r for r in a.rejects}
    assert reasons["track without event"].count == 2
    assert reasons["track without event"].sample == '{"type":"track"}'  # the latest sample of that reason
    assert reasons["refused: wrong signature"].count == 1
    assert got["b"].events_last_day == 1 and got["b"].rejected_last_day == 0


def test_tail_keeps_the_last_50_of_each_kind_newest_first_and_never_a_write_key(data_dir: Path) -> None:
    recorder = ActivityRecorder(data_dir)
    for batch in range(3):
        recorder.record([event("a", NOW_US + batch * 40 + i, batch * 40 + i) for i in range(40)])
        recorder.flush()
    key = "wk_" + "x" * 30
    recorder.record([event("a", NOW_US + 500, 999, writeKey=key)])
    recorder.record([rejected("a", NOW_US + 501, "not JSON: bad", b'{"writeKey": "' + key.encode() + b'", oops')])
    recorder.close()

    events = activity.tail(data_dir, connection_ids=["a"], kinds=["event"])
    assert len(events) == 50 and events[0].message_id == "m999" and events[1].message_id == "m119"
    assert [t.seq for t in events] == sorted((t.seq for t in events), reverse=True)
    everything = activity.tail(data_dir, connection_ids=["a"], kinds=activity.KINDS)
    assert everything[0].kind == "rejected" and everything[0].summary == "(not JSON)"
    assert all(key not in t.payload for t in everything)
    assert '"[removed]"' in everything[0].payload
    assert activity.tail(data_dir, connection_ids=["b"]) == []
    assert activity.tail(data_dir, after_seq=everything[0].seq) == []


def test_the_receiver_counts_what_the_spool_made_durable_and_nothing_else(data_dir: Path) -> None:
    class Failing:
        def append(self, records: Any) -> None:
            raise OSError(28, "No space left on device")

        def close(self) -> None:
            pass

    recorder = ActivityRecorder(data_dir)
    with pytest.raises(OSError):
        RecordingWriter(Failing(), recorder).append([event("a", NOW_US, 1)])
    writer = RecordingWriter(SpoolWriter(Paths(data_dir).spool), recorder)
    writer.append([event("a", NOW_US, 2)])
    writer.close()  # closes the spool writer and flushes the counts
    assert activity.summaries(data_dir, NOW_US)["a"].events_last_day == 1
    assert SpoolReader(Paths(data_dir).spool).stats().pending_records == 1


# ---- the admin token and the admin app -----------------------------------------------------------------------


def test_admin_token_is_made_once_stored_hashed_and_rotatable(data_dir: Path) -> None:
    first = token.ensure(data_dir)
    assert first and token.ensure(data_dir) is None  # printed once: the second start has nothing to print
    stored = token.token_path(data_dir)
    assert stat.S_IMODE(os.stat(stored).st_mode) == 0o600 and first not in stored.read_text()
    assert token.token_ok(data_dir, first) and not token.token_ok(data_dir, first[:-1] + "x")
    session = token.derived(data_dir, "session")
    second = token.rotate(data_dir)
    assert not token.token_ok(data_dir, first) and token.token_ok(data_dir, second)
    assert not token.derived_ok(data_dir, "session", session), "rotating ends every browser session"
    assert not token.token_ok(data_dir, "é")  # odd input is just wrong, never an error


def call(app: AdminApp, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8081") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


def test_admin_app_refuses_without_token_or_csrf_and_escapes_payloads(data_dir: Path) -> None:
    secret_token = token.rotate(data_dir)
    bearer = {"authorization": f"Bearer {secret_token}"}
    app = AdminApp(data_dir)
    for method, path in (("GET", "/"), ("GET", "/api/activity"), ("POST", "/connections")):
        refused = call(app, method, path, data={"name": "x"})
        assert refused.status_code == 401, (method, path)
        assert refused.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in refused.headers["content-security-policy"]
    assert call(app, "GET", "/", headers={"authorization": "Bearer wrong"}).status_code == 401

    page = call(app, "GET", "/", headers=bearer)
    assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
    assert "<script>" not in page.text  # no inline script: the policy can forbid it
    csrf = re.search(r"name='csrf' value='([0-9a-f]+)'", page.text).group(1)  # type: ignore[union-attr]

    assert call(app, "POST", "/connections", headers=bearer, data={"name": "web"}).status_code == 403
    wrong = {"name": "web", "csrf": "0" * 64}
    assert call(app, "POST", "/connections", headers=bearer, data=wrong).status_code == 403
    other_site = {**bearer, "origin": "https://evil.example"}
    assert call(app, "POST", "/connections", headers=other_site, data={"name": "w", "csrf": csrf}).status_code == 403
    assert Registry(data_dir).list() == []

    bad = call(app, "POST", "/connections", headers=bearer, data={"name": "web two", "csrf": csrf})
    assert bad.status_code == 400 and "invalid connection name" in bad.text  # the CLI's validation
    added = call(app, "POST", "/connections", headers=bearer, data={"name": "web", "csrf": csrf})
    assert added.status_code == 200
    conn = Registry(data_dir).get("web")
    assert Registry(data_dir).current_credentials(conn.connection_id).webhook_secret in added.text  # type: ignore[union-attr]

    recorder = ActivityRecorder(data_dir)
    recorder.record([rejected(conn.connection_id, NOW_US, "missing type", b'{"x":"<script>alert(1)</script>"}')])
    recorder.close()
    page = call(app, "GET", "/", headers=bearer)
    assert "<script>alert(1)" not in page.text and "&lt;script&gt;alert(1)" in page.text
    doc = call(app, "GET", "/api/activity", headers=bearer).json()
    assert doc["connections"][conn.connection_id]["rejected_last_day"] == 1

    unconfirmed = {"csrf": csrf, "grace_hours": "0"}
    path = f"/connections/{conn.connection_id}"
    assert call(app, "POST", f"{path}/rotate", headers=bearer, data=unconfirmed).status_code == 400
    assert call(app, "POST", f"{path}/remove", headers=bearer, data={"csrf": csrf}).status_code == 400
    assert Registry(data_dir).list() != []
    removed = call(app, "POST", f"{path}/remove", headers=bearer, data={"csrf": csrf, "confirm": "yes"})
    assert removed.status_code == 200 and Registry(data_dir).list() == []


# ---- the CLI ---------------------------------------------------------------------------------------------------


def test_list_and_tail_show_url_traffic_and_grace(data_dir: Path, run_cli: RunCli) -> None:
    refused = run_cli("serve", "--public-url", "ftp://segment.example.com", check=False)
    assert refused.returncode == 1 and "not an http(s) URL" in refused.stderr  # checked before listening
    run_cli("connections", "add", "web")
    run_cli("connections", "add", "app")
    reg = Registry(data_dir)
    web, app = reg.get("web").connection_id, reg.get("app").connection_id
    public_url.save(data_dir, "https://segment.example.com/")
    recorder = ActivityRecorder(data_dir)
    recorder.record([event(web, NOW_US - 60_000_000, 1), rejected(web, NOW_US, "missing type")])
    recorder.refused(app, "wrong signature", NOW_US)
    recorder.close()
    run_cli("connections", "rotate", "web", "--grace-hours", "2")

    listed = run_cli("connections", "list", "--json")
    assert listed.stderr == ""  # a public URL that is not loopback: no warning
    doc = {c["name"]: c for c in json.loads(listed.stdout)["connections"]}
    assert doc["web"]["webhook_url"] == f"https://segment.example.com/webhooks/{web}"
    assert doc["web"]["events_last_day"] == 1 and doc["web"]["rejected_last_day"] == 1
    assert doc["web"]["last_event_at"] is not None and doc["web"]["grace_until"] is not None
    assert doc["app"]["refused_last_day"] == 1 and doc["app"]["grace_until"] is None
    table = run_cli("connections", "list").stdout.splitlines()
    assert table[0].split()[:2] == ["NAME", "MAPPING"]
    row = next(line for line in table if line.startswith("web "))
    assert "1" in row.split() and f"https://segment.example.com/webhooks/{web}" in row

    everything = run_cli("tail").stdout.splitlines()
    assert len(everything) == 3 and "event" in everything[0] and "Viewed" in everything[0]
    only_rejected = run_cli("tail", "--connection", "web", "--rejected", "--payloads").stdout.splitlines()
    assert len(only_rejected) == 2 and "missing type" in only_rejected[0]
    assert only_rejected[1].strip() == '{"type":"track"}'
    assert "no connection named 'nope'" in run_cli("tail", "--connection", "nope", check=False).stderr


def test_freshness_per_connection_warns_for_the_silent_one(data_dir: Path) -> None:
    """One connection still sends, another went quiet past the source's warn age, a third never sent: the check
    tells them apart without a warehouse."""
    warn, error = source_thresholds()
    reg = Registry(data_dir)
    ids = {name: reg.add(name)[0].connection_id for name in ("busy", "quiet", "dead", "never")}
    recorder = ActivityRecorder(data_dir)
    recorder.record([event(ids["busy"], NOW_US - 60_000_000, 1)])
    recorder.record([event(ids["quiet"], NOW_US - int((warn + 3600) * 1_000_000), 2)])
    recorder.record([event(ids["dead"], NOW_US - int((error + 3600) * 1_000_000), 3)])
    recorder.close()
    got = {c.name: c for c in check_connections(Paths(data_dir), NOW_US)}
    assert {name: c.status for name, c in got.items()} == {
        "busy": "pass",
        "quiet": "warn",
        "dead": "error",
        "never": "pass",  # added a moment ago: Segment may not be set up yet
    }
    assert "connection quiet last received 25.0 h ago" in got["quiet"].line()
    assert "has received no event yet, added 0 min ago" in got["never"].line()
    # past the warn age since it was added, a connection that never received anything warns; past the error
    # age, it errs (counted from its created_at: NOW_US is when this module was imported)
    added_us = int(datetime.fromisoformat(reg.get("never").created_at).timestamp() * 1_000_000)
    later = {c.name: c for c in check_connections(Paths(data_dir), added_us + int((warn + 60) * 1_000_000))}
    assert later["never"].status == "warn"
    much_later = {c.name: c for c in check_connections(Paths(data_dir), added_us + int((error + 60) * 1_000_000))}
    assert much_later["never"].status == "error"


def test_a_damaged_activity_file_costs_the_counts_not_the_listing(data_dir: Path, run_cli: RunCli) -> None:
    run_cli("connections", "add", "web")
    activity.activity_path(data_dir).write_bytes(b"not a database " * 100)
    listed = run_cli("connections", "list", "--json")
    assert json.loads(listed.stdout)["connections"][0]["events_last_day"] == 0
    assert "activity counts unreadable" in listed.stderr and "activity.sqlite3" in listed.stderr
    assert "Nothing received yet" in run_cli("tail").stdout

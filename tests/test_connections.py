"""The connection registry and its commands, on a real data folder (tmp_path)."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipelines import connections_cli
from pipelines.connections import (
    Connection,
    ConnectionConfigError,
    Credentials,
    Registry,
    validate_trait_path,
)
from pipelines.connections_cli import connections

PUBLIC_KEYS = {
    "connection_id",
    "name",
    "account_mapping",
    "account_id_trait",
    "account_name_trait",
    "email_fallback",
    "allow_legacy_batch_signature",
    "created_at",
}


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SEGMENT_ACCOUNTS_DATA", str(tmp_path))
    monkeypatch.delenv("SEGMENT_ACCOUNTS_PUBLIC_URL", raising=False)
    return tmp_path


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def cli(runner: CliRunner, *args: str, input: str | None = None):
    return runner.invoke(connections, list(args), input=input, catch_exceptions=False)


def all_secrets(data: Path) -> list[str]:
    doc = json.loads((data / "connections.secret.json").read_text())
    return [x["value"] for s in doc["connections"].values() for x in (*s["webhook_secrets"], *s["write_keys"])]


# ---- Registry API -------------------------------------------------------------------------------------------


def test_add_get_list_remove(data: Path) -> None:
    reg = Registry()
    conn, creds = reg.add("web", account_mapping="traits", account_id_trait="company.id")
    assert isinstance(conn, Connection) and isinstance(creds, Credentials)
    assert conn.name == "web" and conn.account_mapping == "traits" and conn.email_fallback
    assert not conn.allow_legacy_batch_signature
    assert conn.account_id_trait == "company.id" and conn.account_name_trait is None
    assert datetime.fromisoformat(conn.created_at).tzinfo is not None
    assert reg.get("web") == conn == reg.get(conn.connection_id) == reg.by_id(conn.connection_id)
    assert [c.name for c in Registry(data).list()] == ["web"]
    assert len(creds.webhook_secret) >= 43 and len(creds.write_key) >= 43  # >= 32 bytes of entropy
    assert reg.webhook_secrets(conn.connection_id) == [creds.webhook_secret.encode()]
    assert reg.by_write_key(creds.write_key) == conn

    reg.remove("web")
    assert reg.list() == [] and reg.by_id(conn.connection_id) is None
    assert reg.webhook_secrets(conn.connection_id) == []
    assert reg.by_write_key(creds.write_key) is None
    assert all_secrets(data) == []
    with pytest.raises(ConnectionConfigError, match="no connection named 'web'"):
        reg.get("web")
    with pytest.raises(ConnectionConfigError):
        reg.remove("web")


def test_default_data_folder_and_empty(data: Path) -> None:
    reg = Registry()
    assert reg.list() == [] and reg.by_id("nope") is None and reg.by_write_key("") is None
    reg.add("a")
    assert (data / "connections.json").exists()


def test_ids_are_url_safe_and_distinct(data: Path) -> None:
    reg = Registry()
    ids = {reg.add(f"s{i}")[0].connection_id for i in range(5)}
    assert len(ids) == 5
    assert all(i.isalnum() and i.isascii() for i in ids)
    a, b = reg.list()[:2]
    assert reg.by_write_key("x" * 43) is None
    assert reg.webhook_secrets(a.connection_id) != reg.webhook_secrets(b.connection_id)


def test_duplicate_name_refused(data: Path) -> None:
    reg = Registry()
    conn, _ = reg.add("web")
    with pytest.raises(ConnectionConfigError, match="already exists"):
        Registry().add("web")
    with pytest.raises(ConnectionConfigError, match="already exists"):
        reg.add(conn.connection_id)  # a name equal to another's id would make lookups ambiguous
    assert len(reg.list()) == 1


@pytest.mark.parametrize("name", ["", " ", "has space", "-dash", "a/b", "semi;colon", "x" * 65, "é"])
def test_bad_names_refused(data: Path, name: str) -> None:
    with pytest.raises(ConnectionConfigError) as exc:
        Registry().add(name)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize(
    "path",
    [
        "company..id",
        "1company",
        "company.id;drop",
        ".".join(["a"] * 9),
        "",
        "company id",
        " company.id",
        "company.id\n",
        "company.",
        "company.id'); drop table x; --",
    ],
)
def test_bad_trait_paths_refused(data: Path, path: str) -> None:
    reg = Registry()
    with pytest.raises(ConnectionConfigError) as exc:
        reg.add("t", account_mapping="traits", account_id_trait=path)
    assert "\n" not in str(exc.value)
    with pytest.raises(ConnectionConfigError):
        reg.add("t", account_mapping="traits", account_id_trait="company.id", account_name_trait=path)
    assert reg.list() == []


def test_good_trait_paths(data: Path) -> None:
    for p in ["id", "_x", "company.id", "a.b.c.d.e.f.g.h", "Company_2.Account_ID"]:
        assert validate_trait_path(p) == p
    with pytest.raises(ConnectionConfigError, match="too deep"):
        validate_trait_path(".".join(["a"] * 9))


def test_trait_options_need_traits_mapping(data: Path) -> None:
    reg = Registry()
    with pytest.raises(ConnectionConfigError, match="needs an account id trait"):
        reg.add("t", account_mapping="traits")
    with pytest.raises(ConnectionConfigError, match="needs an account id trait"):
        reg.add("t", account_mapping="traits", account_name_trait="company.name")
    for mapping in ("group", "email"):
        with pytest.raises(ConnectionConfigError, match="only to account mapping 'traits'"):
            reg.add("t", account_mapping=mapping, account_id_trait="company.id")
        with pytest.raises(ConnectionConfigError, match="only to account mapping 'traits'"):
            reg.add("t", account_mapping=mapping, account_name_trait="company.name")
    with pytest.raises(ConnectionConfigError, match="unknown account mapping"):
        reg.add("t", account_mapping="domain")
    assert reg.list() == []


def test_secret_file_mode_and_public_file_clean(data: Path) -> None:
    reg = Registry()
    reg.add("a")
    reg.add("b", account_mapping="traits", account_id_trait="company.id", account_name_trait="company.name")
    reg.rotate("a", write_key=True)
    secret_file = data / "connections.secret.json"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    public = (data / "connections.json").read_text()
    secrets_ = all_secrets(data)
    assert len(secrets_) == 6  # 2 x (secret + key) + the rotated pair in grace
    assert not any(s in public for s in secrets_)
    assert {c["name"] for c in json.loads(public)["connections"]} == {"a", "b"}
    assert not [p.name for p in data.iterdir() if p.name.endswith(".tmp")]  # no temp files left behind


def test_secret_file_is_never_created_readable(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mode 0600 from creation: record the mode each os.open of the secrets temp file asks for."""
    modes: list[int] = []
    real_open = os.open

    def spy(path, flags, mode=0o777, *a, **k):
        if "connections.secret.json" in str(path) and flags & os.O_CREAT:
            modes.append(mode)
        return real_open(path, flags, mode, *a, **k)

    monkeypatch.setattr(os, "open", spy)
    Registry().add("a")
    assert modes == [0o600]


def test_secrets_not_in_repr_or_errors(data: Path) -> None:
    reg = Registry()
    conn, creds = reg.add("a")
    for text in (repr(creds), repr(reg), repr(conn), str(conn.public_dict())):
        assert creds.webhook_secret not in text and creds.write_key not in text
    creds2 = reg.rotate("a")
    assert creds2.webhook_secret not in repr(creds2)


def test_rotation_grace_period(data: Path) -> None:
    reg = Registry()
    conn, old = reg.add("web")
    cid = conn.connection_id
    before = datetime.now(UTC)
    new = reg.rotate("web", grace=timedelta(hours=2))
    assert new.webhook_secret != old.webhook_secret
    assert new.write_key == old.write_key and not new.write_key_rotated
    until = datetime.fromisoformat(new.previous_valid_until)
    assert before + timedelta(hours=2) - timedelta(seconds=2) <= until <= datetime.now(UTC) + timedelta(hours=2)

    inside = datetime.now(UTC) + timedelta(hours=1)
    after = datetime.now(UTC) + timedelta(hours=2, minutes=1)
    assert reg.webhook_secrets(cid, now=inside) == [new.webhook_secret.encode(), old.webhook_secret.encode()]
    assert reg.webhook_secrets(cid, now=after) == [new.webhook_secret.encode()]
    # A fresh reader (the receiver) sees the same.
    assert Registry(data).webhook_secrets(cid, now=inside)[1] == old.webhook_secret.encode()
    assert reg.by_write_key(old.write_key, now=after) == conn  # the write key was not rotated


def test_write_key_rotation(data: Path) -> None:
    reg = Registry()
    conn, old = reg.add("web")
    new = reg.rotate("web", write_key=True)  # default grace: 24 h
    assert new.write_key_rotated and new.write_key != old.write_key
    inside = datetime.now(UTC) + timedelta(hours=23)
    after = datetime.now(UTC) + timedelta(hours=25)
    assert reg.by_write_key(new.write_key, now=after) == conn
    assert reg.by_write_key(old.write_key, now=inside) == conn
    assert reg.by_write_key(old.write_key, now=after) is None
    assert reg.webhook_secrets(conn.connection_id, now=after) == [new.webhook_secret.encode()]


def test_rotate_without_grace_and_repeated(data: Path) -> None:
    reg = Registry()
    conn, first = reg.add("web")
    second = reg.rotate("web", grace=timedelta(0), write_key=True)
    assert second.previous_valid_until is None
    assert reg.webhook_secrets(conn.connection_id) == [second.webhook_secret.encode()]
    assert reg.by_write_key(first.write_key) is None
    third = reg.rotate("web", grace=timedelta(hours=1))
    assert reg.webhook_secrets(conn.connection_id) == [
        third.webhook_secret.encode(),
        second.webhook_secret.encode(),
    ]
    with pytest.raises(ConnectionConfigError, match="negative"):
        reg.rotate("web", grace=timedelta(hours=-1))
    with pytest.raises(ConnectionConfigError, match="no connection"):
        reg.rotate("nope")


def test_expired_secrets_are_pruned_on_write(data: Path) -> None:
    reg = Registry()
    reg.add("web")
    reg.rotate("web", grace=timedelta(seconds=0.001), write_key=True)
    reg.add("other")  # any write prunes what has expired
    assert len(all_secrets(data)) == 4


def test_refresh_picks_up_other_writers(data: Path) -> None:
    receiver = Registry(data)
    cli_reg = Registry(data)
    conn, creds = cli_reg.add("web")
    assert receiver.by_id(conn.connection_id) is None  # snapshot until refresh
    receiver.refresh()
    assert receiver.by_id(conn.connection_id) == conn
    assert receiver.by_write_key(creds.write_key) == conn

    # Rapid rotations: same file size, possibly the same coarse mtime; each must still be noticed.
    for _ in range(3):
        new = cli_reg.rotate("web", grace=timedelta(0))
        receiver.refresh()
        assert receiver.webhook_secrets(conn.connection_id) == [new.webhook_secret.encode()]

    cli_reg.remove("web")
    receiver.refresh()
    assert receiver.by_id(conn.connection_id) is None


def test_refresh_is_cheap_when_nothing_changed(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reg = Registry(data)
    reg.add("web")
    calls = []
    monkeypatch.setattr(reg, "_read_files", lambda *a, **k: calls.append(1))
    for _ in range(10):
        reg.refresh()
    assert calls == []


def test_refresh_keeps_last_good_state_on_corrupt_file(data: Path) -> None:
    reg = Registry(data)
    conn, _ = reg.add("web")
    (data / "connections.json").write_text("{not json")
    reg.refresh()
    assert reg.by_id(conn.connection_id) == conn
    with pytest.raises(ConnectionConfigError, match="not valid JSON"):
        Registry(data)


def _add_many(data_dir: str, prefix: str, n: int) -> None:
    reg = Registry(Path(data_dir))
    for i in range(n):
        reg.add(f"{prefix}-{i}")


def test_concurrent_adds_from_processes_all_survive(data: Path) -> None:
    ctx = multiprocessing.get_context("fork")  # cheap: no re-import in the children
    procs = [ctx.Process(target=_add_many, args=(str(data), f"p{p}", 5)) for p in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    reg = Registry(data)
    assert len(reg.list()) == 20
    assert {c.name for c in reg.list()} == {f"p{p}-{i}" for p in range(4) for i in range(5)}
    for c in reg.list():  # every connection kept its secrets too
        assert len(reg.webhook_secrets(c.connection_id)) == 1


# ---- CLI ----------------------------------------------------------------------------------------------------


def test_cli_add_prints_credentials_once(data: Path, runner: CliRunner) -> None:
    r = cli(runner, "add", "web")
    assert r.exit_code == 0, r.output
    conn = Registry(data).get("web")
    secret, key = all_secrets(data)
    assert f"http://127.0.0.1:8080/webhooks/{conn.connection_id}" in r.output
    assert secret in r.output and key in r.output
    assert "shown only this once" in r.output

    r = cli(runner, "list")
    assert r.exit_code == 0
    assert "web" in r.output and conn.connection_id in r.output and "group" in r.output
    assert secret not in r.output and key not in r.output
    r = cli(runner, "list", "--json")
    assert secret not in r.output and key not in r.output


def test_cli_add_json(data: Path, runner: CliRunner) -> None:
    r = cli(
        runner,
        "add",
        "app",
        "--account-mapping",
        "traits",
        "--account-id-trait",
        "company.id",
        "--account-name-trait",
        "company.name",
        "--no-email-fallback",
        "--allow-legacy-batch-signature",
        "--base-url",
        "https://hooks.example.com/",
        "--json",
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert set(doc) == {"connection", "webhook_url", "webhook_secret", "write_key"}
    assert set(doc["connection"]) == PUBLIC_KEYS
    c = doc["connection"]
    assert c["name"] == "app" and c["account_mapping"] == "traits"
    assert c["account_id_trait"] == "company.id" and c["account_name_trait"] == "company.name"
    assert c["email_fallback"] is False and c["allow_legacy_batch_signature"] is True
    assert doc["webhook_url"] == f"https://hooks.example.com/webhooks/{c['connection_id']}"
    assert sorted(all_secrets(data)) == sorted([doc["webhook_secret"], doc["write_key"]])


def test_cli_base_url_from_env(data: Path, runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGMENT_ACCOUNTS_PUBLIC_URL", "https://in.example.org")
    doc = json.loads(cli(runner, "add", "web", "--json").stdout)
    assert doc["webhook_url"].startswith("https://in.example.org/webhooks/")
    r = cli(runner, "add", "x", "--base-url", "ftp://nope")
    assert r.exit_code == 2 and "http(s) URL" in r.output


def test_cli_list_json_and_table(data: Path, runner: CliRunner) -> None:
    r = cli(runner, "list", "--json")
    assert json.loads(r.stdout) == {"connections": [], "public_url": "http://127.0.0.1:8080"}
    assert "No connections yet" in cli(runner, "list").output
    cli(runner, "add", "a")
    cli(runner, "add", "b", "--account-mapping", "traits", "--account-id-trait", "org.id")
    doc = json.loads(cli(runner, "list", "--json").stdout)
    assert [c["name"] for c in doc["connections"]] == ["a", "b"]
    assert all(set(c) >= PUBLIC_KEYS | {"webhook_url", "events_last_day", "grace_until"} for c in doc["connections"])
    listed = cli(runner, "list")
    assert "Segment cannot reach it" in listed.stderr  # the default URL is loopback
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:4] == ["NAME", "MAPPING", "LAST", "EVENT"]
    assert "org.id" in lines[2] and lines[2].startswith("b ")


def test_cli_rotate(data: Path, runner: CliRunner) -> None:
    add = json.loads(cli(runner, "add", "web", "--json").stdout)
    r = cli(runner, "rotate", "web")
    assert r.exit_code == 0, r.output
    assert "valid until" in r.output
    assert add["webhook_secret"] not in r.output and add["write_key"] not in r.output
    new_secret = Registry(data).webhook_secrets(add["connection"]["connection_id"])[0].decode()
    assert new_secret in r.output

    r = cli(runner, "rotate", "web", "--write-key", "--grace-hours", "0", "--json")
    doc = json.loads(r.stdout)
    assert set(doc) == {"connection_id", "name", "webhook_secret", "write_key", "previous_valid_until"}
    assert doc["previous_valid_until"] is None and doc["write_key"] != add["write_key"]
    reg = Registry(data)
    assert reg.by_write_key(doc["write_key"]).name == "web"
    assert reg.by_write_key(add["write_key"]) is None

    doc = json.loads(cli(runner, "rotate", "web", "--json").stdout)
    assert doc["write_key"] is None  # not rotated, so not printed
    assert "no connection named 'nope'" in cli(runner, "rotate", "nope").output
    assert cli(runner, "rotate", "web", "--grace-hours", "-1").exit_code == 2


def test_cli_remove(data: Path, runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    cli(runner, "add", "a")
    cli(runner, "add", "b")
    r = cli(runner, "remove", "a")  # CliRunner's stdin is not a TTY
    assert r.exit_code == 2 and r.output.strip().endswith("pass --yes") and len(r.output.splitlines()) == 1
    assert len(Registry(data).list()) == 2

    monkeypatch.setattr(connections_cli, "_stdin_is_tty", lambda: True)
    r = cli(runner, "remove", "a", input="n\n")
    assert r.exit_code == 1 and len(Registry(data).list()) == 2
    r = cli(runner, "remove", "a", input="y\n")
    assert r.exit_code == 0 and [c.name for c in Registry(data).list()] == ["b"]

    r = cli(runner, "remove", "b", "--yes")
    assert r.exit_code == 0 and "Removed connection 'b'" in r.output
    assert Registry(data).list() == []
    r = cli(runner, "remove", "b", "--yes")
    assert r.exit_code == 1 and "no connection named 'b'" in r.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["add", "x", "--account-id-trait", "company.id"], "only to account mapping 'traits'"),
        (["add", "x", "--account-mapping", "traits"], "needs an account id trait"),
        (["add", "x", "--account-mapping", "traits", "--account-id-trait", "company..id"], "invalid account id"),
        (["add", "x", "--account-mapping", "traits", "--account-id-trait", "a;drop"], "invalid account id"),
        (["add", "has space"], "invalid connection name"),
        (["add", "x", "--account-mapping", "domain"], "Invalid value"),
    ],
)
def test_cli_user_mistakes_are_one_line(data: Path, runner: CliRunner, args: list[str], message: str) -> None:
    r = cli(runner, *args)
    assert r.exit_code in (1, 2)
    assert message in r.output
    assert "Traceback" not in r.output
    assert Registry(data).list() == []


def test_cli_duplicate_name(data: Path, runner: CliRunner) -> None:
    assert cli(runner, "add", "web").exit_code == 0
    r = cli(runner, "add", "web")
    assert r.exit_code == 1
    assert r.output.strip() == "Error: a connection named 'web' already exists"


def test_cli_file_system_errors_are_one_line(data: Path, runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(path: Path, data: bytes, mode: int) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr("pipelines.connections.write_atomically", refuse)
    r = cli(runner, "add", "web")
    assert r.exit_code == 1
    assert (
        r.output.strip()
        == f"Error: cannot update the connection registry {data}/connections.secret.json: Permission denied"
    )


def test_rotate_with_no_grace_revokes_secrets_of_earlier_rotations_too(data: Path) -> None:
    """Rotating after a leak: the leaked secret may be one still inside an earlier rotation's grace period."""
    reg = Registry(data)
    conn, first = reg.add("web")
    cid = conn.connection_id
    reg.rotate("web", grace=timedelta(hours=1), write_key=True)
    assert first.webhook_secret.encode() in reg.webhook_secrets(cid)  # inside the first grace period
    assert reg.by_write_key(first.write_key) == conn
    third = reg.rotate("web", grace=timedelta(0), write_key=True)
    assert third.previous_valid_until is None
    assert reg.webhook_secrets(cid) == [third.webhook_secret.encode()]
    assert reg.by_write_key(first.write_key) is None
    # A shorter grace also caps a longer one granted before.
    _, fourth = reg.add("app")
    reg.rotate("app", grace=timedelta(hours=48))
    short = reg.rotate("app", grace=timedelta(hours=1))
    later = datetime.now(UTC) + timedelta(hours=2)
    assert reg.webhook_secrets(reg.get("app").connection_id, now=later) == [short.webhook_secret.encode()]
    assert fourth.webhook_secret.encode() not in reg.webhook_secrets(reg.get("app").connection_id, now=later)


def test_cli_rotate_wording(data: Path, runner: CliRunner) -> None:
    cli(runner, "add", "web")
    r = cli(runner, "rotate", "web", "--grace-hours", "0")
    assert "The old secret no longer works." in r.output and "Save the secret now: it is shown only" in r.output
    r = cli(runner, "rotate", "web", "--grace-hours", "0", "--write-key")
    assert "The old secret and write key no longer work." in r.output and "they are shown only" in r.output

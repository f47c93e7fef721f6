"""The connection registry: which Segment sources may send to us, and with which credentials.

Two files in the data folder, kept apart on purpose:

- ``connections.json``: the public settings of each connection (name, id, account mapping). Safe to copy into
  the warehouse or print.
- ``connections.secret.json``: webhook secrets and write keys, mode 0600 from the moment it exists. Nothing else
  ever holds a secret, so a leaked public file or warehouse reveals nothing that lets anyone forge events.

Writers (the CLI) take an exclusive ``flock`` on ``connections.lock`` around read-modify-write, so concurrent
invocations cannot lose each other's updates, and replace files atomically (temp file + fsync + rename), so a
reader (the long-running receiver) sees either the old or the new file, never half of one. Secrets are written
before the public file on add and after it on remove, so a connection that a reader can see always has its
secrets.
"""

from __future__ import annotations

import contextlib
import fcntl
import hmac
import json
import logging
import os
import re
import secrets
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pipelines import settings
from pipelines.atomic_file import write_atomically

log = logging.getLogger(__name__)

TRAIT_PATH_RE = r"^[A-Za-z_][A-Za-z0-9_]*([.][A-Za-z_][A-Za-z0-9_]*){0,7}$"
"""Dotted trait paths, up to 8 levels. Paths reach SQL only as data, but we still refuse anything odd early."""

MAX_TRAIT_PATH_CHARS = 255
"""A trait path is a key path, not data: 10,000 characters of it can only be a mistake or an attack."""

NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""Connection names: shown to analysts and typed on command lines, so no spaces or shell-special characters."""

ACCOUNT_MAPPINGS = ("group", "traits", "email")

FILE_VERSION = 1

_TRAIT_PATH = re.compile(TRAIT_PATH_RE)
_NAME = re.compile(NAME_RE)


class ConnectionConfigError(ValueError):
    """A user mistake (bad name, unknown connection, bad trait path...). The message is one clear line."""


# --------------------------------------------------------------------------------------------------------------
# Public value types


@dataclass(frozen=True)
class Connection:
    """One Segment source sending to us. Holds no secret: it may be printed, logged and loaded."""

    connection_id: str
    name: str
    account_mapping: str
    account_id_trait: str | None
    account_name_trait: str | None
    email_fallback: bool
    allow_legacy_batch_signature: bool
    created_at: str

    def public_dict(self) -> dict[str, Any]:
        """What may reach the warehouse or ``connections list --json``."""
        return {
            "connection_id": self.connection_id,
            "name": self.name,
            "account_mapping": self.account_mapping,
            "account_id_trait": self.account_id_trait,
            "account_name_trait": self.account_name_trait,
            "email_fallback": self.email_fallback,
            "allow_legacy_batch_signature": self.allow_legacy_batch_signature,
            "created_at": self.created_at,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Connection:
        return cls(
            connection_id=str(d["connection_id"]),
            name=str(d["name"]),
            account_mapping=str(d["account_mapping"]),
            account_id_trait=d.get("account_id_trait"),
            account_name_trait=d.get("account_name_trait"),
            email_fallback=bool(d.get("email_fallback", True)),
            allow_legacy_batch_signature=bool(d.get("allow_legacy_batch_signature", False)),
            created_at=str(d["created_at"]),
        )


@dataclass(frozen=True)
class Credentials:
    """Fresh credentials, returned by ``add`` and ``rotate`` only. ``repr`` hides the values."""

    webhook_secret: str = field(repr=False)
    write_key: str = field(repr=False)
    write_key_rotated: bool = True
    """False after a rotate without ``write_key=True``: then ``write_key`` is the unchanged current one."""
    previous_valid_until: str | None = None
    """After a rotate: until when (ISO-8601 UTC) the replaced credentials keep working; None if not at all."""


# --------------------------------------------------------------------------------------------------------------
# Secrets as stored


@dataclass(frozen=True)
class _Secret:
    value: str = field(repr=False)
    expires_at: datetime | None  # None: the current one

    def valid_at(self, now: datetime) -> bool:
        return self.expires_at is None or now < self.expires_at

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "expires_at": _iso(self.expires_at) if self.expires_at else None}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> _Secret:
        exp = d.get("expires_at")
        return cls(value=str(d["value"]), expires_at=_parse_time(exp) if exp else None)


@dataclass(frozen=True)
class _SecretSet:
    """Current secret first, then previous ones that may still be inside their grace period."""

    webhook: tuple[_Secret, ...]
    write_keys: tuple[_Secret, ...]

    def pruned(self, now: datetime) -> _SecretSet:
        return _SecretSet(
            tuple(s for s in self.webhook if s.valid_at(now)),
            tuple(s for s in self.write_keys if s.valid_at(now)),
        )


@dataclass(frozen=True)
class _State:
    """An immutable snapshot, swapped as a whole so readers never see a half-applied refresh."""

    connections: dict[str, Connection]  # by id, in creation order
    secrets: dict[str, _SecretSet]  # by id

    def find(self, name_or_id: str) -> Connection | None:
        for c in self.connections.values():
            if c.name == name_or_id:
                return c
        return self.connections.get(name_or_id)


_EMPTY = _State({}, {})

_Seen = dict[Path, tuple[tuple[int, ...] | None, int | None]]
"""Per file: its stat signature when last read (None if absent) and the descriptor we keep open on it."""


# --------------------------------------------------------------------------------------------------------------
# Validation


def validate_name(name: str) -> str:
    if not name or not name.strip():
        raise ConnectionConfigError("connection name is empty")
    if not _NAME.fullmatch(name):
        raise ConnectionConfigError(
            f"invalid connection name {_show(name)}: use 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return name


def validate_trait_path(path: str, option: str = "trait path") -> str:
    """Refuse anything but dotted identifiers (``company.id``), up to 8 levels."""
    if not path or not path.strip():
        raise ConnectionConfigError(f"{option} is empty")
    if len(path) > MAX_TRAIT_PATH_CHARS:
        raise ConnectionConfigError(
            f"{option} {_show(path)} is too long ({len(path)} characters): at most {MAX_TRAIT_PATH_CHARS}"
        )
    if not _TRAIT_PATH.fullmatch(path):
        if _TRAIT_PATH.fullmatch(path.replace(".", "_")) and path.count(".") > 7 and ".." not in path:
            raise ConnectionConfigError(f"{option} {_show(path)} is too deep: at most 8 levels")
        raise ConnectionConfigError(
            f"invalid {option} {_show(path)}: use dotted names such as company.id "
            "(each part starts with a letter or '_', then letters, digits or '_')"
        )
    return path


def validate_mapping(account_mapping: str, account_id_trait: str | None, account_name_trait: str | None) -> None:
    if account_mapping not in ACCOUNT_MAPPINGS:
        raise ConnectionConfigError(
            f"unknown account mapping {_show(account_mapping)}: choose one of {', '.join(ACCOUNT_MAPPINGS)}"
        )
    if account_mapping == "traits":
        if account_id_trait is None:
            raise ConnectionConfigError("account mapping 'traits' needs an account id trait (e.g. company.id)")
        validate_trait_path(account_id_trait, "account id trait")
        if account_name_trait is not None:
            validate_trait_path(account_name_trait, "account name trait")
    elif account_id_trait is not None or account_name_trait is not None:
        raise ConnectionConfigError(
            f"account id/name traits apply only to account mapping 'traits', not {account_mapping!r}"
        )


def validate_connections(connections: list[Connection]) -> None:
    """Refuse settings that the CLI would have refused but a hand edit of connections.json let in.

    A bad trait path reaches the models as data, where it would silently match nothing: every contact of that
    connection would lose its account without a word. The build stops instead, naming the connection.
    """
    for c in connections:
        try:
            validate_mapping(c.account_mapping, c.account_id_trait, c.account_name_trait)
        except ConnectionConfigError as error:
            raise ConnectionConfigError(
                f"connection {_show(c.name)} in connections.json: {error}; fix it with "
                f"`segment-accounts connections remove` and `add`, or by editing the file"
            ) from None


# --------------------------------------------------------------------------------------------------------------
# The registry


class Registry:
    """Connections of one installation, read from and written to its data folder.

    Reads (``get``, ``by_id``, ``webhook_secrets``, ``by_write_key``...) use an in-memory snapshot; a
    long-running process calls ``refresh()`` to pick up changes made by the CLI. Writes re-read the files under
    the lock first, so they always apply to the latest state.
    """

    def __init__(self, data_dir: Path | None = None) -> None:
        self._data = Path(data_dir) if data_dir is not None else settings.data_dir()
        p = settings.Paths(self._data)
        self._public_path = p.connections
        self._secret_path = p.connection_secrets
        self._lock_path = p.registry / "connections.lock"
        self._state = _EMPTY
        # What we last read: the stat signature of each file, plus an open descriptor on it. Holding the
        # descriptor keeps its inode alive, so a replacement file is guaranteed a different inode number even
        # if size and (coarse) mtime happen to be equal.
        self._seen: _Seen = {}
        self._refresh_lock = threading.Lock()
        self._load(force=True, strict=True)

    def __repr__(self) -> str:
        return f"Registry({str(self._lock_path.parent)!r}, {len(self._state.connections)} connections)"

    def close(self) -> None:
        """Release the descriptors held for change detection (optional: also done on garbage collection)."""
        for _sig, fd in self._seen.values():
            if fd is not None:
                os.close(fd)
        self._seen = {}

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    # ---- reads --------------------------------------------------------------------------------------------

    def list(self) -> list[Connection]:
        return list(self._state.connections.values())

    def get(self, name_or_id: str) -> Connection:
        c = self._state.find(name_or_id)
        if c is None:
            raise ConnectionConfigError(f"no connection named {_show(name_or_id)}")
        return c

    def by_id(self, connection_id: str) -> Connection | None:
        return self._state.connections.get(connection_id)

    def webhook_secrets(self, connection_id: str, now: datetime | None = None) -> list[bytes]:
        """HMAC keys to try for this connection: the current one first, then previous ones still in grace."""
        s = self._state.secrets.get(connection_id)
        if s is None or connection_id not in self._state.connections:
            return []
        t = _now(now)
        return [x.value.encode() for x in s.webhook if x.valid_at(t)]

    def by_write_key(self, write_key: str, now: datetime | None = None) -> Connection | None:
        """The connection whose current write key (or a previous one still in grace) this is.

        Compares against every key with ``hmac.compare_digest`` and no early exit, so timing reveals nothing
        about how close a guess was. Installations have a handful of connections: a scan is cheap.
        """
        if not write_key:
            return None
        t = _now(now)
        # surrogatepass: a JSON body can spell a lone surrogate, which no key holds; it must compare (and fail)
        # like any other wrong key, not raise
        guess = write_key.encode("utf-8", "surrogatepass")
        found: Connection | None = None
        state = self._state
        for cid, s in state.secrets.items():
            for k in s.write_keys:
                if hmac.compare_digest(k.value.encode(), guess) and k.valid_at(t) and found is None:
                    found = state.connections.get(cid)
        return found

    def redact(self, data: bytes) -> bytes:
        """``data`` with every webhook secret and write key of any connection (current or in grace) replaced:
        for bytes we keep but could not parse, such as a quarantined body that carried its write key."""
        for s in self._state.secrets.values():
            for x in (*s.webhook, *s.write_keys):
                value = x.value.encode()
                if value and value in data:
                    data = data.replace(value, b"[redacted]")
        return data

    def current_credentials(self, connection_id: str) -> Credentials | None:
        """The current webhook secret and write key, for the admin page's "reveal" (the CLI never shows them)."""
        s = self._state.secrets.get(connection_id)
        if s is None or connection_id not in self._state.connections:
            return None
        webhook = [x.value for x in s.webhook if x.expires_at is None]
        keys = [x.value for x in s.write_keys if x.expires_at is None]
        if not webhook or not keys:
            return None
        return Credentials(webhook_secret=webhook[0], write_key=keys[0], write_key_rotated=False)

    def grace_until(self, connection_id: str, now: datetime | None = None) -> str | None:
        """Until when (ISO-8601 UTC) a replaced secret or write key still works; None when none does."""
        s = self._state.secrets.get(connection_id)
        t = _now(now)
        ends = [x.expires_at for x in (*s.webhook, *s.write_keys) if x.expires_at and x.valid_at(t)] if s else []
        return _iso(max(ends)) if ends else None

    def refresh(self) -> None:
        """Re-read the files if they changed since the last read: two ``stat`` calls when nothing did.

        A broken file after a good one (someone edited it by hand) keeps the last good state and logs a
        warning once, rather than taking the receiver down.
        """
        self._load(force=False, strict=False)

    # ---- writes -------------------------------------------------------------------------------------------

    def add(
        self,
        name: str,
        *,
        account_mapping: str = "group",
        account_id_trait: str | None = None,
        account_name_trait: str | None = None,
        email_fallback: bool = True,
        allow_legacy_batch_signature: bool = False,
    ) -> tuple[Connection, Credentials]:
        validate_name(name)
        validate_mapping(account_mapping, account_id_trait, account_name_trait)
        with self._locked() as state:
            if any(c.name == name or c.connection_id == name for c in state.connections.values()):
                raise ConnectionConfigError(f"a connection named {_show(name)} already exists")
            cid = _new_connection_id(state)
            conn = Connection(
                connection_id=cid,
                name=name,
                account_mapping=account_mapping,
                account_id_trait=account_id_trait,
                account_name_trait=account_name_trait,
                email_fallback=email_fallback,
                allow_legacy_batch_signature=allow_legacy_batch_signature,
                created_at=_iso(_now(None)),
            )
            creds = Credentials(webhook_secret=_new_webhook_secret(), write_key=_new_write_key())
            new_secrets = dict(state.secrets)
            new_secrets[cid] = _SecretSet((_Secret(creds.webhook_secret, None),), (_Secret(creds.write_key, None),))
            # Secrets first: a reader that sees the connection must also find its secrets.
            self._write_secrets(new_secrets)
            self._write_public({**state.connections, cid: conn})
        self._load(force=True, strict=True)
        return conn, creds

    def rotate(
        self, name_or_id: str, *, grace: timedelta = timedelta(hours=24), write_key: bool = False
    ) -> Credentials:
        """A new webhook secret (and write key if asked); the replaced ones stay valid for ``grace``."""
        if grace < timedelta(0):
            raise ConnectionConfigError("grace period cannot be negative")
        with self._locked() as state:
            conn = state.find(name_or_id)
            if conn is None:
                raise ConnectionConfigError(f"no connection named {_show(name_or_id)}")
            now = _now(None)
            until = now + grace
            old = state.secrets.get(conn.connection_id, _SecretSet((), ())).pruned(now)
            new_secret = _new_webhook_secret()
            webhook = (_Secret(new_secret, None), *_demote(old.webhook, until, now))
            if write_key:
                new_key = _new_write_key()
                keys = (_Secret(new_key, None), *_demote(old.write_keys, until, now))
            else:
                keys = old.write_keys
                current = [k for k in keys if k.expires_at is None]
                if current:
                    new_key = current[0].value
                else:  # no current write key (hand-edited file): make one rather than leave it without
                    new_key = _new_write_key()
                    keys = (_Secret(new_key, None), *keys)
            new_secrets = {**state.secrets, conn.connection_id: _SecretSet(webhook, keys)}
            self._write_secrets(new_secrets)
        self._load(force=True, strict=True)
        return Credentials(
            webhook_secret=new_secret,
            write_key=new_key,
            write_key_rotated=write_key,
            previous_valid_until=_iso(until) if grace > timedelta(0) else None,
        )

    def remove(self, name_or_id: str) -> None:
        with self._locked() as state:
            conn = state.find(name_or_id)
            if conn is None:
                raise ConnectionConfigError(f"no connection named {_show(name_or_id)}")
            cid = conn.connection_id
            # Public file first: a reader must never see a connection whose secrets are gone.
            self._write_public({k: v for k, v in state.connections.items() if k != cid})
            self._write_secrets({k: v for k, v in state.secrets.items() if k != cid})
        self._load(force=True, strict=True)

    # ---- files --------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[_State]:
        """Exclusive lock across processes; yields the state as it is on disk now, pruned of expired secrets."""
        self._lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            state = self._read_files()
            now = _now(None)
            yield _State(state.connections, {k: v.pruned(now) for k, v in state.secrets.items()})
        finally:
            os.close(fd)  # closing releases the flock

    def _write_public(self, connections: dict[str, Connection]) -> None:
        doc = {"version": FILE_VERSION, "connections": [c.public_dict() for c in connections.values()]}
        write_atomically(self._public_path, _dumps(doc), 0o600)

    def _write_secrets(self, secret_sets: dict[str, _SecretSet]) -> None:
        doc = {
            "version": FILE_VERSION,
            "connections": {
                cid: {
                    "webhook_secrets": [x.to_json() for x in s.webhook],
                    "write_keys": [x.to_json() for x in s.write_keys],
                }
                for cid, s in secret_sets.items()
            },
        }
        write_atomically(self._secret_path, _dumps(doc), 0o600)

    def _load(self, *, force: bool, strict: bool) -> None:
        paths = (self._public_path, self._secret_path)
        if not force and all(_stat_sig(p) == self._seen.get(p, (None, None))[0] for p in paths):
            return
        with self._refresh_lock:
            opened: _Seen = {}
            try:
                state = self._read_files(opened)
            except (ConnectionConfigError, OSError) as exc:
                for _sig, fd in opened.values():
                    if fd is not None:
                        os.close(fd)
                if strict:
                    raise
                log.warning("connection registry not reloaded, keeping the previous one: %s", exc)
                # Remember what failed so we warn once per change, not once per request.
                failed = {p: (_stat_sig(p), None) for p in paths}
                self.close()
                self._seen = failed
                return
            self.close()
            self._seen = opened
            self._state = state

    def _read_files(self, opened: _Seen | None = None) -> _State:
        public = _read_json(self._public_path, opened)
        secret = _read_json(self._secret_path, opened)
        try:
            conns = [Connection.from_dict(d) for d in (public or {}).get("connections", [])]
            sets = {
                str(cid): _SecretSet(
                    tuple(_Secret.from_json(x) for x in d.get("webhook_secrets", [])),
                    tuple(_Secret.from_json(x) for x in d.get("write_keys", [])),
                )
                for cid, d in (secret or {}).get("connections", {}).items()
            }
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            # Name the file and the kind of problem only: the values may be secrets.
            raise ConnectionConfigError(
                f"connection registry in {self._lock_path.parent} is malformed ({type(exc).__name__}); "
                "fix or restore connections.json / connections.secret.json"
            ) from None
        return _State({c.connection_id: c for c in conns}, sets)


# --------------------------------------------------------------------------------------------------------------
# Helpers


def _demote(old: tuple[_Secret, ...], until: datetime, now: datetime) -> tuple[_Secret, ...]:
    """Every replaced secret expires at ``until`` at the latest, the current one and earlier ones alike.

    A rotation is often the answer to a leak, and the leaked secret may be one still inside an earlier rotation's
    grace period: keeping its own (later) expiry would leave it valid, and a grace of 0 must revoke them all.
    """
    out = []
    for s in old:
        if s.expires_at is None or s.expires_at > until:
            s = replace(s, expires_at=until)
        if s.valid_at(now):
            out.append(s)
    return tuple(out)


def _new_connection_id(state: _State) -> str:
    # Hex so it never starts with '-' (it is typed on command lines) and is URL-safe; 80 bits.
    while True:
        cid = secrets.token_hex(10)
        if cid not in state.connections and all(c.name != cid for c in state.connections.values()):
            return cid


def _new_webhook_secret() -> str:
    return secrets.token_hex(32)  # 256 bits; hex survives copy-paste into Segment's settings


def _new_write_key() -> str:
    return secrets.token_urlsafe(32)  # 256 bits; no ':' so it fits Basic auth


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    return now if now.tzinfo is not None else now.replace(tzinfo=UTC)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _parse_time(s: str) -> datetime:
    return _now(datetime.fromisoformat(s))


def _show(value: str, limit: int = 60) -> str:
    """A user-supplied value for an error message: quoted, escaped (one line), truncated."""
    text = value if len(value) <= limit else value[:limit] + "..."
    return repr(text)


def _dumps(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=False) + "\n").encode()


def _stat_sig(path: Path) -> tuple[int, ...] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _read_json(path: Path, opened: _Seen | None) -> Any:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        if opened is not None:
            opened[path] = (None, None)
        return None
    keep = False
    try:
        st = os.fstat(fd)
        if opened is not None:
            opened[path] = ((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns), fd)
            keep = True
        if path.name.endswith(".secret.json") and stat.S_IMODE(st.st_mode) & 0o077:
            log.warning("%s is readable by other users; run: chmod 600 %s", path, path)
        with os.fdopen(os.dup(fd), "rb") as f:
            raw = f.read()
    finally:
        if not keep:
            os.close(fd)
    try:
        doc = json.loads(raw)
    except ValueError:
        raise ConnectionConfigError(f"{path} is not valid JSON; fix or restore it") from None
    if not isinstance(doc, dict):
        raise ConnectionConfigError(f"{path} is not a JSON object; fix or restore it")
    return doc

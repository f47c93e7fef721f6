"""The admin token: created in the data folder on the first ``serve``, printed once, rotatable.

Only its SHA-256 is stored (``admin.token``, mode 0600), so the file never holds the credential itself: a lost
token is replaced with ``segment-accounts admin rotate-token``, which also ends every browser session, because the
session cookie and the CSRF token are both derived from the stored hash. Every comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path

from pipelines.atomic_file import write_atomically

TOKEN_FILE = "admin.token"
_PREFIX = "sha256:"


def token_path(data_dir: Path) -> Path:
    return Path(data_dir) / TOKEN_FILE


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def stored_hash(data_dir: Path) -> str | None:
    """The stored hash, or None when no token exists yet (or the file is unreadable: then nobody gets in)."""
    try:
        text = token_path(data_dir).read_text().strip()
    except OSError:
        return None
    return text[len(_PREFIX) :] if text.startswith(_PREFIX) and len(text) == len(_PREFIX) + 64 else None


def rotate(data_dir: Path) -> str:
    """A new token (returned, to be shown once); the old one and every session made with it stop working."""
    token = secrets.token_urlsafe(32)
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    write_atomically(token_path(data_dir), f"{_PREFIX}{_digest(token)}\n".encode(), 0o600)
    return token


def ensure(data_dir: Path) -> str | None:
    """Create the token on first start and return it; None when one exists already."""
    if stored_hash(data_dir) is not None:
        return None
    return rotate(data_dir)


def token_ok(data_dir: Path, given: str | None) -> bool:
    stored = stored_hash(data_dir)
    if stored is None or not given:
        return False
    return hmac.compare_digest(_digest(given), stored)


def derived(data_dir: Path, purpose: str) -> str | None:
    """A value bound to the current token (the session cookie, the CSRF token): rotating changes them all."""
    stored = stored_hash(data_dir)
    if stored is None:
        return None
    return hmac.new(bytes.fromhex(stored), purpose.encode(), hashlib.sha256).hexdigest()


def derived_ok(data_dir: Path, purpose: str, given: str | None) -> bool:
    expected = derived(data_dir, purpose)
    if expected is None or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())

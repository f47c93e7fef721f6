"""The receiver's public base URL: set once, used by ``connections add``, ``connections list`` and the admin page.

Segment's servers must reach the webhook URL, so a URL on loopback (the default, ``http://127.0.0.1:8080``) only
works for local tests: every place that prints a URL warns about it. Order of precedence: an explicit option,
then ``$SEGMENT_ACCOUNTS_PUBLIC_URL``, then the one ``serve --public-url`` saved in ``public_url.json`` in the data
folder, then the default.
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pipelines.atomic_file import write_atomically
from pipelines.connections import ConnectionConfigError

DEFAULT_URL = "http://127.0.0.1:8080"
ENV_VAR = "SEGMENT_ACCOUNTS_PUBLIC_URL"
SETTING_FILE = "public_url.json"
LOOPBACK_WARNING = (
    "the public URL {url} is on this machine only: Segment cannot reach it. Put a TLS reverse proxy in front "
    "and run `segment-accounts serve --public-url https://your-host` (see docs/segment-setup.md)."
)


@dataclass(frozen=True)
class PublicUrl:
    url: str
    source: str  # option, environment, setting or default

    @property
    def is_loopback(self) -> bool:
        return is_loopback(self.url)

    def warning(self) -> str | None:
        return LOOPBACK_WARNING.format(url=self.url) if self.is_loopback else None

    def webhook_url(self, connection_id: str) -> str:
        return f"{self.url}/webhooks/{connection_id}"


def validate(value: str) -> str:
    """An absolute http(s) URL with a host and no query or fragment, without its trailing slash."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ConnectionConfigError(f"{value!r} is not an http(s) URL such as https://segment.example.com")
    return value.strip().rstrip("/")


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def save(data_dir: Path, url: str) -> str:
    url = validate(url)
    data_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(data_dir / SETTING_FILE, (json.dumps({"public_url": url}) + "\n").encode(), 0o644)
    return url


def resolve(data_dir: Path, explicit: str | None = None) -> PublicUrl:
    if explicit:
        return PublicUrl(validate(explicit), "option")
    if os.environ.get(ENV_VAR):
        return PublicUrl(validate(os.environ[ENV_VAR]), "environment")
    try:
        saved = json.loads((data_dir / SETTING_FILE).read_text()).get("public_url")
    except (OSError, ValueError, AttributeError):
        saved = None
    if isinstance(saved, str) and saved:
        return PublicUrl(validate(saved), "setting")
    return PublicUrl(DEFAULT_URL, "default")

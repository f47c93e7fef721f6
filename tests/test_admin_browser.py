"""The integrations page in a real browser: Debian's Chromium, driven by playwright (no browser download).

What a new user does after `segment-accounts serve`: open the printed link, add a connection, copy its webhook
URL and secret, let Segment send (here: a signed webhook, a signed but invalid event and a wrongly signed one),
watch the counters and the tail move without reloading, rotate the secret with no grace and see the old one
refused. Also: no token, no page; no CSRF token, no form. The screenshot in docs/ is taken here.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(180)

BIN = Path(sys.executable).parent / "segment-accounts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# The README's screenshot is refreshed only on request, so a test run never leaves the checkout modified.
DOCS_SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "admin-page.png"
UPDATE_SCREENSHOT = os.environ.get("SEGMENT_ACCOUNTS_UPDATE_SCREENSHOT") == "1"
CHROMIUM_ARGS = [
    "--no-sandbox",  # the suite runs as root in CI containers
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, data=body, method="POST", headers={"content-type": "application/json"})
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def get_status(url: str) -> int:
    """The HTTP status, or 0 when nothing answers (yet)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except (urllib.error.URLError, ConnectionError):
        return 0


def signed(body: bytes, secret: str) -> dict[str, str]:
    return {"x-signature": hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()}


class Served:
    """`segment-accounts serve` with its admin listener, on free loopback ports."""

    def __init__(self, data: Path) -> None:
        self.port, self.admin_port = free_port(), free_port()
        self.log = data.parent / "serve.log"
        env = {**os.environ, "SEGMENT_ACCOUNTS_DATA": str(data)}
        self.proc = subprocess.Popen(
            [str(BIN), "serve", "--port", str(self.port), "--admin-port", str(self.admin_port)],
            env=env,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        self.login_link = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not self.login_link:
            assert self.proc.poll() is None, self.log.read_text()
            found = re.search(r"Admin page: (http://\S+/login\?token=\S+)", self.log.read_text())
            admin_up = found and get_status(f"http://127.0.0.1:{self.admin_port}/") == 401
            if admin_up and get_status(f"http://127.0.0.1:{self.port}/health") == 200:
                self.login_link = found.group(1)
            time.sleep(0.1)
        assert self.login_link, self.log.read_text()
        self.admin = f"http://127.0.0.1:{self.admin_port}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


@pytest.fixture
def served(data_dir: Path) -> Iterator[Served]:
    server = Served(data_dir)
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (make test installs it)")
def test_integrations_page_in_a_browser(served: Served, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    # Refused without the token, whatever the path; the receiver's port has no admin page at all.
    assert get_status(f"{served.admin}/") == 401
    assert get_status(f"{served.admin}/api/activity") == 401
    assert get_status(f"{served.admin}/login?token=not-the-token") == 401
    assert get_status(f"http://127.0.0.1:{served.port}/") == 404

    with tempfile.TemporaryDirectory() as profile, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            page = context.new_page()
            page.goto(served.login_link)
            assert page.url == f"{served.admin}/", "the token must leave the address bar"
            expect(page.locator("#loopback-warning")).to_contain_text("Segment cannot reach it")

            # Add a connection through the form, as validated as the CLI: a bad trait path is refused first.
            page.fill("input[name=name]", "web-shop")
            page.select_option("select[name=account_mapping]", "traits")
            page.fill("input[name=account_id_trait]", "company..id")
            page.click("#add button[type=submit]")
            expect(page.locator(".error")).to_contain_text("invalid account id trait")
            page.fill("input[name=account_id_trait]", "company.id")
            page.click("#add button[type=submit]")
            expect(page.locator(".notice")).to_contain_text("Added web-shop")
            card = page.locator("section.connection", has_text="web-shop")
            url = card.locator("[data-field=webhook-url]").inner_text()
            secret = card.locator("[data-field=webhook-secret]").inner_text()
            write_key = card.locator("[data-field=write-key]").inner_text()
            assert url.startswith("http://127.0.0.1:8080/webhooks/"), url  # the (warned) default public URL
            url = url.replace("127.0.0.1:8080", f"127.0.0.1:{served.port}")

            # From here on the page must update itself: a reload would lose this marker.
            page.evaluate("window.__notReloaded = true")
            good = json.dumps({"type": "track", "event": "Order Completed", "userId": "u1", "messageId": "m-1"})
            bad = json.dumps({"type": "track", "userId": "u1", "messageId": "m-2"}).encode()
            assert post(url, good.encode(), signed(good.encode(), secret)) == 200
            assert post(url, bad, signed(bad, secret)) == 200  # accepted request, the event quarantined
            assert post(url, bad, signed(bad, "not-the-secret")) == 401
            tracked = json.dumps({"writeKey": write_key, "event": "Signed Up", "userId": "u2"}).encode()
            assert post(f"http://127.0.0.1:{served.port}/v1/track", tracked) == 200

            expect(card.locator("[data-stat=events_last_hour]")).to_have_text("2", timeout=15_000)
            expect(card.locator("[data-stat=rejected_last_day]")).to_have_text("1")
            expect(card.locator("[data-stat=refused_last_day]")).to_have_text("1")
            expect(card.locator("table.rejects")).to_contain_text("track without event")
            expect(card.locator("table.tail tbody tr")).to_have_count(4)
            expect(card.locator("table.tail")).to_contain_text("track Order Completed")
            expect(card.locator("table.tail")).to_contain_text("wrong signature")
            assert page.evaluate("window.__notReloaded") is True
            expect(card.locator("table.tail")).to_contain_text("track Signed Up")
            with urllib.request.urlopen(
                urllib.request.Request(
                    f"{served.admin}/api/activity", headers={"authorization": f"Bearer {_token(served)}"}
                )
            ) as response:
                activity = response.read().decode()
            assert "Signed Up" in activity and write_key not in activity, "the tail never shows a write key"
            card.locator("table.tail details").first.click()
            secrets_shown = [card.locator("[data-field=webhook-secret]"), card.locator("[data-field=write-key]")]
            screenshot = DOCS_SCREENSHOT if UPDATE_SCREENSHOT else tmp_path / "admin-page.png"
            page.screenshot(path=str(screenshot), full_page=True, mask=secrets_shown)
            assert screenshot.stat().st_size > 10_000, "the page rendered"

            # A form without its CSRF token is refused, even from the signed-in browser.
            forged = context.request.post(f"{served.admin}/connections", form={"name": "forged"})
            assert forged.status == 403
            assert "CSRF" in forged.text()
            page.reload()
            assert page.locator("section.connection", has_text="forged").count() == 0

            # Rotate with no grace: the new secret works at once, the old one is refused.
            card = page.locator("section.connection", has_text="web-shop")
            card.locator("input[name=grace_hours]").fill("0")
            card.locator("form[action$='/rotate'] input[name=confirm]").check()
            card.locator("form[action$='/rotate'] button[type=submit]").click()
            expect(page.locator(".notice")).to_contain_text("the old secret no longer works")
            new_secret = card.locator("[data-field=webhook-secret]").inner_text()
            assert new_secret != secret
            again = json.dumps({"type": "track", "event": "Again", "userId": "u1", "messageId": "m-3"}).encode()
            assert post(url, again, signed(again, secret)) == 401
            assert post(url, again, signed(again, new_secret)) == 200
            expect(card.locator("[data-stat=events_last_hour]")).to_have_text("3", timeout=15_000)
            expect(card.locator("[data-stat=refused_last_day]")).to_have_text("2")
        finally:
            context.close()


def _token(served: Served) -> str:
    return served.login_link.split("token=", 1)[1]

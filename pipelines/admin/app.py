"""The admin listener's ASGI app: the integrations page, its forms and the JSON the page polls.

Kept apart from the public receiver (its own app, port and code): nothing here is reachable on the receiver's
port. Every request but the static files and the sign-in needs the session cookie (or ``Authorization: Bearer
<admin token>``); every POST needs the CSRF token; every comparison is constant-time; every response carries
a Content-Security-Policy without inline script and forbids framing.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from datetime import timedelta
from http.cookies import SimpleCookie
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import orjson

from pipelines import activity, public_url, settings
from pipelines.admin import token
from pipelines.admin.pages import ConnectionView, PageState, login_page, main_page
from pipelines.connections import ConnectionConfigError, Credentials, Registry

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

log = logging.getLogger("pipelines.admin")

SESSION_COOKIE = "sa_admin"
LOGIN_COOKIE = "sa_login"
MAX_FORM_BYTES = 64 * 1024
SECURITY_HEADERS = (
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),  # no-referrer would make forms send "Origin: null"
    (b"cache-control", b"no-store"),
)
STATIC = {"/admin.js": "text/javascript", "/admin.css": "text/css"}


class Response:
    def __init__(
        self, status: int, body: bytes | str, content_type: str = "text/html; charset=utf-8", **headers: str
    ) -> None:
        self.status = status
        self.body = body.encode() if isinstance(body, str) else body
        self.headers = [(b"content-type", content_type.encode())]
        self.headers += [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]

    def cookie(self, name: str, value: str, max_age: int | None = None) -> Response:
        attrs = f"{name}={value}; Path=/; HttpOnly; SameSite=Strict"
        if max_age is not None:
            attrs += f"; Max-Age={max_age}"
        self.headers.append((b"set-cookie", attrs.encode()))
        return self


def _json(doc: Any, status: int = 200) -> Response:
    return Response(status, orjson.dumps(doc), "application/json")


def _plain(status: int, text: str) -> Response:
    return Response(status, text, "text/plain; charset=utf-8")


class AdminApp:
    """ASGI app of the admin listener for one data folder."""

    def __init__(self, data_dir: Path | None = None) -> None:
        self.data = Path(data_dir) if data_dir is not None else settings.data_dir()
        self._registry: Registry | None = None

    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = Registry(self.data)
        self._registry.refresh()  # pick up `connections add/rotate` run from the CLI
        return self._registry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        try:
            response = await self._dispatch(scope, receive)
        except _Refused as refused:
            response = refused.response
        except Exception:
            log.exception("admin page error on %s %s", scope.get("method"), scope.get("path"))
            response = _plain(500, "internal error; see the server log")
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": [
                    *response.headers,
                    *SECURITY_HEADERS,
                    (b"content-length", b"%d" % len(response.body)),
                ],
            }
        )
        await send({"type": "http.response.body", "body": response.body})

    # ---- routing ------------------------------------------------------------------------------------------

    async def _dispatch(self, scope: Scope, receive: Receive) -> Response:
        method, path = scope["method"], scope["path"]
        if path in STATIC and method in ("GET", "HEAD"):
            text = resources.files("pipelines.admin").joinpath("static", path[1:]).read_bytes()
            return Response(200, text, f"{STATIC[path]}; charset=utf-8")
        if path == "/login":
            return await self._login(scope, receive)
        if not self._authenticated(scope):
            if method == "GET" and path == "/":
                return self._login_form(401, "")
            return _plain(401, "admin token required: sign in at /login")
        if method == "GET" and path == "/":
            return self._page(PageState(**self._state_args()))
        if method == "GET" and path == "/api/activity":
            return _json(self._activity_doc())
        if method == "POST":
            form = await _read_form(receive, scope)
            self._check_post(scope, form)
            if path == "/connections":
                return self._add(form)
            parts = path.strip("/").split("/")
            if len(parts) == 3 and parts[0] == "connections":
                action = {"reveal": self._reveal, "rotate": self._rotate, "remove": self._remove}.get(parts[2])
                if action is not None:
                    return action(parts[1], form)
        return _plain(404, "no such page")

    # ---- authentication -----------------------------------------------------------------------------------

    def _authenticated(self, scope: Scope) -> bool:
        headers = _headers(scope)
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            return token.token_ok(self.data, auth[7:].strip())
        session = _cookies(headers).get(SESSION_COOKIE)
        return token.derived_ok(self.data, "session", session)

    def _login_form(self, status: int, error: str) -> Response:
        nonce = secrets.token_urlsafe(24)  # double-submit: the form's value must match this cookie
        return Response(status, login_page(nonce, error)).cookie(LOGIN_COOKIE, nonce, max_age=3600)

    async def _login(self, scope: Scope, receive: Receive) -> Response:
        """``GET /login?token=...`` (the link `serve` prints) or the sign-in form; both set the session cookie."""
        if scope["method"] == "GET":
            given = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [""])[0]
            if not given:
                return self._login_form(200, "")
        elif scope["method"] == "POST":
            form = await _read_form(receive, scope)
            cookie = _cookies(_headers(scope)).get(LOGIN_COOKIE, "")
            if not cookie or not secrets.compare_digest(form.get("csrf", "").encode(), cookie.encode()):
                return _plain(403, "sign-in form expired or forged (CSRF check failed): reload /login")
            given = form.get("token", "")
        else:
            return _plain(405, "use GET or POST")
        if not token.token_ok(self.data, given):
            await asyncio.sleep(0.2)  # slows guessing; the token has 256 bits anyway
            return self._login_form(401, "wrong admin token")
        session = token.derived(self.data, "session") or ""
        # 303 to the page, so the token leaves the address bar and the history
        return Response(303, "", location="/").cookie(SESSION_COOKIE, session).cookie(LOGIN_COOKIE, "", 0)

    def _check_post(self, scope: Scope, form: dict[str, str]) -> None:
        if not token.derived_ok(self.data, "csrf", form.get("csrf")):
            raise _Refused(_plain(403, "form refused: missing or wrong CSRF token; reload the page"))
        origin = _headers(scope).get("origin")
        host = _headers(scope).get("host")
        if origin and host and origin.split("://", 1)[-1] != host:
            raise _Refused(_plain(403, "form refused: posted from another site"))

    # ---- views ----------------------------------------------------------------------------------------------

    def _state_args(self, revealed: dict[str, Credentials] | None = None) -> dict[str, Any]:
        registry = self.registry()
        url = public_url.resolve(self.data)
        summaries = activity.summaries(self.data)
        views = [
            ConnectionView(
                connection=c,
                webhook_url=url.webhook_url(c.connection_id),
                grace_until=registry.grace_until(c.connection_id),
                activity=summaries.get(c.connection_id, activity.ConnectionActivity(c.connection_id)),
                tail=activity.tail(self.data, connection_ids=[c.connection_id], kinds=activity.KINDS),
                revealed=(revealed or {}).get(c.connection_id),
            )
            for c in registry.list()
        ]
        return {"public_url": url, "connections": views, "csrf": token.derived(self.data, "csrf") or ""}

    def _page(self, state: PageState, status: int = 200) -> Response:
        return Response(status, main_page(state))

    def _activity_doc(self) -> dict[str, Any]:
        """What the page's script polls: counters, rejects and the tail of each connection. Payloads included:
        this is the admin listener, behind the token."""
        summaries = activity.summaries(self.data)
        return {
            "connections": {
                c.connection_id: {
                    **summaries.get(c.connection_id, activity.ConnectionActivity(c.connection_id)).as_dict(),
                    "grace_until": self.registry().grace_until(c.connection_id),
                    "tail": [
                        t.as_dict()
                        for t in activity.tail(self.data, connection_ids=[c.connection_id], kinds=activity.KINDS)
                    ],
                }
                for c in self.registry().list()
            }
        }

    # ---- actions --------------------------------------------------------------------------------------------

    def _add(self, form: dict[str, str]) -> Response:
        mapping = form.get("account_mapping", "group")
        try:
            conn, creds = self.registry().add(
                form.get("name", "").strip(),
                account_mapping=mapping,
                account_id_trait=form.get("account_id_trait", "").strip() or None,
                account_name_trait=form.get("account_name_trait", "").strip() or None,
                email_fallback=form.get("email_fallback") == "yes",
            )
        except ConnectionConfigError as error:
            return self._page(PageState(**self._state_args(), error=str(error), form=form), 400)
        notice = f"Added {conn.name}: copy its webhook URL and secret into Segment now."
        return self._page(PageState(**self._state_args({conn.connection_id: creds}), notice=notice))

    def _reveal(self, connection_id: str, form: dict[str, str]) -> Response:
        registry = self.registry()
        creds = registry.current_credentials(connection_id)
        if creds is None:
            return _plain(404, "no such connection")
        return self._page(PageState(**self._state_args({connection_id: creds})))

    def _rotate(self, connection_id: str, form: dict[str, str]) -> Response:
        if form.get("confirm") != "yes":
            return self._page(PageState(**self._state_args(), error="Rotation not confirmed: tick the box."), 400)
        try:
            hours = float(form.get("grace_hours", "24"))
            if not 0 <= hours <= 24 * 365:
                raise ValueError
        except ValueError:
            return self._page(PageState(**self._state_args(), error="Grace hours: a number from 0 to 8760."), 400)
        registry = self.registry()
        try:
            conn = registry.get(connection_id)
            creds = registry.rotate(
                connection_id, grace=timedelta(hours=hours), write_key=form.get("write_key") == "yes"
            )
        except ConnectionConfigError as error:
            return self._page(PageState(**self._state_args(), error=str(error)), 400)
        until = creds.previous_valid_until
        notice = f"Rotated {conn.name}: " + (
            f"the old secret works until {until}." if until else "the old secret no longer works."
        )
        return self._page(PageState(**self._state_args({conn.connection_id: creds}), notice=notice))

    def _remove(self, connection_id: str, form: dict[str, str]) -> Response:
        if form.get("confirm") != "yes":
            return self._page(PageState(**self._state_args(), error="Removal not confirmed: tick the box."), 400)
        registry = self.registry()
        try:
            conn = registry.get(connection_id)
            registry.remove(connection_id)
        except ConnectionConfigError as error:
            return self._page(PageState(**self._state_args(), error=str(error)), 400)
        return self._page(PageState(**self._state_args(), notice=f"Removed {conn.name}."))


class _Refused(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _cookies(headers: dict[str, str]) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except Exception:  # a malformed Cookie header is no session
        return {}
    return {k: m.value for k, m in jar.items()}


async def _read_form(receive: Receive, scope: Scope) -> dict[str, str]:
    """An urlencoded form, bounded; the last value wins for a repeated field."""
    content_type = _headers(scope).get("content-type", "")
    if not content_type.startswith("application/x-www-form-urlencoded"):
        raise _Refused(_plain(415, "forms must be application/x-www-form-urlencoded"))
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if len(body) > MAX_FORM_BYTES:
            raise _Refused(_plain(413, "form too large"))
        if not message.get("more_body"):
            break
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[-1] for k, v in fields.items()}


def create_app() -> AdminApp:
    return AdminApp()

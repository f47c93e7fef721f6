"""Server-rendered HTML of the integrations page. Every value goes through ``_e`` (HTML-escaped); no inline
script or style, so the Content-Security-Policy can forbid both."""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import dataclass, field

from pipelines.activity import ConnectionActivity, TailItem, iso_us
from pipelines.connections import ACCOUNT_MAPPINGS, Connection, Credentials
from pipelines.public_url import PublicUrl


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


@dataclass(frozen=True)
class ConnectionView:
    connection: Connection
    webhook_url: str
    grace_until: str | None
    activity: ConnectionActivity
    tail: list[TailItem]
    revealed: Credentials | None = None


@dataclass(frozen=True)
class PageState:
    public_url: PublicUrl
    connections: list[ConnectionView]
    csrf: str
    notice: str = ""
    error: str = ""
    form: dict[str, str] = field(default_factory=dict)  # the add form's values after a refused submit


def _layout(title: str, body: str) -> str:
    return (
        "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{_e(title)}</title><link rel='stylesheet' href='/admin.css'>"
        "<script src='/admin.js' defer></script></head>"
        f"<body><header><h1>{_e(title)}</h1></header><main>{body}</main></body></html>\n"
    )


def login_page(login_csrf: str, error: str = "") -> str:
    message = f"<p class='error' role='alert'>{_e(error)}</p>" if error else ""
    return _layout(
        "segment-accounts: sign in",
        f"{message}<form method='post' action='/login' class='card'>"
        f"<input type='hidden' name='csrf' value='{_e(login_csrf)}'>"
        "<label>Admin token <input type='password' name='token' autocomplete='off' required></label>"
        "<button type='submit'>Sign in</button>"
        "<p class='hint'><code>segment-accounts serve</code> printed the token on its first start; "
        "<code>segment-accounts admin rotate-token</code> makes a new one.</p></form>",
    )


def main_page(state: PageState) -> str:
    parts = []
    if state.notice:
        parts.append(f"<p class='notice' role='status'>{_e(state.notice)}</p>")
    if state.error:
        parts.append(f"<p class='error' role='alert'>{_e(state.error)}</p>")
    parts.append(_public_url(state.public_url))
    if not state.connections:
        parts.append("<p class='hint'>No connections yet: add one below.</p>")
    parts += [_connection(v, state.csrf) for v in state.connections]
    parts.append(_add_form(state.csrf, state.form))
    return _layout("segment-accounts: integrations", "".join(parts))


def _public_url(url: PublicUrl) -> str:
    warning = url.warning()
    note = f"<p class='warning' role='alert' id='loopback-warning'>{_e(warning)}</p>" if warning else ""
    return (
        f"<section class='card' id='public-url'><h2>Public URL</h2><p><code>{_e(url.url)}</code> "
        f"<span class='hint'>({_e(url.source)}; set it with <code>segment-accounts serve --public-url "
        "https://your-host</code>)</span></p>"
        f"{note}</section>"
    )


def _hidden(csrf: str) -> str:
    return f"<input type='hidden' name='csrf' value='{_e(csrf)}'>"


def _secret_row(label: str, field_name: str, value: str | None, reveal_action: str, csrf: str) -> str:
    if value is not None:
        shown = f"<code data-field='{field_name}'>{_e(value)}</code> <button type='button' data-copy>Copy</button>"
    else:
        shown = (
            f"<form method='post' action='{_e(reveal_action)}' class='inline'>{_hidden(csrf)}"
            "<span class='masked'>••••••••</span> <button type='submit'>Reveal</button></form>"
        )
    return f"<dt>{_e(label)}</dt><dd>{shown}</dd>"


def _connection(v: ConnectionView, csrf: str) -> str:
    c, a = v.connection, v.activity
    cid = c.connection_id
    base = f"/connections/{cid}"
    mapping = c.account_mapping
    if mapping == "traits":
        mapping += f" (id: {c.account_id_trait}" + (f", name: {c.account_name_trait}" if c.account_name_trait else "")
        mapping += ")"
    mapping += ", email domain fallback" if c.email_fallback else ", no email fallback"
    creds = v.revealed
    return (
        f"<section class='card connection' id='connection-{_e(cid)}' data-connection-id='{_e(cid)}'>"
        f"<h2>{_e(c.name)} <span class='hint'>id {_e(cid)}</span></h2><dl>"
        f"<dt>Account mapping</dt><dd>{_e(mapping)}</dd>"
        f"<dt>Webhook URL</dt><dd><code data-field='webhook-url'>{_e(v.webhook_url)}</code> "
        "<button type='button' data-copy>Copy</button></dd>"
        + _secret_row(
            "Webhook secret", "webhook-secret", creds.webhook_secret if creds else None, f"{base}/reveal", csrf
        )
        + _secret_row("Write key", "write-key", creds.write_key if creds else None, f"{base}/reveal", csrf)
        + f"<dt>Old secret valid until</dt><dd data-field='grace-until'>{_e(v.grace_until or '-')}</dd></dl>"
        + _status(a)
        + _rejects(a)
        + _tail(v.tail)
        + _rotate_form(base, csrf)
        + _remove_form(base, c.name, csrf)
        + "</section>"
    )


def _status(a: ConnectionActivity) -> str:
    stats = (
        ("events_last_hour", "Events, last hour", a.events_last_hour),
        ("events_last_day", "Events, last 24 h", a.events_last_day),
        ("rejected_last_day", "Rejected, last 24 h", a.rejected_last_day),
        ("refused_last_day", "Refused (bad signature), last 24 h", a.refused_last_day),
        ("last_event_at", "Last event", iso_us(a.last_event_us) or "never"),
    )
    cells = "".join(
        f"<div><dt>{_e(label)}</dt><dd data-stat='{key}'>{_e(value)}</dd></div>" for key, label, value in stats
    )
    return f"<h3>Live status</h3><dl class='stats'>{cells}</dl>"


def _rejects(a: ConnectionActivity) -> str:
    rows = "".join(
        f"<tr><td>{_e(r.reason)}</td><td>{r.count}</td><td>{_details(r.sample)}</td></tr>" for r in a.rejects
    )
    return (
        "<h3>Rejected in the last 24 h, by reason</h3><table class='rejects'>"
        f"<thead><tr><th>Reason</th><th>Count</th><th>Latest sample</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _details(payload: str) -> str:
    if not payload:
        return "<span class='hint'>not kept</span>"
    return f"<details><summary>payload</summary><pre>{_e(payload)}</pre></details>"


def _tail(items: Iterable[TailItem]) -> str:
    rows = "".join(
        f"<tr class='kind-{_e(t.kind)}' data-seq='{t.seq}'><td>{_e(iso_us(t.received_at_us))}</td>"
        f"<td>{_e(t.kind)}</td><td>{_e(t.summary)}</td><td>{_e(t.reason or t.message_id or '')}</td>"
        f"<td>{_details(t.payload)}</td></tr>"
        for t in items
    )
    return (
        "<h3>Live tail <span class='hint'>(last 50 accepted, rejected and refused; updates by itself)</span></h3>"
        "<table class='tail'><thead><tr><th>Received</th><th>Kind</th><th>Call</th><th>Message id / reason</th>"
        f"<th>Payload</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _rotate_form(base: str, csrf: str) -> str:
    return (
        f"<form method='post' action='{_e(base)}/rotate' class='action'>{_hidden(csrf)}"
        "<h3>Rotate the secret</h3>"
        "<label>Old secret keeps working for <input type='number' name='grace_hours' value='24' min='0' "
        "max='8760' step='any' required> hours</label> "
        "<label><input type='checkbox' name='write_key' value='yes'> also a new write key</label> "
        "<label><input type='checkbox' name='confirm' value='yes' required> I will update Segment</label> "
        "<button type='submit'>Rotate</button></form>"
    )


def _remove_form(base: str, name: str, csrf: str) -> str:
    return (
        f"<form method='post' action='{_e(base)}/remove' class='action danger'>{_hidden(csrf)}"
        "<h3>Remove</h3>"
        f"<label><input type='checkbox' name='confirm' value='yes' required> remove {_e(name)}: its deliveries "
        "will be refused (loaded events stay)</label> <button type='submit'>Remove</button></form>"
    )


def _add_form(csrf: str, values: dict[str, str]) -> str:
    mapping = values.get("account_mapping", "group")
    options = "".join(
        f"<option value='{m}'{' selected' if m == mapping else ''}>{m}</option>" for m in ACCOUNT_MAPPINGS
    )
    fallback = "" if values and values.get("email_fallback") != "yes" else " checked"
    return (
        f"<section class='card' id='add'><h2>Add a connection</h2><form method='post' action='/connections'>"
        f"{_hidden(csrf)}"
        f"<label>Name <input name='name' required maxlength='64' value='{_e(values.get('name', ''))}'></label>"
        f"<label>Account mapping <select name='account_mapping'>{options}</select></label>"
        "<label>Account id trait <input name='account_id_trait' placeholder='company.id' "
        f"value='{_e(values.get('account_id_trait', ''))}'></label>"
        "<label>Account name trait <input name='account_name_trait' placeholder='company.name' "
        f"value='{_e(values.get('account_name_trait', ''))}'></label>"
        f"<label><input type='checkbox' name='email_fallback' value='yes'{fallback}> email domain fallback</label>"
        "<p class='hint'>group: accounts from group calls; traits: from the user's traits at the paths above; "
        "email: from the email domain. See docs/segment-setup.md.</p>"
        "<button type='submit'>Add</button></form></section>"
    )

"""``segment-accounts connections ...``: add, list, rotate and remove connections.

Secrets are printed by ``add`` and ``rotate`` only, once; nothing else ever prints them. User mistakes become
one-line ``click.ClickException``s, never tracebacks.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import click

from pipelines import public_url
from pipelines.activity import ConnectionActivity, iso_us, summaries
from pipelines.connections import ACCOUNT_MAPPINGS, Connection, ConnectionConfigError, Registry
from pipelines.settings import data_dir

WARNING = "Save the secret and write key now: they are shown only this once."
WARNING_SECRET_ONLY = "Save the secret now: it is shown only this once."


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """Turn registry mistakes and file-system refusals into one clear line and exit status 1."""
    try:
        yield
    except ConnectionConfigError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:  # permission denied, read-only or full disk: the path says where
        where = f" {exc.filename}" if exc.filename else ""
        raise click.ClickException(f"cannot update the connection registry{where}: {exc.strerror}") from None


def _registry() -> Registry:
    with _user_errors():
        return Registry()


def _stdin_is_tty() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()


def _echo_json(doc: dict[str, Any]) -> None:
    click.echo(json.dumps(doc, indent=2))


def _public_url(explicit: str | None = None) -> public_url.PublicUrl:
    """The configured public URL, with its loopback warning on stderr (stdout stays parseable)."""
    with _user_errors():
        url = public_url.resolve(data_dir(), explicit)
    warning = url.warning()
    if warning:
        click.secho(f"Warning: {warning}", fg="yellow", err=True)
    return url


def _check_base_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return public_url.validate(value)
    except ConnectionConfigError as error:
        raise click.BadParameter(str(error)) from None


@click.group("connections")
def connections() -> None:
    """Segment sources that may send to this installation, and their credentials."""


@connections.command("add")
@click.argument("name")
@click.option(
    "--account-mapping",
    type=click.Choice(ACCOUNT_MAPPINGS),
    default="group",
    show_default=True,
    help="How contacts get their account: group calls, user traits, or email domain.",
)
@click.option("--account-id-trait", metavar="PATH", help="Dotted trait path of the account id (traits only).")
@click.option("--account-name-trait", metavar="PATH", help="Dotted trait path of the account name (traits only).")
@click.option(
    "--no-email-fallback",
    is_flag=True,
    help="Do not give unresolved contacts an account from their email domain.",
)
@click.option(
    "--allow-legacy-batch-signature",
    is_flag=True,
    help="Accept Segment's legacy signature over an array's first element only. Unsafe: lets anyone append "
    "forged events to a captured request.",
)
@click.option(
    "--base-url",
    callback=_check_base_url,
    help="Public URL of the receiver for the webhook URL shown; default: the one `serve --public-url` saved "
    "(env: SEGMENT_ACCOUNTS_PUBLIC_URL).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def add_cmd(
    name: str,
    account_mapping: str,
    account_id_trait: str | None,
    account_name_trait: str | None,
    no_email_fallback: bool,
    allow_legacy_batch_signature: bool,
    base_url: str | None,
    as_json: bool,
) -> None:
    """Add a connection NAME and print its webhook URL, secret and write key."""
    reg = _registry()
    with _user_errors():
        conn, creds = reg.add(
            name,
            account_mapping=account_mapping,
            account_id_trait=account_id_trait,
            account_name_trait=account_name_trait,
            email_fallback=not no_email_fallback,
            allow_legacy_batch_signature=allow_legacy_batch_signature,
        )
    url = _public_url(base_url).webhook_url(conn.connection_id)
    if as_json:
        _echo_json(
            {
                "connection": conn.public_dict(),
                "webhook_url": url,
                "webhook_secret": creds.webhook_secret,
                "write_key": creds.write_key,
            }
        )
        return
    click.echo(f"Added connection {conn.name!r} (id {conn.connection_id}).")
    click.echo(f"  Webhook URL:     {url}")
    click.echo(f"  Webhook secret:  {creds.webhook_secret}")
    click.echo(f"  Write key:       {creds.write_key}")
    click.echo(f"  Account mapping: {_describe_mapping(conn)}")
    if conn.allow_legacy_batch_signature:
        click.echo("  Legacy batch signatures are accepted (unsafe: only for old Segment workspaces).")
    click.secho(WARNING, fg="yellow", bold=True)


@connections.command("list")
@click.option("--json", "as_json", is_flag=True, help='Print one JSON object: {"connections": [...]}.')
def list_cmd(as_json: bool) -> None:
    """List connections with their webhook URL and the last 24 h of traffic (never their secrets)."""
    reg = _registry()
    conns = reg.list()
    url = _public_url()
    activity = summaries(data_dir()) if conns else {}
    if as_json:
        _echo_json(
            {
                "public_url": url.url,
                "connections": [
                    {
                        **c.public_dict(),
                        "webhook_url": url.webhook_url(c.connection_id),
                        "grace_until": reg.grace_until(c.connection_id),
                        **activity.get(c.connection_id, ConnectionActivity(c.connection_id)).as_dict(),
                    }
                    for c in conns
                ],
            }
        )
        return
    if not conns:
        click.echo("No connections yet. Add one with: segment-accounts connections add NAME")
        return
    header = ("NAME", "MAPPING", "LAST EVENT", "EVENTS 24H", "REJECTS 24H", "OLD SECRET UNTIL", "WEBHOOK URL")
    rows = []
    for c in conns:
        a = activity.get(c.connection_id, ConnectionActivity(c.connection_id))
        rows.append(
            (
                c.name,
                c.account_mapping if c.account_mapping != "traits" else f"traits ({_traits(c)})",
                iso_us(a.last_event_us) or "never",
                str(a.events_last_day),
                str(a.rejected_last_day + a.refused_last_day),
                reg.grace_until(c.connection_id) or "-",
                url.webhook_url(c.connection_id),
            )
        )
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    for r in (header, *rows):
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


@connections.command("rotate")
@click.argument("name")
@click.option(
    "--grace-hours",
    type=click.FloatRange(min=0, max=24 * 365),
    default=24.0,
    show_default=True,
    help="How long the old secret (and write key) keep working. 0 revokes them at once.",
)
@click.option("--write-key", "rotate_write_key", is_flag=True, help="Also make a new write key.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def rotate_cmd(name: str, grace_hours: float, rotate_write_key: bool, as_json: bool) -> None:
    """Give connection NAME a new webhook secret (and write key with --write-key)."""
    reg = _registry()
    with _user_errors():
        conn = reg.get(name)
        creds = reg.rotate(conn.connection_id, grace=timedelta(hours=grace_hours), write_key=rotate_write_key)
    if as_json:
        _echo_json(
            {
                "connection_id": conn.connection_id,
                "name": conn.name,
                "webhook_secret": creds.webhook_secret,
                "write_key": creds.write_key if rotate_write_key else None,
                "previous_valid_until": creds.previous_valid_until,
            }
        )
        return
    what = "webhook secret and write key" if rotate_write_key else "webhook secret"
    click.echo(f"Rotated the {what} of {conn.name!r} (id {conn.connection_id}).")
    click.echo(f"  Webhook secret:  {creds.webhook_secret}")
    if rotate_write_key:
        click.echo(f"  Write key:       {creds.write_key}")
    old = "old secret and write key" if rotate_write_key else "old secret"
    if creds.previous_valid_until:
        verb = "stay" if rotate_write_key else "stays"
        click.echo(f"The {old} {verb} valid until {creds.previous_valid_until}; update Segment before then.")
    else:
        click.echo(f"The {old} no longer work." if rotate_write_key else f"The {old} no longer works.")
    click.secho(WARNING if rotate_write_key else WARNING_SECRET_ONLY, fg="yellow", bold=True)


@connections.command("remove")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def remove_cmd(name: str, yes: bool) -> None:
    """Remove connection NAME: its credentials stop working at once. Loaded events stay."""
    reg = _registry()
    with _user_errors():
        conn = reg.get(name)
    if not yes:
        if not _stdin_is_tty():
            err = click.ClickException(
                f"refusing to remove {conn.name!r} without confirmation (stdin is not a terminal): pass --yes"
            )
            err.exit_code = 2  # a usage mistake, like click's own
            raise err
        click.confirm(
            f"Remove connection {conn.name!r} (id {conn.connection_id})? Its deliveries will be refused.",
            abort=True,
        )
    with _user_errors():
        reg.remove(conn.connection_id)
    click.echo(f"Removed connection {conn.name!r} (id {conn.connection_id}).")


def _traits(c: Connection) -> str:
    if c.account_mapping != "traits":
        return "-"
    return (c.account_id_trait or "") + (f" / {c.account_name_trait}" if c.account_name_trait else "")


def _describe_mapping(c: Connection) -> str:
    base = c.account_mapping if c.account_mapping != "traits" else f"traits ({_traits(c)})"
    return base + (", email domain fallback" if c.email_fallback else ", no email fallback")

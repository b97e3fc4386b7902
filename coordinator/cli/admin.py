"""Admin commands over the API (so they work on any replica and either database): users, API
keys (a user manages its own), node bans and removal, and the audit log. Each has `--json`."""

from __future__ import annotations

from urllib.parse import quote

import click

from gridx.coordinator.cli.client import ApiClient, to_json
from gridx.coordinator.cli.options import client_options, json_option, when
from gridx.coordinator.cli.screen import line
from gridx.schemas.admin import AuditEvent, KeyInfo, NewKey, UserAdminInfo
from gridx.schemas.nodes import NodeInfo


def _show_users(rows: list[UserAdminInfo], as_json: bool) -> None:
    if as_json:
        click.echo(to_json(rows))
        return
    click.echo(f"{'ID':>4}  {'ROLE':<5} {'STATE':<8} {'KEYS':>4}  {'LAST USED':<19}  EMAIL")
    for u in rows:
        state = "disabled" if u.disabled else "active"
        used = when(u.last_used_at) if u.last_used_at else "never"
        line(f"{u.id:>4}  {u.role:<5} {state:<8} {u.keys:>4}  {used:<19}  {u.email}")


def user_list_command(client: ApiClient, as_json: bool) -> None:
    """Every user: role, state, live keys, last use (admins)."""
    _show_users(client.call("GET", "/admin/users", list[UserAdminInfo]), as_json)


def user_disable_command(client: ApiClient, email: str, as_json: bool, disabled: bool) -> None:
    path = f"/admin/users/{quote(email)}/disabled"
    row = client.call("POST", path, UserAdminInfo, json={"disabled": disabled})
    _show_users([row], as_json)


def user_role_command(client: ApiClient, email: str, role: str, as_json: bool) -> None:
    path = f"/admin/users/{quote(email)}/role"
    _show_users([client.call("POST", path, UserAdminInfo, json={"role": role})], as_json)


@click.group()
def key() -> None:
    """API keys: list, create a further one (for a script), revoke, rotate."""


def _show_keys(rows: list[KeyInfo], as_json: bool) -> None:
    if as_json:
        click.echo(to_json(rows))
        return
    if not rows:
        click.echo("no keys")
        return
    click.echo(f"{'ID':>4}  {'PREFIX':<12}  {'STATE':<7}  {'LAST USED':<19}  {'NAME':<16} USER")
    for k in rows:
        state = "revoked" if k.revoked_at else "live"
        used = when(k.last_used_at) if k.last_used_at else "never"
        line(f"{k.id:>4}  {k.prefix:<12}  {state:<7}  {used:<19}  {k.name:<16} {k.user}")


def _show_new(made: NewKey, as_json: bool) -> None:
    if as_json:
        click.echo(to_json(made))
        return
    line(f"key {made.info.id} ({made.info.name}) for {made.info.user}; shown once, keep it safe:")
    click.echo(made.key)


@key.command("list")
@click.option("--user", "of", help="Another user's keys (admins); `*` for everyone's.")
@client_options
@json_option
def key_list(client: ApiClient, of: str | None, as_json: bool) -> None:
    """Your keys (prefix, name, last use; never the key itself)."""
    params = {"user": of} if of else {}
    _show_keys(client.call("GET", "/keys", list[KeyInfo], params=params), as_json)


@key.command("create")
@click.option("--name", default="script", show_default=True, help="What the key is for.")
@click.option("--user", help="Make it for another user (admins).")
@client_options
@json_option
def key_create(client: ApiClient, name: str, user: str | None, as_json: bool) -> None:
    """A further API key (for a script, a CI job); shown once."""
    body: dict[str, str] = {"name": name, **({"owner": user} if user else {})}
    _show_new(client.call("POST", "/keys", NewKey, json=body), as_json)


@key.command("revoke")
@click.argument("key_id", type=int)
@client_options
@json_option
def key_revoke(client: ApiClient, key_id: int, as_json: bool) -> None:
    """Revoke a key: refused (401) from the next request on, on every replica."""
    _show_keys([client.call("DELETE", f"/keys/{key_id}", KeyInfo)], as_json)


@key.command("rotate")
@click.argument("key_id", type=int)
@client_options
@json_option
def key_rotate(client: ApiClient, key_id: int, as_json: bool) -> None:
    """Replace a key: a new one (shown once), the old one revoked at the same moment."""
    _show_new(client.call("POST", f"/keys/{key_id}/rotate", NewKey), as_json)


def node_ban_command(
    client: ApiClient, node_id: str | None, owner: str | None, banned: bool, as_json: bool
) -> None:
    """Ban (or lift the ban of) one node, or every node of `owner`."""
    if owner is not None:
        ids = [
            n.id
            for n in client.call("GET", "/admin/nodes", list[NodeInfo])
            if n.owner == owner.strip().lower() and n.status != "removed"
        ]
        if not ids:
            raise click.ClickException(f"{owner} has no nodes")
    else:
        ids = [str(node_id)]
    rows = [
        client.call("POST", f"/admin/nodes/{quote(i)}/banned", NodeInfo, json={"banned": banned})
        for i in ids
    ]
    if as_json:
        click.echo(to_json(rows[0] if owner is None else rows))
        return
    for row in rows:
        line(f"{row.id} ({row.name}, {row.owner}): {row.status}")


def node_remove_command(client: ApiClient, node_id: str, as_json: bool) -> None:
    row = client.call("DELETE", f"/admin/nodes/{quote(node_id)}", NodeInfo)
    if as_json:
        click.echo(to_json(row))
        return
    line(f"{row.id} ({row.name}) removed; its token no longer works (it may enrol again)")


@click.command("audit")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
@client_options
@json_option
def audit(client: ApiClient, limit: int, as_json: bool) -> None:
    """What admins did, newest first (admins)."""
    rows = client.call("GET", "/admin/audit", list[AuditEvent], params={"limit": limit})
    if as_json:
        click.echo(to_json(rows))
        return
    for e in rows:
        line(f"{when(e.at):<19}  {e.actor:<24} {e.action:<13} {e.target} {e.detail}")
    if not rows:
        click.echo("nothing recorded yet")

"""`gridx node ...` and `gridx datasets`: the fleet as its owners and admins see it."""

from __future__ import annotations

import click

from gridx.coordinator.cli import admin
from gridx.coordinator.cli.client import ApiClient, to_json
from gridx.coordinator.cli.options import client_options, json_option, when
from gridx.coordinator.cli.screen import line
from gridx.schemas.nodes import EnrolmentToken, NodeInfo


# --- nodes -----------------------------------------------------------------------------------
@click.group()
def node() -> None:
    """See your nodes; admins ban or remove them."""


@node.group("token")
def node_token() -> None:
    """Enrolment tokens: what a new node registers with instead of your API key."""


@node_token.command("create")
@click.option("--uses", default=1, show_default=True, type=click.IntRange(1, 1000))
@click.option(
    "--ttl",
    "ttl_s",
    default=3600,
    show_default=True,
    type=click.IntRange(60, 30 * 86400),
    help="Seconds it stays usable.",
)
@client_options
@json_option
def node_token_create(client: ApiClient, uses: int, ttl_s: int, as_json: bool) -> None:
    """A token that registers USES nodes for you within TTL seconds and can do nothing else.
    Save it to a file on the machine to enrol and pass --enrolment-key-file FILE."""
    made = client.call("POST", "/nodes/tokens", EnrolmentToken, json={"uses": uses, "ttl_s": ttl_s})
    if as_json:
        click.echo(to_json(made))
        return
    click.echo(
        f"enrolment token for {uses} node(s), usable until {when(made.expires_at)} (shown once):",
        err=True,
    )
    click.echo(made.token)


@node.command("ban")
@click.argument("node_id", required=False)
@click.option("--owner", help="Every node of this owner (email) instead of one.")
@click.option("--lift", is_flag=True, help="Lift the ban instead.")
@client_options
@json_option
def node_ban(
    client: ApiClient, node_id: str | None, owner: str | None, lift: bool, as_json: bool
) -> None:
    """Ban a node, or all of an owner's: refused everywhere, tasks back in the queue (admins)."""
    if (node_id is None) == (owner is None):
        raise click.UsageError("name a NODE_ID or an --owner EMAIL")
    admin.node_ban_command(client, node_id, owner, not lift, as_json)


@node.command("remove")
@click.argument("node_id")
@client_options
@json_option
def node_remove(client: ApiClient, node_id: str, as_json: bool) -> None:
    """Remove a node: tasks back in the queue, token dead, must enrol again (admins)."""
    admin.node_remove_command(client, node_id, as_json)


@node.command("list")
@click.option("--all", "everything", is_flag=True, help="Banned and removed nodes too (admins).")
@client_options
@json_option
def node_list(client: ApiClient, everything: bool, as_json: bool) -> None:
    """Your nodes (an admin sees all)."""
    rows = client.call("GET", "/admin/nodes", list[NodeInfo]) if everything else client.nodes()
    if as_json:
        click.echo(to_json(rows))
        return
    if not rows:
        click.echo(
            "no nodes yet: `gridx node token create > key` and, on the machine, "
            "`gridx-node start --coordinator URL --enrolment-key-file key`"
        )
        return
    click.echo(
        f"{'ID':<16} {'STATUS':<9} {'ISOLATION':<11} {'ARCH':<8} {'DONE':>5}  "
        f"{'LAST SEEN':<19}  NAME"
    )
    for n in rows:
        line(
            f"{n.id:<16} {n.status:<9} {n.capabilities.isolation:<11} {n.capabilities.arch:<8} "
            f"{n.tasks_done:>5}  {when(n.last_seen):<19}  {n.name}"
            + (f"  ({n.resting})" if n.resting else "")
        )


@click.command("datasets")
@client_options
@json_option
def datasets(client: ApiClient, as_json: bool) -> None:
    """Datasets the online nodes hold, for jobs that train where the data lives
    (`gridx job submit train.py --dataset NAME`)."""
    rows = client.datasets()
    if as_json:
        click.echo(to_json(rows))
        return
    if not rows:
        click.echo("no node holds a dataset: `gridx-node dataset add NAME PATH` on a node")
        return
    click.echo(f"{'NAME':<20} {'FORMAT':<7} {'ROWS':>9} {'NODES':>5} {'YOURS':>5}  COLUMNS")
    for d in rows:
        cols = ", ".join(d.columns)
        line(f"{d.name:<20} {d.format:<7} {d.rows:>9} {d.nodes:>5} {d.usable_nodes:>5}  {cols}")

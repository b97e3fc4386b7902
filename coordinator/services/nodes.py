"""Node enrolment, authentication, batched heartbeats and listing."""

from __future__ import annotations

import uuid

import msgspec

from gridx.coordinator.db import attempts, datasets, events, leases, nodes
from gridx.coordinator.db.nodes import NodeRow
from gridx.coordinator.db.users import UserRow
from gridx.coordinator.errors import Forbidden, NodeBanned, NotFound, Unauthorized
from gridx.coordinator.services import local_data
from gridx.coordinator.services.auth import bearer, hash_secret, new_secret
from gridx.coordinator.services.runtime import Runtime
from gridx.schemas.agent import (
    OUTPUT_TAIL,
    DatasetInfo,
    HeartbeatRequest,
    HeartbeatResponse,
    RegisterRequest,
    RegisterResponse,
    TaskPhase,
)
from gridx.schemas.nodes import DatasetSummary, NodeInfo, NodeStatus
from gridx.schemas.redaction import redact

_caps_encoder = msgspec.json.Encoder()


async def register(
    rt: Runtime, owner: UserRow, req: RegisterRequest, warning: str | None = None
) -> RegisterResponse:
    """Enrol a node for `owner` (authenticated by an enrolment credential of theirs).

    Raises:
        Forbidden: `owner_email` is given and is not the key's owner.
    """
    if req.owner_email and req.owner_email.strip().lower() != owner.email:
        raise Forbidden("owner_email does not match the enrolment key's owner")
    node_id = "n-" + uuid.uuid4().hex[:12]
    token = new_secret("gxn_")
    now = rt.clock.now_ms()
    async with rt.db.transaction() as conn:
        await nodes.create(
            conn,
            node_id=node_id,
            owner_id=owner.id,
            name=req.name,
            token_hash=hash_secret(token),
            capabilities=_caps_encoder.encode(req.capabilities).decode(),
            now=now,
        )
        await events.append(
            conn, None, "node_registered", {"node_id": node_id, "name": req.name}, now
        )
    return RegisterResponse(
        node_id=node_id,
        node_token=token,
        heartbeat_s=rt.settings.heartbeat_s,
        lease_s=rt.settings.lease_s,
        warning=warning,
    )


async def authenticate(rt: Runtime, authorization: str | None) -> NodeRow:
    """The node a bearer token belongs to.

    Raises:
        Unauthorized: missing or unknown token.
    """
    token_hash = hash_secret(bearer(authorization))
    now = rt.clock.now_ms()
    cached = rt.node_cache.get(token_hash, now)
    if cached is not None:
        return _not_banned(cached)
    node = await nodes.by_token_hash(rt.db.reader, token_hash)
    if node is None:
        raise Unauthorized("unknown node token; delete the node's state file to enrol again")
    rt.node_cache.put(token_hash, node, now)
    return _not_banned(node)


async def may_take_work(rt: Runtime, node: NodeRow) -> bool:
    """Whether `node` may still be handed a task, read from the database now (an open poll
    asks again every second, so a ban, removal, drain or owner disable made on any replica
    reaches it).

    Raises:
        NodeBanned: banned since the poll opened.
        Unauthorized: removed since (its token no longer works).
    """
    standing = await nodes.standing(rt.db.reader, node.id)
    if standing == "banned":
        rt.node_cache.forget(node.id)
        _not_banned(msgspec.structs.replace(node, banned=1))
    if standing == "removed":
        rt.node_cache.forget(node.id)
        raise Unauthorized(f"node {node.id} was removed by the coordinator's admin; enrol again")
    return standing == "ok"


def _not_banned(node: NodeRow) -> NodeRow:
    if node.banned:
        raise NodeBanned(f"node {node.id} ({node.name}) is banned by the coordinator's admin")
    return node


async def heartbeat(rt: Runtime, node: NodeRow, req: HeartbeatRequest) -> HeartbeatResponse:
    """Note the node alive (written in the next batch) and say which of its tasks to stop."""
    note_heartbeat(rt, node.id, req.running, req.phase)
    if req.output and req.running:
        rt.heartbeats.add_output(node.id, req.running[0], redact(req.output))
    if req.capabilities is not None:
        encoded = _caps_encoder.encode(req.capabilities).decode()
        async with rt.db.transaction() as conn:
            await nodes.set_capabilities(conn, node.id, encoded)
        rt.node_cache.set_capabilities(node.id, req.capabilities)
    if req.resting is not None and req.resting != node.resting:
        async with rt.db.transaction() as conn:
            await nodes.set_resting(conn, node.id, req.resting)
        rt.node_cache.forget(node.id)  # (its cached row says otherwise)
    if req.datasets is not None:  # what it holds changed: names and counts, never the data
        async with rt.db.transaction() as conn:
            await datasets.replace_for_node(conn, node.id, local_data.declared(req.datasets))
    cancel = await leases.not_held(rt.db.reader, node.id, list(req.running))
    return HeartbeatResponse(
        cancel=cancel, drain=bool(node.draining), heartbeat_s=rt.settings.heartbeat_s
    )


def note_heartbeat(
    rt: Runtime, node_id: str, running: list[str], phase: TaskPhase | None = None
) -> None:
    """Buffer a heartbeat: the node is alive, the leases of the tasks it runs are renewed, and
    what it does with its task is noted."""
    said = (phase.task_id, phase.step, phase.detail) if phase else ()
    rt.heartbeats.note(node_id, rt.clock.now_ms(), tuple(running), said)


async def flush_heartbeats(rt: Runtime) -> int:
    """Write every buffered heartbeat, and renew the leases of the tasks those nodes said they
    run, in one transaction. A task its node no longer runs (its result could not be reported,
    say) is not renewed: its lease runs out and the shard is reissued.

    Returns:
        How many nodes were written.
    """
    seen, output = rt.heartbeats.take(), rt.heartbeats.take_output()
    if not seen:
        return 0
    lease_ms = int(rt.settings.lease_s * 1000)
    try:
        async with rt.db.transaction() as conn:
            for (node_id, task_id), text in output.items():  # only to the node's own attempt
                await attempts.append_output(conn, task_id, node_id, text, OUTPUT_TAIL)
            await nodes.touch_many(conn, {n: beat[0] for n, beat in seen.items()})
            await leases.renew(
                conn,
                [
                    leases.Renewal(n, t, at + lease_ms, *(phase[1:] if phase[:1] == (t,) else ()))
                    for n, (at, run, phase) in seen.items()
                    for t in run
                ],
            )
    except BaseException:  # keep them for the next flush (newer heartbeats win)
        rt.heartbeats.put_back(seen)
        rt.heartbeats.put_back_output(output)
        raise
    return len(seen)


def node_info(rt: Runtime, row: NodeRow) -> NodeInfo:
    """The public view of a node, with its status derived from when it was last heard."""
    now = rt.clock.now_ms()
    last_seen = max(row.last_seen, rt.heartbeats.last_seen(row.id))
    status: NodeStatus
    if row.removed:
        status = "removed"
    elif row.banned:
        status = "banned"
    elif row.draining:
        status = "draining"
    elif now - last_seen <= rt.settings.node_offline_s * 1000:
        status = "resting" if row.resting else "online"
    else:
        status = "offline"
    return NodeInfo(
        id=row.id,
        name=row.name,
        owner=row.owner_email,
        status=status,
        capabilities=row.capabilities,
        last_seen=last_seen,
        tasks_done=row.tasks_done,
        created_at=row.created_at,
        reputation=round(row.reputation, 4),
        agreed=row.agreed,
        disagreed=row.disagreed,
        streak=row.streak,
        suspect=bool(row.suspect),
        resting=row.resting if status == "resting" else "",
    )


async def set_draining(rt: Runtime, user: UserRow, node_id: str, draining: bool) -> NodeInfo:
    """Drain a node (it finishes its task and takes no more) or put it back to work.

    Raises:
        NotFound: no such node, or not the caller's (admins may drain any).
    """
    owner = None if user.role == "admin" else user.id
    row = next((r for r in await nodes.list_nodes(rt.db.reader, owner) if r.id == node_id), None)
    if row is None:
        raise NotFound(f"no node {node_id!r}")
    async with rt.db.transaction() as conn:
        await nodes.set_draining(conn, node_id, draining)
    rt.node_cache.changed(node_id)
    return node_info(rt, msgspec.structs.replace(row, draining=int(draining)))


async def frameworks(rt: Runtime) -> dict[str, set[str]]:
    """{framework: versions} the fleet's nodes (all that are not removed) give their tasks."""
    found: dict[str, set[str]] = {}
    for row in await nodes.list_nodes(rt.db.reader, None):
        caps = row.capabilities
        for name, version in caps.frameworks.items():
            found.setdefault(name, set()).add(version)
    return found


async def list_nodes(rt: Runtime, user: UserRow, everything: bool = False) -> list[NodeInfo]:
    """The caller's nodes, with the datasets they declared; every node for an admin; removed
    ones too with `everything`."""
    owner = None if user.role == "admin" else user.id
    rows = await nodes.list_nodes(rt.db.reader, owner, everything)
    held: dict[str, list[DatasetInfo]] = {}
    for d in await datasets.of_nodes(rt.db.reader, [r.id for r in rows]):
        held.setdefault(d.node_id, []).append(local_data.info(d))
    return [msgspec.structs.replace(node_info(rt, r), datasets=held.get(r.id, [])) for r in rows]


async def list_datasets(rt: Runtime, user: UserRow) -> list[DatasetSummary]:
    """Every dataset name online nodes hold, with how many of them let the caller use it."""
    rows = await nodes.list_nodes(rt.db.reader, None)
    online = {r.id for r in rows if node_info(rt, r).status in ("online", "resting")}
    owners = {r.id: r.owner_id for r in rows}
    found = await datasets.of_nodes(rt.db.reader, sorted(online))
    usable = {
        (d.node_id, d.name)
        for d in found
        if owners.get(d.node_id) == user.id or user.email in d.allowed
    }
    return local_data.summarize(found, online, usable)

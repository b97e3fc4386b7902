"""What an admin does to run a coordinator for months: users (list, disable, role), API keys
(list, create, revoke, rotate; a user manages its own), nodes (ban, remove), each recorded in
the audit log in the transaction that does it."""

from __future__ import annotations

import msgspec

from gridx.coordinator.db import audit, nodes, tasks, users
from gridx.coordinator.db.connection import Conn
from gridx.coordinator.db.users import KeyRow, UserRow
from gridx.coordinator.errors import Conflict, Forbidden, InvalidInput, NotFound
from gridx.coordinator.services.auth import hash_secret, key_prefix, new_secret
from gridx.coordinator.services.nodes import node_info
from gridx.coordinator.services.runtime import Runtime
from gridx.schemas.admin import AuditEvent, KeyInfo, NewKey, UserAdminInfo
from gridx.schemas.nodes import NodeInfo


def require_admin(user: UserRow) -> None:
    """Raises Forbidden unless `user` is an admin."""
    if user.role != "admin":
        raise Forbidden("only an admin may do this")


async def _user(rt: Runtime, email: str) -> UserRow:
    found = await users.by_email(rt.db.reader, email.strip().lower())
    if found is None:
        raise NotFound(f"no user {email!r}")
    return found


def user_info(row: UserRow, keys: list[KeyRow]) -> UserAdminInfo:
    """A user as admins see it."""
    live = [k for k in keys if k.user_id == row.id and k.revoked_at is None]
    used = [k.last_used_at for k in live if k.last_used_at is not None]
    return UserAdminInfo(
        id=row.id,
        email=row.email,
        role=row.role,  # type: ignore[arg-type]
        disabled=bool(row.disabled),
        created_at=row.created_at,
        keys=len(live),
        last_used_at=max(used) if used else None,
    )


async def list_users(rt: Runtime, admin: UserRow) -> list[UserAdminInfo]:
    """Every user with its live keys and last use."""
    require_admin(admin)
    keys = await users.keys(rt.db.reader, None)
    return [user_info(u, keys) for u in await users.all_users(rt.db.reader)]


async def set_disabled(rt: Runtime, admin: UserRow, email: str, disabled: bool) -> UserAdminInfo:
    """Disable a user (its keys get 403, its jobs take no new task) or enable it again."""
    require_admin(admin)
    row = await _user(rt, email)
    if row.id == admin.id and disabled:
        raise Conflict("an admin cannot disable itself")
    async with rt.db.transaction() as conn:
        await users.set_disabled(conn, row.id, disabled)
        action = "user.disable" if disabled else "user.enable"
        await audit.record(conn, rt.clock.now_ms(), admin.email, action, row.email)
    fresh = msgspec.structs.replace(row, disabled=int(disabled))
    return user_info(fresh, await users.keys(rt.db.reader, row.id))


async def set_role(rt: Runtime, admin: UserRow, email: str, role: str) -> UserAdminInfo:
    """Make a user an admin or a plain user."""
    require_admin(admin)
    if role not in ("admin", "user"):
        raise InvalidInput(f"role is admin or user, not {role!r}", field="role")
    row = await _user(rt, email)
    if row.id == admin.id and role != "admin":
        raise Conflict("an admin cannot take its own admin role away")
    async with rt.db.transaction() as conn:
        await users.set_role(conn, row.id, role)
        await audit.record(conn, rt.clock.now_ms(), admin.email, "user.role", row.email, role)
    return user_info(
        msgspec.structs.replace(row, role=role), await users.keys(rt.db.reader, row.id)
    )


def key_info(k: KeyRow) -> KeyInfo:
    """A key as listed: never the key itself."""
    return KeyInfo(
        id=k.id,
        user=k.email,
        name=k.name,
        prefix=k.prefix,
        created_at=k.created_at,
        last_used_at=k.last_used_at,
        revoked_at=k.revoked_at,
    )


async def _owner_of(rt: Runtime, caller: UserRow, email: str | None) -> UserRow:
    """Whose keys a call is about: the caller's own, or (admins only) another user's."""
    if email is None or email.strip().lower() == caller.email:
        return caller
    require_admin(caller)
    return await _user(rt, email)


async def list_keys(rt: Runtime, caller: UserRow, email: str | None) -> list[KeyInfo]:
    """A user's keys (the caller's own; an admin names any user, or everyone with `*`)."""
    if email == "*":
        require_admin(caller)
        return [key_info(k) for k in await users.keys(rt.db.reader, None)]
    owner = await _owner_of(rt, caller, email)
    return [key_info(k) for k in await users.keys(rt.db.reader, owner.id)]


async def create_key(rt: Runtime, caller: UserRow, name: str, email: str | None) -> NewKey:
    """A further API key (for a script, say) for the caller or, by an admin, for any user."""
    owner = await _owner_of(rt, caller, email)
    key = new_secret("gxk_")
    now = rt.clock.now_ms()
    async with rt.db.transaction() as conn:
        key_id = await users.add_key(conn, owner.id, hash_secret(key), now, name, key_prefix(key))
        await audit.record(conn, now, caller.email, "key.create", owner.email, f"{key_id} {name}")
    row = await users.key_by_id(rt.db.reader, key_id)
    assert row is not None
    return NewKey(key=key, info=key_info(row))


async def _key(rt: Runtime, caller: UserRow, key_id: int) -> KeyRow:
    row = await users.key_by_id(rt.db.reader, key_id)
    if row is None or (row.user_id != caller.id and caller.role != "admin"):
        raise NotFound(f"no key {key_id}")
    return row


async def revoke_key(rt: Runtime, caller: UserRow, key_id: int) -> KeyInfo:
    """Revoke a key: from the next request on it gets 401, on every replica (keys are read
    from the database on every request)."""
    row = await _key(rt, caller, key_id)
    now = rt.clock.now_ms()
    async with rt.db.transaction() as conn:
        if not await users.revoke_key(conn, key_id, now):
            raise Conflict(f"key {key_id} is already revoked")
        await audit.record(conn, now, caller.email, "key.revoke", row.email, str(key_id))
    return key_info(msgspec.structs.replace(row, revoked_at=now))


async def rotate_key(rt: Runtime, caller: UserRow, key_id: int) -> NewKey:
    """A new key of the same name for the same user, the old one revoked, in one transaction."""
    row = await _key(rt, caller, key_id)
    key = new_secret("gxk_")
    now = rt.clock.now_ms()
    async with rt.db.transaction() as conn:
        if not await users.revoke_key(conn, key_id, now):
            raise Conflict(f"key {key_id} is revoked; create a new one instead")
        new_id = await users.add_key(
            conn, row.user_id, hash_secret(key), now, row.name, key_prefix(key)
        )
        await audit.record(conn, now, caller.email, "key.rotate", row.email, f"{key_id}->{new_id}")
    fresh = await users.key_by_id(rt.db.reader, new_id)
    assert fresh is not None
    return NewKey(key=key, info=key_info(fresh))


async def ban_node(rt: Runtime, admin: UserRow, node_id: str, banned: bool) -> NodeInfo:
    """Ban a node (refused at every route from now on, its tasks handed back to the queue) or
    lift the ban."""
    require_admin(admin)
    row = await _node(rt, node_id)
    now = rt.clock.now_ms()
    async with rt.db.transaction() as conn:
        await nodes.set_banned(conn, node_id, banned)
        requeued = await _return_leases(conn, node_id, now) if banned else []
        action = "node.ban" if banned else "node.unban"
        await audit.record(conn, now, admin.email, action, node_id, row.name)
    rt.node_cache.changed(node_id)
    rt.wakeups.tasks_ready(len(requeued))
    return node_info(rt, msgspec.structs.replace(row, banned=int(banned), draining=int(banned)))


async def remove_node(rt: Runtime, admin: UserRow, node_id: str) -> NodeInfo:
    """Take a node off the fleet: its tasks go back to the queue and its token stops working
    (the machine may enrol again as a new node). Its history stays (`gridx node list --all`)."""
    require_admin(admin)
    row = await _node(rt, node_id)
    now = rt.clock.now_ms()
    async with rt.db.transaction() as conn:
        await nodes.remove(conn, node_id)
        requeued = await _return_leases(conn, node_id, now)
        await audit.record(conn, now, admin.email, "node.remove", node_id, row.name)
    rt.node_cache.changed(node_id)
    rt.wakeups.tasks_ready(len(requeued))
    return node_info(rt, msgspec.structs.replace(row, removed=1, banned=1, draining=1))


async def _node(rt: Runtime, node_id: str) -> nodes.NodeRow:
    found = await nodes.by_id(rt.db.reader, node_id)
    if found is None:
        raise NotFound(f"no node {node_id!r}")
    return found


async def _return_leases(conn: Conn, node_id: str, now: int) -> list[str]:
    """Hand a node's leased tasks back to the queue (the attempt is refunded)."""
    back = []
    for task_id, token in await nodes.leased(conn, node_id):
        done = await tasks.give_up(
            conn,
            task_id=task_id,
            node_id=node_id,
            token=token,
            outcome="released",
            error_code="node_banned",
            error="its node was banned or removed by an admin",
            stderr_tail="",
            requeue=True,
            refund=True,
            now=now,
        )
        if done is not None:
            back.append(done.id)
    return back


async def audit_log(rt: Runtime, admin: UserRow, limit: int) -> list[AuditEvent]:
    """The last `limit` admin actions, newest first."""
    require_admin(admin)
    return [
        AuditEvent(
            id=r.id, at=r.at, actor=r.actor, action=r.action, target=r.target, detail=r.detail
        )
        for r in await audit.recent(rt.db.reader, limit)
    ]

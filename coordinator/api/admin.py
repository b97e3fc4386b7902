"""Admin routes: users, API keys (a user manages its own), node bans and removal, the audit
log. Each route is one call into `services/admin.py`, which does every check."""

from __future__ import annotations

from typing import Annotated

from litestar import delete, get, post
from litestar.params import Parameter

from gridx.coordinator.services import admin
from gridx.coordinator.services import nodes as node_service
from gridx.coordinator.services.principals import User
from gridx.coordinator.services.runtime import Runtime
from gridx.schemas.admin import (
    AuditEvent,
    BanRequest,
    DisableRequest,
    KeyInfo,
    KeyRequest,
    NewKey,
    RoleRequest,
    UserAdminInfo,
)
from gridx.schemas.nodes import NodeInfo


@get("/admin/users", tags=["admin"])
async def list_users(rt: Runtime, user: User) -> list[UserAdminInfo]:
    """Every user: role, disabled or not, live keys, last use (admins only)."""
    return await admin.list_users(rt, user)


@post("/admin/users/{email:str}/disabled", tags=["admin"], status_code=200)
async def set_disabled(rt: Runtime, user: User, email: str, data: DisableRequest) -> UserAdminInfo:
    """Disable a user (`{"disabled": false}` enables it): its keys get 403 at once and its jobs
    take no new task."""
    return await admin.set_disabled(rt, user, email, data.disabled)


@post("/admin/users/{email:str}/role", tags=["admin"], status_code=200)
async def set_role(rt: Runtime, user: User, email: str, data: RoleRequest) -> UserAdminInfo:
    """Make a user an admin or a plain user."""
    return await admin.set_role(rt, user, email, data.role)


@get("/keys", tags=["admin"])
async def list_keys(
    rt: Runtime, user: User, of: Annotated[str | None, Parameter(query="user")] = None
) -> list[KeyInfo]:
    """The caller's API keys (prefix, name, last use; never the key). Admins: `?user=EMAIL`,
    or `?user=*` for everyone's."""
    return await admin.list_keys(rt, user, of)


@post("/keys", tags=["admin"], status_code=201)
async def create_key(rt: Runtime, user: User, data: KeyRequest) -> NewKey:
    """A further API key (shown once), for the caller or, by an admin, for `owner`."""
    return await admin.create_key(rt, user, data.name, data.owner)


@delete("/keys/{key_id:int}", tags=["admin"], status_code=200)
async def revoke_key(rt: Runtime, user: User, key_id: int) -> KeyInfo:
    """Revoke a key: it gets 401 from the next request on, on every replica."""
    return await admin.revoke_key(rt, user, key_id)


@post("/keys/{key_id:int}/rotate", tags=["admin"], status_code=201)
async def rotate_key(rt: Runtime, user: User, key_id: int) -> NewKey:
    """A new key in place of this one (revoked in the same transaction), shown once."""
    return await admin.rotate_key(rt, user, key_id)


@get("/admin/nodes", tags=["admin"])
async def all_nodes(rt: Runtime, user: User) -> list[NodeInfo]:
    """Every node, banned and removed ones included (admins only)."""
    admin.require_admin(user)
    return await node_service.list_nodes(rt, user, everything=True)


@post("/admin/nodes/{node_id:str}/banned", tags=["admin"], status_code=200)
async def ban_node(rt: Runtime, user: User, node_id: str, data: BanRequest) -> NodeInfo:
    """Ban a node: refused at every route from now on, its tasks back in the queue
    (`{"banned": false}` lifts the ban)."""
    return await admin.ban_node(rt, user, node_id, data.banned)


@delete("/admin/nodes/{node_id:str}", tags=["admin"], status_code=200)
async def remove_node(rt: Runtime, user: User, node_id: str) -> NodeInfo:
    """Remove a node: its tasks back in the queue, its token dead (it must enrol again)."""
    return await admin.remove_node(rt, user, node_id)


@get("/admin/audit", tags=["admin"])
async def audit_log(
    rt: Runtime, user: User, limit: Annotated[int, Parameter(ge=1, le=1000)] = 100
) -> list[AuditEvent]:
    """The last admin actions, newest first: who did what to whom, when."""
    return await admin.audit_log(rt, user, limit)


ROUTES = [
    list_users,
    set_disabled,
    set_role,
    list_keys,
    create_key,
    revoke_key,
    rotate_key,
    all_nodes,
    ban_node,
    remove_node,
    audit_log,
]

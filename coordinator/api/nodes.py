"""`/nodes`: a user's nodes, and draining one."""

from __future__ import annotations

import msgspec
from litestar import get, post

from gridx.coordinator.services import nodes
from gridx.coordinator.services.principals import User
from gridx.coordinator.services.runtime import Runtime
from gridx.schemas.nodes import NodeInfo


class DrainRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Drain (true) or undrain (false) a node."""

    drain: bool = True


@get("/nodes", tags=["nodes"])
async def list_nodes(rt: Runtime, user: User) -> list[NodeInfo]:
    """The caller's nodes (an admin sees all)."""
    return await nodes.list_nodes(rt, user)


@post("/nodes/{node_id:str}/drain", tags=["nodes"], status_code=200)
async def drain(rt: Runtime, user: User, node_id: str, data: DrainRequest) -> NodeInfo:
    """Let a node finish its task and take no more (`{"drain": false}` puts it back to work)."""
    return await nodes.set_draining(rt, user, node_id, data.drain)

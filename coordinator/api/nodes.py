"""`/nodes`: a user's nodes, and draining one; `/datasets`: what the fleet's nodes hold."""

from __future__ import annotations

import msgspec
from litestar import get, post

from gridx.coordinator.services import enrolment, nodes
from gridx.coordinator.services.principals import User
from gridx.coordinator.services.runtime import Runtime
from gridx.schemas.nodes import DatasetSummary, EnrolmentToken, EnrolmentTokenRequest, NodeInfo


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


@post("/nodes/tokens", tags=["nodes"], status_code=201)
async def create_enrolment_token(
    rt: Runtime, user: User, data: EnrolmentTokenRequest
) -> EnrolmentToken:
    """A token that registers nodes for the caller, `uses` times within `ttl_s` seconds, and
    can do nothing else (`gridx-node start --enrolment-key-file FILE`). Shown once."""
    return await enrolment.create_token(rt, user, data)


@get("/datasets", tags=["nodes"])
async def list_datasets(rt: Runtime, user: User) -> list[DatasetSummary]:
    """The datasets online nodes declared (names, columns, row counts; the data stays on the
    nodes), each with how many of its nodes let the caller train on it."""
    return await nodes.list_datasets(rt, user)

"""Dependencies injected into handlers: the runtime, the calling user, the calling node."""

from __future__ import annotations

from litestar import Request
from litestar.datastructures import State

from gridx.coordinator.db.nodes import NodeRow
from gridx.coordinator.db.users import UserRow
from gridx.coordinator.services import auth, nodes
from gridx.coordinator.services.runtime import Runtime


def provide_rt(state: State) -> Runtime:
    """The coordinator's runtime (built by the lifespan)."""
    rt: Runtime = state.rt
    return rt


async def provide_user(request: Request, rt: Runtime) -> UserRow:
    """The user whose API key is in `Authorization: Bearer ...`."""
    return await auth.authenticate_user(rt.db, request.headers.get("authorization"))


async def provide_node(request: Request, rt: Runtime) -> NodeRow:
    """The node whose token is in `Authorization: Bearer ...`."""
    return await nodes.authenticate(rt, request.headers.get("authorization"))

"""Dependencies injected into handlers: the runtime, the calling user, the calling node."""

from __future__ import annotations

from litestar import Request
from litestar.datastructures import State

from gridx.coordinator.errors import RateLimited, Unauthorized
from gridx.coordinator.services import auth, nodes
from gridx.coordinator.services.principals import Node, User
from gridx.coordinator.services.runtime import Runtime


def provide_rt(state: State) -> Runtime:
    """The coordinator's runtime (built by the lifespan)."""
    rt: Runtime = state.rt
    return rt


def client_address(request: Request) -> str:
    """The caller's address (the direct peer; put a proxy's own limits in front of it)."""
    return request.client.host if request.client else "unknown"


async def provide_user(request: Request, rt: Runtime) -> User:
    """The user whose API key is in `Authorization: Bearer ...`.

    Raises:
        RateLimited: this address sent too many wrong keys in the last minute.
    """
    key = f"auth-failures:{client_address(request)}"
    if rt.rate_limits.recent(key) >= rt.settings.auth_failures_per_minute:
        raise RateLimited("too many failed sign-ins from this address; wait a minute")
    try:
        return await auth.authenticate_user(
            rt.db, request.headers.get("authorization"), rt.clock.now_ms()
        )
    except Unauthorized:
        rt.rate_limits.allow(key, rt.settings.auth_failures_per_minute)  # records the failure
        raise


async def provide_node(request: Request, rt: Runtime) -> Node:
    """The node whose token is in `Authorization: Bearer ...`."""
    return await nodes.authenticate(rt, request.headers.get("authorization"))

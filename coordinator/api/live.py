"""Dashboard routes: the overview, contributors, draining nodes, and live server-sent events.

The streams send the whole current view as a JSON `data:` line whenever it changes (checked
twice a second on the read connection), plus a comment every 15 s to keep proxies from closing
them. Clients fall back to polling the plain routes if a stream drops.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import msgspec
from litestar import get, post
from litestar.response import ServerSentEvent, ServerSentEventMessage

from gridx.coordinator.db.users import UserRow
from gridx.coordinator.services import jobs, nodes, stats
from gridx.coordinator.services.runtime import Runtime
from gridx.schemas.nodes import NodeInfo
from gridx.schemas.stats import Contributor, Overview

T = TypeVar("T")
POLL_S = 0.5
KEEPALIVE_S = 15.0


class DrainRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Drain (true) or undrain (false) a node."""

    drain: bool = True


@get("/stats/overview", tags=["dashboard"])
async def overview(rt: Runtime, user: UserRow) -> Overview:
    """Nodes online/offline, jobs by status, tasks running, tasks finished in the last minute."""
    return await stats.overview(rt, user)


@get("/stats/contributors", tags=["dashboard"])
async def contributors(rt: Runtime, user: UserRow) -> list[Contributor]:
    """Per owner: nodes, tasks done, compute time given, and credit."""
    return await stats.contributors(rt)


@post("/nodes/{node_id:str}/drain", tags=["nodes"], status_code=200)
async def drain(rt: Runtime, user: UserRow, node_id: str, data: DrainRequest) -> NodeInfo:
    """Let a node finish its task and take no more (`{"drain": false}` puts it back to work)."""
    return await nodes.set_draining(rt, user, node_id, data.drain)


async def _changes(
    produce: Callable[[], Awaitable[T]], stop_when: Callable[[T], bool] | None = None
) -> AsyncIterator[ServerSentEventMessage]:
    """Send `produce()` whenever it changes (and a keep-alive comment when it does not)."""
    last = b""
    quiet = 0.0
    while True:
        value = await produce()
        payload = msgspec.json.encode(value)
        if payload != last:
            last, quiet = payload, 0.0
            yield ServerSentEventMessage(data=payload.decode())
            if stop_when is not None and stop_when(value):
                return
        elif quiet >= KEEPALIVE_S:
            quiet = 0.0
            yield ServerSentEventMessage(comment="keep-alive")
        await asyncio.sleep(POLL_S)
        quiet += POLL_S


@get("/stats/overview/events", tags=["dashboard"])
async def overview_events(rt: Runtime, user: UserRow) -> ServerSentEvent:
    """The overview as a server-sent event stream."""
    return ServerSentEvent(_changes(lambda: stats.overview(rt, user)))


@get("/jobs/{job_id:str}/events", tags=["jobs"])
async def job_events(rt: Runtime, user: UserRow, job_id: str) -> ServerSentEvent:
    """A job's full detail, sent again at each change, until it finishes."""
    await jobs.visible_job(rt, user, job_id)  # 404 before the stream starts
    return ServerSentEvent(_changes(lambda: jobs.detail(rt, user, job_id), lambda d: d.settled))

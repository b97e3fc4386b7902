"""What the dashboard reads: its static build at `/`, the overview and contributors, and live
server-sent event streams.

A stream sends the whole current view as a JSON `data:` line whenever it changes, plus a comment
after 15 s of quiet to keep proxies from closing it: the overview is re-read twice a second, a
job is re-read when its event log grows (`services.job_views.follow`).
Clients fall back to polling the plain routes if a stream drops.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import msgspec
from litestar import MediaType, Request, get
from litestar.params import Parameter
from litestar.response import ServerSentEvent, ServerSentEventMessage
from litestar.static_files import create_static_files_router

from gridx.coordinator.errors import GridXError
from gridx.coordinator.services import auth, job_views, stats
from gridx.coordinator.services.principals import User
from gridx.coordinator.services.runtime import Runtime
from gridx.coordinator.settings import Settings
from gridx.schemas.stats import Contributor, FleetSample, Overview

T = TypeVar("T")
POLL_S = 0.5
KEEPALIVE_S = 15.0
RECHECK_S = 1.0

WEB_HINT = """<!doctype html><meta charset="utf-8"><title>Grid-X</title>
<p>The Grid-X API is running. The dashboard is not built: run <code>just web</code> in the
repository (or set GRIDX_WEB_DIR to a built <code>web/out</code>). The API is described at
<a href="/schema/swagger">/schema/swagger</a>.</p>"""


def find_web_dir(settings: Settings) -> Path | None:
    """Where the dashboard's static build is, if anywhere."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (settings.web_dir, here / "web_static", here.parent / "web" / "out"):
        if candidate is not None and (candidate / "index.html").exists():
            return candidate
    return None


def static_handlers(settings: Settings) -> list[Any]:
    """The static dashboard at `/`, or a page that says how to build it."""
    web = find_web_dir(settings)
    if web is None:

        @get("/", include_in_schema=False, media_type=MediaType.HTML)
        async def hint() -> str:
            return WEB_HINT

        return [hint]
    return [
        create_static_files_router(
            path="/", directories=[web], html_mode=True, include_in_schema=False, name="dashboard"
        )
    ]


@get("/stats/overview", tags=["dashboard"])
async def overview(rt: Runtime, user: User) -> Overview:
    """Nodes online/offline, jobs by status, tasks running, tasks finished in the last minute."""
    return await stats.overview(rt, user)


@get("/stats/history", tags=["dashboard"])
async def history(
    rt: Runtime, user: User, minutes: Annotated[int, Parameter(ge=1, le=1440)] = 60
) -> list[FleetSample]:
    """The whole fleet over the last `minutes` (default 60): nodes online, tasks running and
    queued, tasks done, one sample per `GRIDX_HISTORY_SAMPLE_S` (10 s); counts only."""
    return await stats.history(rt, minutes)


@get("/stats/contributors", tags=["dashboard"])
async def contributors(rt: Runtime, user: User) -> list[Contributor]:
    """Per owner: nodes, tasks done, compute time given, and credit."""
    return await stats.contributors(rt)


async def _polled(produce: Callable[[], Awaitable[T]]) -> AsyncIterator[T]:
    """`produce()` now, then again whenever its value changes (checked every `POLL_S`)."""
    last = b""
    while True:
        value = await produce()
        payload = msgspec.json.encode(value)
        if payload != last:
            last = payload
            yield value
        await asyncio.sleep(POLL_S)


async def _events(
    values: AsyncIterator[Any], still_allowed: Callable[[], Awaitable[object]]
) -> AsyncIterator[ServerSentEventMessage]:
    """Each value as a JSON `data:` line, and a keep-alive comment after `KEEPALIVE_S` quiet.
    The caller's key is checked again every `RECHECK_S`: a stream whose key was revoked (or
    whose user was disabled) on any replica ends with one `revoked` event saying why."""
    pending = asyncio.ensure_future(anext(values))
    quiet = 0.0
    try:
        while True:
            done, _ = await asyncio.wait({pending}, timeout=RECHECK_S)
            try:
                await still_allowed()
            except GridXError as exc:
                body = msgspec.json.encode({"code": exc.code, "message": str(exc)}).decode()
                yield ServerSentEventMessage(event="revoked", data=body)
                return
            if not done:
                quiet += RECHECK_S
                if quiet >= KEEPALIVE_S:
                    quiet = 0.0
                    yield ServerSentEventMessage(comment="keep-alive")
                continue
            quiet = 0.0
            try:
                value = pending.result()
            except StopAsyncIteration:
                return
            yield ServerSentEventMessage(data=msgspec.json.encode(value).decode())
            pending = asyncio.ensure_future(anext(values))
    finally:
        pending.cancel()


def _recheck(request: Request, rt: Runtime) -> Callable[[], Awaitable[object]]:
    """Authenticate the stream's caller again, as at its first request."""
    header = request.headers.get("authorization")
    return lambda: auth.authenticate_user(rt.db, header, rt.clock.now_ms())


@get("/stats/overview/events", tags=["dashboard"])
async def overview_events(request: Request, rt: Runtime, user: User) -> ServerSentEvent:
    """The overview as a server-sent event stream."""
    values = _polled(lambda: stats.overview(rt, user))
    return ServerSentEvent(_events(values, _recheck(request, rt)))


@get("/jobs/{job_id:str}/events", tags=["jobs"])
async def job_events(request: Request, rt: Runtime, user: User, job_id: str) -> ServerSentEvent:
    """A job's full detail, sent again after each event in its log, until it is settled."""
    await job_views.visible_job(rt, user, job_id)  # 404 before the stream starts
    follow = job_views.follow(rt, user, job_id, POLL_S)
    return ServerSentEvent(_events(follow, _recheck(request, rt)))

"""The app factory: routes, error mapping, and the lifespan that owns every live resource."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from litestar import Litestar, MediaType, get
from litestar.config.cors import CORSConfig
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.static_files import create_static_files_router
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from gridx.coordinator.api import agent, errors, jobs, live, misc
from gridx.coordinator.api.deps import provide_node, provide_rt, provide_user
from gridx.coordinator.clock import Clock, SystemClock
from gridx.coordinator.db.connection import connect
from gridx.coordinator.errors import GridXError
from gridx.coordinator.pool import make_pool
from gridx.coordinator.services import dispatch, nodes, rounds
from gridx.coordinator.services.metrics import Metrics
from gridx.coordinator.services.runtime import NODES_CHANNEL, TASKS_CHANNEL, Runtime
from gridx.coordinator.settings import Settings
from gridx.coordinator.storage.base import open_storage
from gridx.coordinator.storage.signing import UrlSigner

log = logging.getLogger("gridx.coordinator")


async def _every(seconds: float, step: Callable[[], Awaitable[object]], name: str) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await step()
        except Exception:
            log.exception("%s failed; retrying in %.1fs", name, seconds)


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


def dashboard_handlers(settings: Settings) -> list[Any]:
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


def request_timer(app: ASGIApp) -> ASGIApp:
    """Count each HTTP request and its latency for /metrics."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await app(scope, receive, capture)
        finally:
            rt = getattr(scope["litestar_app"].state, "rt", None)
            if rt is not None and rt.counters is not None:
                method = str(scope.get("method", "GET"))
                rt.counters.observe_request(method, status, time.perf_counter() - started)

    return middleware


def create_app(settings: Settings, clock: Clock | None = None) -> Litestar:
    """Build the coordinator app for `settings` (tests pass their own, and a manual clock)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        db = await connect(settings.db_url)
        pool = make_pool(settings.aggregation_workers)
        signer = UrlSigner(settings.signing_key(), settings.public_url)
        the_clock = clock or SystemClock()
        rt = Runtime(
            settings=settings,
            db=db,
            storage=await open_storage(settings, signer, the_clock),
            signer=signer,
            clock=the_clock,
            pool=pool,
        )
        if settings.replica_id:
            rt.replica = settings.replica_id
        rt.counters = Metrics()
        app.state.rt = rt
        await db.listen(TASKS_CHANNEL, rt.on_notification)
        await db.listen(NODES_CHANNEL, rt.on_node_notification)
        loops = [
            asyncio.create_task(
                _every(
                    settings.heartbeat_flush_s,
                    lambda: nodes.flush_heartbeats(rt),
                    "heartbeat flush",
                )
            ),
            asyncio.create_task(
                _every(settings.reaper_s, lambda: dispatch.expire_leases(rt), "lease reaper")
            ),
            asyncio.create_task(
                _every(settings.reaper_s, lambda: rounds.adopt_orphans(rt), "aggregation sweeper")
            ),
        ]
        adopted = await rounds.adopt_orphans(rt)
        if adopted:
            log.info("picked up the aggregation of %d round(s)", adopted)
        try:
            yield
        finally:
            for task in loops + list(rt.background):
                task.cancel()
            await asyncio.gather(*loops, *rt.background, return_exceptions=True)
            await nodes.flush_heartbeats(rt)
            pool.shutdown(wait=True, cancel_futures=True)
            await rt.storage.close()
            await db.close()

    cors = CORSConfig(allow_origins=list(settings.cors_origins)) if settings.cors_origins else None
    handlers: dict[Any, Any] = {
        GridXError: errors.gridx_error,
        HTTPException: errors.http_error,
        RecursionError: errors.too_deep,
        Exception: errors.unexpected_error,
    }
    routes: list[Any] = [
        agent.AgentController,
        jobs.JobController,
        misc.healthz,
        misc.prometheus,
        misc.me,
        misc.list_nodes,
        misc.download_blob,
        live.overview,
        live.contributors,
        live.drain,
        live.overview_events,
        live.job_events,
    ]
    errors.document_errors(routes)
    return Litestar(
        route_handlers=[
            *routes,
            *dashboard_handlers(settings),
        ],
        dependencies={
            "rt": Provide(provide_rt, sync_to_thread=False),
            "user": Provide(provide_user),
            "node": Provide(provide_node),
        },
        lifespan=[lifespan],
        middleware=[request_timer],
        exception_handlers=handlers,
        cors_config=cors,
        request_max_body_size=settings.max_json_bytes,
        openapi_config=OpenAPIConfig(title="Grid-X coordinator", version="0.1.0"),
        logging_config=None,  # the process configures logging (`gridx.coordinator.logs`)
        debug=False,
    )

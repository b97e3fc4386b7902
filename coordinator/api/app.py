"""The app factory: routes, dependencies, error mapping, and the lifespan that runs the
coordinator's services (`services.lifespan.running`)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from gridx.coordinator.api import (
    admin,
    agent,
    blobs,
    dashboard,
    errors,
    health,
    jobs,
    nodes,
    openapi,
    users,
)
from gridx.coordinator.api.deps import provide_node, provide_rt, provide_user
from gridx.coordinator.api.headers import security_headers
from gridx.coordinator.clock import Clock
from gridx.coordinator.errors import GridXError
from gridx.coordinator.services.lifespan import running
from gridx.coordinator.settings import Settings

ROUTES: list[Any] = [
    agent.AgentController,
    jobs.JobController,
    health.healthz,
    health.prometheus,
    users.me,
    nodes.list_nodes,
    nodes.drain,
    nodes.create_enrolment_token,
    nodes.list_datasets,
    blobs.download_blob,
    dashboard.overview,
    dashboard.contributors,
    dashboard.history,
    dashboard.overview_events,
    dashboard.job_events,
    *admin.ROUTES,
]
errors.document_errors(ROUTES)


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
            if rt is not None:
                method = str(scope.get("method", "GET"))
                rt.metrics.observe_request(method, status, time.perf_counter() - started)

    return middleware


def create_app(settings: Settings, clock: Clock | None = None) -> Litestar:
    """Build the coordinator app for `settings` (tests pass their own, and a manual clock)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with running(settings, clock) as rt:
            app.state.rt = rt
            yield

    app = Litestar(
        route_handlers=[*ROUTES, *dashboard.static_handlers(settings)],
        dependencies={
            "rt": Provide(provide_rt, sync_to_thread=False),
            "user": Provide(provide_user),
            "node": Provide(provide_node),
        },
        lifespan=[lifespan],
        middleware=[request_timer, security_headers],
        exception_handlers={
            GridXError: errors.gridx_error,
            HTTPException: errors.http_error,
            RecursionError: errors.too_deep,
            Exception: errors.unexpected_error,
        },
        cors_config=CORSConfig(allow_origins=list(settings.cors_origins))
        if settings.cors_origins
        else None,
        request_max_body_size=settings.max_json_bytes,
        openapi_config=openapi.config(),
        logging_config=None,  # the process configures logging (`gridx.coordinator.logs`)
        debug=False,
    )
    openapi.complete(app)
    return app

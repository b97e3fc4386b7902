"""Health and metrics: liveness for load balancers, Prometheus text for monitoring."""

from __future__ import annotations

from litestar import get

from gridx.coordinator.services import stats
from gridx.coordinator.services.runtime import Runtime


@get("/healthz", tags=["health"])
async def healthz() -> dict[str, str]:
    """Liveness: answers without touching the database."""
    return {"status": "ok"}


@get("/metrics", tags=["health"], media_type="text/plain; version=0.0.4")
async def prometheus(rt: Runtime) -> str:
    """Prometheus metrics: tasks, jobs and nodes by state, expired leases, merge time, requests."""
    return await stats.prometheus(rt)

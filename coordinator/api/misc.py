"""Health, the caller's identity, nodes, and signed blob downloads."""

from __future__ import annotations

from litestar import get
from litestar.response import File

from gridx.coordinator.db import blobs, tasks
from gridx.coordinator.db.users import UserRow
from gridx.coordinator.errors import Forbidden, NotFound
from gridx.coordinator.services import metrics, nodes
from gridx.coordinator.services.runtime import Runtime
from gridx.schemas.nodes import NodeInfo, UserInfo


@get("/healthz", tags=["health"])
async def healthz() -> dict[str, str]:
    """Liveness: answers without touching the database."""
    return {"status": "ok"}


@get("/metrics", tags=["health"], media_type="text/plain; version=0.0.4")
async def prometheus(rt: Runtime) -> str:
    """Prometheus metrics: tasks, jobs and nodes by state, expired leases, merge time, requests."""
    return await metrics.render(rt, rt.counters)


@get("/me", tags=["users"])
async def me(user: UserRow) -> UserInfo:
    """Who the API key belongs to."""
    return UserInfo(id=user.id, email=user.email, role=user.role)  # type: ignore[arg-type]


@get("/nodes", tags=["nodes"])
async def list_nodes(rt: Runtime, user: UserRow) -> list[NodeInfo]:
    """The caller's nodes (an admin sees all)."""
    return await nodes.list_nodes(rt, user)


@get("/blobs/{sha256:str}", tags=["agent"])
async def download_blob(
    rt: Runtime, sha256: str, exp: int, sig: str, task: str, lease: str
) -> File:
    """Download a task input through the signed link its lease came with (valid until `exp`,
    and only while that lease lasts)."""
    rt.signer.verify("GET", f"{sha256}:{task}:{lease}", exp, sig, rt.clock.now_ms())
    held = await tasks.get(rt.db.reader, task)
    if held is None or held.status != "leased" or held.lease_token != lease:
        raise Forbidden("the lease this link was issued for has ended; ask for the task again")
    blob = await blobs.get(rt.db.reader, sha256)
    if blob is None:
        raise NotFound("no such blob")
    return File(path=await rt.storage.local_path(blob.storage_key), filename=sha256)

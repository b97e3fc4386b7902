"""Figures: the dashboard's overview and contributors' table, and Prometheus metrics."""

from __future__ import annotations

import msgspec

from gridx.coordinator.db import blobs as db_blobs
from gridx.coordinator.db import nodes as db_nodes
from gridx.coordinator.db import stats as db_stats
from gridx.coordinator.db.users import UserRow
from gridx.coordinator.services.nodes import node_info
from gridx.coordinator.services.runtime import Runtime
from gridx.schemas.stats import Contributor, FleetSample, Overview

CREDIT_PER_CPU_HOUR = 100.0


async def overview(rt: Runtime, user: UserRow) -> Overview:
    """Nodes online/offline (the caller's; all for an admin), jobs by status, tasks, throughput."""
    owner = None if user.role == "admin" else user.id
    reader = rt.db.reader
    now = rt.clock.now_ms()
    # counted in SQL (O(1) rows whatever the fleet); heartbeats still buffered are < 1 s old
    online, total = await db_stats.nodes_online(
        reader, now - int(rt.settings.node_offline_s * 1000), owner
    )
    tasks = await db_stats.tasks_by_status(reader, owner)
    minute_ago = now - 60_000
    return Overview(
        nodes_online=online,
        nodes_offline=total - online,
        jobs_by_status=await db_stats.jobs_by_status(reader, owner),
        tasks_running=tasks.get("leased", 0),
        tasks_queued=tasks.get("queued", 0),
        tasks_per_minute=await db_stats.tasks_finished_since(reader, minute_ago, owner),
        storage_bytes=(await db_blobs.total(reader))[1]
        if owner is None
        else await db_blobs.of_owner(reader, owner),
        scope="everything" if owner is None else "yours",
    )


KEEP_SAMPLES_MS = 24 * 3600 * 1000


async def sample(rt: Runtime) -> None:
    """Record the fleet in the current sampling period (`history_sample_s`); every replica
    tries, the first one's row stays."""
    now = rt.clock.now_ms()
    period = int(rt.settings.history_sample_s * 1000)
    reader = rt.db.reader
    online, _ = await db_stats.nodes_online(
        reader, now - int(rt.settings.node_offline_s * 1000), None
    )
    tasks = await db_stats.tasks_by_status(reader, None)
    row = db_stats.SampleRow(
        at=now - now % period,
        nodes_online=online,
        tasks_running=tasks.get("leased", 0),
        tasks_queued=tasks.get("queued", 0),
        tasks_done=await db_stats.tasks_finished_since(reader, now - period, None),
    )
    async with rt.db.transaction() as conn:
        await db_stats.record_sample(conn, row, now - KEEP_SAMPLES_MS)


async def history(rt: Runtime, minutes: int) -> list[FleetSample]:
    """The fleet's samples over the last `minutes`, oldest first."""
    since = rt.clock.now_ms() - minutes * 60_000
    rows = await db_stats.samples_since(rt.db.reader, since)
    return [FleetSample(**msgspec.structs.asdict(r)) for r in rows]


async def contributors(rt: Runtime) -> list[Contributor]:
    """Every owner's contribution, biggest first."""
    return [
        Contributor(
            owner=r.owner,
            nodes=r.nodes,
            tasks_done=r.tasks_done,
            compute_s=r.compute_ms / 1000,
            credit=round(r.compute_ms / 3_600_000 * CREDIT_PER_CPU_HOUR, 3),
        )
        for r in await db_stats.contributors(rt.db.reader)
    ]


async def _storage_lines(rt: Runtime) -> list[str]:
    """The blob store's size and the free space under it, for /metrics."""
    count, stored = await db_blobs.total(rt.db.reader)
    free = rt.storage.free_bytes()
    return [
        "# HELP gridx_blob_bytes Bytes in the blob store (every file a job still needs).",
        "# TYPE gridx_blob_bytes gauge",
        f"gridx_blob_bytes {stored}",
        "# HELP gridx_blobs Files in the blob store.",
        "# TYPE gridx_blobs gauge",
        f"gridx_blobs {count}",
        *(
            [
                "# HELP gridx_storage_free_bytes Free space where blobs are written.",
                "# TYPE gridx_storage_free_bytes gauge",
                f"gridx_storage_free_bytes {free}",
            ]
            if free is not None
            else []
        ),
    ]


async def prometheus(rt: Runtime) -> str:
    """The Prometheus text exposition of the coordinator's state."""
    reader, m = rt.db.reader, rt.metrics
    by_state = await db_stats.tasks_by_status(reader, None)
    jobs = await db_stats.jobs_by_status(reader, None)
    infos = [node_info(rt, r) for r in await db_nodes.list_nodes(reader, None)]
    lines = [
        *await _storage_lines(rt),
        "# HELP gridx_tasks Tasks by state.",
        "# TYPE gridx_tasks gauge",
        *(
            f'gridx_tasks{{state="{s}"}} {by_state.get(s, 0)}'
            for s in ("queued", "leased", "succeeded", "failed", "cancelled")
        ),
        "# HELP gridx_jobs Jobs by status.",
        "# TYPE gridx_jobs gauge",
        *(f'gridx_jobs{{status="{s}"}} {n}' for s, n in sorted(jobs.items())),
        "# HELP gridx_nodes Nodes by status.",
        "# TYPE gridx_nodes gauge",
        *(
            f'gridx_nodes{{status="{s}"}} {sum(1 for n in infos if n.status == s)}'
            for s in ("online", "resting", "offline", "draining", "banned", "removed")
        ),
        "# HELP gridx_leases_expired_total Leases that expired and were requeued or failed.",
        "# TYPE gridx_leases_expired_total counter",
        f"gridx_leases_expired_total {m.leases_expired}",
        "# HELP gridx_aggregation_seconds Time spent merging rounds.",
        "# TYPE gridx_aggregation_seconds summary",
        f"gridx_aggregation_seconds_sum {m.aggregation_seconds:.6f}",
        f"gridx_aggregation_seconds_count {m.aggregations}",
        "# HELP gridx_http_requests_total HTTP requests by method and status class.",
        "# TYPE gridx_http_requests_total counter",
        *(
            f'gridx_http_requests_total{{method="{meth}",code="{code}"}} {n}'
            for (meth, code), n in sorted(m.requests.items())
        ),
        "# HELP gridx_http_request_seconds Time spent answering HTTP requests.",
        "# TYPE gridx_http_request_seconds summary",
        *(
            f'gridx_http_request_seconds_sum{{method="{meth}"}} {s:.6f}'
            for meth, s in sorted(m.request_seconds.items())
        ),
        *(
            f'gridx_http_request_seconds_count{{method="{meth}"}} '
            f"{sum(n for (mm, _), n in m.requests.items() if mm == meth)}"
            for meth in sorted(m.request_seconds)
        ),
    ]
    return "\n".join(lines) + "\n"

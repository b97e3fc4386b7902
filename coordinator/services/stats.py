"""Dashboard figures: the overview and the contributors' table."""

from __future__ import annotations

from gridx.coordinator.db import stats
from gridx.coordinator.db.users import UserRow
from gridx.coordinator.services.runtime import Runtime
from gridx.schemas.stats import Contributor, Overview

CREDIT_PER_CPU_HOUR = 100.0


async def overview(rt: Runtime, user: UserRow) -> Overview:
    """Nodes online/offline (the caller's; all for an admin), jobs by status, tasks, throughput."""
    owner = None if user.role == "admin" else user.id
    reader = rt.db.reader
    now = rt.clock.now_ms()
    # counted in SQL (O(1) rows whatever the fleet); heartbeats still buffered are < 1 s old
    online, total = await stats.nodes_online(
        reader, now - int(rt.settings.node_offline_s * 1000), owner
    )
    tasks = await stats.tasks_by_status(reader, owner)
    minute_ago = now - 60_000
    return Overview(
        nodes_online=online,
        nodes_offline=total - online,
        jobs_by_status=await stats.jobs_by_status(reader, owner),
        tasks_running=tasks.get("leased", 0),
        tasks_queued=tasks.get("queued", 0),
        tasks_per_minute=await stats.tasks_finished_since(reader, minute_ago, owner),
    )


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
        for r in await stats.contributors(rt.db.reader)
    ]

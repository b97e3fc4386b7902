"""Counts for the dashboard: the fleet, the queue, throughput, and who gave how much compute."""

from __future__ import annotations

import msgspec

from gridx.coordinator.db.connection import Conn, fetch_all, fetch_value


class StatusCount(msgspec.Struct, kw_only=True):
    """How many rows have one status."""

    status: str
    n: int


class ContributorRow(msgspec.Struct, kw_only=True):
    """One owner's contribution."""

    owner: str
    nodes: int
    tasks_done: int
    compute_ms: int


JOBS_BY_STATUS = """
SELECT status, count(*) AS n FROM jobs
WHERE (CAST(:owner_id AS BIGINT) IS NULL OR owner_id = :owner_id) GROUP BY status
"""
TASKS_BY_STATUS = """
SELECT t.status, count(*) AS n FROM tasks t JOIN jobs j ON j.id = t.job_id
WHERE (CAST(:owner_id AS BIGINT) IS NULL OR j.owner_id = :owner_id) GROUP BY t.status
"""
FINISHED_SINCE = """
SELECT count(*) FROM attempts a JOIN tasks t ON t.id = a.task_id JOIN jobs j ON j.id = t.job_id
WHERE a.outcome = 'succeeded' AND a.finished_at >= :since
    AND (CAST(:owner_id AS BIGINT) IS NULL OR j.owner_id = :owner_id)
"""
NODES_ONLINE = """
SELECT count(*) AS total,
    coalesce(sum(CASE WHEN draining = 0 AND last_seen >= :since THEN 1 ELSE 0 END), 0) AS online
FROM nodes WHERE (CAST(:owner_id AS BIGINT) IS NULL OR owner_id = :owner_id)
"""
CONTRIBUTORS = """
SELECT u.email AS owner, count(n.id) AS nodes,
    CAST(coalesce(sum(n.tasks_done), 0) AS BIGINT) AS tasks_done,
    CAST(coalesce(sum(n.compute_ms), 0) AS BIGINT) AS compute_ms
FROM users u JOIN nodes n ON n.owner_id = u.id
GROUP BY u.id, u.email ORDER BY compute_ms DESC, tasks_done DESC, u.email
"""


async def jobs_by_status(conn: Conn, owner_id: int | None) -> dict[str, int]:
    """Job counts per status (one owner's, or everyone's when None)."""
    rows = await fetch_all(conn, JOBS_BY_STATUS, {"owner_id": owner_id}, StatusCount)
    return {r.status: r.n for r in rows}


async def tasks_by_status(conn: Conn, owner_id: int | None) -> dict[str, int]:
    """Task counts per status."""
    rows = await fetch_all(conn, TASKS_BY_STATUS, {"owner_id": owner_id}, StatusCount)
    return {r.status: r.n for r in rows}


async def tasks_finished_since(conn: Conn, since: int, owner_id: int | None) -> int:
    """Tasks that succeeded since `since` (epoch ms)."""
    value = await fetch_value(conn, FINISHED_SINCE, {"since": since, "owner_id": owner_id})
    return int(value or 0)  # type: ignore[call-overload]


async def contributors(conn: Conn) -> list[ContributorRow]:
    """Per owner: nodes, tasks done and compute time given, biggest first."""
    return await fetch_all(conn, CONTRIBUTORS, {}, ContributorRow)


async def nodes_online(conn: Conn, since: int, owner_id: int | None) -> tuple[int, int]:
    """(nodes heard from since `since` and not draining, all nodes), counted in the database."""
    row = (await conn.fetch(NODES_ONLINE, {"since": since, "owner_id": owner_id}))[0]
    return int(row[1]), int(row[0])


class SampleRow(msgspec.Struct, kw_only=True):
    """The fleet in one sampling period."""

    at: int
    nodes_online: int
    tasks_running: int
    tasks_queued: int
    tasks_done: int


INSERT_SAMPLE = """
INSERT INTO fleet_samples (at, nodes_online, tasks_running, tasks_queued, tasks_done)
VALUES (:at, :nodes_online, :tasks_running, :tasks_queued, :tasks_done) ON CONFLICT (at) DO NOTHING
"""
PRUNE_SAMPLES = "DELETE FROM fleet_samples WHERE at < :before"
SAMPLES_SINCE = """
SELECT at, nodes_online, tasks_running, tasks_queued, tasks_done FROM fleet_samples
WHERE at >= :since ORDER BY at
"""


async def record_sample(conn: Conn, sample: SampleRow, keep_after: int) -> None:
    """Store a period's sample (the first replica to write it wins) and drop those before
    `keep_after`."""
    await conn.execute(INSERT_SAMPLE, msgspec.structs.asdict(sample))
    await conn.execute(PRUNE_SAMPLES, {"before": keep_after})


async def samples_since(conn: Conn, since: int) -> list[SampleRow]:
    """The samples from `since` (epoch ms) on, oldest first."""
    return await fetch_all(conn, SAMPLES_SINCE, {"since": since}, SampleRow)

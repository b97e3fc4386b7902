"""The straggler rules' queries: leased tasks that deserve a backup copy, their round's
finished times, the copies to cancel when one wins, and rounds that close at their deadline."""

from __future__ import annotations

import msgspec

from gridx.coordinator.db import attempts
from gridx.coordinator.db.connection import Conn, fetch_all, rows_of
from gridx.coordinator.db.tasks import INSERT, RETURNING, TaskRow

# The other copies of a shard once one succeeded (backup tasks: the first valid result wins).
CANCEL_SIBLINGS = f"""
UPDATE tasks SET status = 'cancelled', lease_expires_at = NULL, updated_at = :now,
    error_code = 'superseded', error = 'another copy of this shard finished first'
WHERE job_id = :job_id AND round_idx = :round_idx AND shard = :shard AND kind = 'train'
    AND id != :id AND status IN ('queued', 'leased')
{RETURNING}
"""
# What a round still waits for when it closes early (its deadline passed with enough shards in).
CANCEL_ROUND = f"""
UPDATE tasks SET status = 'cancelled', lease_expires_at = NULL, updated_at = :now,
    error_code = 'dropped', error = 'the round closed at its deadline without it'
WHERE job_id = :job_id AND round_idx = :round_idx AND kind = 'train'
    AND status IN ('queued', 'leased')
{RETURNING}
"""
# Leased training tasks of running jobs with backup tasks, with no other copy yet, and whether
# their node already lost a copy to a backup in this job (the threshold, `backup_after` times
# the median of the round's finished tasks, is applied in Python: `round_times`).
STRAGGLERS = """
SELECT t.id, t.job_id, t.round_idx, t.shard, j.shard_count, j.backup_after, a.started_at,
    CASE WHEN EXISTS (SELECT 1 FROM tasks o WHERE o.job_id = t.job_id
        AND o.node_id = t.node_id AND o.error_code = 'superseded') THEN 1 ELSE 0 END AS known_slow
FROM tasks t JOIN jobs j ON j.id = t.job_id
    JOIN attempts a ON a.task_id = t.id AND a.finished_at IS NULL
WHERE t.status = 'leased' AND t.kind = 'train' AND t.round_idx >= 0
    AND j.status = 'running' AND j.backup_after IS NOT NULL
    AND NOT EXISTS (SELECT 1 FROM tasks o WHERE o.job_id = t.job_id
        AND o.round_idx = t.round_idx AND o.shard = t.shard AND o.id != t.id)
ORDER BY a.started_at LIMIT 50
"""
ROUND_TIMES = """
SELECT compute_ms FROM tasks WHERE job_id = :job_id AND round_idx = :round_idx
    AND kind = 'train' AND status = 'succeeded'
"""
# Rounds whose deadline passed with at least `min_fraction` of their shards in.
OVERDUE = """
SELECT r.job_id, r.idx FROM rounds r JOIN jobs j ON j.id = r.job_id
WHERE r.status = 'running' AND j.status = 'running' AND j.round_deadline_ms IS NOT NULL
    AND r.started_at + j.round_deadline_ms <= :now AND r.idx >= 0
    AND (SELECT count(*) FROM tasks t WHERE t.job_id = r.job_id AND t.round_idx = r.idx
        AND t.kind = 'train' AND t.status = 'succeeded') >= j.min_fraction * (
        SELECT count(*) FROM tasks t WHERE t.job_id = r.job_id AND t.round_idx = r.idx
            AND t.kind = 'train' AND t.copy = 0)
    AND EXISTS (SELECT 1 FROM tasks t WHERE t.job_id = r.job_id AND t.round_idx = r.idx
        AND t.kind = 'train' AND t.status = 'succeeded')
"""


class Straggler(msgspec.Struct, kw_only=True):
    """A leased task that may deserve a backup copy."""

    id: str
    job_id: str
    round_idx: int
    shard: int
    shard_count: int
    backup_after: float
    started_at: int
    known_slow: int
    """Its node lost a copy to a backup earlier in this job."""


async def stragglers(conn: Conn) -> list[Straggler]:
    """Leased tasks of jobs with backup tasks that have no second copy yet, oldest first."""
    return await fetch_all(conn, STRAGGLERS, {}, Straggler)


async def round_times(conn: Conn, job_id: str, round_idx: int) -> list[int]:
    """The measured compute times (ms) of a round's finished training tasks."""
    params = {"job_id": job_id, "round_idx": round_idx}
    return [int(r[0]) for r in await rows_of(conn, ROUND_TIMES, params)]


async def insert_backup(
    conn: Conn, s: Straggler, max_attempts: int, max_losses: int, now: int
) -> str:
    """Queue a second copy of a straggler's shard (copy 1, in the slot after the round's)."""
    task_id = f"{s.job_id}-r{s.round_idx}-s{s.shard}-backup"
    await conn.execute(
        INSERT,
        {
            "id": task_id,
            "job_id": s.job_id,
            "round_idx": s.round_idx,
            "slot": s.shard + s.shard_count,
            "shard": s.shard,
            "copy": 1,
            "max_attempts": max_attempts,
            "max_losses": max_losses,
            "kind": "train",
            "target_node": None,
            "weight": None,
            "now": now,
        },
    )
    return task_id


async def cancel_siblings(conn: Conn, task: TaskRow, now: int) -> list[TaskRow]:
    """Cancel the other copies of a finished task's shard (backup tasks: it won)."""
    params = {
        "job_id": task.job_id,
        "round_idx": task.round_idx,
        "shard": task.shard,
        "id": task.id,
        "now": now,
    }
    cancelled = await fetch_all(conn, CANCEL_SIBLINGS, params, TaskRow)
    for t in cancelled:
        if t.node_id is not None:
            await attempts.finish(conn, t.id, now, "cancelled", "superseded", t.error or "")
    return cancelled


async def cancel_round(conn: Conn, job_id: str, round_idx: int, now: int) -> list[TaskRow]:
    """Cancel what a round that closes early still waits for."""
    params = {"job_id": job_id, "round_idx": round_idx, "now": now}
    cancelled = await fetch_all(conn, CANCEL_ROUND, params, TaskRow)
    for t in cancelled:
        if t.node_id is not None:
            await attempts.finish(conn, t.id, now, "cancelled", "dropped", t.error or "")
    return cancelled


async def overdue_rounds(conn: Conn, now: int) -> list[tuple[str, int]]:
    """(job id, round) of open rounds past their deadline with enough shards in to close."""
    return [(str(r[0]), int(r[1])) for r in await rows_of(conn, OVERDUE, {"now": now})]

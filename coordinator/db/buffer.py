"""An async job's buffer (FedBuff): the next task of each shard, the updates waiting for a
server step, the step that merged each, and the queue moved onto the newest model."""

from __future__ import annotations

from gridx.coordinator.db import attempts
from gridx.coordinator.db.connection import Conn, fetch_all
from gridx.coordinator.db.tasks import COLUMNS, RETURNING, TaskRow

# A shard trains again as soon as its update is in, in the slot `shards` further on (slots stay
# unique in the job: a shard's successive tasks never collide), and its updates wait in the
# buffer (succeeded, merged_into NULL, not dropped) for a server step.
INSERT_NEXT = """
INSERT INTO tasks (id, job_id, round_idx, slot, shard, copy, status, max_attempts, max_losses,
    kind, target_node, weight, created_at, updated_at)
SELECT :id, job_id, :round_idx, slot + :stride, shard, 0, 'queued', max_attempts, max_losses,
    'train', target_node, weight, :now, :now
FROM tasks WHERE id = :after
"""
BUFFERED = f"""
SELECT {COLUMNS} FROM tasks WHERE job_id = :job_id AND kind = 'train' AND round_idx >= 0
    AND status = 'succeeded' AND merged_into IS NULL AND verdict IS NULL
ORDER BY updated_at, slot
"""
TAKE = "UPDATE tasks SET merged_into = :step WHERE id = :id AND merged_into IS NULL"
MERGED_INTO = f"""
SELECT {COLUMNS} FROM tasks WHERE job_id = :job_id AND merged_into = :step ORDER BY slot
"""
RELEASE_MERGED = """
UPDATE tasks SET result_sha = NULL WHERE job_id = :job_id AND merged_into = :step
"""
RELEASE_LEFT_OVER = """
UPDATE tasks SET result_sha = NULL
WHERE job_id = :job_id AND kind = 'train' AND round_idx >= 0 AND merged_into IS NULL
    AND status = 'succeeded' AND result_sha IS NOT NULL
"""
RELEASE_ONE = "UPDATE tasks SET result_sha = NULL WHERE id = :id"
REPOINT_QUEUED = """
UPDATE tasks SET round_idx = :round_idx, updated_at = :now
WHERE job_id = :job_id AND status = 'queued' AND kind = 'train' AND round_idx >= 0
    AND round_idx < :round_idx
"""
CANCEL_TRAINING = f"""
UPDATE tasks SET status = 'cancelled', lease_expires_at = NULL, updated_at = :now
WHERE job_id = :job_id AND status IN ('queued', 'leased') AND kind = 'train'
{RETURNING}
"""


async def insert_next(conn: Conn, after: TaskRow, round_idx: int, stride: int, now: int) -> str:
    """Queue the next task of `after`'s shard (async jobs), on round `round_idx`'s model, in
    the slot `stride` further on; returns its id."""
    task_id = f"{after.job_id}-a-s{after.slot + stride}"
    params = {"id": task_id, "round_idx": round_idx, "stride": stride, "now": now}
    await conn.execute(INSERT_NEXT, {**params, "after": after.id})
    return task_id


async def buffered(conn: Conn, job_id: str) -> list[TaskRow]:
    """An async job's updates waiting for a server step, oldest first."""
    return await fetch_all(conn, BUFFERED, {"job_id": job_id}, TaskRow)


async def take(conn: Conn, task_ids: list[str], step: int) -> None:
    """Mark buffered updates as merged by server step `step`."""
    await conn.executemany(TAKE, [{"id": t, "step": step} for t in task_ids])


async def merged_into(conn: Conn, job_id: str, step: int) -> list[TaskRow]:
    """The updates server step `step` of an async job merges, by slot."""
    return await fetch_all(conn, MERGED_INTO, {"job_id": job_id, "step": step}, TaskRow)


async def release_merged(conn: Conn, job_id: str, step: int) -> None:
    """Step `step` is merged: the updates it took are no longer needed (the updates still in
    the buffer are, whatever model they trained on)."""
    await conn.execute(RELEASE_MERGED, {"job_id": job_id, "step": step})


async def release_left_over(conn: Conn, job_id: str) -> None:
    """The last step is merged: the updates still in the buffer will never be."""
    await conn.execute(RELEASE_LEFT_OVER, {"job_id": job_id})


async def release_dropped(conn: Conn, task_id: str) -> None:
    """An update dropped as stale: no step will merge it."""
    await conn.execute(RELEASE_ONE, {"id": task_id})


async def repoint_queued(conn: Conn, job_id: str, round_idx: int, now: int) -> None:
    """Queued training tasks of an async job train on round `round_idx`'s model (the newest)."""
    params = {"job_id": job_id, "round_idx": round_idx, "now": now}
    await conn.execute(REPOINT_QUEUED, params)


async def cancel_training(conn: Conn, job_id: str, now: int) -> list[TaskRow]:
    """Cancel a job's unfinished training tasks (an async job's last step is merged); its
    held-out evaluations go on."""
    rows = await fetch_all(conn, CANCEL_TRAINING, {"job_id": job_id, "now": now}, TaskRow)
    for task in rows:
        if task.node_id is not None:
            await attempts.finish(
                conn, task.id, now, "cancelled", "cancelled", "not needed: the last step is merged"
            )
    return rows

"""A job's end before its last round: failed or cancelled (its open tasks cancelled, its open
round ended the same way), and the message that says which task failed it."""

from __future__ import annotations

import logging
from typing import Literal

from gridx.coordinator.db import events, jobs, rounds, tasks
from gridx.coordinator.db.connection import Conn
from gridx.coordinator.db.tasks import TaskRow
from gridx.coordinator.logs import ids
from gridx.schemas.jobs import INIT_ROUND, round_label

log = logging.getLogger("gridx.coordinator.rounds")


async def fail_job(conn: Conn, job_id: str, error: str, now: int) -> bool:
    """Fail a job inside the caller's transaction: its open tasks are cancelled, its round failed.

    Returns:
        False when the job had already finished.
    """
    if not await close_job(conn, job_id, "failed", {"error": error}, now, error=error):
        return False
    log.info("job failed: %s", error, extra=ids(job=job_id))
    return True


async def close_job(
    conn: Conn,
    job_id: str,
    status: Literal["failed", "cancelled"],
    event: dict[str, object],
    now: int,
    error: str | None = None,
) -> bool:
    """End an unfinished job as `status` inside the caller's transaction: its open tasks are
    cancelled, its open round takes the same status, and the log gets `job_<status>` with
    `event`'s data.

    Returns:
        False when the job had already finished (nothing changes).
    """
    if not await jobs.transition(conn, job_id, status, now, error=error):
        return False
    await tasks.cancel_job(conn, job_id, now)
    for rnd in await rounds.for_job(conn, job_id):
        if rnd.status in ("running", "aggregating"):
            await rounds.transition(conn, job_id, rnd.idx, status, now)
    await events.append(conn, job_id, f"job_{status}", event, now)
    return True


def task_failure_message(task: TaskRow, holder: str | None = None) -> str:
    """Why a job failed because one of its tasks did (`holder`: whose data it trained on)."""
    if task.error_code == "lease_expired" or task.losses >= task.max_losses:
        tries = f"{task.losses} node loss(es)"
    else:
        tries = f"{task.attempts} attempt(s)"
    if task.round_idx == INIT_ROUND:
        return (
            f"the initialisation step (train.py with GRIDX_INIT=1, then one ordinary run on "
            f"shard 0) failed after {tries}: [{task.error_code}] {task.error}"
        )
    which = f"{holder}" if holder else f"shard {task.shard}"
    return (
        f"{round_label(task.round_idx)}, {which} failed after {tries}: "
        f"[{task.error_code}] {task.error}"
    )

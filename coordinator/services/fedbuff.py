"""Asynchronous jobs (`mode: async`, FedBuff): updates buffered, a server step every K of them.

Round r of an async job is its server step r: its input model is the model after r steps, and
its tasks are the updates it merges, whichever model each was trained on. Nothing waits:

- an update that comes in (`after_update`, in its completion's transaction) joins the job's
  buffer, unless it is more than `max_staleness` steps behind (then it is dropped, its task's
  verdict `stale`); its shard is queued again at once on the newest model;
- once the buffer holds `buffer` updates and no step is merging, the K oldest are taken for the
  current step (`tasks.merged_into`), which turns 'aggregating' (the job stays 'running');
- the merged step (`after_step`, in its commit's transaction) opens the next step's row with the
  new model, moves every queued task onto it, and takes the next K if they are already in; the
  last step ends the job and cancels the training still running.

The buffer lives in the tasks table, so a coordinator that restarts mid-buffer loses no accepted
update, and a step taken before the restart is merged by `aggregation.adopt_orphans`.
"""

from __future__ import annotations

from gridx.coordinator.db import buffer, events, rounds, tasks
from gridx.coordinator.db.connection import Conn
from gridx.coordinator.db.jobs import JobRow
from gridx.coordinator.db.tasks import TaskRow
from gridx.schemas.jobs import INIT_ROUND, JobConfig


def applies(config: JobConfig, round_idx: int) -> bool:
    """Whether a round of this job is an async server step (the initialisation step is not)."""
    return config.mode == "async" and round_idx != INIT_ROUND


async def after_update(conn: Conn, job: JobRow, done: TaskRow, now: int) -> int | None:
    """An async job's update is in (its task just succeeded, same transaction): drop it if too
    stale, queue its shard's next task on the newest model, and take a step if the buffer is full.

    Returns:
        The step to merge now (the caller merges it after commit), or None.
    """
    config, step = job.config, job.current_round
    behind = step - done.round_idx
    if config.max_staleness is not None and behind > config.max_staleness:
        await tasks.set_verdicts(conn, {done.id: "stale"})
        if not config.keep_updates:
            await buffer.release_dropped(conn, done.id)
        payload = {"task": done.id, "round": done.round_idx, "step": step, "behind": behind}
        await events.append(conn, job.id, "update_dropped", payload, now)
    if job.status == "running":
        await buffer.insert_next(conn, done, step, config.shards, now)
    return await take_step(conn, job.id, config, step, now)


async def take_step(conn: Conn, job_id: str, config: JobConfig, step: int, now: int) -> int | None:
    """If step `step` still collects and the buffer holds a step's worth of updates, take the
    oldest for it and mark it aggregating (same transaction); the step to merge, or None."""
    await rounds.lock(conn, job_id, step)
    rnd = await rounds.get(conn, job_id, step)
    if rnd is None or rnd.status != "running":
        return None
    waiting = await buffer.buffered(conn, job_id)
    if len(waiting) < config.step_size:
        return None
    taken = waiting[: config.step_size]
    await buffer.take(conn, [t.id for t in taken], step)
    if await rounds.transition(conn, job_id, step, "aggregating", now) is None:
        return None
    payload = {"round": step, "updates": len(taken), "behind": [step - t.round_idx for t in taken]}
    await events.append(conn, job_id, "round_aggregating", payload, now)
    return step


async def after_step(
    conn: Conn, job: JobRow, step: int, model: tuple[str, str], last: bool, now: int
) -> int | None:
    """Step `step` of an async job is merged into `model` (its sha and signature; same
    transaction as its commit, which moved the job's `current_round` on): open the next step
    and move the queue onto it, or end the job's training after the last.

    Returns:
        The next step to merge now (None: its buffer is not full yet, or the job is done).
    """
    if last:
        await buffer.cancel_training(conn, job.id, now)
        if not job.config.keep_updates:
            await buffer.release_left_over(conn, job.id)
        return None
    nxt = step + 1
    await rounds.create(
        conn, job_id=job.id, idx=nxt, input_sha=model[0], signature=model[1], now=now
    )
    await buffer.repoint_queued(conn, job.id, nxt, now)
    return await take_step(conn, job.id, job.config, nxt, now)

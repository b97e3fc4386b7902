"""A job's rounds: opening one (its row and its tasks), and noticing when one is complete."""

from __future__ import annotations

from gridx.coordinator.db import events, jobs, rounds, tasks
from gridx.coordinator.db.connection import Conn
from gridx.coordinator.db.tasks import INIT_TRIES, TaskRow
from gridx.coordinator.services.local_data import Fleet, place
from gridx.schemas.jobs import INIT_ROUND, JobConfig


def first_round(config: JobConfig, start: tuple[str, str] | None) -> int:
    """Round 0 when the job has a starting model (or one shard, which has nothing to agree
    with); else the initialisation step that makes one (`INIT_ROUND`), if the job wants it. An
    async job always starts from one: its updates are differences from the model they left."""
    if start is not None:
        return 0
    if config.mode == "async":
        return INIT_ROUND
    return INIT_ROUND if config.init_step and config.shards > 1 else 0


async def open_round(
    conn: Conn,
    job_id: str,
    config: JobConfig,
    idx: int,
    start: tuple[str, str] | None,
    now: int,
    fleet: Fleet,
) -> int:
    """Create round `idx` from `start` (the input model's sha and signature; None: each node
    initialises its own) and enqueue its tasks, in the caller's transaction.

    Every shard gets `config.replicas` copies (one under adaptive replication: a check is
    queued when a result comes in, `spot_checks`); the initialisation step trains shard 0 only,
    in as many copies, with `INIT_TRIES` attempts. A job on node-local data gets one task per
    node that holds it (`local_data.place`; the round waits if too few are there).

    Returns:
        How many tasks became ready.
    """
    k = config.shards
    await rounds.create(
        conn,
        job_id=job_id,
        idx=idx,
        input_sha=start[0] if start else None,
        signature=start[1] if start else None,
        now=now,
    )
    if config.dataset is not None:
        return await place(conn, job_id, config, idx, now, fleet, announce=True)
    shards = [0] if idx == INIT_ROUND else range(k)
    copies = 1 if config.adaptive else config.copies
    slots = [s + c * k for c in range(copies) for s in shards]
    await tasks.insert_round(
        conn,
        job_id=job_id,
        round_idx=idx,
        shards=k,
        slots=sorted(slots),
        max_attempts=INIT_TRIES if idx == INIT_ROUND else config.max_attempts,
        max_losses=config.max_node_losses,
        now=now,
    )
    return len(slots)


async def open_evaluation(
    conn: Conn, job_id: str, config: JobConfig, round_idx: int, now: int
) -> int:
    """Enqueue the held-out evaluation of round `round_idx`'s model; returns 1 (tasks ready)."""
    await tasks.insert_round(
        conn,
        job_id=job_id,
        round_idx=round_idx,
        shards=config.shards,
        slots=[],
        max_attempts=config.max_attempts,
        max_losses=config.max_node_losses,
        now=now,
        kind="evaluate",
    )
    return 1


async def close_round_if_complete(conn: Conn, task: TaskRow, now: int) -> bool:
    """After a task succeeded (same transaction): if its round is complete, mark the round and
    the job aggregating. Only marks: the caller merges after commit (`merge_in_background`).

    Returns:
        True when the caller must now merge this round.
    """
    await rounds.lock(conn, task.job_id, task.round_idx)
    if await tasks.round_pending(conn, task.job_id, task.round_idx) > 0:
        return False
    if await rounds.transition(conn, task.job_id, task.round_idx, "aggregating", now) is None:
        return False
    await jobs.transition(conn, task.job_id, "aggregating", now)
    await events.append(conn, task.job_id, "round_aggregating", {"round": task.round_idx}, now)
    return True

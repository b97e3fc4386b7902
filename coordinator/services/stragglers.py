"""Rounds that do not wait for their slowest node: backup copies of straggling tasks (as
MapReduce's backup tasks) and rounds that close at a deadline with a fraction of their shards.

Both run in the coordinator's sweeper, every `reaper_s`: a backup is queued only while some
node is idle (long-polling), and wakes it; the first valid result of a shard wins
(`results._record_success` cancels the other copy, which is not charged). A round closed at its
deadline cancels what it still waits for; those results, if they come, are refused as stale
(dropped), and the round's `round_closed` event counts them.
"""

from __future__ import annotations

import logging
import statistics

from gridx.coordinator.db import events, jobs, rounds, stragglers, tasks
from gridx.coordinator.db.connection import Conn
from gridx.coordinator.services.aggregation import merge_in_background
from gridx.coordinator.services.runtime import Runtime

log = logging.getLogger("gridx.coordinator.stragglers")


async def sweep(rt: Runtime) -> int:
    """Close overdue rounds, then back up the worst straggler if a node is idle. Returns how
    many rounds closed and backups were queued."""
    closed = await close_overdue(rt)
    backups = 0
    if len(rt.wakeups) > 0:
        async with rt.db.transaction() as conn:
            backups = await _offer_backup(conn, rt.clock.now_ms())
        rt.wakeups.tasks_ready(backups)
    return closed + backups


async def _offer_backup(conn: Conn, now: int) -> int:
    """Queue a second copy of the task that has run longest past `backup_after` times its
    round's median (past the median itself where its node already lost a copy to a backup in
    this job); none before a task of that round has finished."""
    worst: tuple[float, stragglers.Straggler] | None = None
    medians: dict[tuple[str, int], float] = {}
    for s in await stragglers.stragglers(conn):
        key = (s.job_id, s.round_idx)
        if key not in medians:
            times = await stragglers.round_times(conn, *key)
            medians[key] = statistics.median(times) if times else 0.0
        if medians[key] <= 0:
            continue
        ratio = (now - s.started_at) / medians[key]
        # a node that already lost a copy to a backup is not waited on that long again
        threshold = 1.0 if s.known_slow else s.backup_after
        if ratio > threshold and (worst is None or ratio > worst[0]):
            worst = (ratio, s)
    if worst is None:
        return 0
    ratio, s = worst
    original = await tasks.get(conn, s.id)
    assert original is not None
    backup = await stragglers.insert_backup(
        conn, s, original.max_attempts, original.max_losses, now
    )
    payload: dict[str, object] = {"task": s.id, "backup": backup, "median_x": round(ratio, 1)}
    await events.append(conn, s.job_id, "backup_task", payload, now)
    log.info("backup copy %s of %s (%.1fx the round's median)", backup, s.id, ratio)
    return 1


async def close_overdue(rt: Runtime) -> int:
    """Close every round whose deadline passed with `min_fraction` of its shards in, and merge
    what came."""
    now = rt.clock.now_ms()
    closed = 0
    for job_id, idx in await stragglers.overdue_rounds(rt.db.reader, now):
        async with rt.db.transaction() as conn:
            await rounds.lock(conn, job_id, idx)
            dropped = await stragglers.cancel_round(conn, job_id, idx, now)
            if await tasks.round_pending(conn, job_id, idx) > 0:
                continue
            if await rounds.transition(conn, job_id, idx, "aggregating", now) is None:
                continue
            await jobs.transition(conn, job_id, "aggregating", now)
            payload: dict[str, object] = {"round": idx, "dropped": len(dropped)}
            await events.append(conn, job_id, "round_closed", payload, now)
        log.info("round %d of %s closed at its deadline, %d dropped", idx, job_id, len(dropped))
        merge_in_background(rt, job_id, idx)
        closed += 1
    return closed

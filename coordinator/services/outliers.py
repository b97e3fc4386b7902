"""A training task that failed for good, and what its round does about it.

The policy, per strategy: under a robust rule (`schemas.jobs.ROBUST`: fedmedian,
trimmed_mean, krum) a holder whose update is invalid every time is an outlier of that round,
left out of its merge and recorded in the round (`excluded`), while at least one other update
remains; under a mean (fedavg, fedprox, the server optimizers) the job fails, the message
naming who held the data (the node and its owner, or the shard and its rows), as it does for
an async job under any rule. Either way a
failure that only repeats itself is not tried again: an invalid update (the same script on the
same data from the same start writes the same file), or an attempt that ended exactly as the one
before it.
"""

from __future__ import annotations

from gridx.coordinator.db import attempts, events, jobs, nodes, tasks
from gridx.coordinator.db.connection import Conn
from gridx.coordinator.db.tasks import TaskRow
from gridx.coordinator.services.lifecycle import fail_job, task_failure_message
from gridx.coordinator.services.rounds import close_round_if_complete
from gridx.schemas.jobs import INIT_ROUND, JobConfig
from gridx.schemas.strategies import ROBUST

DETERMINISTIC = ("invalid_weights",)
"""Failures a retry repeats: the same code, data and start give the same update."""


async def worth_retrying(conn: Conn, task: TaskRow, code: str, message: str) -> bool:
    """Whether a user-code failure may go better on another try (attempts permitting)."""
    if task.attempts >= task.max_attempts or code in DETERMINISTIC:
        return False
    return await attempts.previous_error(conn, task.id) != (code, message)


async def holder(conn: Conn, task: TaskRow) -> str:
    """Who held the data of a task, in words: the node and its owner, or the shard's rows."""
    if task.target_node is not None:
        found = await nodes.by_id(conn, task.target_node)
        if found is not None:
            return f"the data of node {found.name} ({found.owner_email})"
    rows = {s.idx: s.rows for s in await jobs.shards(conn, task.job_id)}
    return f"shard {task.shard} ({rows.get(task.shard, task.weight or 0)} rows)"


async def settle(conn: Conn, config: JobConfig, task: TaskRow, now: int) -> bool:
    """A training task failed for good (same transaction): leave it out of its round under a
    robust rule, else fail the job. Whether the round is now complete and must be merged."""
    who = await holder(conn, task)
    # an async job has no round to leave a holder out of: its shards train on, step by step
    robust = config.strategy.name in ROBUST and config.copies == 1 and config.mode == "sync"
    if (
        robust
        and task.round_idx != INIT_ROUND
        and await tasks.round_usable(conn, task.job_id, task.round_idx) > 0
    ):
        await tasks.set_verdicts(conn, {task.id: "excluded"})
        payload = {"task": task.id, "round": task.round_idx, "holder": who}
        await events.append(conn, task.job_id, "task_excluded", payload, now)
        return await close_round_if_complete(conn, task, now)
    await fail_job(conn, task.job_id, task_failure_message(task, who), now)
    return False

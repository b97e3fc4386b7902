"""The task queue: leases with fencing tokens, attempts counted at claim, guarded transitions."""

from __future__ import annotations

import msgspec

from gridx.coordinator.db import attempts, placement
from gridx.coordinator.db.connection import (
    Conn,
    Params,
    columns_of,
    fetch_all,
    fetch_one,
    fetch_value,
)
from gridx.coordinator.db.datasets import MAY_USE
from gridx.schemas.agent import Capabilities
from gridx.schemas.jobs import INIT_ROUND, TaskStatus

EVAL_SLOT = -1
"""The slot of a round's held-out evaluation task (training tasks hold 0, 1, ...)."""
INIT_TRIES = 2
"""The initialisation step's tries: with zero epochs, then one ordinary run (its own budget,
never the job's `max_attempts`)."""

# A task goes queued -> leased -> queued (lease lost) | succeeded | failed, or to cancelled from
# queued or leased; each UPDATE below names the one status it leaves in its WHERE clause.


class TaskRow(msgspec.Struct, kw_only=True):
    """A task record."""

    id: str
    job_id: str
    round_idx: int
    slot: int
    """Where the task sits in its round: copy `copy` of shard `shard` is slot
    `shard + copy * shards`; the held-out evaluation is `EVAL_SLOT`."""
    shard: int
    copy: int
    status: TaskStatus
    node_id: str | None
    lease_token: str | None
    lease_expires_at: int | None
    attempts: int
    max_attempts: int
    losses: int
    max_losses: int
    result_sha: str | None
    metrics: dict[str, float] | None
    error_code: str | None
    error: str | None
    verdict: str | None = None
    compute_ms: int = 0
    kind: str = "train"
    target_node: str | None = None
    """The only node that may take it (a task on a node-local dataset)."""
    weight: int | None = None
    """Its update's sample weight when no shard gives one (the rows its node declared)."""
    phase: str | None = None
    phase_detail: str | None = None
    merged_into: int | None = None
    """An async job's update: the server step that merged it (None: waiting in the buffer)."""
    upload_bytes: int | None = None
    """The size of the file its node uploaded (its share of the job's traffic)."""
    upload_sha: str | None = None
    """A compressed update's own hash, once decoded into `result_sha`."""


COLUMNS = columns_of(TaskRow)
RETURNING = f"RETURNING {COLUMNS}"

INSERT = """
INSERT INTO tasks (id, job_id, round_idx, slot, shard, copy, status, max_attempts, max_losses,
    kind, target_node, weight, created_at, updated_at)
VALUES (:id, :job_id, :round_idx, :slot, :shard, :copy, 'queued', :max_attempts, :max_losses,
    :kind, :target_node, :weight, :now, :now)
"""
GET = f"SELECT {COLUMNS} FROM tasks WHERE id = :id"
FOR_JOB = f"""
SELECT {COLUMNS} FROM tasks WHERE job_id = :job_id
ORDER BY round_idx, slot
"""
# A lease that ran out is the node's loss, not a try of the user's code: the attempt is given
# back and counted as a loss instead, under the task's own cap.
REQUEUE_EXPIRED = f"""
UPDATE tasks SET status = 'queued', node_id = NULL, lease_token = NULL, lease_expires_at = NULL,
    result_sha = NULL, attempts = attempts - 1, losses = losses + 1, updated_at = :now
WHERE status = 'leased' AND lease_expires_at <= :now AND losses + 1 < max_losses
{RETURNING}
"""
FAIL_EXPIRED = f"""
UPDATE tasks SET status = 'failed', lease_expires_at = NULL, result_sha = NULL, updated_at = :now,
    losses = losses + 1, error_code = 'lease_expired',
    error = 'the nodes holding it stopped answering, ' || (losses + 1) || ' times'
WHERE status = 'leased' AND lease_expires_at <= :now AND losses + 1 >= max_losses
{RETURNING}
"""
# The oldest queued task of an active job whose placement this node meets (a task bound to a
# node only to that node, while it still holds the job's dataset for the job's owner), that is
# not a copy of
# a shard whose other copy this node's owner holds or did, for a node that is, at this moment
# and in this transaction, not banned, removed or draining, of an owner not disabled, whose
# reputation (agreed + 1) / (agreed + disagreed + 1) is at least :min_reputation, and that, if
# it is suspect (outvoted since it last earned trust), takes a replicated job's task only once
# the task has waited since :defer_before. On PostgreSQL,
# replicas claiming at once skip each other's locked candidates instead of queueing on them.
_CLAIM = f"""
UPDATE tasks SET status = 'leased', node_id = :node_id, lease_token = :token,
    lease_expires_at = :expires, attempts = attempts + 1, updated_at = :now, phase = NULL,
    phase_detail = NULL
WHERE status = 'queued' AND id = (
    SELECT t.id FROM tasks t JOIN jobs j ON j.id = t.job_id
    WHERE t.status = 'queued'
        AND (j.status IN ('queued', 'running')
            OR (t.kind = 'evaluate' AND j.status IN ('aggregating', 'succeeded')))
        AND NOT EXISTS (SELECT 1 FROM users o WHERE o.id = j.owner_id AND o.disabled = 1)
        AND {placement.MATCHES}
        AND (t.target_node IS NULL OR t.target_node = :node_id)
        AND (j.dataset IS NULL OR t.kind = 'evaluate' OR EXISTS (
            SELECT 1 FROM node_datasets d JOIN nodes n ON n.id = d.node_id
            WHERE d.node_id = :node_id AND d.name = j.dataset AND {{may_use}}))
        AND (t.copy = 0 OR j.replicas > 1 OR NOT EXISTS (
            SELECT 1 FROM tasks o WHERE o.job_id = t.job_id AND o.round_idx = t.round_idx
                AND o.shard = t.shard AND o.node_id = :node_id AND o.status = 'leased'))
        AND (j.replicas = 1 OR NOT EXISTS (
            SELECT 1 FROM tasks o JOIN nodes n ON n.id = o.node_id
            WHERE o.job_id = t.job_id AND o.round_idx = t.round_idx
                AND o.slot != t.slot AND o.shard = t.shard
                AND n.owner_id = :owner_id))
        AND EXISTS (
            SELECT 1 FROM nodes me JOIN users mo ON mo.id = me.owner_id
            WHERE me.id = :node_id AND me.banned = 0 AND me.removed = 0 AND me.draining = 0
                AND mo.disabled = 0
                AND me.agreed + 1 >= CAST(:min_reputation AS DOUBLE PRECISION)
                    * (me.agreed + me.disagreed + 1)
                AND (me.suspect = 0 OR j.replicas = 1 OR t.created_at <= :defer_before))
    ORDER BY t.created_at, t.job_id, t.round_idx, t.slot LIMIT 1 {{lock}})
{RETURNING}
"""
CLAIM = {
    "sqlite": _CLAIM.format(lock="", may_use=MAY_USE),
    "postgresql": _CLAIM.format(lock="FOR UPDATE OF t SKIP LOCKED", may_use=MAY_USE),
}
# A result is first attached by its upload (through the lease's signed URL), then completed:
# a node can only complete with the file it uploaded under its own lease.
COMPLETE = f"""
UPDATE tasks SET status = 'succeeded', metrics = :metrics, lease_expires_at = NULL,
    updated_at = :now, compute_ms = :compute_ms
WHERE id = :id AND status = 'leased' AND node_id = :node_id AND lease_token = :token
    AND (result_sha = :result_sha OR (kind = 'evaluate' AND result_sha IS NULL
        AND :result_sha = ''))
{RETURNING}
"""
REQUEUE = f"""
UPDATE tasks SET status = 'queued', node_id = NULL, lease_token = NULL, lease_expires_at = NULL,
    result_sha = NULL, attempts = attempts - :refund, losses = losses + :lost,
    error_code = :error_code, error = :error, updated_at = :now
WHERE id = :id AND status = 'leased' AND node_id = :node_id AND lease_token = :token
{RETURNING}
"""
FAIL = f"""
UPDATE tasks SET status = 'failed', lease_expires_at = NULL, result_sha = NULL,
    losses = losses + :lost, error_code = :error_code, error = :error, updated_at = :now
WHERE id = :id AND status = 'leased' AND node_id = :node_id AND lease_token = :token
{RETURNING}
"""
CANCEL_JOB = f"""
UPDATE tasks SET status = 'cancelled', lease_expires_at = NULL, updated_at = :now
WHERE job_id = :job_id AND status IN ('queued', 'leased')
{RETURNING}
"""
ROUND_PENDING = """
SELECT count(*) FROM tasks WHERE job_id = :job_id AND round_idx = :round_idx
AND status NOT IN ('succeeded', 'cancelled') AND NOT (status = 'failed' AND verdict = 'excluded')
"""
ROUND_USABLE = """
SELECT count(*) FROM tasks WHERE job_id = :job_id AND round_idx = :round_idx
AND kind = 'train' AND status != 'failed'
"""


async def insert_round(
    conn: Conn,
    *,
    job_id: str,
    round_idx: int,
    shards: int,
    slots: list[int],
    max_attempts: int,
    max_losses: int,
    now: int,
    kind: str = "train",
    targets: list[tuple[str, int]] | None = None,
) -> list[str]:
    """Enqueue tasks of a round of a job of `shards` shards, one per slot; returns their ids.
    `kind` `evaluate`: the held-out evaluation of the round's model (its slot is ignored).
    `targets`: per slot, the (node, sample weight) of a task bound to one node."""
    if kind == "evaluate":  # one per round, in a slot of its own
        slots, ids = [EVAL_SLOT], [f"{job_id}-r{round_idx}-eval"]
    else:
        name = "init" if round_idx == INIT_ROUND else f"r{round_idx}"
        ids = [f"{job_id}-{name}-s{s}" for s in slots]
    await conn.executemany(
        INSERT,
        [
            {
                "id": tid,
                "job_id": job_id,
                "round_idx": round_idx,
                "slot": s,
                "shard": max(s, 0) % shards,
                "copy": max(s, 0) // shards,
                "max_attempts": max_attempts,
                "max_losses": max_losses,
                "kind": kind,
                "target_node": targets[i][0] if targets else None,
                "weight": targets[i][1] if targets else None,
                "now": now,
            }
            for i, (s, tid) in enumerate(zip(slots, ids, strict=True))
        ],
    )
    return ids


async def get(conn: Conn, task_id: str) -> TaskRow | None:
    """A task by id."""
    return await fetch_one(conn, GET, {"id": task_id}, TaskRow)


async def for_job(conn: Conn, job_id: str) -> list[TaskRow]:
    """A job's tasks, by round then shard."""
    return await fetch_all(conn, FOR_JOB, {"job_id": job_id}, TaskRow)


async def expire_leases(conn: Conn, now: int) -> tuple[list[TaskRow], list[TaskRow]]:
    """Return expired leases to the queue; fail tasks that used up their attempts.

    Returns:
        (requeued tasks, tasks that failed for good).
    """
    requeued = await fetch_all(conn, REQUEUE_EXPIRED, {"now": now}, TaskRow)
    failed = await fetch_all(conn, FAIL_EXPIRED, {"now": now}, TaskRow)
    for task in requeued + failed:
        await attempts.finish(conn, task.id, now, "lease_expired", "lease_expired", "lease expired")
    return requeued, failed


async def claim(
    conn: Conn,
    *,
    node_id: str,
    token: str,
    now: int,
    lease_ms: int,
    caps: Capabilities | None = None,
    owner_id: int = 0,
    min_reputation: float = 0.0,
    defer_ms: int = 0,
) -> TaskRow | None:
    """Lease the oldest queued task of an active job this node can run (counts one attempt).

    Args:
        caps: what the node offers, matched against the jobs' `require_*`, `arch`, `min_*`.
        owner_id: the node's owner (never two copies of one shard to one owner).
        min_reputation: a node below it gets nothing.
        defer_ms: how long a replicated job's task waits before a suspect node may take it.
    """
    c = caps or Capabilities()
    params = {
        "node_id": node_id,
        "token": token,
        "now": now,
        "expires": now + lease_ms,
        **placement.node_params(c),
        "owner_id": owner_id,
        "min_reputation": min_reputation,
        "defer_before": now - defer_ms,
    }
    task = await fetch_one(conn, CLAIM[conn.dialect], params, TaskRow)
    if task is not None:
        await attempts.start(conn, task.id, node_id, now)
    return task


async def complete(
    conn: Conn,
    *,
    task_id: str,
    node_id: str,
    token: str,
    result_sha: str,
    metrics: str,
    now: int,
    claimed_ms: int,
    timeout_ms: int,
    output: str | None = None,
) -> TaskRow | None:
    """Mark a leased task succeeded if `node_id`/`token` still hold its lease and `result_sha` is
    the file uploaded under it; else None. Its `compute_ms` is the time the coordinator
    measured from the lease to now, capped by the task's timeout and by what the node claims.
    `output` (the tail of what it printed) is kept with the attempt."""
    started = await attempts.started_at(conn, task_id)
    measured = now - started if started is not None else 0
    params = {
        "id": task_id,
        "node_id": node_id,
        "token": token,
        "result_sha": result_sha,
        "metrics": metrics,
        "now": now,
        "compute_ms": max(0, min(measured, timeout_ms, claimed_ms)),
    }
    task = await fetch_one(conn, COMPLETE, params, TaskRow)
    if task is not None:
        await attempts.finish(conn, task.id, now, "succeeded", stderr_tail=output)
    return task


async def give_up(
    conn: Conn,
    *,
    task_id: str,
    node_id: str,
    token: str,
    outcome: str,
    error_code: str,
    error: str,
    stderr_tail: str,
    requeue: bool,
    refund: bool,
    now: int,
    lost: bool = False,
) -> TaskRow | None:
    """End the current attempt of a leased task: back to the queue, or failed for good.

    Args:
        refund: give the attempt back (released, or the node's own failure).
        lost: count a node loss (the node failed, not the user's code).

    Returns:
        The task after the change, or None if the lease is not held (fencing).
    """
    params = {
        "id": task_id,
        "node_id": node_id,
        "token": token,
        "error_code": error_code,
        "error": error,
        "now": now,
        "lost": int(lost),
    }
    if requeue:
        task = await fetch_one(conn, REQUEUE, {**params, "refund": int(refund)}, TaskRow)
    else:
        task = await fetch_one(conn, FAIL, params, TaskRow)
    if task is not None:
        await attempts.finish(conn, task.id, now, outcome, error_code, error, stderr_tail)
    return task


async def cancel_job(conn: Conn, job_id: str, now: int) -> list[TaskRow]:
    """Cancel every unfinished task of a job."""
    tasks = await fetch_all(conn, CANCEL_JOB, {"job_id": job_id, "now": now}, TaskRow)
    for task in tasks:
        if task.node_id is not None:
            await attempts.finish(conn, task.id, now, "cancelled", "cancelled", "job cancelled")
    return tasks


async def round_pending(conn: Conn, job_id: str, round_idx: int) -> int:
    """How many tasks of a round have not succeeded yet."""
    value = await fetch_value(conn, ROUND_PENDING, {"job_id": job_id, "round_idx": round_idx})
    return int(value or 0)  # type: ignore[call-overload]


SET_VERDICT = "UPDATE tasks SET verdict = :verdict WHERE id = :id AND verdict IS NULL"


async def round_usable(conn: Conn, job_id: str, round_idx: int) -> int:
    """A round's training tasks that have not failed (done, running or waiting)."""
    params = {"job_id": job_id, "round_idx": round_idx}
    return int(await fetch_value(conn, ROUND_USABLE, params) or 0)  # type: ignore[call-overload]


async def set_verdicts(conn: Conn, verdicts: dict[str, str]) -> None:
    """Record, once, whether each copy agreed with its shard's majority (task id -> verdict)."""
    rows: list[Params] = [{"id": t, "verdict": v} for t, v in sorted(verdicts.items())]
    await conn.executemany(SET_VERDICT, rows)

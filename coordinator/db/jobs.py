"""Job records, their shards, and guarded job status transitions."""

from __future__ import annotations

import msgspec

from gridx.coordinator.db import blobs
from gridx.coordinator.db.connection import Conn, fetch_all, fetch_one, rows_of, sources_of
from gridx.coordinator.db.placement import columns as placement_columns
from gridx.schemas.jobs import JobConfig, JobStatus
from gridx.schemas.placement import Placement

ENDED = frozenset({"succeeded", "failed", "cancelled"})
"""Statuses a job never leaves."""
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    "queued": frozenset({"running", "failed", "cancelled"}),
    # an async job is never 'aggregating': its fleet trains on while it merges, and it succeeds
    # straight from 'running'
    "running": frozenset({"aggregating", "succeeded", "failed", "cancelled"}),
    "aggregating": frozenset({"running", "succeeded", "failed", "cancelled"}),
    "succeeded": frozenset(),
    "failed": frozenset(),
    "cancelled": frozenset(),
}


class JobRow(msgspec.Struct, kw_only=True):
    """A job record with its owner's email and task counts."""

    id: str
    owner_id: int
    owner_email: str
    name: str
    status: JobStatus
    config: JobConfig
    code_sha: str
    requirements_sha: str | None
    data_sha: str | None
    data_name: str | None
    current_round: int
    final_pth_sha: str | None
    final_st_sha: str | None
    error: str | None
    created_at: int
    updated_at: int
    tasks_done: int
    """Training tasks done: each (round, shard) once (no initialisation, evaluation, backups)."""
    updates_merged: int
    """An async job's updates its server steps merged."""
    round_width: int
    """The shards of the current round (a local-data job's: one per holder that got one)."""
    eval_code_sha: str | None = None
    test_data_sha: str | None = None
    test_data_name: str | None = None
    dataset: str | None = None
    """A node-local dataset's name (the job uploaded no data)."""
    dp_delta: float | None = None


class RoundRules(msgspec.Struct, kw_only=True, frozen=True):
    """How a job's rounds treat stragglers (copied from its config into columns)."""

    backup_after: float | None = None
    """Back up a task running longer than this times its round's median (None: never)."""
    min_fraction: float = 1.0
    round_deadline_ms: int | None = None


class ShardRow(msgspec.Struct, kw_only=True):
    """One slice of a job's data; `rows` is the sample weight."""

    idx: int
    blob_sha: str | None
    rows: int


_SELECT = """
SELECT j.id, j.owner_id, u.email AS owner_email, j.name, j.status, j.config, j.code_sha,
    j.requirements_sha, j.data_sha, j.data_name, j.current_round, j.final_pth_sha,
    j.final_st_sha, j.error, j.created_at, j.updated_at, j.eval_code_sha, j.test_data_sha,
    j.test_data_name, j.dataset, j.dp_delta,
    (SELECT count(DISTINCT CAST(t.round_idx AS BIGINT) * 1048576 + t.shard) FROM tasks t
        WHERE t.job_id = j.id AND t.status = 'succeeded' AND t.kind = 'train' AND t.round_idx >= 0
    ) AS tasks_done,
    (SELECT count(*) FROM tasks t WHERE t.job_id = j.id AND t.merged_into IS NOT NULL
    ) AS updates_merged,
    (SELECT count(DISTINCT t.shard) FROM tasks t
        WHERE t.job_id = j.id AND t.kind = 'train' AND t.round_idx = j.current_round
    ) AS round_width
FROM jobs j JOIN users u ON u.id = j.owner_id
"""
INSERT = """
INSERT INTO jobs (id, owner_id, name, status, config, code_sha, requirements_sha, data_sha,
    data_name, require_docker, min_sandbox, require_gpu, min_cpus, min_memory_mb, arch, replicas,
    shard_count, eval_code_sha, test_data_sha, test_data_name, backup_after, min_fraction,
    round_deadline_ms, dataset, dp_delta, keep_updates, keep_rounds, created_at, updated_at)
VALUES (:id, :owner_id, :name, 'queued', :config, :code_sha, :requirements_sha, :data_sha,
    :data_name, :require_docker, :min_sandbox, :require_gpu, :min_cpus, :min_memory_mb, :arch,
    :replicas, :shard_count, :eval_code_sha, :test_data_sha, :test_data_name, :backup_after,
    :min_fraction, :round_deadline_ms, :dataset, :dp_delta, :keep_updates, :keep_rounds, :now,
    :now)
"""
INSERT_SHARD = (
    "INSERT INTO shards (job_id, idx, blob_sha, rows) VALUES (:job_id, :idx, :sha, :rows)"
)
SHARDS = "SELECT idx, blob_sha, rows FROM shards WHERE job_id = :job_id ORDER BY idx"
GET = _SELECT + " WHERE j.id = :id"
OF_OWNER = _SELECT + " WHERE j.owner_id = :owner_id ORDER BY j.created_at DESC, j.id"
ALL = _SELECT + " ORDER BY j.created_at DESC, j.id"
TRANSITION = {
    to: f"""
UPDATE jobs SET status = :to, updated_at = :now, error = coalesce(:error, error),
    current_round = coalesce(:round, current_round),
    final_pth_sha = coalesce(:final_pth, final_pth_sha),
    final_st_sha = coalesce(:final_st, final_st_sha)
WHERE id = :id AND status IN ({sources})
RETURNING id
"""
    for to, sources in sources_of(TRANSITIONS).items()
}


async def create(
    conn: Conn,
    *,
    job_id: str,
    owner_id: int,
    name: str,
    config: str,
    code_sha: str,
    requirements_sha: str | None,
    data_sha: str | None,
    data_name: str | None,
    shards: list[tuple[str | None, int]],
    placement: Placement,
    now: int,
    replicas: int = 1,
    evaluation: tuple[str, str, str] | None = None,
    rules: RoundRules | None = None,
    dataset: str | None = None,
    dp_delta: float | None = None,
    keep_updates: bool = False,
    keep_rounds: int = 1,
) -> None:
    """Insert a queued job and its shards [(blob sha or None, rows), ...], each trained in
    `replicas` copies."""
    rules = rules or RoundRules()
    await conn.execute(
        INSERT,
        {
            "id": job_id,
            "owner_id": owner_id,
            "name": name,
            "config": config,
            "code_sha": code_sha,
            "requirements_sha": requirements_sha,
            "data_sha": data_sha,
            "data_name": data_name,
            **placement_columns(placement),
            "replicas": replicas,
            "shard_count": len(shards),
            "eval_code_sha": evaluation[0] if evaluation else None,
            "test_data_sha": evaluation[1] if evaluation else None,
            "test_data_name": evaluation[2] if evaluation else None,
            "backup_after": rules.backup_after,
            "min_fraction": rules.min_fraction,
            "round_deadline_ms": rules.round_deadline_ms,
            "dataset": dataset,
            "dp_delta": dp_delta,
            "keep_updates": int(keep_updates),
            "keep_rounds": keep_rounds,
            "now": now,
        },
    )
    await conn.executemany(
        INSERT_SHARD,
        [
            {"job_id": job_id, "idx": i, "sha": sha, "rows": rows}
            for i, (sha, rows) in enumerate(shards)
        ],
    )


async def get(conn: Conn, job_id: str) -> JobRow | None:
    """A job by id."""
    return await fetch_one(conn, GET, {"id": job_id}, JobRow)


async def list_jobs(conn: Conn, owner_id: int | None) -> list[JobRow]:
    """An owner's jobs (all jobs when None), newest first."""
    if owner_id is None:
        return await fetch_all(conn, ALL, {}, JobRow)
    return await fetch_all(conn, OF_OWNER, {"owner_id": owner_id}, JobRow)


async def shards(conn: Conn, job_id: str) -> list[ShardRow]:
    """A job's shards in order."""
    return await fetch_all(conn, SHARDS, {"job_id": job_id}, ShardRow)


ADVANCE = """
UPDATE jobs SET current_round = :round, updated_at = :now
WHERE id = :id AND status = 'running' AND current_round < :round
RETURNING id
"""


async def advance(conn: Conn, job_id: str, current_round: int, now: int) -> bool:
    """An async job's next server step (it stays 'running'); False when the job ended."""
    params = {"id": job_id, "round": current_round, "now": now}
    return bool(await rows_of(conn, ADVANCE, params))


async def transition(
    conn: Conn,
    job_id: str,
    to: JobStatus,
    now: int,
    *,
    error: str | None = None,
    current_round: int | None = None,
    final_pth_sha: str | None = None,
    final_st_sha: str | None = None,
) -> bool:
    """Move a job to `to` if its current status allows it; False when it did not. A job that
    ends lets go of the blobs only its run needed (`blobs.release_inputs`)."""
    rows = await rows_of(
        conn,
        TRANSITION[to],
        {
            "id": job_id,
            "to": to,
            "now": now,
            "error": error,
            "round": current_round,
            "final_pth": final_pth_sha,
            "final_st": final_st_sha,
        },
    )
    if rows and to in ENDED:
        await blobs.release_inputs(conn, job_id, succeeded=to == "succeeded")
    return bool(rows)


DELETE = [
    "DELETE FROM events WHERE job_id = :id",
    "DELETE FROM jobs WHERE id = :id",  # shards, rounds, tasks and attempts go with it
]
ENDED_BEFORE = """
SELECT id FROM jobs WHERE status IN ('succeeded', 'failed', 'cancelled') AND updated_at < :before
ORDER BY updated_at LIMIT :batch
"""


async def delete(conn: Conn, job_id: str) -> None:
    """Delete a job and every row of it (its blobs are the sweeper's)."""
    for sql in DELETE:
        await conn.execute(sql, {"id": job_id})


async def ended_before(conn: Conn, before: int, batch: int = 100) -> list[str]:
    """Jobs that ended before `before` (epoch ms), oldest first."""
    return [str(r[0]) for r in await conn.fetch(ENDED_BEFORE, {"before": before, "batch": batch})]

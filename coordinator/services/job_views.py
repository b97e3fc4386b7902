"""Jobs as the API shows them: listings, the detail view with rounds and tasks, the live feed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec

from gridx.coordinator.db import attempts, blobs, events, jobs, nodes, rounds, tasks
from gridx.coordinator.db.jobs import JobRow
from gridx.coordinator.db.users import UserRow
from gridx.coordinator.errors import NotFound
from gridx.coordinator.services import fedbuff, waiting
from gridx.coordinator.services.runtime import Runtime
from gridx.schemas.jobs import (
    SUMMED_METRICS,
    AttemptInfo,
    JobDetail,
    JobSummary,
    RoundInfo,
    TaskInfo,
)


def summary(row: JobRow) -> JobSummary:
    """The listing view of a job."""
    config = row.config
    return JobSummary(
        id=row.id,
        name=row.name,
        owner=row.owner_email,
        status=row.status,
        current_round=row.current_round,
        rounds=config.rounds,
        shards=config.shards,
        tasks_done=row.updates_merged if config.mode == "async" else row.tasks_done,
        tasks_total=_tasks_total(row),
        error=row.error,
        created_at=row.created_at,
        updated_at=row.updated_at,
        mode=config.mode,
    )


def _tasks_total(row: JobRow) -> int:
    """Training tasks a job's rounds need: rounds x shards (or holders), an async job's steps x
    its buffer."""
    config = row.config
    if config.mode == "async":
        return config.rounds * config.step_size
    return config.rounds * max(
        row.round_width, config.min_nodes if config.dataset else config.shards
    )


async def visible_job(rt: Runtime, user: UserRow, job_id: str) -> JobRow:
    """A job the caller may see (its owner, or an admin).

    Raises:
        NotFound: no such job, or it belongs to someone else (indistinguishable on purpose).
    """
    row = await jobs.get(rt.db.reader, job_id)
    if row is None or (row.owner_id != user.id and user.role != "admin"):
        raise NotFound(f"no job {job_id!r}")
    return row


async def list_jobs(rt: Runtime, user: UserRow) -> list[JobSummary]:
    """The caller's jobs (all jobs for an admin), newest first."""
    rows = await jobs.list_jobs(rt.db.reader, None if user.role == "admin" else user.id)
    return [summary(r) for r in rows]


async def detail(rt: Runtime, user: UserRow, job_id: str) -> JobDetail:
    """A job with its rounds, tasks and every attempt."""
    row = await visible_job(rt, user, job_id)
    reader = rt.db.reader
    rows = {s.idx: s.rows for s in await jobs.shards(reader, job_id)}
    history: dict[str, list[AttemptInfo]] = {}
    for a in await attempts.for_job(reader, job_id):
        history.setdefault(a.task_id, []).append(
            msgspec.convert(msgspec.to_builtins(a), AttemptInfo)
        )
    task_rows = await tasks.for_job(reader, job_id)
    held = {n for t in task_rows for n in (t.node_id, t.target_node) if n}
    names = await nodes.names(reader, sorted(held))
    merged: dict[int, list[str]] = {}
    behind: dict[int, list[int]] = {}
    excluded: dict[int, list[str]] = {}
    sent: dict[int, int] = {}
    for t in task_rows:
        sent[t.round_idx] = sent.get(t.round_idx, 0) + (t.upload_bytes or 0)
        # an async step merges the updates it took from the buffer, whatever their round
        into = t.merged_into if fedbuff.applies(row.config, t.round_idx) else t.round_idx
        if t.kind == "train" and t.status == "succeeded" and t.node_id and into is not None:
            merged.setdefault(into, []).append(names.get(t.node_id, t.node_id))
        if t.merged_into is not None:
            behind.setdefault(t.merged_into, []).append(t.merged_into - t.round_idx)
        if t.verdict == "excluded":
            who = names.get(t.target_node, "") if t.target_node else ""
            who = f"node {who}" if who else f"shard {t.shard} ({rows.get(t.shard, 0)} rows)"
            excluded.setdefault(t.round_idx, []).append(f"{who}: [{t.error_code}] {t.error}")
    config = row.config
    return JobDetail(
        job=summary(row),
        config=config,
        code_sha256=row.code_sha,
        requirements_sha256=row.requirements_sha,
        data_sha256=row.data_sha,
        final_model_sha256=row.final_pth_sha,
        final_safetensors_sha256=row.final_st_sha,
        delta=row.dp_delta,
        storage_bytes=await blobs.of_job(reader, job_id),
        uploaded_bytes=sum(sent.values()),
        rounds=[
            _round_info(
                r,
                merged.get(r.idx, []),
                excluded.get(r.idx, []),
                behind.get(r.idx, []),
                sent.get(r.idx, 0),
            )
            for r in await rounds.for_job(reader, job_id)
        ],
        tasks=[_task_info(t, rows, history.get(t.id, []), names) for t in task_rows],
        waiting=await waiting.why(rt, row, config, task_rows),
    )


_Metrics = dict[str, float]


def _round_info(
    r: rounds.RoundRow, merged: list[str], excluded: list[str], behind: list[int], sent: int
) -> RoundInfo:
    return RoundInfo(
        index=r.idx,
        status=r.status,
        input_model_sha256=r.input_sha,
        output_model_sha256=r.output_sha,
        metrics=r.metrics,
        started_at=r.started_at,
        finished_at=r.finished_at,
        summed_metrics=sorted(SUMMED_METRICS & set(r.metrics or {})),
        held_out=r.held_out,
        epsilon=r.epsilon,
        nodes=merged if r.status == "done" else [],
        excluded=excluded,
        staleness=behind,
        uploaded_bytes=sent,
    )


def _task_info(
    t: tasks.TaskRow, rows: dict[int, int], history: list[AttemptInfo], names: dict[str, str]
) -> TaskInfo:
    weight = t.weight if t.weight is not None else rows.get(t.shard, 0)
    node = t.node_id or t.target_node
    return TaskInfo(
        id=t.id,
        round=t.round_idx,
        shard=t.shard,
        copy=t.copy,
        verdict=t.verdict,
        status=t.status,
        node_id=node,
        node_name=names.get(node) if node else None,
        attempts=t.attempts,
        max_attempts=t.max_attempts,
        losses=t.losses,
        max_losses=t.max_losses,
        rows=weight if t.kind == "train" else 0,
        metrics=t.metrics,
        error_code=t.error_code,
        error=t.error,
        history=history,
        kind=t.kind,  # type: ignore[arg-type]
        phase=t.phase if t.status == "leased" else None,  # type: ignore[arg-type]
        phase_detail=t.phase_detail if t.status == "leased" else None,
        merged_into=t.merged_into,
        uploaded_bytes=t.upload_bytes,
    )


async def follow(
    rt: Runtime, user: UserRow, job_id: str, poll_s: float
) -> AsyncIterator[JobDetail]:
    """A job's detail now, then again after each new event in its log, until it is settled.

    The log is checked every `poll_s` seconds (one indexed count); the detail is read only
    when the job changed.
    """
    seen = -1
    while True:
        count = await events.count_for_job(rt.db.reader, job_id)
        if count != seen:
            seen = count
            current = await detail(rt, user, job_id)
            yield current
            if current.settled:
                return
        await asyncio.sleep(poll_s)

"""Held-out evaluations: a round's model on the job's test data, by the job's evaluate.py."""

from __future__ import annotations

import logging

import msgspec

from gridx.coordinator.db import blobs, events, jobs, nodes, rounds, tasks
from gridx.coordinator.db.nodes import NodeRow
from gridx.coordinator.db.tasks import TaskRow
from gridx.coordinator.errors import InvalidInput, StaleLease
from gridx.coordinator.logs import ids
from gridx.coordinator.services.runtime import Runtime
from gridx.schemas.agent import CompleteTaskRequest, TaskAck
from gridx.schemas.jobs import FINISHED, JobConfig
from gridx.schemas.redaction import redact

_json = msgspec.json.Encoder()
log = logging.getLogger("gridx.coordinator.results")


async def complete(rt: Runtime, node: NodeRow, task: TaskRow, req: CompleteTaskRequest) -> TaskAck:
    """A held-out evaluation is in: its metrics become the round's `held_out`. Of a job that
    ended meanwhile, the round's models are then let go as the job's end let go of the others
    (it kept them for this evaluation).

    Raises:
        InvalidInput: it uploaded weights, or reported no metrics.
        StaleLease: the node no longer holds the task.
    """
    if req.result_sha256 is not None:
        raise InvalidInput("an evaluation uploads no weights: leave result_sha256 out")
    if not req.metrics:
        raise InvalidInput("an evaluation reports metrics: write them to GRIDX_METRICS")
    job = await jobs.get(rt.db.reader, task.job_id)
    config = job.config if job else JobConfig()
    now = rt.clock.now_ms()
    metrics = _json.encode(req.metrics).decode()
    async with rt.db.transaction() as conn:
        done = await tasks.complete(
            conn,
            task_id=task.id,
            node_id=node.id,
            token=req.lease_token,
            result_sha="",
            metrics=metrics,
            now=now,
            claimed_ms=int(min(req.duration_s, 1e9) * 1000),
            timeout_ms=config.task_timeout_s * 1000,
            output=redact(req.output_tail) or None,
        )
        if done is None:
            raise StaleLease()
        await nodes.credit(conn, node.id, done.compute_ms)
        await rounds.set_held_out(conn, task.job_id, task.round_idx, metrics)
        data = {"round": task.round_idx, "held_out": req.metrics}
        await events.append(conn, task.job_id, "round_evaluated", data, now)
        ended = await jobs.get(conn, task.job_id)
        if ended is not None and ended.status in FINISHED:
            await blobs.release_inputs(conn, task.job_id)
    log.info(
        "round evaluated %s",
        req.metrics,
        extra=ids(job=task.job_id, round=task.round_idx, task=task.id, node=node.id),
    )
    return TaskAck(task_id=done.id, status=done.status)

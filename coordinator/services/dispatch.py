"""Handing tasks to nodes: claims, long-polls, lease expiry, the signed task description, and
the task inputs its links download."""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
from pathlib import Path
from typing import Any

import msgspec

from gridx.coordinator.db import blobs, datasets, events, jobs, rounds, tasks
from gridx.coordinator.db.connection import Conn
from gridx.coordinator.db.nodes import NodeRow
from gridx.coordinator.db.tasks import TaskRow
from gridx.coordinator.errors import Forbidden, NotFound
from gridx.coordinator.logs import ids
from gridx.coordinator.services import nodes
from gridx.coordinator.services.lifecycle import fail_job, task_failure_message
from gridx.coordinator.services.runtime import Runtime
from gridx.schemas.agent import BlobRef, LocalData, TaskAssignment
from gridx.schemas.jobs import INIT_ROUND
from gridx.schemas.strategies import FedProx

log = logging.getLogger("gridx.coordinator.dispatch")
RECHECK_S = 1.0
"""How often an open long-poll asks whether its node may still work."""


async def _settle_expired(rt: Runtime, conn: Conn, now: int) -> int:
    """Expire overdue leases inside the caller's transaction; returns how many were requeued."""
    requeued, exhausted = await tasks.expire_leases(conn, now)
    rt.metrics.leases_expired += len(requeued) + len(exhausted)
    for task in requeued + exhausted:
        log.info(
            "lease expired: the node stopped answering",
            extra=ids(job=task.job_id, round=task.round_idx, task=task.id, node=task.node_id),
        )
    for task in requeued:
        await events.append(
            conn, task.job_id, "task_requeued", {"task": task.id, "reason": "lease_expired"}, now
        )
    for task in exhausted:
        if task.kind != "evaluate":  # a lost evaluation leaves the training as it is
            await fail_job(conn, task.job_id, task_failure_message(task), now)
    return len(requeued)


async def expire_leases(rt: Runtime) -> int:
    """One reaper pass: requeue overdue leases and wake claimers for them."""
    async with rt.db.transaction() as conn:
        requeued = await _settle_expired(rt, conn, rt.clock.now_ms())
    rt.wakeups.tasks_ready(requeued)
    return requeued


async def claim(rt: Runtime, node: NodeRow) -> TaskRow | None:
    """Try once to lease the next ready task to `node` (expired leases are settled first).

    A draining node gets nothing.
    """
    if node.draining:
        return None
    now = rt.clock.now_ms()
    async with rt.db.transaction() as conn:
        requeued = await _settle_expired(rt, conn, now)
        task = await tasks.claim(
            conn,
            node_id=node.id,
            token=secrets.token_hex(16),
            now=now,
            lease_ms=int(rt.settings.lease_s * 1000),
            caps=node.capabilities,
            owner_id=node.owner_id,
            min_reputation=rt.settings.min_reputation,
            defer_ms=int(rt.settings.suspect_defer_s * 1000),
        )
        if task is not None:
            await jobs.transition(conn, task.job_id, "running", now)  # no-op unless still queued
            await events.append(
                conn,
                task.job_id,
                "task_leased",
                {"task": task.id, "node": node.id, "attempt": task.attempts},
                now,
            )
    rt.wakeups.tasks_ready(requeued)
    if task is not None:
        log.info(
            "task leased (attempt %d)",
            task.attempts,
            extra=ids(job=task.job_id, round=task.round_idx, task=task.id, node=node.id),
        )
    return task


async def next_task(rt: Runtime, node: NodeRow) -> TaskAssignment | None:
    """A task leased to `node` now if one is ready (a completion's `next`), else None: one
    claim, no waiting (the node long-polls when it gets none)."""
    task = await claim(rt, node)
    return await assignment(rt, task) if task is not None else None


async def request_task(
    rt: Runtime, node: NodeRow, wait_s: float, gone: asyncio.Future[None] | None = None
) -> TaskAssignment | None:
    """Long-poll: lease a task now, or wait (woken on enqueue/requeue) up to `wait_s`.

    Whether the node may work is decided again at every claim (in its transaction) and every
    `RECHECK_S` while it waits: a poll opened before a ban, removal, drain or owner disable
    gets nothing (a ban or removal ends it with that error).

    A node is registered as a waiter *before* each claim attempt, so a task enqueued between an
    empty claim and the wait is never missed. `gone` resolves when the node hangs up: the poll
    ends at once, so no task is leased to a connection nobody reads (and shutdown is prompt).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(wait_s, rt.settings.long_poll_s)
    hops: int | None = None  # set when a wake-up brought us here
    while True:
        fut = rt.wakeups.waiter()
        woken = False
        try:
            task = await claim(rt, node)
            if task is not None:
                return await assignment(rt, task)
            if hops is not None:  # woken for a task this node cannot take: hand it on
                if hops + 1 < len(rt.wakeups):
                    rt.wakeups.wake(1, hops + 1)
                hops = None
            # a suspect node's deferred tasks come due with no wake-up: it asks again
            retry_at = loop.time() + RECHECK_S if node.suspect else None
            woken = await _wait(rt, node, fut, gone, deadline, retry_at)
            if not woken:
                return None
            hops = fut.result() if fut.done() else None
        finally:
            rt.wakeups.discard(fut)
            if fut.done() and not woken and not fut.cancelled():
                rt.wakeups.wake(1, fut.result())  # woken but did not use it: pass it on


async def _wait(
    rt: Runtime,
    node: NodeRow,
    fut: asyncio.Future[int],
    gone: asyncio.Future[None] | None,
    deadline: float,
    retry_at: float | None = None,
) -> bool:
    """Wait for a wake-up until `deadline`, asking every `RECHECK_S` whether the node may still
    work (no claim meanwhile); True when woken (or at `retry_at`: time to claim again), False
    when the poll must end."""
    loop = asyncio.get_running_loop()
    watched: set[asyncio.Future[Any]] = {fut} if gone is None else {fut, gone}
    while (remaining := deadline - loop.time()) > 0:
        step = min(remaining, RECHECK_S)
        if retry_at is not None:
            step = max(0.0, min(step, retry_at - loop.time()))
        done, _ = await asyncio.wait(watched, timeout=step, return_when=asyncio.FIRST_COMPLETED)
        if fut in done:
            return True
        if done or not await nodes.may_take_work(rt, node):  # hung up, or refused meanwhile
            return False
        if retry_at is not None and loop.time() >= retry_at:
            return True
    return False


async def assignment(rt: Runtime, task: TaskRow) -> TaskAssignment:
    """Describe a leased task to its node, with signed download and upload links."""
    reader = rt.db.reader
    job = await jobs.get(reader, task.job_id)
    rnd = await rounds.get(reader, task.job_id, task.round_idx)
    shards = await jobs.shards(reader, task.job_id)
    if job is None or rnd is None:
        raise RuntimeError(f"task {task.id} lost its job or round")
    config = job.config
    ttl = rt.settings.signed_url_s
    ref = functools.partial(_ref, rt, task)

    evaluate = task.kind == "evaluate"
    code = await ref(job.eval_code_sha if evaluate else job.code_sha, "train.py")
    assert code is not None
    # a replicated job's copies share their shard; an evaluation uses no shard
    shard = 0 if evaluate else task.shard
    if evaluate:  # the round's merged model on the job's test data
        data = await ref(job.test_data_sha, job.test_data_name or "test_data")
        model = await ref(rnd.output_sha, "model.pth")
    else:  # node-local data: the node's own copy, nothing to download
        data = await ref(shards[shard].blob_sha, job.data_name or "data") if shards else None
        model = await ref(rnd.input_sha, "init_model.pth")
    dp = config.dp
    # a private job's initialisation step sees its data's columns, not its rows: the model it
    # makes leaves the node un-noised
    blind = dp is not None and task.round_idx == INIT_ROUND
    return TaskAssignment(
        task_id=task.id,
        job_id=task.job_id,
        round=task.round_idx,
        rounds=config.rounds,
        shard=shard,
        num_shards=len(shards) or await rounds.size(reader, task.job_id, task.round_idx),
        # the initialisation step's first try runs no epochs; its fallback an ordinary run
        epochs=0 if task.round_idx == INIT_ROUND and task.attempts <= 1 else config.epochs,
        seed=config.seed,
        lease_token=task.lease_token or "",
        lease_expires_at=task.lease_expires_at or 0,
        timeout_s=config.task_timeout_s,
        code=code,
        requirements=await ref(job.requirements_sha, "requirements.txt"),
        data=data,
        init_model=model,
        upload_url=await rt.storage.upload_url(task.id, task.lease_token or "", ttl),
        max_result_bytes=rt.settings.max_result_bytes,
        strategy=config.strategy.name,
        gpu=config.require_gpu,
        prox_mu=config.strategy.mu if isinstance(config.strategy, FedProx) else None,
        kind="evaluate" if evaluate else "train",
        train=await ref(job.code_sha, "train.py") if evaluate else None,
        warm=config.warm,
        preload=config.preload,
        dataset=await _local_data(rt, job) if not evaluate else None,
        client_clip=dp.clip_norm if dp and dp.client_clip and not evaluate and model else None,
        compress=config.compress if not evaluate and model and task.round_idx >= 0 else None,
        private=dp is not None and job.dataset is not None and not evaluate,
        entry=config.entry,
        blind=blind,
    )


async def _ref(rt: Runtime, task: TaskRow, sha: str | None, name: str) -> BlobRef | None:
    """A signed link to a blob, for the node holding `task`'s lease (None for no blob)."""
    if sha is None:
        return None
    blob = await blobs.get(rt.db.reader, sha)
    if blob is None:
        raise RuntimeError(f"blob {sha} is missing")
    url = await rt.storage.download_url(
        sha, blob.storage_key, rt.settings.signed_url_s, task.id, task.lease_token or ""
    )
    return BlobRef(url=url, sha256=sha, size=blob.size, name=name)


async def _local_data(rt: Runtime, job: jobs.JobRow) -> LocalData | None:
    """What a training task on node-local data tells its node: the dataset, its columns."""
    if job.dataset is None:
        return None
    columns = await datasets.job_columns(rt.db.reader, job.id)
    order = msgspec.json.decode(columns, type=list[str]) if columns else []
    return LocalData(name=job.dataset, columns=order)


async def input_file(rt: Runtime, sha256: str, task_id: str, lease: str) -> Path:
    """A task input's local file, for the node holding the task's lease (the signed link
    named the task and the lease; the signature was checked by the caller).

    Raises:
        Forbidden: that lease has ended.
        NotFound: no such blob.
    """
    held = await tasks.get(rt.db.reader, task_id)
    if held is None or held.status != "leased" or held.lease_token != lease:
        raise Forbidden("the lease this link was issued for has ended; ask for the task again")
    blob = await blobs.get(rt.db.reader, sha256)
    if blob is None:
        raise NotFound("no such blob")
    return await rt.storage.local_path(blob.storage_key)

"""What nodes send back: result uploads, completions (validated before use) and failures."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import msgspec

from gridx.coordinator.aggregation import work
from gridx.coordinator.aggregation.errors import UnclippedUpdate, WeightsError
from gridx.coordinator.db import blobs, events, jobs, nodes, rounds, stragglers, tasks, uploads
from gridx.coordinator.db.nodes import NodeRow
from gridx.coordinator.db.tasks import TaskRow
from gridx.coordinator.errors import InvalidInput, InvalidWeights, StaleLease
from gridx.coordinator.logs import ids
from gridx.coordinator.services import evaluations, fedbuff, outliers, resumable, spot_checks
from gridx.coordinator.services.aggregation import merge_in_background
from gridx.coordinator.services.rounds import close_round_if_complete
from gridx.coordinator.services.runtime import Runtime
from gridx.coordinator.services.voting import blob_path
from gridx.schemas.agent import (
    CompleteTaskRequest,
    FailTaskRequest,
    TaskAck,
    UploadLink,
    UploadLinkRequest,
    UploadResponse,
)
from gridx.schemas.jobs import JobConfig
from gridx.schemas.redaction import redact

_json = msgspec.json.Encoder()
log = logging.getLogger("gridx.coordinator.results")


async def _held(rt: Runtime, node: NodeRow, task_id: str, token: str) -> TaskRow:
    task = await tasks.get(rt.db.reader, task_id)
    if task is None or task.node_id != node.id or task.lease_token != token:
        raise StaleLease()
    return task


async def upload_link(rt: Runtime, node: NodeRow, req: UploadLinkRequest) -> UploadLink:
    """A fresh link to PUT the result of a task the node still holds.

    Raises:
        StaleLease: the node does not hold this task's live lease.
    """
    task = await _held(rt, node, req.task_id, req.lease_token)
    if task.status != "leased":
        raise StaleLease()
    ttl = rt.settings.signed_url_s
    return UploadLink(upload_url=await rt.storage.upload_url(task.id, req.lease_token, ttl))


async def upload_result(
    rt: Runtime,
    task_id: str,
    token: str,
    chunks: AsyncIterator[bytes],
    part: tuple[int, int] | None = None,
) -> UploadResponse | int:
    """Store a result file for a task whose lease is live (the signed URL names task and token).
    With `part` (offset, length) the body continues a resumable upload (`resumable`).

    Returns:
        The stored file, or (a resumable upload not complete yet) the bytes held.

    Raises:
        StaleLease: the lease is gone (nothing is stored).
        TooLarge: over the result size cap (nothing is stored).
    """
    task = await tasks.get(rt.db.reader, task_id)
    if task is None or task.lease_token != token or task.status != "leased":
        raise StaleLease()
    if part is None:
        sha, size, key = await rt.storage.write_stream(
            chunks, rt.settings.max_result_bytes, "the result file"
        )
    else:
        done = await resumable.append(rt, task_id, token, chunks, *part)
        if done is None:
            return resumable.held(rt, task_id, token)
        sha, size, key = await rt.storage.adopt(done)
    now = rt.clock.now_ms()
    async with rt.db.transaction() as conn:
        await blobs.record(conn, sha, size, key, now)
        if not await uploads.attach_result(
            conn, task_id=task_id, token=token, result_sha=sha, size=size, now=now
        ):
            raise StaleLease()
    return UploadResponse(sha256=sha, size=size)


async def complete_task(rt: Runtime, node: NodeRow, req: CompleteTaskRequest) -> TaskAck:
    """Accept a node's result after checking it completely; idempotent for the same result.

    Raises:
        StaleLease: the node does not hold this task's lease (nothing changes).
        InvalidWeights: the weights are unusable; the attempt fails and the shard is reissued.
    """
    task = await _held(rt, node, req.task_id, req.lease_token)
    sent = {task.result_sha, task.upload_sha} - {None}  # (a compressed update: both name it)
    if task.status == "succeeded" and req.result_sha256 in sent:
        return TaskAck(task_id=task.id, status=task.status)  # a retried completion
    if task.status != "leased":
        raise StaleLease()
    if task.kind == "evaluate":
        return await evaluations.complete(rt, node, task, req)
    if req.result_sha256 is None:
        raise InvalidInput("result_sha256 is required: PUT the weights to the task's upload_url")
    task, sig = await _checked_weights(rt, node, task, req.result_sha256)
    done, merge = await _record_success(rt, node, task, req, sig)  # (task: its decoded result)
    if done is None:
        msg = "keys, shapes or dtypes differ from the other updates of this round"
        await _give_up(rt, node, task, "user_error", "invalid_weights", msg, "")
        raise InvalidWeights(f"weights refused: {msg}")
    log.info(
        "task succeeded in %.1fs (%.1fs claimed)",
        done.compute_ms / 1000,
        req.duration_s,
        extra=ids(job=task.job_id, round=task.round_idx, task=task.id, node=node.id),
    )
    config = await _config_of(rt, task.job_id)
    if fedbuff.applies(config, task.round_idx) or config.adaptive:
        rt.wakeups.tasks_ready(1)  # its shard's next task, or its check
    if merge is not None:
        merge_in_background(rt, task.job_id, merge)
    return TaskAck(task_id=done.id, status=done.status)


async def _record_success(
    rt: Runtime, node: NodeRow, task: TaskRow, req: CompleteTaskRequest, sig: str
) -> tuple[TaskRow | None, int | None]:
    """Mark a training task succeeded with checked weights of signature `sig`, credit its node,
    and see whether its round is complete (an async job: whether its buffer makes a step), in
    one transaction.

    Returns:
        The task (None: the weights do not match the round's signature) and the round to
        aggregate now, if any.
    """
    config = await _config_of(rt, task.job_id)
    metrics = {} if private(config) else req.metrics
    output = None if private(config) else redact(req.output_tail) or None
    now = rt.clock.now_ms()
    async with rt.db.transaction() as conn:
        # In round 0 the first valid update fixes the model's keys, shapes and dtypes.
        if await rounds.claim_signature(conn, task.job_id, task.round_idx, sig) != sig:
            return None, None
        done = await tasks.complete(
            conn,
            task_id=task.id,
            node_id=node.id,
            token=req.lease_token,
            result_sha=task.result_sha or "",
            metrics=_json.encode(metrics).decode(),
            now=now,
            claimed_ms=int(min(req.duration_s, 1e9) * 1000),
            timeout_ms=config.task_timeout_s * 1000,
            output=output,
        )
        if done is None:
            raise StaleLease()
        if config.backup_tasks:  # the first valid copy of a shard wins; the other is cancelled
            await stragglers.cancel_siblings(conn, done, now)
        if config.copies == 1:  # a replicated copy earns its credit when its vote is in
            await nodes.credit(conn, node.id, done.compute_ms)
        await events.append(
            conn,
            task.job_id,
            "task_succeeded",
            {"task": task.id, "node": node.id, "metrics": metrics},
            now,
        )
        if fedbuff.applies(config, done.round_idx):
            job = await jobs.get(conn, task.job_id)
            return done, await fedbuff.after_update(conn, job, done, now) if job else None
        await spot_checks.after_result(conn, config, done, node.id, now)
        return done, done.round_idx if await close_round_if_complete(conn, done, now) else None


async def _config_of(rt: Runtime, job_id: str) -> JobConfig:
    """A job's config (the defaults for a job deleted meanwhile)."""
    job = await jobs.get(rt.db.reader, job_id)
    return job.config if job else JobConfig()


async def _checked_weights(
    rt: Runtime, node: NodeRow, task: TaskRow, sha256: str
) -> tuple[TaskRow, str]:
    """The task with its uploaded weights attached, and their signature once checked in full.

    Raises:
        InvalidInput: `sha256` is not the file uploaded under this task's lease.
        InvalidWeights: the weights are unusable (the attempt is failed).
    """
    if task.result_sha is None:  # put straight to object storage: verify and attach it now
        task = await _receive(rt, task, sha256)
    blob = await blobs.get(rt.db.reader, task.result_sha or "")
    if blob is None or sha256 not in (task.result_sha, task.upload_sha):
        raise InvalidInput(
            "result_sha256 is not the file uploaded for this task; PUT the weights to the "
            "task's upload_url first"
        )
    rnd = await rounds.get(rt.db.reader, task.job_id, task.round_idx)
    config = await _config_of(rt, task.job_id)
    dp = config.dp
    # a private job's updates are checked against the round's input model: tensors that are
    # not float (no noise touches them) unchanged, and the norm where the nodes clip
    base = rnd.input_sha if dp is not None and rnd is not None else None
    path = str(await rt.storage.local_path(blob.storage_key))
    loop = asyncio.get_running_loop()
    try:
        decoded = task.upload_sha is not None  # (by an earlier try of this completion)
        if config.compress and not decoded and rnd is not None and rnd.input_sha is not None:
            task, path = await _decoded(rt, task, path, await blob_path(rt, rnd.input_sha))
        sig = await loop.run_in_executor(
            rt.pool,
            work.validate_file,
            path,
            rt.settings.max_result_bytes,
            rnd.signature if rnd else None,
            await blob_path(rt, base) if base else None,
            dp.clip_norm if base and dp and dp.client_clip else None,
            base is not None,
        )
    except UnclippedUpdate as exc:  # the node did not clip: its loss, the shard goes on
        await _give_up(rt, node, task, "node_error", "unclipped_update", str(exc), "")
        raise InvalidWeights(f"weights refused: {exc}") from exc
    except WeightsError as exc:
        await _give_up(rt, node, task, "user_error", "invalid_weights", str(exc), "")
        raise InvalidWeights(f"weights refused: {exc}") from exc
    return task, sig


async def _decoded(rt: Runtime, task: TaskRow, path: str, base: str) -> tuple[TaskRow, str]:
    """A compressed update, decoded onto the model its task trained from and stored as the
    task's result (the task with it attached, and its local path); a whole model as it is.

    Raises:
        WeightsError: the update is malformed or does not fit the model.
    """
    loop = asyncio.get_running_loop()
    if not await loop.run_in_executor(rt.pool, work.is_encoded, path, rt.settings.max_result_bytes):
        return task, path
    out = rt.storage.temp_path(".safetensors")
    try:
        await loop.run_in_executor(
            rt.pool, work.decode_update, path, base, str(out), rt.settings.max_result_bytes
        )
        sha, size, key = await rt.storage.adopt(out)
    finally:
        out.unlink(missing_ok=True)
    now = rt.clock.now_ms()
    async with rt.db.transaction() as conn:
        await blobs.record(conn, sha, size, key, now)
        if not await uploads.attach_decoded(conn, task_id=task.id, result_sha=sha, now=now):
            raise StaleLease()
    decoded = msgspec.structs.replace(task, result_sha=sha, upload_sha=task.result_sha)
    return decoded, str(await rt.storage.local_path(key))


async def _receive(rt: Runtime, task: TaskRow, sha256: str) -> TaskRow:
    token = task.lease_token or ""
    got = await rt.storage.receive_upload(task.id, token, sha256, rt.settings.max_result_bytes)
    if got is None:
        return task
    now = rt.clock.now_ms()
    async with rt.db.transaction() as conn:
        await blobs.record(conn, *got, now)
        if not await uploads.attach_result(
            conn, task_id=task.id, token=token, result_sha=got[0], size=got[1], now=now
        ):
            raise StaleLease()
    return msgspec.structs.replace(task, result_sha=got[0])


async def fail_task(rt: Runtime, node: NodeRow, req: FailTaskRequest) -> TaskAck:
    """A node gives a task up: user-code failure, node failure, or a clean release.

    Raises:
        StaleLease: the node does not hold this task's lease.
    """
    task = await _held(rt, node, req.task_id, req.lease_token)
    if task.status != "leased":
        raise StaleLease()
    message, tail = req.message, req.stderr_tail
    if task.kind != "evaluate" and private(await _config_of(rt, task.job_id)):
        message, tail = f"{req.code}: {PRIVATE_FAILURE}", ""
    return await _give_up(rt, node, task, req.kind, req.code, message, tail)


PRIVATE_FAILURE = "what the script printed stays on its node (a private job on the node's own data)"


def private(config: JobConfig) -> bool:
    """A differentially private job on node-local data: nothing but noised weights may leave a
    node, so its tasks' metrics, messages and output are never kept (the node sends none)."""
    return config.dp is not None and config.dataset is not None


async def _give_up(
    rt: Runtime,
    node: NodeRow,
    task: TaskRow,
    kind: str,
    code: str,
    message: str,
    stderr_tail: str,
) -> TaskAck:
    released = kind == "released"
    lost = kind == "node_error"  # the node's trouble, not the user's code: a loss, not a try
    if released:
        requeue = True
    elif lost:
        requeue = task.losses + 1 < task.max_losses
    now = rt.clock.now_ms()
    config = await _config_of(rt, task.job_id)
    aggregate = False
    async with rt.db.transaction() as conn:
        if not released and not lost:
            requeue = await outliers.worth_retrying(conn, task, code, message)
        after = await tasks.give_up(
            conn,
            task_id=task.id,
            node_id=node.id,
            token=task.lease_token or "",
            outcome=kind,
            error_code=code,
            error=message,
            stderr_tail=redact(stderr_tail[-16_384:]),
            requeue=requeue,
            refund=released or lost,
            lost=lost,
            now=now,
        )
        if after is None:
            raise StaleLease()
        await events.append(
            conn,
            task.job_id,
            "task_failed" if not released else "task_released",
            {"task": task.id, "node": node.id, "kind": kind, "code": code, "error": message},
            now,
        )
        if after.status == "failed" and after.kind != "evaluate":  # training is unaffected
            aggregate = await outliers.settle(conn, config, after, now)
    log.info(
        "task %s: %s [%s] %s",
        "requeued" if after.status == "queued" else after.status,
        kind,
        code,
        message[:200],
        extra=ids(job=task.job_id, round=task.round_idx, task=task.id, node=node.id),
    )
    if after.status == "queued":
        rt.wakeups.tasks_ready(1)
    if aggregate:
        merge_in_background(rt, task.job_id, task.round_idx)
    return TaskAck(task_id=after.id, status=after.status)

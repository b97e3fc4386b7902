"""A job's rounds: finishing a round, aggregating it in the process pool, starting the next."""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from pathlib import Path

import msgspec

from gridx.coordinator.aggregation.engine import AggregationJob, AggregationResult, aggregate
from gridx.coordinator.aggregation.fedavg import weighted_metrics
from gridx.coordinator.aggregation.tensorfile import WeightsError
from gridx.coordinator.db import blobs, events, jobs, rounds, tasks
from gridx.coordinator.db.connection import Conn
from gridx.coordinator.db.jobs import JobRow
from gridx.coordinator.db.tasks import TaskRow
from gridx.coordinator.logs import ids
from gridx.coordinator.services.lifecycle import fail_job
from gridx.coordinator.services.runtime import Runtime
from gridx.coordinator.services.voting import blob_path, vote
from gridx.schemas.jobs import INIT_ROUND, FedAvg, JobConfig

log = logging.getLogger("gridx.coordinator.rounds")
_json = msgspec.json.Encoder()


async def start_aggregation_if_done(conn: Conn, task: TaskRow, now: int) -> bool:
    """After a task succeeded (same transaction): if its round is complete, mark it aggregating.

    Returns:
        True when the caller must start aggregating this round.
    """
    await rounds.lock(conn, task.job_id, task.round_idx)
    if await tasks.round_pending(conn, task.job_id, task.round_idx) > 0:
        return False
    if await rounds.transition(conn, task.job_id, task.round_idx, "aggregating", now) is None:
        return False
    await jobs.transition(conn, task.job_id, "aggregating", now)
    await events.append(conn, task.job_id, "round_aggregating", {"round": task.round_idx}, now)
    return True


def start_aggregation(rt: Runtime, job_id: str, round_idx: int) -> None:
    """Merge a round in the background unless this process is already merging it."""
    if (job_id, round_idx) in rt.aggregating:
        return
    rt.aggregating.add((job_id, round_idx))

    async def run() -> None:
        try:
            await aggregate_round(rt, job_id, round_idx)
        finally:
            rt.aggregating.discard((job_id, round_idx))

    rt.spawn(run(), f"aggregate-{job_id}-{round_idx}")


async def aggregate_round(rt: Runtime, job_id: str, round_idx: int) -> None:
    """Merge a finished round if this replica wins its aggregation lease, keeping it renewed.

    Safe to run again after a crash, and on several replicas at once: it only acts while the
    round is 'aggregating' and this replica holds the lease; the commit re-checks the lease.
    """
    lease_ms = int(rt.settings.aggregation_lease_s * 1000)
    async with rt.db.transaction() as conn:
        taken = await rounds.take_aggregation(
            conn, job_id, round_idx, rt.replica, rt.clock.now_ms(), lease_ms
        )
    if taken is None:
        return
    log.info("aggregating", extra=ids(job=job_id, round=round_idx, replica=rt.replica))
    renewer = asyncio.create_task(_renew(rt, job_id, round_idx, lease_ms))
    try:
        await _merge(rt, job_id, round_idx, lease_ms)
    finally:
        renewer.cancel()


async def _renew(rt: Runtime, job_id: str, round_idx: int, lease_ms: int) -> None:
    while True:
        await asyncio.sleep(lease_ms / 3000)
        async with rt.db.transaction() as conn:
            held = await rounds.hold_aggregation(
                conn, job_id, round_idx, rt.replica, rt.clock.now_ms(), lease_ms
            )
        if not held:
            return


Stored = tuple[str, int, str]  # (sha256, size, storage key) of an adopted file


async def _run_merge(
    rt: Runtime,
    job_id: str,
    round_idx: int,
    config: JobConfig,
    done: list[TaskRow],
    rows: dict[int, int],
) -> tuple[AggregationResult, Stored, Stored, Stored | None] | None:
    """Merge a round's updates in the pool and store the outputs (model.pth, model.safetensors,
    the server optimizer's state); None when the merge failed (the job is failed)."""
    reader = rt.db.reader
    rnd = await rounds.get(reader, job_id, round_idx)
    prev = await rounds.get(reader, job_id, round_idx - 1) if round_idx > 0 else None
    out_dir = Path(tempfile.mkdtemp(dir=rt.storage.tmp))
    try:
        work = AggregationJob(
            clients=[
                (s, await blob_path(rt, t.result_sha), float(rows[s]))
                for t in done
                for s in [t.shard_idx % len(rows)]
            ],
            # the initialisation step's one model is taken as it is (any rule would need more)
            strategy=config.strategy if round_idx != INIT_ROUND else FedAvg(),
            out_dir=str(out_dir),
            max_bytes=rt.settings.max_result_bytes,
            base_model=await blob_path(rt, rnd.input_sha) if rnd and rnd.input_sha else None,
            state_in=await blob_path(rt, prev.state_sha) if prev and prev.state_sha else None,
        )
        try:
            result = await asyncio.get_running_loop().run_in_executor(rt.pool, aggregate, work)
        except WeightsError as exc:
            await _abort(rt, job_id, f"aggregation of round {round_idx} refused an update: {exc}")
            return None
        except Exception as exc:
            log.exception("aggregation crashed", extra=ids(job=job_id, round=round_idx))
            await _abort(rt, job_id, f"aggregation of round {round_idx} crashed: {exc!r}")
            return None
        if rt.counters is not None:
            rt.counters.aggregations += 1
            rt.counters.aggregation_seconds += result.merge_s + result.write_s
        pth = await rt.storage.adopt(Path(result.model_pth))
        st = await rt.storage.adopt(Path(result.model_safetensors))
        state = await rt.storage.adopt(Path(result.state)) if result.state else None
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    return result, pth, st, state


async def _merge(rt: Runtime, job_id: str, round_idx: int, lease_ms: int) -> None:
    reader = rt.db.reader
    job = await jobs.get(reader, job_id)
    if job is None:
        return
    config = msgspec.json.decode(job.config, type=JobConfig)
    rows = {s.idx: s.rows for s in await jobs.shards(reader, job_id)}
    done = [
        t
        for t in await tasks.for_job(reader, job_id)
        if t.round_idx == round_idx and t.status == "succeeded" and t.result_sha
    ]
    if config.replicas > 1:
        voted = await vote(rt, config, job_id, round_idx, done, len(rows), lease_ms)
        if voted is None:  # copies were reissued (or the job failed): not mergeable yet
            return
        done = voted
    merged = await _run_merge(rt, job_id, round_idx, config, done, rows)
    if merged is None:
        return
    result, (pth_sha, pth_size, pth_key), (st_sha, st_size, st_key), state = merged
    metrics = weighted_metrics(
        [
            (
                msgspec.json.decode(t.metrics or "{}", type=dict[str, float]),
                float(rows[t.shard_idx % len(rows)]),
            )
            for t in done
        ]
    )
    last = round_idx + 1 >= config.rounds
    now = rt.clock.now_ms()
    async with rt.db.transaction() as conn:
        if not await rounds.hold_aggregation(conn, job_id, round_idx, rt.replica, now, lease_ms):
            log.warning(
                "lost the aggregation lease",
                extra=ids(job=job_id, round=round_idx, replica=rt.replica),
            )
            return
        await blobs.record(conn, pth_sha, pth_size, pth_key, now)
        await blobs.record(conn, st_sha, st_size, st_key, now)
        if state is not None:
            await blobs.record(conn, *state, now)
        if last:
            moved = await jobs.transition(
                conn, job_id, "succeeded", now, final_pth_sha=pth_sha, final_st_sha=st_sha
            )
        else:
            moved = await jobs.transition(conn, job_id, "running", now, current_round=round_idx + 1)
        if not moved:  # cancelled or failed meanwhile: nothing more to do
            return
        await rounds.transition(
            conn,
            job_id,
            round_idx,
            "done",
            now,
            output_sha=pth_sha,
            metrics=_json.encode(metrics).decode(),
            state_sha=state[0] if state else None,
        )
        await events.append(
            conn,
            job_id,
            "round_done",
            {
                "round": round_idx,
                "metrics": metrics,
                "model": pth_sha,
                "selected": result.selected,
                "clipped": result.clipped,
            },
            now,
        )
        await _after_merge(
            conn, job, config, round_idx, (pth_sha, result.signature), len(rows), last, now
        )
    log.info(
        "round done%s %s",
        ", job succeeded" if last else "",
        metrics,
        extra=ids(job=job_id, round=round_idx, replica=rt.replica),
    )
    rt.wake((0 if last else len(rows) * config.replicas) + (1 if job.eval_code_sha else 0))


async def _after_merge(
    conn: Conn,
    job: JobRow,
    config: JobConfig,
    round_idx: int,
    model: tuple[str, str],
    num_shards: int,
    last: bool,
    now: int,
) -> None:
    """What a merged round leads to (same transaction): its held-out evaluation, if the job has
    one, and the next round from `model` (its sha and signature), or the job's success."""
    if job.eval_code_sha and round_idx != INIT_ROUND:
        await tasks.insert_round(
            conn,
            job_id=job.id,
            round_idx=round_idx,
            num_shards=1,
            max_attempts=config.max_attempts,
            max_losses=config.max_node_losses,
            now=now,
            kind="evaluate",
        )
    if last:
        await events.append(conn, job.id, "job_succeeded", {"model": model[0]}, now)
        return
    await rounds.create(
        conn, job_id=job.id, idx=round_idx + 1, input_sha=model[0], signature=model[1], now=now
    )
    await tasks.insert_round(
        conn,
        job_id=job.id,
        round_idx=round_idx + 1,
        num_shards=num_shards * config.replicas,
        max_attempts=config.max_attempts,
        max_losses=config.max_node_losses,
        now=now,
    )


async def _abort(rt: Runtime, job_id: str, error: str) -> None:
    async with rt.db.transaction() as conn:
        await fail_job(conn, job_id, error, rt.clock.now_ms())


async def adopt_orphans(rt: Runtime) -> int:
    """Merge rounds left 'aggregating' with no live aggregator (a replica or a previous process
    died mid-merge, its lease ran out).

    Returns:
        How many rounds were picked up.
    """
    orphans = await rounds.orphaned(rt.db.reader, rt.clock.now_ms())
    for rnd in orphans:
        start_aggregation(rt, rnd.job_id, rnd.idx)
    return len(orphans)

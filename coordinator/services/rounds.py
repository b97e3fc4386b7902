"""A job's rounds: finishing a round, aggregating it in the process pool, starting the next."""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from pathlib import Path

import msgspec

from gridx.coordinator.aggregation.engine import AggregationJob, aggregate
from gridx.coordinator.aggregation.fedavg import weighted_metrics
from gridx.coordinator.aggregation.replicas import distances, majority
from gridx.coordinator.aggregation.tensorfile import WeightsError
from gridx.coordinator.db import blobs, events, jobs, nodes, rounds, tasks
from gridx.coordinator.db.connection import Conn
from gridx.coordinator.db.tasks import TaskRow
from gridx.coordinator.logs import ids
from gridx.coordinator.services.runtime import Runtime
from gridx.schemas.jobs import INIT_ROUND, FedAvg, JobConfig

log = logging.getLogger("gridx.coordinator.rounds")
_json = msgspec.json.Encoder()


async def fail_job(conn: Conn, job_id: str, error: str, now: int) -> bool:
    """Fail a job inside the caller's transaction: its open tasks are cancelled, its round failed.

    Returns:
        False when the job had already finished.
    """
    if not await jobs.transition(conn, job_id, "failed", now, error=error):
        return False
    log.info("job failed: %s", error, extra=ids(job=job_id))
    await tasks.cancel_job(conn, job_id, now)
    for rnd in await rounds.for_job(conn, job_id):
        if rnd.status in ("running", "aggregating"):
            await rounds.transition(conn, job_id, rnd.idx, "failed", now)
    await events.append(conn, job_id, "job_failed", {"error": error}, now)
    return True


def task_failure_message(task: TaskRow) -> str:
    """Why a job failed because one of its tasks did."""
    if task.error_code == "lease_expired" or task.losses >= task.max_losses:
        tries = f"{task.losses} node loss(es)"
    else:
        tries = f"{task.attempts} attempt(s)"
    if task.round_idx == INIT_ROUND:
        return (
            f"the initialisation step (train.py with GRIDX_INIT=1, then one ordinary run on "
            f"shard 0) failed after {tries}: [{task.error_code}] {task.error}"
        )
    return (
        f"round {task.round_idx}, shard {task.shard_idx} failed after {tries}: "
        f"[{task.error_code}] {task.error}"
    )


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
        voted = await _vote(rt, config, job_id, round_idx, done, len(rows), lease_ms)
        if voted is None:  # copies were reissued (or the job failed): not mergeable yet
            return
        done = voted
    rnd = await rounds.get(reader, job_id, round_idx)
    prev = await rounds.get(reader, job_id, round_idx - 1) if round_idx > 0 else None
    out_dir = Path(tempfile.mkdtemp(dir=rt.storage.tmp))
    try:
        work = AggregationJob(
            clients=[
                (s, await _blob_path(rt, t.result_sha), float(rows[s]))
                for t in done
                for s in [t.shard_idx % len(rows)]
            ],
            # the initialisation step's one model is taken as it is (any rule would need more)
            strategy=config.strategy if round_idx != INIT_ROUND else FedAvg(),
            out_dir=str(out_dir),
            max_bytes=rt.settings.max_result_bytes,
            base_model=await _blob_path(rt, rnd.input_sha) if rnd and rnd.input_sha else None,
            state_in=await _blob_path(rt, prev.state_sha) if prev and prev.state_sha else None,
        )
        try:
            result = await asyncio.get_running_loop().run_in_executor(rt.pool, aggregate, work)
        except WeightsError as exc:
            await _abort(rt, job_id, f"aggregation of round {round_idx} refused an update: {exc}")
            return
        except Exception as exc:
            log.exception("aggregation crashed", extra=ids(job=job_id, round=round_idx))
            await _abort(rt, job_id, f"aggregation of round {round_idx} crashed: {exc!r}")
            return
        if rt.counters is not None:
            rt.counters.aggregations += 1
            rt.counters.aggregation_seconds += result.merge_s + result.write_s
        pth_sha, pth_size, pth_key = await rt.storage.adopt(Path(result.model_pth))
        st_sha, st_size, st_key = await rt.storage.adopt(Path(result.model_safetensors))
        state = await rt.storage.adopt(Path(result.state)) if result.state else None
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
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
        if job.eval_code_sha and round_idx != INIT_ROUND:  # the held-out evaluation
            await tasks.insert_round(
                conn,
                job_id=job_id,
                round_idx=round_idx,
                num_shards=1,
                max_attempts=config.max_attempts,
                max_losses=config.max_node_losses,
                now=now,
                kind="evaluate",
            )
        if last:
            await events.append(conn, job_id, "job_succeeded", {"model": pth_sha}, now)
        else:
            await rounds.create(
                conn,
                job_id=job_id,
                idx=round_idx + 1,
                input_sha=pth_sha,
                signature=result.signature,
                now=now,
            )
            await tasks.insert_round(
                conn,
                job_id=job_id,
                round_idx=round_idx + 1,
                num_shards=len(rows) * config.replicas,
                max_attempts=config.max_attempts,
                max_losses=config.max_node_losses,
                now=now,
            )
    log.info(
        "round done%s %s",
        ", job succeeded" if last else "",
        metrics,
        extra=ids(job=job_id, round=round_idx, replica=rt.replica),
    )
    rt.wake((0 if last else len(rows) * config.replicas) + (1 if job.eval_code_sha else 0))


async def _vote(
    rt: Runtime,
    config: JobConfig,
    job_id: str,
    round_idx: int,
    done: list[TaskRow],
    num_shards: int,
    lease_ms: int,
) -> list[TaskRow] | None:
    """Compare the copies of each shard; keep one update per shard that a majority of
    `replicas` agree on, flag the copies that disagree (their nodes lose reputation), and
    reissue another copy of each shard still short of a majority.

    Returns:
        One accepted copy per shard (the earliest slot of its majority), or None when the
        round must wait for reissued copies (or the job failed: copies never agreed).
    """
    copies: dict[int, list[TaskRow]] = {}
    for t in sorted(done, key=lambda t: t.shard_idx):
        if t.verdict != "disagreed":
            copies.setdefault(t.shard_idx % num_shards, []).append(t)
    paths = {s: [await _blob_path(rt, t.result_sha) for t in cs] for s, cs in copies.items()}
    loop = asyncio.get_running_loop()
    dist = {
        s: await loop.run_in_executor(rt.pool, distances, ps, rt.settings.max_result_bytes)
        for s, ps in paths.items()
    }
    quorum = config.replicas // 2 + 1
    accepted: list[TaskRow] = []
    verdicts: dict[str, str] = {}
    short: list[int] = []
    for shard, cs in sorted(copies.items()):
        group = majority(dist[shard], config.replica_tolerance, quorum)
        if group is None:
            short.append(shard)
            continue
        accepted.append(cs[group[0]])
        for i, t in enumerate(cs):
            verdicts[t.id] = "agreed" if i in group else "disagreed"
    fresh = {t.id: t for t in done if t.verdict is None and t.id in verdicts}
    now = rt.clock.now_ms()
    failed = False
    async with rt.db.transaction() as conn:
        if not await rounds.hold_aggregation(conn, job_id, round_idx, rt.replica, now, lease_ms):
            return None
        await tasks.set_verdicts(conn, {t: verdicts[t] for t in fresh})
        await nodes.count_votes(
            conn,
            [(t.node_id or "", verdicts[t.id] == "agreed", t.compute_ms) for t in fresh.values()],
        )
        for t in fresh.values():
            if verdicts[t.id] == "disagreed":
                data: dict[str, object] = {
                    "task": t.id,
                    "node": t.node_id,
                    "shard": t.shard_idx % num_shards,
                }
                await events.append(conn, job_id, "replica_disagreed", data, now)
                log.warning(
                    "copy disagrees with its shard's majority",
                    extra=ids(job=job_id, round=round_idx, task=t.id, node=t.node_id),
                )
        if short:
            slots = []
            for shard in short:
                copy = max(t.shard_idx for t in done if t.shard_idx % num_shards == shard)
                copy = copy // num_shards + 1
                if copy >= 2 * config.replicas + 1:
                    failed = await fail_job(
                        conn,
                        job_id,
                        f"round {round_idx}, shard {shard}: {copy} copies and no "
                        f"{quorum} of them agree within {config.replica_tolerance}",
                        now,
                    )
                    break
                slots.append(shard + copy * num_shards)
            else:
                await rounds.transition(conn, job_id, round_idx, "running", now)
                await jobs.transition(conn, job_id, "running", now)
                await tasks.insert_round(
                    conn,
                    job_id=job_id,
                    round_idx=round_idx,
                    num_shards=num_shards,
                    max_attempts=config.max_attempts,
                    max_losses=config.max_node_losses,
                    now=now,
                    slots=slots,
                )
                await events.append(
                    conn, job_id, "replicas_reissued", {"round": round_idx, "slots": slots}, now
                )
    if short:
        if not failed:
            rt.wake(len(short))
        return None
    return accepted


async def _blob_path(rt: Runtime, sha: str | None) -> str:
    blob = await blobs.get(rt.db.reader, sha or "")
    if blob is None:
        raise RuntimeError(f"blob {sha} is missing from storage")
    return str(await rt.storage.local_path(blob.storage_key))


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

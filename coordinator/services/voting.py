"""Redundant computing: comparing the copies of each shard of a replicated round, flagging
the ones that disagree with the majority, and reissuing copies until a majority agrees."""

from __future__ import annotations

import asyncio
import logging

from gridx.coordinator.aggregation import work
from gridx.coordinator.aggregation.tally import majority
from gridx.coordinator.db import blobs, events, jobs, nodes, rounds, tasks
from gridx.coordinator.db.tasks import TaskRow
from gridx.coordinator.logs import ids
from gridx.coordinator.services.lifecycle import fail_job
from gridx.coordinator.services.runtime import Runtime
from gridx.schemas.jobs import JobConfig

log = logging.getLogger("gridx.coordinator.rounds")


async def vote(
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
    paths = {s: [await blob_path(rt, t.result_sha) for t in cs] for s, cs in copies.items()}
    loop = asyncio.get_running_loop()
    dist = {
        s: await loop.run_in_executor(rt.pool, work.distances, ps, rt.settings.max_result_bytes)
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
            rt.wakeups.tasks_ready(len(short))
        return None
    return accepted


async def blob_path(rt: Runtime, sha: str | None) -> str:
    blob = await blobs.get(rt.db.reader, sha or "")
    if blob is None:
        raise RuntimeError(f"blob {sha} is missing from storage")
    return str(await rt.storage.local_path(blob.storage_key))

"""Redundant computing: comparing the copies of each shard of a replicated round, flagging
the ones that disagree with the majority, and reissuing copies until a majority agrees."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from gridx.coordinator.aggregation import work
from gridx.coordinator.aggregation.tally import majority
from gridx.coordinator.db import blobs, events, jobs, nodes, rounds, tasks
from gridx.coordinator.db.connection import Conn
from gridx.coordinator.db.tasks import TaskRow
from gridx.coordinator.logs import ids
from gridx.coordinator.services import spot_checks
from gridx.coordinator.services.lifecycle import fail_job
from gridx.coordinator.services.runtime import Runtime
from gridx.schemas.jobs import JobConfig, round_label

log = logging.getLogger("gridx.coordinator.rounds")


@dataclass
class _Tally:
    """What the copies' distances decided: one accepted copy per agreed shard, each fresh
    copy's verdict, and the shards still short of a majority."""

    accepted: list[TaskRow] = field(default_factory=list)
    verdicts: dict[str, str] = field(default_factory=dict)
    short: list[int] = field(default_factory=list)


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
    tally = await _tally(rt, config, done)
    # a trusted result is judged once its round settles: a node outvoted on a reissued copy
    # may still cost it its trust
    fresh = [
        t
        for t in done
        if t.verdict is None
        and t.id in tally.verdicts
        and not (tally.short and tally.verdicts[t.id] == "trusted")
    ]
    now = rt.clock.now_ms()
    reissued = 0
    async with rt.db.transaction() as conn:
        if not await rounds.hold_aggregation(conn, job_id, round_idx, rt.replica, now, lease_ms):
            return None
        changed = await _record_verdicts(conn, job_id, round_idx, fresh, tally.verdicts, now)
        if tally.short:
            reissued = await _reissue(
                conn, config, job_id, round_idx, done, tally.short, num_shards, now
            )
    for node_id in changed:  # its cached record's `suspect` is stale on every replica
        rt.node_cache.changed(node_id)
    if tally.short:
        rt.wakeups.tasks_ready(reissued)
        return None
    return tally.accepted


async def _tally(rt: Runtime, config: JobConfig, done: list[TaskRow]) -> _Tally:
    """Group each shard's copies (earliest slot first) by distance, in the pool. Under adaptive
    replication a shard's lone result is accepted as `trusted`, unless its node was outvoted in
    this round: then it is short of a check like a shard whose copies disagree."""
    copies: dict[int, list[TaskRow]] = {}
    for t in sorted(done, key=lambda t: t.slot):
        if t.verdict != "disagreed":
            copies.setdefault(t.shard, []).append(t)
    paths = {s: [await blob_path(rt, t.result_sha) for t in cs] for s, cs in copies.items()}
    loop = asyncio.get_running_loop()
    dist = {
        s: await loop.run_in_executor(rt.pool, work.distances, ps, rt.settings.max_result_bytes)
        for s, ps in paths.items()
    }
    tally = _Tally()
    unchecked: list[TaskRow] = []
    for shard, cs in sorted(copies.items()):
        if config.adaptive and len(cs) == 1:  # its node was trusted: no check was queued
            unchecked.append(cs[0])
            continue
        group = majority(dist[shard], config.replica_tolerance, config.copies // 2 + 1)
        if group is None:
            tally.short.append(shard)
            continue
        tally.accepted.append(cs[group[0]])
        for i, t in enumerate(cs):
            tally.verdicts[t.id] = "agreed" if i in group else "disagreed"
    # a node outvoted in this round loses the trust its other results here were taken on
    outvoted = {t.node_id for t in done if "disagreed" in (t.verdict, tally.verdicts.get(t.id))}
    for t in unchecked:
        if t.node_id in outvoted:
            tally.short.append(t.shard)
        else:
            tally.accepted.append(t)
            tally.verdicts[t.id] = "trusted"
    tally.short.sort()
    return tally


async def _record_verdicts(
    conn: Conn,
    job_id: str,
    round_idx: int,
    fresh: list[TaskRow],
    verdicts: dict[str, str],
    now: int,
) -> list[str]:
    """Store the verdicts of copies not judged before, and count them in their nodes'
    reputation (and credit: a copy earns its credit when its vote is in; a trusted, unchecked
    result earns it without counting as agreed). Returns the nodes that became suspect or
    trusted again."""
    await tasks.set_verdicts(conn, {t.id: verdicts[t.id] for t in fresh})
    voted = [t for t in fresh if verdicts[t.id] != "trusted"]
    await nodes.count_votes(
        conn, [(t.node_id or "", verdicts[t.id] == "agreed", t.compute_ms) for t in voted]
    )
    changed = await spot_checks.reconsider(conn, [t.node_id or "" for t in voted])
    for t in fresh:
        if verdicts[t.id] == "trusted":
            await nodes.credit(conn, t.node_id or "", t.compute_ms)
    for t in fresh:
        if verdicts[t.id] == "disagreed":
            data: dict[str, object] = {"task": t.id, "node": t.node_id, "shard": t.shard}
            await events.append(conn, job_id, "replica_disagreed", data, now)
            log.warning(
                "copy disagrees with its shard's majority",
                extra=ids(job=job_id, round=round_idx, task=t.id, node=t.node_id),
            )
    return changed


async def _reissue(
    conn: Conn,
    config: JobConfig,
    job_id: str,
    round_idx: int,
    done: list[TaskRow],
    short: list[int],
    num_shards: int,
    now: int,
) -> int:
    """One more copy of each shard short of a majority, and the round running again; or, once
    a shard has had 2 x replicas + 1 copies, the job failed. Returns the tasks made ready."""
    slots = []
    for shard in short:
        copy = max(t.copy for t in done if t.shard == shard) + 1
        if copy >= 2 * config.copies + 1:
            quorum = config.copies // 2 + 1
            await fail_job(
                conn,
                job_id,
                f"{round_label(round_idx)}, shard {shard}: {copy} copies and no "
                f"{quorum} of them agree within {config.replica_tolerance}",
                now,
            )
            return 0
        slots.append(shard + copy * num_shards)
    await rounds.transition(conn, job_id, round_idx, "running", now)
    await jobs.transition(conn, job_id, "running", now)
    await tasks.insert_round(
        conn,
        job_id=job_id,
        round_idx=round_idx,
        shards=num_shards,
        slots=slots,
        max_attempts=config.max_attempts,
        max_losses=config.max_node_losses,
        now=now,
    )
    await events.append(
        conn, job_id, "replicas_reissued", {"round": round_idx, "slots": slots}, now
    )
    return len(slots)


async def blob_path(rt: Runtime, sha: str | None) -> str:
    blob = await blobs.get(rt.db.reader, sha or "")
    if blob is None:
        raise RuntimeError(f"blob {sha} is missing from storage")
    return str(await rt.storage.local_path(blob.storage_key))

"""Aggregating a finished round: winning its lease, merging its updates in the process pool,
and committing the merged model, which opens the next round (or finishes the job).

Safe to run again after a crash, and on several replicas at once: a replica acts only while the
round is 'aggregating' and it holds the round's aggregation lease; the commit re-checks it.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import msgspec

from gridx.coordinator.aggregation import staleness, work
from gridx.coordinator.aggregation.errors import WeightsError
from gridx.coordinator.aggregation.tally import weighted_metrics
from gridx.coordinator.db import blobs, buffer, events, jobs, rounds, tasks
from gridx.coordinator.db.connection import Conn
from gridx.coordinator.db.jobs import JobRow
from gridx.coordinator.db.tasks import TaskRow
from gridx.coordinator.logs import ids
from gridx.coordinator.services import fedbuff, privacy
from gridx.coordinator.services.lifecycle import fail_job
from gridx.coordinator.services.local_data import Fleet
from gridx.coordinator.services.rounds import open_evaluation, open_round
from gridx.coordinator.services.runtime import Runtime
from gridx.coordinator.services.voting import blob_path, vote
from gridx.coordinator.storage.base import Stored
from gridx.schemas.jobs import INIT_ROUND, JobConfig, round_label
from gridx.schemas.strategies import FedAvg, Strategy

log = logging.getLogger("gridx.coordinator.rounds")
_json = msgspec.json.Encoder()


@dataclass
class _Round:
    """A round ready to merge: its job, the shards' row counts, its successful tasks."""

    job: JobRow
    config: JobConfig
    idx: int
    rows: dict[int, int]
    done: list[TaskRow]

    @property
    def buffered(self) -> bool:
        """An async job's server step: its updates come from the buffer, each trained on the
        model of its own task's round."""
        return fedbuff.applies(self.config, self.idx)

    def weight_of(self, task: TaskRow) -> int:
        """A task's sample weight: its shard's rows, or the rows its node declared (capped)."""
        return task.weight if task.weight is not None else self.rows[task.shard]

    @property
    def planned_last(self) -> bool:
        """The job's last round as configured."""
        return self.idx + 1 >= self.config.rounds

    @property
    def over_budget(self) -> bool:
        """A DP job whose next round would spend more than its `max_epsilon`."""
        dp, delta = self.config.dp, self.job.dp_delta
        if dp is None or delta is None or self.idx == INIT_ROUND or self.planned_last:
            return False
        return not privacy.affordable(dp, self.idx + 2, delta)

    @property
    def last(self) -> bool:
        """Whether this round's model is the job's final one."""
        return self.planned_last or self.over_budget

    @property
    def epsilon(self) -> float | None:
        """A DP job's epsilon spent once this round is merged."""
        dp, delta = self.config.dp, self.job.dp_delta
        if dp is None or delta is None or self.idx == INIT_ROUND:
            return None
        return privacy.finite(privacy.epsilon(dp.noise_multiplier, self.idx + 1, delta))

    def strategy(self) -> Strategy:
        """The rule to merge with: the job's (DP: clipping at its clip norm); the
        initialisation step's one model is taken as it is (any rule would need more)."""
        if self.idx == INIT_ROUND:
            return FedAvg()
        if self.config.dp is not None:
            return msgspec.structs.replace(self.config.strategy, clip_norm=self.config.dp.clip_norm)
        return self.config.strategy


@dataclass
class _Merged:
    """What the pool made, stored: the model (.pth, and .safetensors in the last round), the
    optimizer state."""

    result: work.AggregationResult
    pth: Stored
    safetensors: Stored | None
    state: Stored | None


def merge_in_background(rt: Runtime, job_id: str, round_idx: int) -> None:
    """Merge a round in the background unless this process is already merging it."""
    rt.background.spawn(
        aggregate_round(rt, job_id, round_idx),
        f"aggregate-{job_id}-{round_idx}",
        key=("aggregate", job_id, round_idx),
    )


async def adopt_orphans(rt: Runtime) -> int:
    """Merge rounds left 'aggregating' with no live aggregator (a replica or a previous process
    died mid-merge, its lease ran out).

    Returns:
        How many rounds were picked up.
    """
    orphans = await rounds.orphaned(rt.db.reader, rt.clock.now_ms())
    for rnd in orphans:
        merge_in_background(rt, rnd.job_id, rnd.idx)
    return len(orphans)


async def aggregate_round(rt: Runtime, job_id: str, round_idx: int) -> None:
    """Merge a finished round if this replica wins its aggregation lease, keeping it renewed."""
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
        await _settle(rt, job_id, round_idx, lease_ms)
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


async def _settle(rt: Runtime, job_id: str, round_idx: int, lease_ms: int) -> None:
    """Vote on replicated copies, merge, commit, and wake nodes for what the commit opened."""
    rnd = await _load(rt, job_id, round_idx)
    if rnd is None:
        return
    if rnd.config.copies > 1:
        voted = await vote(rt, rnd.config, job_id, round_idx, rnd.done, len(rnd.rows), lease_ms)
        if voted is None:  # copies were reissued (or the job failed): not mergeable yet
            return
        rnd.done = voted
    merged = await _merge_updates(rt, rnd)
    if merged is None:
        return
    metrics = weighted_metrics([(t.metrics or {}, rnd.weight_of(t)) for t in rnd.done])
    opened = await _commit(rt, rnd, merged, metrics, lease_ms)
    if opened is None:
        return
    ready, next_step = opened
    log.info(
        "round done%s %s",
        ", job succeeded" if rnd.last else "",
        metrics,
        extra=ids(job=job_id, round=round_idx, replica=rt.replica),
    )
    rt.wakeups.tasks_ready(ready)
    if next_step is not None:  # an async job's buffer already holds the next step's updates
        merge_in_background(rt, job_id, next_step)


async def _load(rt: Runtime, job_id: str, round_idx: int) -> _Round | None:
    reader = rt.db.reader
    job = await jobs.get(reader, job_id)
    if job is None:
        return None
    if fedbuff.applies(job.config, round_idx):
        done = await buffer.merged_into(reader, job_id, round_idx)
    else:
        done = [
            t
            for t in await tasks.for_job(reader, job_id)
            if t.round_idx == round_idx and t.status == "succeeded" and t.result_sha
        ]
    return _Round(
        job=job,
        config=job.config,
        idx=round_idx,
        rows={s.idx: s.rows for s in await jobs.shards(reader, job_id)},
        done=done,
    )


async def _merge_updates(rt: Runtime, rnd: _Round) -> _Merged | None:
    """Merge a round's updates in the pool and store the outputs; None when the merge failed
    (the job is failed)."""
    reader, job_id = rt.db.reader, rnd.job.id
    this = await rounds.get(reader, job_id, rnd.idx)
    prev = await rounds.get(reader, job_id, rnd.idx - 1) if rnd.idx > 0 else None
    out_dir = Path(tempfile.mkdtemp(dir=rt.storage.tmp))
    dp = rnd.config.dp if rnd.idx != INIT_ROUND else None
    inputs = [t.result_sha or "" for t in rnd.done]
    inputs += [this.input_sha or "" if this else "", prev.state_sha or "" if prev else ""]
    origins = await _origins(rt, rnd) if rnd.buffered else {}
    inputs += list(origins.values())
    try:
        with rt.storage.pinned(inputs):  # a replica's cache keeps them until the merge ends
            job = work.AggregationJob(
                clients=[
                    (
                        t.shard,
                        await blob_path(rt, t.result_sha),
                        1.0 if dp is not None else float(rnd.weight_of(t)),  # DP: a uniform mean
                    )
                    for t in rnd.done
                ],
                strategy=rnd.strategy(),
                out_dir=str(out_dir),
                max_bytes=rt.settings.max_result_bytes,
                base_model=await blob_path(rt, this.input_sha) if this and this.input_sha else None,
                state_in=await blob_path(rt, prev.state_sha) if prev and prev.state_sha else None,
                final=rnd.last,
                noise_std=privacy.noise_std(dp, len(rnd.done)) if dp is not None else 0.0,
                origins=await _rebasing(rt, rnd, origins) if rnd.buffered else None,
            )
            try:
                result = await asyncio.get_running_loop().run_in_executor(
                    rt.pool, work.aggregate, job
                )
            except WeightsError as exc:
                await _abort(
                    rt, job_id, f"aggregation of {round_label(rnd.idx)} refused an update: {exc}"
                )
                return None
            except Exception as exc:
                log.exception("aggregation crashed", extra=ids(job=job_id, round=rnd.idx))
                await _abort(rt, job_id, f"aggregation of {round_label(rnd.idx)} crashed: {exc!r}")
                return None
            rt.metrics.aggregations += 1
            rt.metrics.aggregation_seconds += result.merge_s + result.write_s
            return _Merged(
                result=result,
                pth=await rt.storage.adopt(Path(result.model_pth)),
                safetensors=await rt.storage.adopt(Path(result.model_safetensors))
                if result.model_safetensors
                else None,
                state=await rt.storage.adopt(Path(result.state)) if result.state else None,
            )
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


async def _origins(rt: Runtime, rnd: _Round) -> dict[int, str]:
    """The models an async step's updates were trained on: round -> its input model's sha."""
    found: dict[int, str] = {}
    for idx in sorted({t.round_idx for t in rnd.done}):
        row = await rounds.get(rt.db.reader, rnd.job.id, idx)
        if row is None or row.input_sha is None:
            raise RuntimeError(f"round {idx} of job {rnd.job.id} has no input model")
        found[idx] = row.input_sha
    return found


async def _rebasing(rt: Runtime, rnd: _Round, origins: dict[int, str]) -> list[tuple[str, float]]:
    """Per update of an async step: the model file it trained from and its staleness discount."""
    exponent = rnd.config.staleness_exponent
    return [
        (
            await blob_path(rt, origins[t.round_idx]),
            staleness.discount(rnd.idx - t.round_idx, exponent),
        )
        for t in rnd.done
    ]


async def _commit(
    rt: Runtime, rnd: _Round, merged: _Merged, metrics: dict[str, float], lease_ms: int
) -> tuple[int, int | None] | None:
    """Record the merged round, if this replica still holds its lease and the job still runs,
    and open what follows: how many tasks became ready and the async step to merge next (None:
    nothing was committed)."""
    job_id, idx, last = rnd.job.id, rnd.idx, rnd.last
    pth_sha = merged.pth[0]
    now = rt.clock.now_ms()
    async with rt.db.transaction() as conn:
        if not await rounds.hold_aggregation(conn, job_id, idx, rt.replica, now, lease_ms):
            log.warning(
                "lost the aggregation lease", extra=ids(job=job_id, round=idx, replica=rt.replica)
            )
            return None
        for stored in (merged.pth, merged.safetensors, merged.state):
            if stored is not None:
                await blobs.record(conn, *stored, now)
        if last:
            moved = await jobs.transition(
                conn,
                job_id,
                "succeeded",
                now,
                final_pth_sha=pth_sha,
                final_st_sha=merged.safetensors[0] if merged.safetensors else None,
                error=_budget_note(rnd),
            )
        elif rnd.buffered:  # the fleet trained on meanwhile: the job stays running
            moved = await jobs.advance(conn, job_id, idx + 1, now)
        else:
            moved = await jobs.transition(conn, job_id, "running", now, current_round=idx + 1)
        if not moved:  # cancelled or failed meanwhile: nothing more to do
            return None
        await rounds.transition(
            conn,
            job_id,
            idx,
            "done",
            now,
            output_sha=pth_sha,
            metrics=_json.encode(metrics).decode(),
            state_sha=merged.state[0] if merged.state else None,
            epsilon=rnd.epsilon,
        )
        if rnd.buffered and not rnd.config.keep_updates:  # the updates this step took
            await buffer.release_merged(conn, job_id, idx)
        elif not rnd.config.keep_updates:  # merged: the updates are no longer needed
            await blobs.release_updates(conn, job_id, idx)
        await _announce(conn, rnd, merged, metrics, now)
        return await _open_next(conn, rnd, (pth_sha, merged.result.signature), now, Fleet.of(rt))


async def _announce(
    conn: Conn, rnd: _Round, merged: _Merged, metrics: dict[str, float], now: int
) -> None:
    """The `round_done` event of a merged round (same transaction as its commit)."""
    await events.append(
        conn,
        rnd.job.id,
        "round_done",
        {
            "round": rnd.idx,
            "metrics": metrics,
            "model": merged.pth[0],
            "selected": merged.result.selected,
            "clipped": merged.result.clipped,
            "epsilon": rnd.epsilon,
            **({"behind": [rnd.idx - t.round_idx for t in rnd.done]} if rnd.buffered else {}),
        },
        now,
    )


def _budget_note(rnd: _Round) -> str | None:
    """Why a DP job ends before its last round (None: it does not)."""
    if not rnd.over_budget or rnd.config.dp is None or rnd.job.dp_delta is None:
        return None
    return privacy.stop_note(rnd.config.dp, rnd.idx + 1, rnd.config.rounds, rnd.job.dp_delta)


async def _open_next(
    conn: Conn, rnd: _Round, model: tuple[str, str], now: int, fleet: Fleet
) -> tuple[int, int | None]:
    """What a merged round leads to (same transaction): its held-out evaluation, if the job has
    one and this round is due (`eval_every`, and the last), and the next round from `model` (its
    sha and signature), or the job's success. Returns how many tasks became ready and the
    async step to merge next, if its updates are already in."""
    ready, next_step = 0, None
    job_id = rnd.job.id
    due = rnd.last or (rnd.idx + 1) % rnd.config.eval_every == 0
    if rnd.job.eval_code_sha and rnd.idx != INIT_ROUND and due:
        ready += await open_evaluation(conn, job_id, rnd.config, rnd.idx, now)
    if rnd.buffered:
        next_step = await fedbuff.after_step(conn, rnd.job, rnd.idx, model, rnd.last, now)
    if rnd.last:
        note = _budget_note(rnd)
        if note is not None:
            await events.append(conn, job_id, "privacy_budget_reached", {"note": note}, now)
        await events.append(conn, job_id, "job_succeeded", {"model": model[0]}, now)
        return ready, None
    if rnd.buffered:
        return ready, next_step
    return ready + await open_round(conn, job_id, rnd.config, rnd.idx + 1, model, now, fleet), None


async def _abort(rt: Runtime, job_id: str, error: str) -> None:
    async with rt.db.transaction() as conn:
        await fail_job(conn, job_id, error, rt.clock.now_ms())

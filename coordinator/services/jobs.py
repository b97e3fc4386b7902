"""Jobs as users see them: submit, list, detail, cancel, and the final model."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import anyio.to_thread
import msgspec

from gridx.coordinator.aggregation import work
from gridx.coordinator.aggregation.errors import WeightsError
from gridx.coordinator.archives import archive_kind, members, split_archive
from gridx.coordinator.db import blobs, events, jobs
from gridx.coordinator.db.users import UserRow
from gridx.coordinator.errors import Conflict, InvalidInput
from gridx.coordinator.projects import check_project, check_requirements, check_script
from gridx.coordinator.services import nodes as node_views
from gridx.coordinator.services import privacy, retention
from gridx.coordinator.services.job_views import detail, summary, visible_job
from gridx.coordinator.services.lifecycle import close_job
from gridx.coordinator.services.local_data import Fleet
from gridx.coordinator.services.rounds import first_round, open_round
from gridx.coordinator.services.runtime import Runtime
from gridx.coordinator.sharding import split_lines, split_table, splitter
from gridx.coordinator.storage.base import Stored
from gridx.schemas.jobs import INIT_ROUND, Iid, JobConfig, JobDetail, JobSummary, Partition
from gridx.schemas.projects import DEFAULT_ENTRY

_json = msgspec.json.Encoder()


@dataclass
class Submission:
    """The files of a submission, already streamed to temp files in the store."""

    config: JobConfig
    code: Path
    """`train.py`, or the project's zip."""
    requirements: Path | None
    data: Path | None
    data_name: str | None
    init_model: Path | None = None
    """The starting model of every shard in round 0 (else each script starts on its own)."""
    evaluate: Path | None = None
    """The evaluation script run on each round's model with `test_data` (both or neither)."""
    test_data: Path | None = None
    test_data_name: str | None = None
    project: bool = False
    """`code` is a zip of the job's folder, run from `config.entry`."""


async def _initial_model(rt: Runtime, upload: Path | None) -> tuple[Path, str] | None:
    """The starting model as a `.pth` state_dict (a temp file) and its signature, checked in
    the pool like any weights.

    Raises:
        InvalidInput: the file is not usable weights (422 naming `init_model`).
    """
    if upload is None:
        return None
    out = rt.storage.temp_path(".pth")
    loop = asyncio.get_running_loop()
    try:
        sig = await loop.run_in_executor(
            rt.pool, work.initial_model, str(upload), str(out), rt.settings.max_result_bytes
        )
    except WeightsError as exc:
        out.unlink(missing_ok=True)
        raise InvalidInput(f"init_model refused: {exc}", field="init_model") from exc
    return out, sig


def _splitter(
    rt: Runtime, name: str
) -> Callable[[Path, list[Path], Partition, int], list[int]] | None:
    """How a dataset called `name` is split into shards (None: it is sent whole)."""
    archive = archive_kind(name)
    if archive is not None:
        cap = rt.settings.max_unpacked_bytes
        return lambda src, parts, partition, seed: split_archive(
            src, parts, archive, partition, seed, cap
        )
    kind = splitter(name)
    return None if kind is None else split_table if kind == "table" else split_lines


async def _split(rt: Runtime, user: UserRow, sub: Submission) -> list[tuple[Path, int]]:
    """A table, JSON Lines or archive dataset split into the job's shards (temp files and their
    rows or files); [] for data sent whole. What the split will write is checked against the
    free-space floor and the owner's quota before a byte of it is written.

    Raises:
        InvalidInput: the data cannot be split as the job asks.
        StorageFull, QuotaExceeded: there is no room for the job.
    """
    config = sub.config
    split = _splitter(rt, sub.data_name or "")
    if split is None and not isinstance(config.partition, Iid):
        raise InvalidInput(
            "partition: only a table (.csv, .tsv, ...), JSON Lines or an archive (.zip, .tar, "
            ".tar.gz) can be split by a column",
            field="partition",
        )
    received = sum(p.stat().st_size for p in _files_of(sub))
    if sub.data is None or split is None:
        await retention.check_room(rt, user, received, 0)
        return []
    await retention.check_room(rt, user, received, await _expansion(rt, sub.data, sub.data_name))
    parts = [rt.storage.temp_path(Path(sub.data_name or "").suffix) for _ in range(config.shards)]
    try:
        counts = await anyio.to_thread.run_sync(
            split, sub.data, parts, config.partition, config.seed
        )
    except BaseException:
        for p in parts:
            p.unlink(missing_ok=True)
        raise
    return list(zip(parts, counts, strict=True))


async def _checked_code(rt: Runtime, sub: Submission) -> Submission:
    """The submission once its code is checked (a project's entry settled).

    Raises:
        InvalidInput: the code does not compile, a project is unusable, or `entry` is set
            for a single script.
    """
    config = sub.config
    if not sub.project:
        if config.entry is not None:
            raise InvalidInput("entry names a project's script: send the folder", field="entry")
        await anyio.to_thread.run_sync(check_script, sub.code, "train_py", "train.py")
    else:
        entry = config.entry or DEFAULT_ENTRY
        cap = rt.settings.max_project_bytes
        await anyio.to_thread.run_sync(check_project, sub.code, entry, cap)
        sub = replace(sub, config=msgspec.structs.replace(config, entry=entry))
    if sub.evaluate is not None:
        await anyio.to_thread.run_sync(check_script, sub.evaluate, "evaluate_py", "evaluate.py")
    if sub.requirements is not None:
        fleet = await node_views.frameworks(rt)
        await anyio.to_thread.run_sync(check_requirements, sub.requirements, fleet)
    return sub


def _files_of(sub: Submission) -> list[Path]:
    found = [sub.code, sub.requirements, sub.data, sub.init_model, sub.evaluate, sub.test_data]
    return [p for p in found if p is not None]


async def _expansion(rt: Runtime, data: Path, name: str | None) -> int:
    """The bytes splitting `data` writes: an archive's members at their unpacked size (a
    sparse or highly compressed member counts in full), a table or JSON Lines its own size."""
    kind = archive_kind(name or "")
    if kind is None:
        return data.stat().st_size
    cap = rt.settings.max_unpacked_bytes
    found = await anyio.to_thread.run_sync(members, data, kind, cap)
    return sum(size for _, size in found)


@dataclass
class _Files:
    """A submission's files, adopted by the store (recorded with the job, in one transaction)."""

    stored: list[Stored]
    """(sha, size, key) of every blob to record."""
    code_sha: str
    requirements_sha: str | None
    data_sha: str | None
    shards: list[tuple[str | None, int]]
    """(blob, rows) per shard."""
    init_sha: str | None
    evaluation: tuple[str, str, str] | None
    """(script, test data, its file name) of the held-out evaluation."""


async def _adopt_files(
    rt: Runtime, sub: Submission, init: Path | None, row_shards: list[tuple[Path, int]]
) -> _Files:
    stored: list[Stored] = []

    async def adopt(path: Path) -> str:
        item = await rt.storage.adopt(path)
        stored.append(item)
        return item[0]

    k = 0 if sub.config.dataset else sub.config.shards  # node-local data: no shards here
    init_sha = await adopt(init) if init else None
    evaluation = None
    if sub.evaluate is not None and sub.test_data is not None:
        test_name = sub.test_data_name or "test_data"
        evaluation = (await adopt(sub.evaluate), await adopt(sub.test_data), test_name)
    code_sha = await adopt(sub.code)
    req_sha = await adopt(sub.requirements) if sub.requirements else None
    data_sha: str | None = None
    shards: list[tuple[str | None, int]] = [(None, 1)] * k
    if sub.data is not None:
        data_sha = await adopt(sub.data)
        # a table or JSON Lines goes out in row shards; other data whole to every task
        shards = [(await adopt(p), n) for p, n in row_shards] or [(data_sha, 1)] * k
    return _Files(stored, code_sha, req_sha, data_sha, shards, init_sha, evaluation)


def _check_sources(sub: Submission) -> None:
    """Data comes one way: uploaded, or named on the nodes.

    Raises:
        InvalidInput: both, or a DP job with no model to clip its first round against.
    """
    config = sub.config
    if config.dataset is not None and sub.data is not None:
        raise InvalidInput(
            f"the job trains on the nodes' dataset {config.dataset!r}: upload no data with it",
            field="data",
        )
    if config.dp is not None and sub.init_model is None and first_round(config, None) != INIT_ROUND:
        raise InvalidInput(
            "differential privacy clips every update against the round's input model: give "
            "an init_model, or keep init_step with more than one shard",
            field="dp",
        )


async def submit(rt: Runtime, user: UserRow, sub: Submission) -> JobDetail:
    """Store a job's files, shard its data, and open its first round.

    Raises:
        InvalidInput: unusable data (e.g. fewer rows than shards) or initial model, or a
            privacy budget that not even one round fits.
    """
    sub = await _checked_code(rt, sub)
    config = sub.config
    _check_sources(sub)
    # checked and split before anything is stored, so a refusal leaves nothing in the store
    init = await _initial_model(rt, sub.init_model)
    try:
        row_shards = await _split(rt, user, sub)
    except BaseException:
        if init:
            init[0].unlink(missing_ok=True)
        raise
    delta = None if config.dataset else _delta(config, [n for _, n in row_shards])
    files = await _adopt_files(rt, sub, init[0] if init else None, row_shards)
    job_id = "j-" + uuid.uuid4().hex[:12]
    now = rt.clock.now_ms()
    async with rt.db.transaction() as conn:
        for sha, size, key in files.stored:
            await blobs.record(conn, sha, size, key, now)
        await jobs.create(
            conn,
            job_id=job_id,
            owner_id=user.id,
            name=config.name or job_id,
            config=_json.encode(config).decode(),
            code_sha=files.code_sha,
            requirements_sha=files.requirements_sha,
            data_sha=files.data_sha,
            data_name=sub.data_name,
            shards=files.shards,
            replicas=config.copies,
            evaluation=files.evaluation,
            placement=config.placement,
            rules=jobs.RoundRules(
                backup_after=config.backup_after if config.backup_tasks else None,
                min_fraction=config.min_fraction,
                round_deadline_ms=config.round_deadline_s * 1000
                if config.round_deadline_s is not None
                else None,
            ),
            dataset=config.dataset,
            dp_delta=delta,
            keep_updates=config.keep_updates,
            keep_rounds=config.keep_rounds,
            now=now,
        )
        start = (files.init_sha, init[1]) if files.init_sha and init else None
        first = first_round(config, start)
        ready = await open_round(conn, job_id, config, first, start, now, Fleet.of(rt))
        await events.append(conn, job_id, "job_submitted", {"owner": user.email}, now)
    rt.wakeups.tasks_ready(ready)
    return await detail(rt, user, job_id)


def _delta(config: JobConfig, rows: list[int]) -> float | None:
    """An uploaded-data DP job's delta (1 / its rows unless it chose one), once its budget was
    checked.

    Raises:
        InvalidInput: not even one round fits `max_epsilon`.
    """
    if config.dp is not None and config.dp.delta is None and not rows:
        raise InvalidInput(
            "differential privacy needs dp.delta here: the job's data is not a table, JSON Lines "
            "or archive Grid-X splits, so its rows are unknown (1 / rows is the default)",
            field="dp.delta",
        )
    delta = privacy.default_delta(config, rows)
    if config.dp is not None and delta is not None:
        problem = privacy.budget_problem(config.dp, delta)
        if problem is not None:
            raise InvalidInput(f"privacy budget: {problem}", field="dp.max_epsilon")
    return delta


async def cancel(rt: Runtime, user: UserRow, job_id: str) -> JobSummary:
    """Cancel a job; nodes running its tasks are told to stop at their next heartbeat.

    Raises:
        Conflict: the job has already finished.
    """
    row = await visible_job(rt, user, job_id)
    now = rt.clock.now_ms()
    async with rt.db.transaction() as conn:
        if not await close_job(conn, job_id, "cancelled", {"by": user.email}, now):
            raise Conflict(
                f"job {job_id} is already {row.status}; only unfinished jobs can be cancelled"
            )
    return summary(await visible_job(rt, user, job_id))

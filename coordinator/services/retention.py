"""Storage that does not grow for ever. A blob is kept while a row needs it (see
`db/blobs.py`): merged rounds let go of their client updates, ended jobs of their data and
intermediate models, deleted jobs of everything. The sweeper deletes what nothing needs once it
has not been written for `sweep_grace_s` (an upload of the same content in flight renews it), and
finished jobs past `retention_days` are deleted on schedule."""

from __future__ import annotations

import logging

from gridx.coordinator.db import audit, blobs, jobs
from gridx.coordinator.db.users import UserRow
from gridx.coordinator.errors import Conflict, NotFound, QuotaExceeded, StorageFull
from gridx.coordinator.services import resumable
from gridx.coordinator.services.runtime import Runtime

log = logging.getLogger("gridx.coordinator.retention")
DAY_MS = 86_400_000


async def sweep(rt: Runtime) -> int:
    """Delete blobs nothing needs (in batches, until none is left); how many."""
    deleted = 0
    while True:
        before = rt.clock.now_ms() - int(rt.settings.sweep_grace_s * 1000)
        async with rt.db.transaction() as conn:
            gone = await blobs.sweep(conn, before)
        for row in gone:
            if await rt.storage.delete(row.storage_key, before):
                deleted += 1
        if len(gone) < 500:
            break
    if deleted:
        log.info("swept %d blob(s) nothing needs", deleted)
    if parts := resumable.sweep(rt):
        log.info("swept %d upload part(s) abandoned for an hour", parts)
    return deleted


async def delete_job(rt: Runtime, user: UserRow, job_id: str) -> None:
    """Delete an ended job and every blob only it used (a blob another job shares stays).

    Raises:
        NotFound: no such job, or another user's (admins may delete any).
        Conflict: the job has not ended (cancel it first).
    """
    row = await jobs.get(rt.db.reader, job_id)
    if row is None or (row.owner_id != user.id and user.role != "admin"):
        raise NotFound(f"no job {job_id!r}")
    if row.status not in jobs.ENDED:
        raise Conflict(f"job {job_id} is {row.status}: cancel it first (`gridx job cancel`)")
    now = rt.clock.now_ms()
    async with rt.db.transaction() as conn:
        await jobs.delete(conn, job_id)
        await audit.record(conn, now, user.email, "job.delete", job_id, row.name)
    await sweep(rt)


async def expire(rt: Runtime) -> int:
    """Delete jobs that ended more than `retention_days` ago; how many."""
    if rt.settings.retention_days <= 0:
        return 0
    before = rt.clock.now_ms() - int(rt.settings.retention_days * DAY_MS)
    expired = await jobs.ended_before(rt.db.reader, before)
    now = rt.clock.now_ms()
    for job_id in expired:
        async with rt.db.transaction() as conn:
            await jobs.delete(conn, job_id)
            await audit.record(conn, now, "retention", "job.delete", job_id, "")
    if expired:
        log.info(
            "deleted %d job(s) past the retention of %g days",
            len(expired),
            rt.settings.retention_days,
        )
        await sweep(rt)
    return len(expired)


async def housekeeping(rt: Runtime) -> None:
    """The background step: expire old jobs, then sweep."""
    await expire(rt)
    await sweep(rt)


async def check_quota(rt: Runtime, user: UserRow, incoming: int) -> None:
    """Refuse (413) a submission of `incoming` bytes that would take `user` past
    `user_quota_mb` (0: no quota).

    Raises:
        QuotaExceeded: it would.
    """
    quota = rt.settings.user_quota_mb
    if not quota:
        return
    used = await blobs.of_owner(rt.db.reader, user.id)
    if used + incoming > quota << 20:
        raise QuotaExceeded(
            f"this job needs {_mib(incoming)} and {user.email} already stores {_mib(used)} of "
            f"a quota of {quota} MiB (GRIDX_USER_QUOTA_MB); nothing was kept. Delete ended "
            "jobs (`gridx job delete`) or ask an admin for a larger quota"
        )


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


async def check_room(rt: Runtime, user: UserRow, incoming: int, expansion: int) -> None:
    """Before a submission's data is split: refuse what the split would write (`expansion`,
    sparse archive members at their full size) against the free-space floor, and what the
    job would store in all (`incoming` already received, plus `expansion`) against the quota.

    Raises:
        StorageFull: the disk would fall under the floor.
        QuotaExceeded: the user would pass the quota.
    """
    check_free_space(rt, expansion)
    await check_quota(rt, user, incoming + expansion)


def check_free_space(rt: Runtime, incoming: int) -> None:
    """Refuse (507) a write of `incoming` bytes that would leave less than `min_free_mb` free.

    Raises:
        StorageFull: it would.
    """
    free = rt.storage.free_bytes()
    floor = rt.settings.min_free_mb << 20
    if free is not None and free - incoming < floor:
        raise StorageFull(
            f"the coordinator keeps {rt.settings.min_free_mb} MiB free (GRIDX_MIN_FREE_MB) and "
            f"has {free >> 20} MiB; nothing was kept. Delete finished jobs (`gridx job delete`) "
            "or free disk space, then retry"
        )

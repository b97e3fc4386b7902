"""What the scheduler suites share: a Runtime on a real database, and a job seeded in it."""

from __future__ import annotations

from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path

from gridx.coordinator.clock import ManualClock
from gridx.coordinator.db import connect, jobs, rounds, tasks
from gridx.coordinator.services.lifespan import listen
from gridx.coordinator.services.runtime import Runtime
from gridx.coordinator.settings import Settings
from gridx.coordinator.storage.local import LocalStorage
from gridx.coordinator.storage.signing import UrlSigner
from gridx.schemas.placement import Placement


async def runtime(
    url: str,
    data_dir: Path,
    *,
    clock: ManualClock | None = None,
    lease_s: float = 30.0,
    replica: str = "test",
    pool: Executor | None = None,
) -> Runtime:
    """A coordinator's live parts (no HTTP) on the database at `url`, listening for wake-ups."""
    settings = Settings(data_dir=data_dir, lease_s=lease_s, database_url=url)
    the_clock = clock or ManualClock()
    db = await connect(settings.db_url)
    rt = Runtime(
        settings=settings,
        db=db,
        storage=LocalStorage(settings.blob_dir, UrlSigner(b"k"), the_clock),
        signer=UrlSigner(b"k"),
        clock=the_clock,
        pool=pool or ThreadPoolExecutor(1),
        replica=replica,
    )
    await listen(rt)
    return rt


async def seed_job(
    rt: Runtime,
    job_id: str = "j1",
    *,
    shards: int = 2,
    max_attempts: int = 2,
    max_losses: int = 5,
    placement: Placement | None = None,
) -> int:
    """A queued job owned by `owner@x.org` (created once), its round 0 enqueued; the owner's id."""
    now = rt.clock.now_ms()
    async with rt.db.transaction() as conn:
        await conn.execute(
            "INSERT INTO users (email, role, created_at) VALUES ('owner@x.org', 'user', 0) "
            "ON CONFLICT DO NOTHING"
        )
        await conn.execute(
            "INSERT INTO blobs (sha256, size, storage_key, created_at) VALUES ('c', 1, 'c', 0) "
            "ON CONFLICT DO NOTHING"
        )
        owner = int((await conn.fetch("SELECT id FROM users WHERE email = 'owner@x.org'"))[0][0])
        await jobs.create(
            conn,
            job_id=job_id,
            owner_id=owner,
            name=job_id,
            config="{}",
            code_sha="c",
            requirements_sha=None,
            data_sha=None,
            data_name=None,
            shards=[(None, 1)] * shards,
            placement=placement or Placement(),
            now=now,
        )
        await rounds.create(conn, job_id=job_id, idx=0, input_sha=None, signature=None, now=now)
        await tasks.insert_round(
            conn,
            job_id=job_id,
            round_idx=0,
            shards=shards,
            slots=list(range(shards)),
            max_attempts=max_attempts,
            max_losses=max_losses,
            now=now,
        )
    return owner

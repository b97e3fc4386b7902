"""What replicas need from the database, on both engines: concurrent transactions (PostgreSQL
runs them truly in parallel) never lease a task twice, start a round's aggregation exactly once,
hand the aggregation lease to one holder at a time; and wake-ups cross processes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from gridx.coordinator.clock import ManualClock
from gridx.coordinator.db import nodes, rounds, tasks, uploads
from gridx.coordinator.services import dispatch
from gridx.coordinator.services.rounds import close_round_if_complete
from gridx.coordinator.services.runtime import Runtime
from tests.support.servers import PostgresServer
from tests.unit.scheduling import runtime, seed_job


@contextlib.asynccontextmanager
async def _replicas(url: str, data: Path) -> AsyncIterator[list[Runtime]]:
    clock = ManualClock()
    a = await runtime(url, data / "a", clock=clock, replica="replica-a")
    b = await runtime(url, data / "b", clock=clock, replica="replica-b")
    try:
        yield [a, b]
    finally:
        for rt in (a, b):
            await rt.db.close()


@pytest.fixture
async def pair(tmp_path: Path, new_database: Callable[[], str]) -> AsyncIterator[list[Runtime]]:
    """Two replicas on one database (on SQLite: two connections to one file)."""
    async with _replicas(new_database(), tmp_path) as rts:
        yield rts


async def _job(rt: Runtime, job_id: str, shards: int, node_count: int = 0) -> None:
    """A job with `shards` tasks, and nodes of its owner to claim them."""
    owner = await seed_job(rt, job_id, shards=shards, max_attempts=3, max_losses=3)
    async with rt.db.transaction() as conn:
        for i in range(node_count or shards * 3):
            await nodes.create(
                conn,
                node_id=f"{job_id}-n{i}",
                owner_id=owner,
                name=f"n{i}",
                token_hash=f"{job_id}-n{i}",
                capabilities="{}",
                now=rt.clock.now_ms(),
            )


async def test_concurrent_claims_on_two_replicas_never_lease_a_task_twice(
    pair: list[Runtime],
) -> None:
    await _job(pair[0], "j", shards=10)
    claimers = [await nodes.by_token_hash(pair[0].db.reader, f"j-n{i}") for i in range(30)]
    got = await asyncio.gather(
        *(dispatch.claim(pair[i % 2], node) for i, node in enumerate(claimers) if node)
    )
    leased = [t.id for t in got if t is not None]
    assert len(leased) == len(set(leased)) == 10
    rows = await tasks.for_job(pair[1].db.reader, "j")
    assert all(t.status == "leased" and t.attempts == 1 for t in rows)


async def test_the_last_completions_of_a_round_start_its_aggregation_exactly_once(
    pair: list[Runtime],
) -> None:
    for attempt in range(5):
        job_id = f"j{attempt}"
        await _job(pair[0], job_id, shards=4)
        held = []
        for i in range(4):
            node = await nodes.by_token_hash(pair[0].db.reader, f"{job_id}-n{i}")
            assert node is not None
            task = await dispatch.claim(pair[0], node)
            assert task is not None
            held.append(task)

        async def finish(rt: Runtime, task: tasks.TaskRow) -> bool:
            now = rt.clock.now_ms()
            async with rt.db.transaction() as conn:
                token = task.lease_token or ""
                await uploads.attach_result(
                    conn, task_id=task.id, token=token, result_sha="c", size=1, now=now
                )
                done = await tasks.complete(
                    conn,
                    task_id=task.id,
                    node_id=task.node_id or "",
                    token=token,
                    result_sha="c",
                    metrics="{}",
                    now=now,
                    claimed_ms=1000,
                    timeout_ms=60_000,
                )
                assert done is not None
                return await close_round_if_complete(conn, done, now)

        started = await asyncio.gather(*(finish(pair[i % 2], t) for i, t in enumerate(held)))
        assert sum(started) == 1, started
        rnd = await rounds.get(pair[1].db.reader, job_id, 0)
        assert rnd is not None and rnd.status == "aggregating"


async def test_the_aggregation_lease_has_one_holder_and_passes_on_when_it_lapses(
    pair: list[Runtime],
) -> None:
    a, b = pair
    await _job(a, "j", shards=1)
    async with a.db.transaction() as conn:
        await rounds.transition(conn, "j", 0, "aggregating", a.clock.now_ms())

    async def take(rt: Runtime) -> bool:
        async with rt.db.transaction() as conn:
            got = await rounds.take_aggregation(conn, "j", 0, rt.replica, rt.clock.now_ms(), 10_000)
        return got is not None

    async def hold(rt: Runtime) -> bool:
        async with rt.db.transaction() as conn:
            return await rounds.hold_aggregation(
                conn, "j", 0, rt.replica, rt.clock.now_ms(), 10_000
            )

    assert [await take(a), await take(b)] == [True, False]
    assert [r.idx for r in await rounds.orphaned(b.db.reader, b.clock.now_ms())] == []
    a.clock.advance(5)  # type: ignore[attr-defined]
    assert await hold(a) and not await take(b)  # renewed in time: still a's
    a.clock.advance(11)  # type: ignore[attr-defined]  # a stopped renewing (killed)
    assert [r.idx for r in await rounds.orphaned(b.db.reader, b.clock.now_ms())] == [0]
    assert await take(b)
    assert not await hold(a), "the old holder must not commit a merge after losing the lease"
    assert await hold(b)


async def test_a_task_made_ready_on_one_replica_wakes_a_long_poll_on_another(
    tmp_path: Path, pg_server: PostgresServer
) -> None:
    # PostgreSQL only: with SQLite one process owns the file, so there is no other replica.
    async with _replicas(pg_server.new_database(), tmp_path) as (a, b):
        await _job(a, "seed", shards=0, node_count=1)  # users, blobs and a node only
        node = await nodes.by_token_hash(b.db.reader, "seed-n0")
        assert node is not None
        poll = asyncio.create_task(dispatch.request_task(b, node, 20))
        await asyncio.sleep(0.3)  # b's claim found nothing and is parked
        assert not poll.done()
        await _job(a, "j", shards=1)
        a.wakeups.tasks_ready(1)  # what submit() does after enqueueing
        got = await asyncio.wait_for(poll, 5)
        assert got is not None and got.job_id == "j"


async def test_a_drain_set_through_one_replica_reaches_the_other(
    pair: list[Runtime],
) -> None:
    from gridx.coordinator.db import users
    from gridx.coordinator.services.auth import hash_secret
    from gridx.coordinator.services.node_cache import NODE_CACHE_MS
    from gridx.coordinator.services.nodes import authenticate, set_draining

    a, b = pair
    await _job(a, "j", shards=1, node_count=0)
    owner = await users.by_email(a.db.reader, "owner@x.org")
    assert owner is not None
    async with a.db.transaction() as conn:
        await nodes.create(
            conn,
            node_id="pi",
            owner_id=owner.id,
            name="pi",
            token_hash=hash_secret("gxn_pi"),
            capabilities="{}",
            now=a.clock.now_ms(),
        )
    assert not (await authenticate(b, "Bearer gxn_pi")).draining  # b caches the node
    await set_draining(a, owner, "pi", True)  # the owner's request lands on replica a
    assert (await authenticate(a, "Bearer gxn_pi")).draining
    if a.db.dialect == "postgresql":  # replicas: a tells b at once (NOTIFY)
        for _ in range(50):
            await asyncio.sleep(0.02)
            if (await authenticate(b, "Bearer gxn_pi")).draining:
                break
    else:  # one process per SQLite file; a second connection re-reads after the cache time
        a.clock.advance(NODE_CACHE_MS / 1000 + 1)  # type: ignore[attr-defined]  # shared clock
    assert (await authenticate(b, "Bearer gxn_pi")).draining
    assert await dispatch.claim(b, await authenticate(b, "Bearer gxn_pi")) is None

"""The task queue against a real SQLite file and a real PostgreSQL, driven by a manual clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from gridx.coordinator.db import attempts, jobs, nodes, tasks
from gridx.coordinator.db.nodes import NodeRow
from gridx.coordinator.db.tasks import TaskRow
from gridx.coordinator.services import dispatch
from gridx.coordinator.services.auth import create_user
from gridx.coordinator.services.nodes import flush_heartbeats, note_heartbeat
from gridx.coordinator.services.runtime import Runtime
from gridx.schemas.placement import Placement
from tests.unit.scheduling import runtime, seed_job

LEASE_S = 30.0


@pytest.fixture
async def rt(tmp_path: Path, new_database: Callable[[], str]) -> AsyncIterator[Runtime]:
    runtime_ = await runtime(new_database(), tmp_path, lease_s=LEASE_S)
    yield runtime_
    runtime_.pool.shutdown()
    await runtime_.db.close()


async def _node(rt: Runtime, name: str) -> NodeRow:
    user, _ = await create_user(rt.db, rt.clock, f"{name}@x.org", False)
    async with rt.db.transaction() as conn:
        await nodes.create(
            conn,
            node_id=name,
            owner_id=user.id,
            name=name,
            token_hash=name,
            capabilities="{}",
            now=rt.clock.now_ms(),
        )
        row = await nodes.by_token_hash(conn, name)
    assert row is not None
    return row


async def test_claims_go_in_shard_order_and_count_attempts(rt: Runtime) -> None:
    a = await _node(rt, "a")
    await seed_job(rt, shards=2)
    t0 = await dispatch.claim(rt, a)
    t1 = await dispatch.claim(rt, a)
    assert t0 is not None and t1 is not None
    assert (t0.slot, t1.slot) == (0, 1) and (t0.shard, t1.shard) == (0, 1)
    assert t0.attempts == 1 and t0.status == "leased" and t0.node_id == "a"
    assert t0.lease_token != t1.lease_token
    assert await dispatch.claim(rt, a) is None
    job = await jobs.get(rt.db.reader, "j1")
    assert job is not None and job.status == "running"


async def test_expired_lease_is_reissued_and_the_old_token_is_fenced(rt: Runtime) -> None:
    a, b = await _node(rt, "a"), await _node(rt, "b")
    await seed_job(rt, shards=1)
    first = await dispatch.claim(rt, a)
    assert first is not None
    rt.clock.advance(LEASE_S - 1)  # type: ignore[attr-defined]
    assert await dispatch.claim(rt, b) is None  # still held
    rt.clock.advance(2)  # type: ignore[attr-defined]
    second = await dispatch.claim(rt, b)
    assert second is not None and second.id == first.id
    assert second.node_id == "b" and second.attempts == 1 and second.losses == 1
    async with rt.db.transaction() as conn:
        stale = await tasks.complete(
            conn,
            task_id=first.id,
            node_id="a",
            token=first.lease_token or "",
            result_sha="x",
            metrics="{}",
            now=rt.clock.now_ms(),
            claimed_ms=1000,
            timeout_ms=60_000,
        )
    assert stale is None
    after = await tasks.get(rt.db.reader, first.id)
    assert after is not None and after.status == "leased" and after.node_id == "b"
    history = await attempts.for_job(rt.db.reader, "j1")
    assert [(h.node_id, h.outcome) for h in history] == [("a", "lease_expired"), ("b", None)]


async def test_node_losses_have_their_own_cap_and_the_job_fails_with_the_reason(
    rt: Runtime,
) -> None:
    a = await _node(rt, "a")
    await seed_job(rt, shards=1, max_attempts=1, max_losses=3)  # one try of the user's code
    for _ in range(3):  # three nodes vanish with it: none of that is the code's fault
        assert await dispatch.claim(rt, a) is not None
        rt.clock.advance(LEASE_S + 1)  # type: ignore[attr-defined]
    assert await dispatch.expire_leases(rt) == 0
    task = (await tasks.for_job(rt.db.reader, "j1"))[0]
    assert task.status == "failed" and task.error_code == "lease_expired"
    assert (task.losses, task.attempts) == (3, 1)
    job = await jobs.get(rt.db.reader, "j1")
    assert job is not None and job.status == "failed"
    assert job.error is not None and "3 node loss(es)" in job.error


async def test_a_lost_node_does_not_use_up_the_tries_of_the_users_code(rt: Runtime) -> None:
    a = await _node(rt, "a")
    await seed_job(rt, shards=1, max_attempts=1, max_losses=5)
    assert await dispatch.claim(rt, a) is not None
    rt.clock.advance(LEASE_S + 1)  # type: ignore[attr-defined]  # the node vanished
    t = await dispatch.claim(rt, a)
    assert t is not None and (t.attempts, t.losses) == (1, 1)  # still the first real try
    async with rt.db.transaction() as conn:  # the node reports its own trouble: a loss too
        back = await tasks.give_up(
            conn,
            task_id=t.id,
            node_id="a",
            token=t.lease_token or "",
            outcome="node_error",
            error_code="download_failed",
            error="disk",
            stderr_tail="",
            requeue=True,
            refund=True,
            lost=True,
            now=rt.clock.now_ms(),
        )
    assert back is not None and (back.status, back.attempts, back.losses) == ("queued", 0, 2)
    t = await dispatch.claim(rt, a)
    assert t is not None
    done = await _give_up(rt, t, "user_error", refund=False)  # the code itself failed once
    assert done is not None and (done.attempts, done.losses) == (1, 2)


async def test_heartbeats_are_batched_and_renew_the_leases_of_running_tasks(
    rt: Runtime,
) -> None:
    a = await _node(rt, "a")
    await seed_job(rt, shards=2)
    task, dropped = await dispatch.claim(rt, a), await dispatch.claim(rt, a)
    assert task is not None and dropped is not None
    for _ in range(3):  # heartbeats naming only `task`, each flushed in one transaction
        rt.clock.advance(LEASE_S / 2)  # type: ignore[attr-defined]
        note_heartbeat(rt, a.id, [task.id])
        assert await flush_heartbeats(rt) == 1
    held = await tasks.get(rt.db.reader, task.id)
    assert held is not None and held.status == "leased"
    assert held.lease_expires_at == rt.clock.now_ms() + int(LEASE_S * 1000)
    # the task the node stopped naming (it could not report it) expired and is queued again
    assert (await tasks.get(rt.db.reader, dropped.id)).status == "leased"  # type: ignore[union-attr]
    assert await dispatch.expire_leases(rt) == 1
    again = await tasks.get(rt.db.reader, dropped.id)
    assert again is not None and again.status == "queued"
    assert await flush_heartbeats(rt) == 0  # nothing buffered, nothing written


async def _give_up(rt: Runtime, t: TaskRow, outcome: str, refund: bool) -> TaskRow | None:
    async with rt.db.transaction() as conn:
        return await tasks.give_up(
            conn,
            task_id=t.id,
            node_id="a",
            token=t.lease_token or "",
            outcome=outcome,
            error_code=outcome,
            error="bye",
            stderr_tail="",
            requeue=True,
            refund=refund,
            now=rt.clock.now_ms(),
        )


async def test_release_refunds_the_attempt_and_user_errors_do_not(rt: Runtime) -> None:
    a = await _node(rt, "a")
    await seed_job(rt, shards=1, max_attempts=2)
    t = await dispatch.claim(rt, a)
    assert t is not None
    back = await _give_up(rt, t, "released", refund=True)
    assert back is not None and back.status == "queued" and back.attempts == 0
    t = await dispatch.claim(rt, a)
    assert t is not None and t.attempts == 1
    back = await _give_up(rt, t, "user_error", refund=False)
    again = await _give_up(rt, t, "user_error", refund=False)
    assert back is not None and back.attempts == 1 and back.status == "queued"
    assert again is None  # the lease is gone: fenced


async def test_long_poll_wakes_on_enqueue(rt: Runtime) -> None:
    import asyncio

    a = await _node(rt, "a")
    waiter = asyncio.create_task(dispatch.request_task(rt, a, wait_s=10))
    await asyncio.sleep(0.05)
    assert len(rt.wakeups) == 1 and not waiter.done()
    await seed_job(rt, shards=1)
    rt.wakeups.wake(1)
    got = await asyncio.wait_for(waiter, 2)
    assert got is not None and got.shard == 0
    assert len(rt.wakeups) == 0


async def test_claims_match_jobs_to_what_the_node_offers(rt: Runtime) -> None:
    from gridx.schemas.agent import Capabilities

    wants = {
        "needs-docker": Placement(require_docker=True),
        "needs-gpu": Placement(require_gpu=True),
        "needs-arm": Placement(arch="aarch64"),
        "needs-cores": Placement(min_cpus=64),
        "needs-memory": Placement(min_memory_mb=1 << 20),
        "anything": Placement(),
    }
    for job_id, placement in wants.items():
        await seed_job(rt, job_id, shards=1, placement=placement)
    small = Capabilities(arch="x86_64", cpus=2, memory_mb=4096)
    big = Capabilities(arch="aarch64", cpus=128, memory_mb=2 << 20, docker=True, gpus=1)

    async def claim_all(caps: Capabilities) -> set[str]:
        got = set()
        async with rt.db.transaction() as conn:
            while t := await tasks.claim(
                conn, node_id="a", token="t", now=rt.clock.now_ms(), lease_ms=1000, caps=caps
            ):
                got.add(t.job_id)
        return got

    await _node(rt, "a")
    assert await claim_all(small) == {"anything"}
    assert await claim_all(big) == set(wants) - {"anything"}


async def test_copies_of_a_shard_go_to_different_owners(rt: Runtime) -> None:
    a1, a2, b = await _node(rt, "a1"), await _node(rt, "a2"), await _node(rt, "b")
    async with rt.db.transaction() as conn:  # a2 belongs to a1's owner
        await conn.execute(
            "UPDATE nodes SET owner_id = (SELECT owner_id FROM nodes WHERE id = 'a1') "
            "WHERE id = 'a2'"
        )
    a2 = await nodes.by_token_hash(rt.db.reader, "a2")  # type: ignore[assignment]
    assert a2.owner_id == a1.owner_id
    await seed_job(rt, shards=1)
    async with rt.db.transaction() as conn:  # slot 1 is shard 0's second copy
        await conn.execute("UPDATE jobs SET replicas = 2, shard_count = 1")
        await tasks.insert_round(
            conn,
            job_id="j1",
            round_idx=0,
            shards=1,
            slots=[1],
            max_attempts=2,
            max_losses=5,
            now=rt.clock.now_ms(),
        )
    first = await dispatch.claim(rt, a1)
    assert first is not None and (first.slot, first.shard, first.copy) == (0, 0, 0)
    assert await dispatch.claim(rt, a2) is None  # same owner: never the other copy
    second = await dispatch.claim(rt, b)
    assert second is not None and (second.slot, second.shard, second.copy) == (1, 0, 1)


async def test_a_node_below_the_reputation_threshold_gets_nothing(rt: Runtime) -> None:
    a, b = await _node(rt, "a"), await _node(rt, "b")
    await seed_job(rt, shards=2)
    async with rt.db.transaction() as conn:
        await nodes.count_votes(conn, [("a", True, 10), ("b", False, 10), ("b", False, 10)])
    assert await dispatch.claim(rt, b) is None  # (0 + 1) / (0 + 2 + 1) < 0.5
    got = await dispatch.claim(rt, a)  # (1 + 1) / (1 + 0 + 1) = 1
    assert got is not None
    listed = {n.id: n for n in await nodes.list_nodes(rt.db.reader, None)}
    assert listed["b"].reputation == pytest.approx(1 / 3) and listed["a"].reputation == 1.0
    # only the copy that agreed is credited (a task and its measured time)
    assert (listed["a"].tasks_done, listed["a"].compute_ms) == (1, 10)
    assert (listed["b"].tasks_done, listed["b"].compute_ms) == (0, 0)


async def test_a_wake_up_a_node_cannot_use_is_handed_to_the_next_claimer(rt: Runtime) -> None:
    import asyncio

    banned, good = await _node(rt, "banned"), await _node(rt, "good")
    async with rt.db.transaction() as conn:
        await nodes.count_votes(conn, [("banned", False, 10), ("banned", False, 10)])
    first = asyncio.create_task(dispatch.request_task(rt, banned, wait_s=10))
    await asyncio.sleep(0.05)  # the banned node waits longest: it is woken first
    second = asyncio.create_task(dispatch.request_task(rt, good, wait_s=10))
    await asyncio.sleep(0.05)
    await seed_job(rt, shards=1)
    rt.wakeups.tasks_ready(1)
    got = await asyncio.wait_for(second, 2)  # not after its 10 s poll ran out
    assert got is not None and got.shard == 0
    assert not first.done()  # still parked, and no spin: the hand-off stopped
    first.cancel()

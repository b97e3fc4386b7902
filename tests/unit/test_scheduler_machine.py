"""A Hypothesis state machine of the scheduler: nodes claim, heartbeat, complete, fail, crash;
the clock moves; jobs get cancelled. Whatever the interleaving:
  - never two live leases on one task: only the newest lease token can finish a task;
  - a finished task never changes;
  - every task ends (a healthy node draining the queue finishes or fails each one).
Runs against a real SQLite file and a real PostgreSQL, with a manual clock (no sleeps).
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from gridx.coordinator.db import nodes, tasks, uploads
from gridx.coordinator.services import dispatch
from gridx.coordinator.services.nodes import flush_heartbeats, note_heartbeat
from gridx.coordinator.services.runtime import Runtime
from tests.unit.scheduling import runtime, seed_job

NODES = ["a", "b", "c"]
SHARDS = 3
TERMINAL = ("succeeded", "failed", "cancelled")


class Scheduler(RuleBasedStateMachine):
    def __init__(self, new_database: Callable[[], str]) -> None:
        super().__init__()
        self.new_database = new_database
        self.loop = asyncio.new_event_loop()
        self.dir = tempfile.mkdtemp(prefix="gridx-sm-")
        self.pool = ThreadPoolExecutor(1)
        self.rt = self.run(self._setup())
        self.tokens: dict[str, list[tuple[str, str]]] = {}  # task -> issued (node, token)
        self.finished: dict[str, tuple] = {}
        self.alive = set(NODES)
        self.accepted = 0

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    async def _setup(self) -> Runtime:
        rt = await runtime(self.new_database(), Path(self.dir), lease_s=10, pool=self.pool)
        owner = await seed_job(rt, "j", shards=SHARDS, max_attempts=3, max_losses=3)
        async with rt.db.transaction() as conn:
            await conn.execute("INSERT INTO blobs VALUES ('r', 1, 'r', 0)")
            for n in NODES:
                await nodes.create(
                    conn,
                    node_id=n,
                    owner_id=owner,
                    name=n,
                    token_hash=n,
                    capabilities="{}",
                    now=rt.clock.now_ms(),
                )
        return rt

    async def _node(self, name: str):
        return await nodes.by_token_hash(self.rt.db.reader, name)

    @rule(node=st.sampled_from(NODES))
    def claim(self, node: str) -> None:
        if node not in self.alive:
            return
        task = self.run(dispatch.claim(self.rt, self.run(self._node(node))))
        if task is not None:
            assert task.status == "leased" and task.node_id == node
            self.tokens.setdefault(task.id, []).append((node, task.lease_token or ""))

    @rule(node=st.sampled_from(NODES))
    def heartbeat(self, node: str) -> None:
        if node in self.alive:
            held = [
                t.id
                for t in self.run(tasks.for_job(self.rt.db.reader, "j"))
                if t.status == "leased" and t.node_id == node
            ]
            note_heartbeat(self.rt, node, held)  # a live node names what it runs
            self.run(flush_heartbeats(self.rt))

    @rule(seconds=st.sampled_from([1, 4, 11, 30]))
    def advance(self, seconds: int) -> None:
        self.rt.clock.advance(seconds)  # type: ignore[attr-defined]
        self.run(dispatch.expire_leases(self.rt))

    @rule(which=st.integers(0, 50), stale=st.booleans())
    def complete(self, which: int, stale: bool) -> None:
        issued = [(t, i) for t, lst in self.tokens.items() for i in range(len(lst))]
        if not issued:
            return
        task_id, i = issued[which % len(issued)]
        lst = self.tokens[task_id]
        node, token = lst[0] if stale else lst[i]
        before = self.run(tasks.get(self.rt.db.reader, task_id))
        newest = (
            before is not None
            and before.status == "leased"
            and before.lease_token == token
            and before.node_id == node
        )

        accepted = self.run(self._finish(task_id, node, token))
        assert accepted == newest, "only the live lease may finish a task"
        self.accepted += int(accepted)

    async def _finish(self, task_id: str, node: str, token: str) -> bool:
        async with self.rt.db.transaction() as conn:
            now = self.rt.clock.now_ms()
            ok = await uploads.attach_result(
                conn, task_id=task_id, token=token, result_sha="r", size=1, now=now
            )
            done = await tasks.complete(
                conn,
                task_id=task_id,
                node_id=node,
                token=token,
                result_sha="r",
                metrics="{}",
                now=now,
                claimed_ms=1000,
                timeout_ms=60_000,
            )
            return ok and done is not None

    @rule(which=st.integers(0, 50))
    def fail(self, which: int) -> None:
        leased = [
            t for t in self.run(tasks.for_job(self.rt.db.reader, "j")) if t.status == "leased"
        ]
        if not leased:
            return
        t = leased[which % len(leased)]

        async def go() -> None:
            async with self.rt.db.transaction() as conn:
                await tasks.give_up(
                    conn,
                    task_id=t.id,
                    node_id=t.node_id or "",
                    token=t.lease_token or "",
                    outcome="user_error",
                    error_code="x",
                    error="x",
                    stderr_tail="",
                    requeue=t.attempts < t.max_attempts,
                    refund=False,
                    now=self.rt.clock.now_ms(),
                )

        self.run(go())

    @rule(node=st.sampled_from(NODES[1:]))
    def crash(self, node: str) -> None:
        self.alive.discard(node)  # it never calls again; node "a" stays healthy

    @invariant()
    def finished_tasks_never_change(self) -> None:
        for t in self.run(tasks.for_job(self.rt.db.reader, "j")):
            snap = (t.status, t.result_sha, t.metrics, t.attempts)
            if t.status in TERMINAL:
                assert self.finished.setdefault(t.id, snap) == snap
            else:
                assert t.id not in self.finished

    def teardown(self) -> None:
        # every task ends: a healthy node drains the queue while time passes
        healthy = self.run(self._node("a"))
        for _ in range(4 * SHARDS):
            self.advance(11)  # every stale lease expires
            task = self.run(dispatch.claim(self.rt, healthy))
            if task is not None:
                assert self.run(self._finish(task.id, "a", task.lease_token or ""))
        states = [t.status for t in self.run(tasks.for_job(self.rt.db.reader, "j"))]
        assert all(s in TERMINAL for s in states), states
        self.run(self.rt.db.close())
        self.pool.shutdown()
        self.loop.close()


def test_scheduler_invariants_hold_under_any_interleaving(new_database: Callable[[], str]) -> None:
    run_state_machine_as_test(
        lambda: Scheduler(new_database),
        settings=settings(max_examples=25, stateful_step_count=30, deadline=None),
    )

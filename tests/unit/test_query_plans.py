"""The statements every task runs (its claim, its upload and completion, the round's count, the
heartbeat's lease renewal, the expired-lease sweep, the attempt log) read through indexes on
SQLite, the one-process deployment: no step of their plans scans a whole table. A table of a
million finished tasks must not cost each claim a million rows."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gridx.coordinator.db import attempts, leases, nodes, tasks, uploads
from gridx.coordinator.services.runtime import Runtime
from tests.unit.scheduling import runtime, seed_job

HOT = {
    "claim": tasks.CLAIM["sqlite"],
    "attach result": uploads.ATTACH_RESULT,
    "attach decoded": uploads.ATTACH_DECODED,
    "complete": tasks.COMPLETE,
    "round pending": tasks.ROUND_PENDING,
    "round usable": tasks.ROUND_USABLE,
    "requeue expired": tasks.REQUEUE_EXPIRED,
    "fail expired": tasks.FAIL_EXPIRED,
    "renew lease": leases.RENEW,
    "held leases": leases.HELD,
    "start attempt": attempts.START_ATTEMPT,
    "finish attempt": attempts.FINISH_ATTEMPT,
}
GROWING = ("tasks", "jobs", "nodes", "rounds", "attempts", "events", "node_datasets")
SQL_WORDS = {"SET", "WHERE", "JOIN", "ON", "AND", "OR", "VALUES", "ORDER", "LIMIT", "RETURNING"}
PARAMS = {
    "node_id": "n", "token": "t", "now": 1, "expires": 2, "owner_id": 1, "min_reputation": 0.0,
    "defer_before": 0, "id": "x", "metrics": "{}", "compute_ms": 1, "result_sha": "s",
    "job_id": "j1", "round_idx": 0, "arch": "", "cpus": 1, "memory_mb": 1, "docker": 0,
    "sandbox": 3, "gpus": 0, "phase": None, "detail": None, "task_id": "x", "outcome": "ok",
    "error_code": None, "error": None, "stderr_tail": "", "size": 1,
}  # fmt: skip


@pytest.fixture
async def rt(tmp_path: Path) -> AsyncIterator[Runtime]:
    runtime_ = await runtime(f"sqlite:///{tmp_path}/plans.db", tmp_path)
    for i in range(10):
        owner = await seed_job(runtime_, f"j{i}", shards=50)
    async with runtime_.db.transaction() as conn:  # a queue's life: most done, on many nodes
        for n in range(40):
            await nodes.create(
                conn, node_id=f"n{n}", owner_id=owner, name=f"n{n}", token_hash=f"h{n}",
                capabilities="{}", now=0,
            )  # fmt: skip
        await conn.execute(
            "UPDATE tasks SET status = 'succeeded', node_id = 'n' || (rowid % 40) "
            "WHERE job_id NOT IN ('j8', 'j9')"
        )
        await conn.execute(
            "UPDATE tasks SET status = 'leased', node_id = 'n' || (rowid % 40), "
            "lease_expires_at = 10 WHERE job_id = 'j8'"
        )
        await conn.execute("ANALYZE")  # the planner's view of such a table
    yield runtime_
    runtime_.pool.shutdown()
    await runtime_.db.close()


@pytest.mark.parametrize("name", sorted(HOT))
async def test_a_tasks_statements_read_through_indexes(rt: Runtime, name: str) -> None:
    async with rt.db.transaction() as conn:
        plan = [str(row[3]) for row in await conn.fetch(f"EXPLAIN QUERY PLAN {HOT[name]}", PARAMS)]
    assert plan, name
    scans = [s for s in plan if s.startswith("SCAN ") and s.split()[1] in _growing(HOT[name])]
    assert scans == [], f"{name} scans a table: {plan}"


def _growing(sql: str) -> set[str]:
    """The tables that grow with the work (tasks, jobs, nodes...) and their aliases in `sql`;
    the users table may be scanned (a few rows: the planner's choice)."""
    found = re.findall(rf"\b({'|'.join(GROWING)})(?:\s+(?:AS\s+)?([a-z]+))?\b", sql)
    return {*GROWING, *(alias for _, alias in found if alias and alias.upper() not in SQL_WORDS)}

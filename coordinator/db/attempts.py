"""Attempts: one row per try at a task (which node, when, how it ended), the history users see
and the coordinator's own measure of a task's run time."""

from __future__ import annotations

import msgspec

from gridx.coordinator.db.connection import Conn, fetch_all, fetch_value


class AttemptRow(msgspec.Struct, kw_only=True):
    """One try at a task."""

    task_id: str
    attempt: int
    node_id: str
    started_at: int
    finished_at: int | None
    outcome: str | None
    error_code: str | None
    error: str | None
    stderr_tail: str | None


START_ATTEMPT = """
INSERT INTO attempts (task_id, attempt, node_id, started_at)
VALUES (:task_id,
    (SELECT coalesce(max(attempt), 0) + 1 FROM attempts WHERE task_id = :task_id), :node_id, :now)
"""
FINISH_ATTEMPT = """
UPDATE attempts SET finished_at = :now, outcome = :outcome, error_code = :error_code,
    error = :error, stderr_tail = :stderr_tail
WHERE task_id = :task_id AND outcome IS NULL
"""
# A running attempt's output so far: its own node's, appended, the last `cap` characters kept.
_APPEND = """
UPDATE attempts SET stderr_tail = {tail}
WHERE task_id = :task_id AND node_id = :node_id AND outcome IS NULL
"""
APPEND_OUTPUT = {
    "sqlite": _APPEND.format(tail="substr(coalesce(stderr_tail, '') || :text, -:cap)"),
    "postgresql": _APPEND.format(tail="right(coalesce(stderr_tail, '') || :text, :cap)"),
}
PREVIOUS_ERROR = """
SELECT error_code, error FROM attempts WHERE task_id = :task_id AND outcome IS NOT NULL
ORDER BY attempt DESC LIMIT 1
"""
STARTED = "SELECT started_at FROM attempts WHERE task_id = :task_id AND outcome IS NULL"
ATTEMPTS_FOR_JOB = """
SELECT a.task_id, a.attempt, a.node_id, a.started_at, a.finished_at, a.outcome, a.error_code,
    a.error, a.stderr_tail
FROM attempts a JOIN tasks t ON t.id = a.task_id WHERE t.job_id = :job_id
ORDER BY a.task_id, a.attempt
"""


async def for_job(conn: Conn, job_id: str) -> list[AttemptRow]:
    """Every attempt at every task of a job."""
    return await fetch_all(conn, ATTEMPTS_FOR_JOB, {"job_id": job_id}, AttemptRow)


async def finish(
    conn: Conn,
    task_id: str,
    now: int,
    outcome: str,
    error_code: str | None = None,
    error: str | None = None,
    stderr_tail: str | None = None,
) -> None:
    await conn.execute(
        FINISH_ATTEMPT,
        {
            "task_id": task_id,
            "now": now,
            "outcome": outcome,
            "error_code": error_code,
            "error": error,
            "stderr_tail": stderr_tail,
        },
    )


async def append_output(conn: Conn, task_id: str, node_id: str, text: str, cap: int) -> None:
    """Add what a running attempt printed to its tail (only the attempt `node_id` runs)."""
    params = {"task_id": task_id, "node_id": node_id, "text": text, "cap": cap}
    await conn.execute(APPEND_OUTPUT[conn.dialect], params)


async def start(conn: Conn, task_id: str, node_id: str, now: int) -> None:
    """Open the next attempt at a task (a claim)."""
    await conn.execute(START_ATTEMPT, {"task_id": task_id, "node_id": node_id, "now": now})


async def started_at(conn: Conn, task_id: str) -> int | None:
    """When the open attempt at a task began (its lease), if one is open."""
    value = await fetch_value(conn, STARTED, {"task_id": task_id})
    return int(str(value)) if value is not None else None


async def previous_error(conn: Conn, task_id: str) -> tuple[str | None, str | None] | None:
    """(error code, message) of a task's last finished attempt (None: it has none)."""
    rows = await conn.fetch(PREVIOUS_ERROR, {"task_id": task_id})
    return (rows[0][0], rows[0][1]) if rows else None

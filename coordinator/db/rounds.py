"""Rounds of a job: input model, output model, the expected weight signature, metrics."""

from __future__ import annotations

from typing import cast

import aiosqlite
import msgspec

from gridx.coordinator.db.connection import fetch_all, fetch_one, fetch_value

TRANSITIONS: dict[str, frozenset[str]] = {
    "running": frozenset({"aggregating", "failed", "cancelled"}),
    "aggregating": frozenset({"done", "running", "failed", "cancelled"}),
    "done": frozenset(),
    "failed": frozenset(),
    "cancelled": frozenset(),
}


class RoundRow(msgspec.Struct, kw_only=True):
    """A round record."""

    job_id: str
    idx: int
    status: str
    input_sha: str | None
    output_sha: str | None
    signature: str | None
    metrics: str | None
    state_sha: str | None
    started_at: int
    finished_at: int | None


_COLS = (
    "job_id, idx, status, input_sha, output_sha, signature, metrics, state_sha, started_at, "
    "finished_at"
)
INSERT = """
INSERT INTO rounds (job_id, idx, status, input_sha, signature, started_at)
VALUES (:job_id, :idx, 'running', :input_sha, :signature, :now)
"""
GET = f"SELECT {_COLS} FROM rounds WHERE job_id = :job_id AND idx = :idx"
FOR_JOB = f"SELECT {_COLS} FROM rounds WHERE job_id = :job_id ORDER BY idx"
WITH_STATUS = f"SELECT {_COLS} FROM rounds WHERE status = :status ORDER BY started_at"
CLAIM_SIGNATURE = """
UPDATE rounds SET signature = :signature
WHERE job_id = :job_id AND idx = :idx AND signature IS NULL
"""
SIGNATURE = "SELECT signature FROM rounds WHERE job_id = :job_id AND idx = :idx"
TRANSITION = f"""
UPDATE rounds SET status = :to, output_sha = coalesce(:output_sha, output_sha),
    metrics = coalesce(:metrics, metrics), state_sha = coalesce(:state_sha, state_sha),
    finished_at = CASE WHEN :to IN ('done', 'failed', 'cancelled') THEN :now ELSE finished_at END
WHERE job_id = :job_id AND idx = :idx AND status IN (SELECT value FROM json_each(:from_))
RETURNING {_COLS}
"""


async def create(
    conn: aiosqlite.Connection,
    *,
    job_id: str,
    idx: int,
    input_sha: str | None,
    signature: str | None,
    now: int,
) -> None:
    """Start a round."""
    params = {"job_id": job_id, "idx": idx, "input_sha": input_sha, "signature": signature}
    await conn.execute(INSERT, {**params, "now": now})


async def get(conn: aiosqlite.Connection, job_id: str, idx: int) -> RoundRow | None:
    """One round."""
    return await fetch_one(conn, GET, {"job_id": job_id, "idx": idx}, RoundRow)


async def for_job(conn: aiosqlite.Connection, job_id: str) -> list[RoundRow]:
    """A job's rounds in order."""
    return await fetch_all(conn, FOR_JOB, {"job_id": job_id}, RoundRow)


async def with_status(conn: aiosqlite.Connection, status: str) -> list[RoundRow]:
    """Rounds in one status (e.g. 'aggregating' ones to resume after a restart)."""
    return await fetch_all(conn, WITH_STATUS, {"status": status}, RoundRow)


async def claim_signature(
    conn: aiosqlite.Connection, job_id: str, idx: int, signature: str
) -> str | None:
    """Set the round's expected weight signature unless one is set; returns the one in force."""
    params = {"job_id": job_id, "idx": idx, "signature": signature}
    await conn.execute(CLAIM_SIGNATURE, params)
    return cast(str | None, await fetch_value(conn, SIGNATURE, params))


async def transition(
    conn: aiosqlite.Connection,
    job_id: str,
    idx: int,
    to: str,
    now: int,
    *,
    output_sha: str | None = None,
    metrics: str | None = None,
    state_sha: str | None = None,
) -> RoundRow | None:
    """Move a round to `to` if allowed; None when its status did not allow it."""
    sources = [s for s, targets in TRANSITIONS.items() if to in targets]
    return await fetch_one(
        conn,
        TRANSITION,
        {
            "job_id": job_id,
            "idx": idx,
            "to": to,
            "now": now,
            "output_sha": output_sha,
            "metrics": metrics,
            "state_sha": state_sha,
            "from_": msgspec.json.encode(sources).decode(),
        },
        RoundRow,
    )

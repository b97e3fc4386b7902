"""Rounds of a job: input model, output model, the expected weight signature, metrics."""

from __future__ import annotations

from typing import cast

import msgspec

from gridx.coordinator.db.connection import (
    Conn,
    columns_of,
    fetch_all,
    fetch_one,
    fetch_value,
    sources_of,
)
from gridx.schemas.jobs import RoundStatus

TRANSITIONS: dict[RoundStatus, frozenset[RoundStatus]] = {
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
    status: RoundStatus
    input_sha: str | None
    output_sha: str | None
    signature: str | None
    metrics: dict[str, float] | None
    state_sha: str | None
    started_at: int
    finished_at: int | None
    aggregator: str | None
    aggregator_expires_at: int | None
    held_out: dict[str, float] | None = None
    epsilon: float | None = None


_COLS = columns_of(RoundRow)
INSERT = """
INSERT INTO rounds (job_id, idx, status, input_sha, signature, started_at)
VALUES (:job_id, :idx, 'running', :input_sha, :signature, :now)
"""
GET = f"SELECT {_COLS} FROM rounds WHERE job_id = :job_id AND idx = :idx"
FOR_JOB = f"SELECT {_COLS} FROM rounds WHERE job_id = :job_id ORDER BY idx"
# Taking a row lock serializes the last completions of a round on PostgreSQL (READ COMMITTED):
# whichever commits second then sees the other's success and starts the aggregation.
LOCK = "UPDATE rounds SET status = status WHERE job_id = :job_id AND idx = :idx"
# The aggregation lease: one coordinator replica merges a round; another takes it over only
# after the holder stopped renewing it (killed mid-merge).
TAKE_AGGREGATION = f"""
UPDATE rounds SET aggregator = :me, aggregator_expires_at = :expires
WHERE job_id = :job_id AND idx = :idx AND status = 'aggregating'
    AND (aggregator IS NULL OR aggregator = :me OR aggregator_expires_at <= :now)
RETURNING {_COLS}
"""
HOLD_AGGREGATION = """
UPDATE rounds SET aggregator_expires_at = :expires
WHERE job_id = :job_id AND idx = :idx AND status = 'aggregating' AND aggregator = :me
RETURNING idx
"""
ORPHANED = f"""
SELECT {_COLS} FROM rounds WHERE status = 'aggregating'
    AND (aggregator IS NULL OR aggregator_expires_at <= :now)
ORDER BY started_at
"""
CLAIM_SIGNATURE = """
UPDATE rounds SET signature = :signature
WHERE job_id = :job_id AND idx = :idx AND signature IS NULL
"""
SIGNATURE = "SELECT signature FROM rounds WHERE job_id = :job_id AND idx = :idx"
TRANSITION = {
    to: f"""
UPDATE rounds SET status = :to, output_sha = coalesce(:output_sha, output_sha),
    metrics = coalesce(:metrics, metrics), state_sha = coalesce(:state_sha, state_sha),
    epsilon = coalesce(CAST(:epsilon AS DOUBLE PRECISION), epsilon),
    finished_at = {":now" if to in ("done", "failed", "cancelled") else "finished_at"},
    aggregator = {"NULL" if to == "running" else "aggregator"}
WHERE job_id = :job_id AND idx = :idx AND status IN ({sources})
RETURNING {_COLS}
"""
    for to, sources in sources_of(TRANSITIONS).items()
}


async def create(
    conn: Conn,
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


async def get(conn: Conn, job_id: str, idx: int) -> RoundRow | None:
    """One round."""
    return await fetch_one(conn, GET, {"job_id": job_id, "idx": idx}, RoundRow)


async def for_job(conn: Conn, job_id: str) -> list[RoundRow]:
    """A job's rounds in order."""
    return await fetch_all(conn, FOR_JOB, {"job_id": job_id}, RoundRow)


async def claim_signature(conn: Conn, job_id: str, idx: int, signature: str) -> str | None:
    """Set the round's expected weight signature unless one is set; returns the one in force."""
    params = {"job_id": job_id, "idx": idx, "signature": signature}
    await conn.execute(CLAIM_SIGNATURE, params)
    return cast(str | None, await fetch_value(conn, SIGNATURE, params))


async def transition(
    conn: Conn,
    job_id: str,
    idx: int,
    to: RoundStatus,
    now: int,
    *,
    output_sha: str | None = None,
    metrics: str | None = None,
    state_sha: str | None = None,
    epsilon: float | None = None,
) -> RoundRow | None:
    """Move a round to `to` if allowed; None when its status did not allow it."""
    return await fetch_one(
        conn,
        TRANSITION[to],
        {
            "job_id": job_id,
            "idx": idx,
            "to": to,
            "now": now,
            "output_sha": output_sha,
            "metrics": metrics,
            "state_sha": state_sha,
            "epsilon": epsilon,
        },
        RoundRow,
    )


async def lock(conn: Conn, job_id: str, idx: int) -> None:
    """Lock a round's row until the transaction ends."""
    await conn.execute(LOCK, {"job_id": job_id, "idx": idx})


async def take_aggregation(
    conn: Conn, job_id: str, idx: int, me: str, now: int, lease_ms: int
) -> RoundRow | None:
    """Become the round's aggregator unless a live lease belongs to someone else."""
    params = {"job_id": job_id, "idx": idx, "me": me, "now": now, "expires": now + lease_ms}
    return await fetch_one(conn, TAKE_AGGREGATION, params, RoundRow)


async def hold_aggregation(
    conn: Conn, job_id: str, idx: int, me: str, now: int, lease_ms: int
) -> bool:
    """Renew (and lock) `me`'s aggregation lease; False when `me` no longer holds it."""
    params = {"job_id": job_id, "idx": idx, "me": me, "expires": now + lease_ms}
    return bool(await conn.fetch(HOLD_AGGREGATION, params))


async def orphaned(conn: Conn, now: int) -> list[RoundRow]:
    """Rounds waiting to be merged whose aggregation nobody holds (or whose holder vanished)."""
    return await fetch_all(conn, ORPHANED, {"now": now}, RoundRow)


ROUND_SIZE = """
SELECT count(*) FROM tasks WHERE job_id = :job_id AND round_idx = :round_idx AND kind = 'train'
    AND copy = 0
"""
HELD_OUT = "UPDATE rounds SET held_out = :held_out WHERE job_id = :job_id AND idx = :idx"


async def set_held_out(conn: Conn, job_id: str, idx: int, metrics: str) -> None:
    """Record the held-out evaluation of a round's model (JSON metrics)."""
    await conn.execute(HELD_OUT, {"job_id": job_id, "idx": idx, "held_out": metrics})


async def size(conn: Conn, job_id: str, round_idx: int) -> int:
    """How many shards (or nodes) a round trains on."""
    params = {"job_id": job_id, "round_idx": round_idx}
    return cast(int, await fetch_value(conn, ROUND_SIZE, params) or 0)


LAST_MERGED = """
SELECT max(idx) FROM rounds
WHERE job_id = :job_id AND idx >= 0 AND status = 'done' AND output_sha IS NOT NULL
"""


async def last_merged(conn: Conn, job_id: str) -> int | None:
    """The last round of a job whose merged model is still kept (None: none is)."""
    found = await fetch_value(conn, LAST_MERGED, {"job_id": job_id})
    return int(found) if found is not None else None  # type: ignore[call-overload]

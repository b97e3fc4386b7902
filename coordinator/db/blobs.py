"""Content-addressed blob records."""

from __future__ import annotations

import msgspec

from gridx.coordinator.db.connection import Conn, fetch_all, fetch_one, fetch_value


class BlobRow(msgspec.Struct, kw_only=True):
    """A stored file, named by its sha256."""

    sha256: str
    size: int
    storage_key: str


UPSERT = """
INSERT INTO blobs (sha256, size, storage_key, created_at) VALUES (:sha256, :size, :key, :now)
ON CONFLICT (sha256) DO UPDATE SET created_at = excluded.created_at
"""
_NEEDED = """
    EXISTS (SELECT 1 FROM jobs j WHERE j.code_sha = b.sha256 OR j.requirements_sha = b.sha256
        OR j.data_sha = b.sha256 OR j.final_pth_sha = b.sha256 OR j.final_st_sha = b.sha256
        OR j.eval_code_sha = b.sha256 OR j.test_data_sha = b.sha256)
    OR EXISTS (SELECT 1 FROM shards s WHERE s.blob_sha = b.sha256)
    OR EXISTS (SELECT 1 FROM rounds r WHERE r.input_sha = b.sha256)
    OR EXISTS (SELECT 1 FROM rounds r WHERE r.output_sha = b.sha256)
    OR EXISTS (SELECT 1 FROM rounds r WHERE r.state_sha = b.sha256)
    OR EXISTS (SELECT 1 FROM tasks t WHERE t.result_sha = b.sha256)
"""
SWEEP = f"""
DELETE FROM blobs WHERE sha256 IN (
    SELECT b.sha256 FROM blobs b WHERE b.created_at < :before AND NOT ({_NEEDED}) LIMIT :batch)
RETURNING sha256, size, storage_key
"""
RELEASE_UPDATES = """
UPDATE tasks SET result_sha = NULL
WHERE job_id = :job_id AND round_idx = :round_idx AND result_sha IS NOT NULL
"""
RELEASE_INPUTS = [
    "UPDATE shards SET blob_sha = NULL WHERE job_id = :job_id",
    "UPDATE jobs SET data_sha = NULL WHERE id = :job_id",
    # every round model but the final one and the last `keep_rounds` merged ones (checkpoints:
    # a cancelled or failed job keeps at least its last; a succeeding job's final round, whose
    # model is recorded just after, counts among them), unless an evaluation still needs it
    """UPDATE rounds SET input_sha = NULL, state_sha = NULL,
        output_sha = CASE WHEN output_sha = (SELECT final_pth_sha FROM jobs WHERE id = :job_id)
            OR rounds.idx > (SELECT max(r.idx) FROM rounds r WHERE r.job_id = :job_id
                AND r.output_sha IS NOT NULL)
                - (SELECT keep_rounds FROM jobs WHERE id = :job_id) + :final
            THEN output_sha ELSE NULL END
    WHERE job_id = :job_id AND (SELECT keep_updates FROM jobs WHERE id = :job_id) = 0
    AND NOT EXISTS (
        SELECT 1 FROM tasks t WHERE t.job_id = rounds.job_id AND t.round_idx = rounds.idx
            AND t.kind = 'evaluate' AND t.status IN ('queued', 'leased'))""",
]
TOTAL = "SELECT count(*), coalesce(sum(size), 0) FROM blobs"
_JOB_COLUMNS = (
    "code_sha",
    "requirements_sha",
    "data_sha",
    "final_pth_sha",
    "final_st_sha",
    "eval_code_sha",
    "test_data_sha",
)
_JOB_BLOBS = " UNION ".join(
    [f"SELECT {c} FROM jobs WHERE id = :job_id" for c in _JOB_COLUMNS]
    + ["SELECT blob_sha FROM shards WHERE job_id = :job_id"]
    + [
        f"SELECT {c} FROM rounds WHERE job_id = :job_id"
        for c in ("input_sha", "output_sha", "state_sha")
    ]
    + ["SELECT result_sha FROM tasks WHERE job_id = :job_id"]
)
_OWNER_BLOBS = " UNION ".join(
    [f"SELECT {c} FROM jobs WHERE owner_id = :owner_id" for c in _JOB_COLUMNS]
    + [
        f"SELECT x.{c} FROM {table} x JOIN jobs j ON j.id = x.job_id WHERE j.owner_id = :owner_id"
        for table, c in (
            ("shards", "blob_sha"),
            ("rounds", "input_sha"),
            ("rounds", "output_sha"),
            ("rounds", "state_sha"),
            ("tasks", "result_sha"),
        )
    ]
)
OF_OWNER = f"SELECT coalesce(sum(b.size), 0) FROM blobs b WHERE b.sha256 IN ({_OWNER_BLOBS})"
OF_JOB = f"SELECT coalesce(sum(b.size), 0) FROM blobs b WHERE b.sha256 IN ({_JOB_BLOBS})"
GET = "SELECT sha256, size, storage_key FROM blobs WHERE sha256 = :sha256"


async def record(conn: Conn, sha256: str, size: int, key: str, now: int) -> None:
    """Remember a stored blob (idempotent: the same content is stored once)."""
    await conn.execute(UPSERT, {"sha256": sha256, "size": size, "key": key, "now": now})


async def get(conn: Conn, sha256: str) -> BlobRow | None:
    """A blob record by sha256."""
    return await fetch_one(conn, GET, {"sha256": sha256}, BlobRow)


async def sweep(conn: Conn, before: int, batch: int = 500) -> list[BlobRow]:
    """Forget up to `batch` blobs that nothing needs and that were last written before `before`
    (epoch ms); their files are the caller's to delete."""
    return await fetch_all(conn, SWEEP, {"before": before, "batch": batch}, BlobRow)


async def release_updates(conn: Conn, job_id: str, round_idx: int) -> None:
    """A round is merged: its client updates are no longer needed (unless the job keeps them)."""
    await conn.execute(RELEASE_UPDATES, {"job_id": job_id, "round_idx": round_idx})


async def release_inputs(conn: Conn, job_id: str, succeeded: bool = False) -> None:
    """A job ended: its training data, and (unless it keeps its updates) every round model but
    the final one and its last `keep_rounds` checkpoints, are no longer needed. Code,
    requirements, test data and final models stay until the job is deleted (an evaluation may
    still run after the job ended). `succeeded`: its final round is being recorded now."""
    for sql in RELEASE_INPUTS:
        params: dict[str, object] = {"job_id": job_id}
        if ":final" in sql:
            params["final"] = int(succeeded)
        await conn.execute(sql, params)


async def total(conn: Conn) -> tuple[int, int]:
    """(blobs, bytes) in the store."""
    rows = await conn.fetch(TOTAL, {})
    return int(rows[0][0]), int(rows[0][1])


async def of_owner(conn: Conn, owner_id: int) -> int:
    """Bytes of the blobs a user's jobs hold, each counted once (whoever else shares it: the
    figure says nothing of other users' files)."""
    return int(await fetch_value(conn, OF_OWNER, {"owner_id": owner_id}) or 0)  # type: ignore[call-overload]


async def of_job(conn: Conn, job_id: str) -> int:
    """Bytes of the blobs a job still holds (a blob shared with another job counts for both)."""
    return int(await fetch_value(conn, OF_JOB, {"job_id": job_id}) or 0)  # type: ignore[call-overload]

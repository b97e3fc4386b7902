"""A task's uploaded result: attached under its live lease, and replaced by the model it
decodes to when it was a compressed update (`services/results.py`)."""

from __future__ import annotations

from gridx.coordinator.db.connection import Conn, rows_of

ATTACH_RESULT = """
UPDATE tasks SET result_sha = :result_sha, upload_bytes = :size, upload_sha = NULL,
    updated_at = :now
WHERE id = :id AND status = 'leased' AND lease_token = :token
RETURNING id
"""
ATTACH_DECODED = """
UPDATE tasks SET upload_sha = result_sha, result_sha = :result_sha, updated_at = :now
WHERE id = :id AND status = 'leased' AND result_sha IS NOT NULL
RETURNING id
"""


async def attach_result(
    conn: Conn, *, task_id: str, token: str, result_sha: str, size: int, now: int
) -> bool:
    """Record the file (of `size` bytes) uploaded under a live lease; False when the lease is
    gone."""
    params = {"id": task_id, "token": token, "result_sha": result_sha, "size": size, "now": now}
    return bool(await rows_of(conn, ATTACH_RESULT, params))


async def attach_decoded(conn: Conn, *, task_id: str, result_sha: str, now: int) -> bool:
    """Make a decoded model the result of a leased task whose upload was a compressed update
    (kept as `upload_sha`); False when the task is no longer leased."""
    params = {"id": task_id, "result_sha": result_sha, "now": now}
    return bool(await rows_of(conn, ATTACH_DECODED, params))

"""The append-only event log (feeds the dashboard)."""

from __future__ import annotations

import msgspec

from gridx.coordinator.db.connection import Conn, fetch_all


class EventRow(msgspec.Struct, kw_only=True):
    """One state change."""

    id: int
    job_id: str | None
    kind: str
    data: str
    at: int


INSERT = "INSERT INTO events (job_id, kind, data, at) VALUES (:job_id, :kind, :data, :at)"
FOR_JOB = """
SELECT id, job_id, kind, data, at FROM events WHERE job_id = :job_id AND id > :after ORDER BY id
"""
_enc = msgspec.json.Encoder()


async def append(
    conn: Conn, job_id: str | None, kind: str, data: dict[str, object], at: int
) -> None:
    """Append one event."""
    payload = _enc.encode(data).decode()
    await conn.execute(INSERT, {"job_id": job_id, "kind": kind, "data": payload, "at": at})


async def for_job(conn: Conn, job_id: str, after: int = 0) -> list[EventRow]:
    """A job's events after a given id, oldest first."""
    return await fetch_all(conn, FOR_JOB, {"job_id": job_id, "after": after}, EventRow)

"""The append-only event log: every change to a job (and node enrolments), in order. The job
stream follows it (`services.job_views.follow`)."""

from __future__ import annotations

import msgspec

from gridx.coordinator.db.connection import Conn, fetch_value

INSERT = "INSERT INTO events (job_id, kind, data, at) VALUES (:job_id, :kind, :data, :at)"
COUNT_FOR_JOB = "SELECT COUNT(*) FROM events WHERE job_id = :job_id"
_enc = msgspec.json.Encoder()


async def append(
    conn: Conn, job_id: str | None, kind: str, data: dict[str, object], at: int
) -> None:
    """Append one event."""
    payload = _enc.encode(data).decode()
    await conn.execute(INSERT, {"job_id": job_id, "kind": kind, "data": payload, "at": at})


async def count_for_job(conn: Conn, job_id: str) -> int:
    """How many events a job has had. It grows with every committed change, whatever order
    concurrent transactions took their ids in, so it is the job stream's cursor."""
    return int(str(await fetch_value(conn, COUNT_FOR_JOB, {"job_id": job_id}) or 0))

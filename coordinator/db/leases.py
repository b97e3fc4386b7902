"""What heartbeats do to leases: renew those a node still runs (noting what it does with
them), and tell it which ones it no longer holds."""

from __future__ import annotations

from typing import NamedTuple

from gridx.coordinator.db.connection import Conn, rows_of

RENEW = """
UPDATE tasks SET lease_expires_at = :expires, phase = :phase, phase_detail = :detail
WHERE id = :id AND node_id = :node_id AND status = 'leased' AND lease_expires_at < :expires
"""
HELD = "SELECT id FROM tasks WHERE node_id = :node_id AND status = 'leased'"


class Renewal(NamedTuple):
    """A heartbeat's word on a task: its lease runs to `expires`; its node is at `phase`."""

    node_id: str
    task_id: str
    expires: int
    phase: str | None = None
    detail: str | None = None


async def renew(conn: Conn, renewals: list[Renewal]) -> None:
    """Push lease expiries and note phases (batched heartbeats); a task no longer leased to
    that node is left alone."""
    rows = [r._asdict() | {"id": r.task_id} for r in sorted(renewals)]
    await conn.executemany(RENEW, rows)


async def not_held(conn: Conn, node_id: str, task_ids: list[str]) -> list[str]:
    """Which of `task_ids` a node believes it runs but no longer holds (to be stopped)."""
    if not task_ids:
        return []
    held = {str(r[0]) for r in await rows_of(conn, HELD, {"node_id": node_id})}
    return [t for t in task_ids if t not in held]

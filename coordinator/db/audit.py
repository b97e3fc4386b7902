"""The audit log: who did what to whom, and when (admin actions on users, keys and nodes)."""

from __future__ import annotations

import msgspec

from gridx.coordinator.db.connection import Conn, fetch_all

RECORD = """
INSERT INTO audit_events (at, actor, action, target, detail)
VALUES (:at, :actor, :action, :target, :detail)
"""
RECENT = """
SELECT id, at, actor, action, target, detail FROM audit_events ORDER BY id DESC LIMIT :limit
"""


class AuditRow(msgspec.Struct, kw_only=True):
    """One recorded action."""

    id: int
    at: int
    actor: str
    action: str
    target: str
    detail: str


async def record(
    conn: Conn, at: int, actor: str, action: str, target: str, detail: str = ""
) -> None:
    """Record an action (in the transaction that does it)."""
    params = {"at": at, "actor": actor, "action": action, "target": target, "detail": detail}
    await conn.execute(RECORD, params)


async def recent(conn: Conn, limit: int) -> list[AuditRow]:
    """The last `limit` actions, newest first."""
    return await fetch_all(conn, RECENT, {"limit": limit}, AuditRow)

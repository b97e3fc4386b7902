"""Enrolment tokens: what a new node registers with (stored as sha256; used up or expired)."""

from __future__ import annotations

from gridx.coordinator.db.connection import Conn, fetch_value

INSERT = """
INSERT INTO enrolment_tokens (token_hash, owner_id, prefix, uses_left, expires_at, created_at)
VALUES (:token_hash, :owner_id, :prefix, :uses, :expires_at, :now)
"""
# One use, taken in the same statement that checks the token is live (two nodes racing for
# the last use: one of them gets it).
USE = """
UPDATE enrolment_tokens SET uses_left = uses_left - 1
WHERE token_hash = :token_hash AND uses_left > 0 AND expires_at > :now
RETURNING owner_id
"""
PURGE = "DELETE FROM enrolment_tokens WHERE uses_left <= 0 OR expires_at <= :now"


async def create(
    conn: Conn, *, token_hash: str, owner_id: int, prefix: str, uses: int, expires_at: int, now: int
) -> None:
    """Store a new token."""
    params = {
        "token_hash": token_hash,
        "owner_id": owner_id,
        "prefix": prefix,
        "uses": uses,
        "expires_at": expires_at,
        "now": now,
    }
    await conn.execute(INSERT, params)


async def use(conn: Conn, token_hash: str, now: int) -> int | None:
    """Take one use of a live token; its owner's id (None: unknown, used up or expired)."""
    owner = await fetch_value(conn, USE, {"token_hash": token_hash, "now": now})
    return int(owner) if owner is not None else None  # type: ignore[call-overload]


async def purge(conn: Conn, now: int) -> None:
    """Forget tokens that can no longer be used."""
    await conn.execute(PURGE, {"now": now})

"""Users and their API keys (stored as sha256 of the key)."""

from __future__ import annotations

import msgspec

from gridx.coordinator.db.connection import Conn, UniqueViolation, fetch_one
from gridx.coordinator.errors import Conflict


class UserRow(msgspec.Struct, kw_only=True):
    """A user record."""

    id: int
    email: str
    role: str
    created_at: int


INSERT_USER = """
INSERT INTO users (email, role, created_at) VALUES (:email, :role, :now)
RETURNING id, email, role, created_at
"""
INSERT_KEY = (
    "INSERT INTO api_keys (user_id, key_hash, created_at) VALUES (:user_id, :key_hash, :now)"
)
BY_KEY_HASH = """
SELECT u.id, u.email, u.role, u.created_at FROM api_keys k JOIN users u ON u.id = k.user_id
WHERE k.key_hash = :key_hash
"""
BY_EMAIL = "SELECT id, email, role, created_at FROM users WHERE email = :email"


async def create(conn: Conn, email: str, role: str, now: int) -> UserRow:
    """Insert a user; a taken email is a Conflict."""
    try:
        user = await fetch_one(
            conn, INSERT_USER, {"email": email, "role": role, "now": now}, UserRow
        )
    except UniqueViolation as exc:
        raise Conflict(f"a user with email {email!r} already exists") from exc
    assert user is not None
    return user


async def add_key(conn: Conn, user_id: int, key_hash: str, now: int) -> None:
    """Attach an API key (its hash) to a user."""
    await conn.execute(INSERT_KEY, {"user_id": user_id, "key_hash": key_hash, "now": now})


async def by_key_hash(conn: Conn, key_hash: str) -> UserRow | None:
    """The user owning an API key, if any."""
    return await fetch_one(conn, BY_KEY_HASH, {"key_hash": key_hash}, UserRow)


async def by_email(conn: Conn, email: str) -> UserRow | None:
    """A user by email."""
    return await fetch_one(conn, BY_EMAIL, {"email": email}, UserRow)

"""Users and their API keys (stored as sha256 of the key)."""

from __future__ import annotations

import msgspec

from gridx.coordinator.db.connection import Conn, UniqueViolation, fetch_all, fetch_one
from gridx.coordinator.errors import Conflict


class UserRow(msgspec.Struct, kw_only=True):
    """A user record."""

    id: int
    email: str
    role: str
    created_at: int
    disabled: int = 0


class KeyRow(msgspec.Struct, kw_only=True):
    """An API key: its owner, name, first characters, and when it was made, last used and
    revoked (the key itself is never stored, only its sha256)."""

    id: int
    user_id: int
    email: str
    name: str
    prefix: str
    created_at: int
    last_used_at: int | None
    revoked_at: int | None


class Caller(msgspec.Struct, kw_only=True):
    """A user found by API key, with that key's id and last use."""

    user: UserRow
    key_id: int
    last_used_at: int | None


_USER = "u.id, u.email, u.role, u.created_at, u.disabled"
INSERT_USER = """
INSERT INTO users (email, role, created_at) VALUES (:email, :role, :now)
RETURNING id, email, role, created_at, disabled
"""
INSERT_KEY = """
INSERT INTO api_keys (user_id, key_hash, name, prefix, created_at)
VALUES (:user_id, :key_hash, :name, :prefix, :now) RETURNING id
"""
BY_KEY_HASH = f"""
SELECT {_USER}, k.id AS key_id, k.last_used_at FROM api_keys k JOIN users u ON u.id = k.user_id
WHERE k.key_hash = :key_hash AND k.revoked_at IS NULL
"""
BY_EMAIL = f"SELECT {_USER} FROM users u WHERE u.email = :email"
ALL_USERS = f"SELECT {_USER} FROM users u ORDER BY u.id"
SET_DISABLED = "UPDATE users SET disabled = :disabled WHERE id = :id"
SET_ROLE = "UPDATE users SET role = :role WHERE id = :id"
_KEY = """k.id, k.user_id, u.email, k.name, k.prefix, k.created_at, k.last_used_at,
k.revoked_at"""
KEYS = f"""
SELECT {_KEY} FROM api_keys k JOIN users u ON u.id = k.user_id
WHERE (CAST(:user_id AS BIGINT) IS NULL OR k.user_id = :user_id) ORDER BY k.id
"""
KEY_BY_ID = f"SELECT {_KEY} FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.id = :id"
REVOKE_KEY = """
UPDATE api_keys SET revoked_at = :now WHERE id = :id AND revoked_at IS NULL RETURNING id
"""
USED_KEY = "UPDATE api_keys SET last_used_at = :now WHERE id = :id"


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


async def add_key(
    conn: Conn, user_id: int, key_hash: str, now: int, name: str = "first key", prefix: str = ""
) -> int:
    """Attach an API key (its hash) to a user; its id."""
    params = {"user_id": user_id, "key_hash": key_hash, "now": now, "name": name}
    rows = await conn.fetch(INSERT_KEY, {**params, "prefix": prefix})
    return int(rows[0][0])


async def by_key_hash(conn: Conn, key_hash: str) -> Caller | None:
    """The user owning a live (unrevoked) API key, if any."""
    rows = await conn.fetch(BY_KEY_HASH, {"key_hash": key_hash})
    if not rows:
        return None
    r = rows[0]
    user = UserRow(id=r[0], email=r[1], role=r[2], created_at=r[3], disabled=r[4])
    return Caller(user=user, key_id=int(r[5]), last_used_at=r[6])


async def used_key(conn: Conn, key_id: int, now: int) -> None:
    """Note a key's use (callers do so at most once a minute)."""
    await conn.execute(USED_KEY, {"id": key_id, "now": now})


async def all_users(conn: Conn) -> list[UserRow]:
    """Every user, oldest first."""
    return await fetch_all(conn, ALL_USERS, {}, UserRow)


async def set_disabled(conn: Conn, user_id: int, disabled: bool) -> None:
    """Disable a user (its keys get 403, its jobs take no new tasks) or enable it again."""
    await conn.execute(SET_DISABLED, {"id": user_id, "disabled": int(disabled)})


async def set_role(conn: Conn, user_id: int, role: str) -> None:
    """Make a user an admin or a plain user."""
    await conn.execute(SET_ROLE, {"id": user_id, "role": role})


async def keys(conn: Conn, user_id: int | None) -> list[KeyRow]:
    """One user's API keys (everyone's when None), revoked ones included."""
    return await fetch_all(conn, KEYS, {"user_id": user_id}, KeyRow)


async def key_by_id(conn: Conn, key_id: int) -> KeyRow | None:
    """An API key's record."""
    return await fetch_one(conn, KEY_BY_ID, {"id": key_id}, KeyRow)


async def revoke_key(conn: Conn, key_id: int, now: int) -> bool:
    """Revoke a key (it gets 401 from the next request on); False if it already was."""
    return bool(await conn.fetch(REVOKE_KEY, {"id": key_id, "now": now}))


async def by_email(conn: Conn, email: str) -> UserRow | None:
    """A user by email."""
    return await fetch_one(conn, BY_EMAIL, {"email": email}, UserRow)


BY_ID = "SELECT id, email, role, created_at, disabled FROM users WHERE id = :id"


async def by_id(conn: Conn, user_id: int) -> UserRow | None:
    """A user by id."""
    return await fetch_one(conn, BY_ID, {"id": user_id}, UserRow)

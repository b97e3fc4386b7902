"""Users, API keys and node tokens: secrets are random, shown once, stored as sha256."""

from __future__ import annotations

import hashlib
import secrets

from gridx.coordinator.clock import Clock
from gridx.coordinator.db import users
from gridx.coordinator.db.connection import Database
from gridx.coordinator.db.users import UserRow
from gridx.coordinator.errors import InvalidInput, Unauthorized


def hash_secret(secret: str) -> str:
    """The stored form of an API key or node token (they are 256-bit random, so sha256 suffices)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret(prefix: str) -> str:
    """A fresh random secret with a readable prefix (`gxk_` for keys, `gxn_` for nodes)."""
    return prefix + secrets.token_urlsafe(32)


def bearer(authorization: str | None) -> str:
    """The secret from an `Authorization: Bearer ...` header.

    Raises:
        Unauthorized: no such header.
    """
    if not authorization or not authorization.lower().startswith("bearer "):
        raise Unauthorized()
    return authorization[7:].strip()


async def create_user(db: Database, clock: Clock, email: str, admin: bool) -> tuple[UserRow, str]:
    """Create a user and its first API key.

    Returns:
        (the user, the API key in clear: shown once, never stored).
    """
    email = email.strip().lower()
    if "@" not in email or len(email) > 320:
        raise InvalidInput(f"{email!r} is not an email address", field="email")
    key = new_secret("gxk_")
    now = clock.now_ms()
    async with db.transaction() as conn:
        user = await users.create(conn, email, "admin" if admin else "user", now)
        await users.add_key(conn, user.id, hash_secret(key), now)
    return user, key


async def authenticate_user(db: Database, authorization: str | None) -> UserRow:
    """The user an API key belongs to.

    Raises:
        Unauthorized: missing or unknown key.
    """
    user = await users.by_key_hash(db.reader, hash_secret(bearer(authorization)))
    if user is None:
        raise Unauthorized("unknown API key; create one with `gridx user create EMAIL`")
    return user

"""Users, API keys and node tokens: secrets are random, shown once, stored as sha256."""

from __future__ import annotations

import hashlib
import secrets

from gridx.coordinator.clock import Clock
from gridx.coordinator.db import audit, users
from gridx.coordinator.db.connection import Database
from gridx.coordinator.db.users import UserRow
from gridx.coordinator.errors import InvalidInput, Unauthorized, UserDisabled

KEY_USE_RESOLUTION_MS = 60_000
"""A key's `last_used_at` is written at most this often (not one write per request)."""


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


async def create_user(
    db: Database, clock: Clock, email: str, admin: bool, actor: str = "system"
) -> tuple[UserRow, str]:
    """Create a user and its first API key, recorded in the audit log as done by `actor`.

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
        await users.add_key(conn, user.id, hash_secret(key), now, prefix=key_prefix(key))
        await audit.record(conn, now, actor, "user.create", email, user.role)
    return user, key


def key_prefix(key: str) -> str:
    """What a key list shows of a key: enough to recognise it, too little to use it."""
    return key[:12]


async def authenticate_user(db: Database, authorization: str | None, now: int) -> UserRow:
    """The user an API key belongs to; the key's last use is noted (at most once a minute).

    Raises:
        Unauthorized: missing, unknown or revoked key.
        Forbidden: the user is disabled.
    """
    caller = await users.by_key_hash(db.reader, hash_secret(bearer(authorization)))
    if caller is None:
        raise Unauthorized(
            "unknown or revoked API key; an admin makes one with `gridx user create EMAIL` or "
            "`gridx key create --user EMAIL`"
        )
    if caller.user.disabled:
        raise UserDisabled(f"{caller.user.email} is disabled; ask an admin to enable it again")
    if caller.last_used_at is None or now - caller.last_used_at >= KEY_USE_RESOLUTION_MS:
        async with db.transaction() as conn:
            await users.used_key(conn, caller.key_id, now)
    return caller.user

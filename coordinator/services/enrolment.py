"""Enrolment tokens: a node registers with a credential scoped to that alone.

An owner's API key can do everything the owner can (mint keys, submit and delete jobs); a
daemon that holds it in its argv or its config gives all of that to whoever reads them. A token
from `gridx node token create` registers nodes for its owner, `uses` times within `ttl_s`, and
nothing else; the node drops it once registered. An API key is still accepted, with a warning
the node prints.
"""

from __future__ import annotations

from gridx.coordinator.db import enrolment, users
from gridx.coordinator.db.users import UserRow
from gridx.coordinator.errors import Unauthorized, UserDisabled
from gridx.coordinator.services.auth import authenticate_user, bearer, hash_secret, new_secret
from gridx.coordinator.services.runtime import Runtime
from gridx.schemas.nodes import EnrolmentToken, EnrolmentTokenRequest

PREFIX = "gxe_"
API_KEY_WARNING = (
    "this node enrolled with an API key, which can do everything its owner can; use "
    "`gridx node token create` next time (the node kept no copy of the key)"
)


async def create_token(rt: Runtime, owner: UserRow, req: EnrolmentTokenRequest) -> EnrolmentToken:
    """A new token that registers nodes for `owner` (the token is shown once)."""
    token = new_secret(PREFIX)
    now = rt.clock.now_ms()
    expires = now + req.ttl_s * 1000
    async with rt.db.transaction() as conn:
        await enrolment.purge(conn, now)
        await enrolment.create(
            conn,
            token_hash=hash_secret(token),
            owner_id=owner.id,
            prefix=token[:12],
            uses=req.uses,
            expires_at=expires,
            now=now,
        )
    return EnrolmentToken(token=token, prefix=token[:12], uses=req.uses, expires_at=expires)


async def enrolling_owner(rt: Runtime, authorization: str | None) -> tuple[UserRow, str | None]:
    """Whose node registers, from its credential, and a warning for the node to print.

    Raises:
        Unauthorized: unknown, used-up or expired token (or an unknown API key).
        UserDisabled: its owner is disabled.
    """
    secret = bearer(authorization)
    now = rt.clock.now_ms()
    if not secret.startswith(PREFIX):
        return await authenticate_user(rt.db, authorization, now), API_KEY_WARNING
    async with rt.db.transaction() as conn:
        owner_id = await enrolment.use(conn, hash_secret(secret), now)
        owner = await users.by_id(conn, owner_id) if owner_id is not None else None
    if owner is None:
        raise Unauthorized(
            "unknown, used-up or expired enrolment token; make a new one with "
            "`gridx node token create`"
        )
    if owner.disabled:
        raise UserDisabled(f"{owner.email} is disabled; ask an admin to enable it again")
    return owner, None

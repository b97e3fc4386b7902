"""What admins see and send: users, API keys (never the key, except once when made), the audit
log."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

Role = Literal["admin", "user"]


class UserAdminInfo(msgspec.Struct, kw_only=True):
    """A user as admins see it."""

    id: int
    email: str
    role: Role
    disabled: bool
    """Its keys get 403 and its jobs take no new task."""
    created_at: int
    keys: int
    """Live (unrevoked) API keys."""
    last_used_at: int | None
    """The last use of any of its keys (to the minute), epoch ms."""


class RoleRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Give a user a role."""

    role: Role


class DisableRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Disable (true) or enable (false) a user."""

    disabled: bool = True


class KeyInfo(msgspec.Struct, kw_only=True):
    """An API key, as listed: its first characters only."""

    id: int
    user: str
    name: str
    prefix: str
    """Its first 12 characters (gxk_ and 8 more): enough to recognise it, too few to use it."""
    created_at: int
    last_used_at: int | None
    """To the minute; None: never used."""
    revoked_at: int | None


class KeyRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A further API key: its name, and (admins) whose it is."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] = "script"
    owner: Annotated[str, msgspec.Meta(max_length=320)] | None = None
    """The owner's email (default: the caller; another user's: admins only)."""


class NewKey(msgspec.Struct, kw_only=True):
    """A key just made: shown this once, never again."""

    key: str
    info: KeyInfo


class BanRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Ban (true) or lift the ban (false)."""

    banned: bool = True


class AuditEvent(msgspec.Struct, kw_only=True):
    """One admin action: who did what to whom, when."""

    id: int
    at: int
    actor: str
    action: str
    """user.disable, user.enable, user.role, key.create, key.revoke, key.rotate, node.ban,
    node.unban, node.remove, job.delete."""
    target: str
    detail: str

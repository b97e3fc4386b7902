"""`/me`: who an API key belongs to."""

from __future__ import annotations

from litestar import get

from gridx.coordinator.services.principals import User
from gridx.schemas.nodes import UserInfo


@get("/me", tags=["users"])
async def me(user: User) -> UserInfo:
    """Who the API key belongs to."""
    return UserInfo(id=user.id, email=user.email, role=user.role)  # type: ignore[arg-type]

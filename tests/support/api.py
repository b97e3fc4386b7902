"""The real app behind Litestar's test client, with two users' keys and a manual clock."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from litestar.testing import TestClient

from gridx.coordinator.api.app import create_app
from gridx.coordinator.clock import ManualClock
from gridx.coordinator.db import connect
from gridx.coordinator.services.auth import create_user
from gridx.coordinator.settings import Settings


@dataclass
class Api:
    """A test client on a real app, with two users' keys, an admin's, and a manual clock."""

    client: TestClient  # type: ignore[type-arg]
    clock: ManualClock
    settings: Settings
    alice: dict[str, str]
    bob: dict[str, str]
    admin: dict[str, str]


def auth(key: str) -> dict[str, str]:
    """An Authorization header."""
    return {"Authorization": f"Bearer {key}"}


SETUP = "test-setup"
"""The audit log's actor for the users every API test starts with."""


def audit(api: Api) -> list[dict[str, Any]]:
    """The audit log, newest first, without the creation of the users every test starts with."""
    events = api.client.get("/admin/audit", headers=api.admin).json()
    return [e for e in events if e["actor"] != SETUP]


async def _users(url: str, clock: ManualClock) -> tuple[str, str, str]:
    db = await connect(url)
    try:
        a = (await create_user(db, clock, "alice@example.org", False, SETUP))[1]
        b = (await create_user(db, clock, "bob@example.org", False, SETUP))[1]
        root = (await create_user(db, clock, "root@example.org", True, SETUP))[1]
    finally:
        await db.close()
    return a, b, root


@contextmanager
def running_api(settings: Settings) -> Iterator[Api]:
    """The real app (real database, real process pool) on `settings`; users alice and bob,
    and an admin."""
    clock = ManualClock()
    a, b, root = asyncio.run(_users(settings.db_url, clock))
    with TestClient(create_app(settings, clock)) as client:
        yield Api(client, clock, settings, auth(a), auth(b), auth(root))

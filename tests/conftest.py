"""Shared fixtures: settings on a temp dir, a manual clock, an API client with users."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from litestar.testing import TestClient

from gridx.coordinator.api.app import create_app
from gridx.coordinator.clock import ManualClock
from gridx.coordinator.db.connection import Database
from gridx.coordinator.services.auth import create_user
from gridx.coordinator.settings import Settings


@dataclass
class Api:
    """A test client on a real app, with two users' keys and a manual clock."""

    client: TestClient  # type: ignore[type-arg]
    clock: ManualClock
    settings: Settings
    alice: dict[str, str]
    bob: dict[str, str]


def auth(key: str) -> dict[str, str]:
    """An Authorization header."""
    return {"Authorization": f"Bearer {key}"}


async def _users(path: Path, clock: ManualClock) -> tuple[str, str]:
    db = await Database.open(path)
    try:
        a = (await create_user(db, clock, "alice@example.org", False))[1]
        b = (await create_user(db, clock, "bob@example.org", False))[1]
    finally:
        await db.close()
    return a, b


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Small limits so size checks are cheap to hit."""
    return Settings(
        data_dir=tmp_path / "data",
        max_upload_bytes=200_000,
        max_code_bytes=10_000,
        max_result_bytes=1_000_000,
    )


@pytest.fixture
def api(settings: Settings) -> Iterator[Api]:
    """The real app (real SQLite file, real process pool) behind Litestar's test client."""
    clock = ManualClock()
    a, b = asyncio.run(_users(settings.db_path, clock))
    with TestClient(create_app(settings, clock)) as client:
        yield Api(client, clock, settings, auth(a), auth(b))

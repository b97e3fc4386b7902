"""Shared fixtures: settings on a temp dir, a manual clock, an API client with users."""

from __future__ import annotations

import asyncio
import itertools
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from litestar.testing import TestClient

from gridx.coordinator.api.app import create_app
from gridx.coordinator.cli.servers import PostgresServer, S3Server
from gridx.coordinator.clock import ManualClock
from gridx.coordinator.db import connect
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


async def _users(url: str, clock: ManualClock) -> tuple[str, str]:
    db = await connect(url)
    try:
        a = (await create_user(db, clock, "alice@example.org", False))[1]
        b = (await create_user(db, clock, "bob@example.org", False))[1]
    finally:
        await db.close()
    return a, b


@pytest.fixture
def settings(tmp_path: Path, new_database: Callable[[], str]) -> Settings:
    """Small limits so size checks are cheap to hit; once per database engine."""
    url = new_database()
    return Settings(
        data_dir=tmp_path / "data",
        database_url="" if url.startswith("sqlite") else url,  # SQLite: the data dir's own
        max_upload_bytes=200_000,
        max_code_bytes=10_000,
        max_result_bytes=1_000_000,
    )


@pytest.fixture
def api(settings: Settings) -> Iterator[Api]:
    """The real app (real database, real process pool) behind Litestar's test client."""
    clock = ManualClock()
    a, b = asyncio.run(_users(settings.db_url, clock))
    with TestClient(create_app(settings, clock)) as client:
        yield Api(client, clock, settings, auth(a), auth(b))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """A private PostgreSQL for the whole session (started on first use)."""
    server = PostgresServer(Path(tempfile.mkdtemp(prefix="gridx-pg-")))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A private S3 server (SeaweedFS) for the whole session, its keys in the environment."""
    server = S3Server(tmp_path_factory.mktemp("s3"))
    server.start()
    saved = {k: os.environ.get(k) for k in server.env()}
    os.environ.update(server.env())
    try:
        yield server
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def new_database(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], str]:
    """Makes fresh, empty databases of one engine (the contract suites run on both)."""
    if request.param == "postgresql":
        server: PostgresServer = request.getfixturevalue("pg_server")
        return server.new_database
    counter = itertools.count()
    return lambda: f"sqlite:///{tmp_path}/db{next(counter)}.db"

"""Fixtures every suite may use: databases of both engines, and private PostgreSQL, S3 and
Supabase Storage servers.

Imports of Grid-X and of the servers happen inside the fixtures, so a suite that needs none
(`tests/unit/test_sharding.py`) runs on the base install: no coordinator extras, no torch.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.support.servers import PostgresServer, S3Server, SupabaseServer

_TESTS = Path(__file__).resolve().parent
_SLOW = ("integration", "security", "e2e")
"""Suites that start real coordinator and node processes."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark what each test needs (see `markers` in pyproject.toml): `slow` for the suites of
    real processes, `browser` for the dashboard's, `pg` for anything on PostgreSQL (the
    `postgresql` database parameter marks itself), `docker` for the Docker executor."""
    for item in items:
        suite = Path(str(item.path)).resolve().relative_to(_TESTS).parts[0]
        if suite in _SLOW:
            item.add_marker(pytest.mark.slow)
        if suite == "e2e":
            item.add_marker(pytest.mark.browser)
        names = getattr(item, "fixturenames", ())
        if "pg_server" in names:
            item.add_marker(pytest.mark.pg)
        if "supabase_server" in names:
            item.add_marker(pytest.mark.supabase)
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "docker" in item.path.name or params.get("mode") == "docker":
            item.add_marker(pytest.mark.docker)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """A private PostgreSQL for the whole session (started on first use)."""
    from tests.support.servers import PostgresServer

    server = PostgresServer(Path(tempfile.mkdtemp(prefix="gridx-pg-")))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A private S3 server (SeaweedFS) for the whole session, its keys in the environment."""
    from tests.support.servers import S3Server

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


@pytest.fixture(scope="session")
def supabase_server() -> Iterator[SupabaseServer]:
    """A real Supabase Storage server and its PostgreSQL for the whole session (started on
    first use, fresh: no buckets, no rows)."""
    from tests.support.servers import SupabaseServer

    server = SupabaseServer()
    server.start()
    try:
        yield server
    finally:
        server.release()


@pytest.fixture(params=[pytest.param("sqlite"), pytest.param("postgresql", marks=pytest.mark.pg)])
def new_database(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], str]:
    """Makes fresh, empty databases of one engine (the contract suites run on both)."""
    if request.param == "postgresql":
        server: PostgresServer = request.getfixturevalue("pg_server")
        return server.new_database
    counter = itertools.count()
    return lambda: f"sqlite:///{tmp_path}/db{next(counter)}.db"

"""The API suites: the real app on each database engine, with small limits."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gridx.coordinator.settings import Settings
from tests.support.api import Api, running_api


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
        warm_pool=False,  # hundreds of short-lived apps; each would import torch twice
    )


@pytest.fixture
def api(settings: Settings) -> Iterator[Api]:
    """The real app (real database, real process pool) behind Litestar's test client."""
    with running_api(settings) as running:
        yield running

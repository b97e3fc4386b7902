"""Schemathesis against the coordinator's own OpenAPI schema: no input makes the server fail,
and every answer (errors included) matches the schema, status codes included."""

from __future__ import annotations

import asyncio
import atexit
import pathlib
import shutil
import tempfile

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from gridx.coordinator.api.app import create_app
from gridx.coordinator.clock import SystemClock
from gridx.coordinator.db import connect
from gridx.coordinator.services.auth import create_user
from gridx.coordinator.settings import Settings

DATA = pathlib.Path(tempfile.mkdtemp(prefix="gridx-schemathesis-"))
atexit.register(shutil.rmtree, DATA, True)
SETTINGS = Settings(data_dir=DATA, max_upload_bytes=100_000)


async def _key() -> str:
    db = await connect(SETTINGS.db_url)
    try:
        return (await create_user(db, SystemClock(), "fuzz@example.org", False))[1]
    finally:
        await db.close()


KEY = asyncio.run(_key())
APP = create_app(SETTINGS)
schema = schemathesis.openapi.from_asgi("/schema/openapi.json", APP).exclude(
    path_regex="request_task|events"  # long-polls and streams: covered by their own tests
)


@schema.parametrize()
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_makes_the_server_fail_or_leave_its_schema(case) -> None:
    case.call_and_validate(
        headers={"Authorization": f"Bearer {KEY}"},
        checks=[not_a_server_error, response_schema_conformance, status_code_conformance],
    )

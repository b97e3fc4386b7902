"""Grid-X on Supabase, configured as a Supabase project gives it: blobs in a Storage bucket through
the `supabase` package (`supabase://`, the project's URL and service_role key), metadata in the
project's PostgreSQL. Two coordinator replicas, two real nodes, a real Supabase Storage server."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from storage3 import AsyncStorageClient

from gridx.coordinator.cli.cluster import LocalCluster
from tests.integration.conftest import REPO, Client, replica_pair
from tests.support.servers import SupabaseServer

DIGITS = REPO / "examples" / "digits"


@pytest.fixture
def on_supabase(tmp_path: Path, supabase_server: SupabaseServer) -> Iterator[LocalCluster]:
    env = {
        **supabase_server.coordinator_env(supabase_server.new_bucket_url()),
        "GRIDX_DATABASE_URL": supabase_server.database_url,
    }
    with replica_pair(tmp_path / "cluster", env) as cluster:
        yield cluster


async def _listing(server: SupabaseServer, bucket: str, folder: str) -> list[dict[str, Any]]:
    """Every object under `folder`, through Supabase's own API (it lists one level at a time)."""
    key = server.service_key
    async with AsyncStorageClient(
        server.url + "/", {"apikey": key, "Authorization": f"Bearer {key}"}
    ) as client:
        files = client.from_(bucket)
        found: list[dict[str, Any]] = []
        for entry in await files.list(folder):
            if entry.get("id") is None:  # a folder
                found += await _listing(server, bucket, f"{folder}/{entry['name']}")
            else:
                found.append({**entry, "path": f"{folder}/{entry['name']}"})
        return found


def test_a_job_runs_on_supabase_storage_and_postgres_with_nodes_moving_bytes_directly(
    on_supabase: LocalCluster, supabase_server: SupabaseServer
) -> None:
    on_supabase.add_node("node-a", replica=0)
    on_supabase.add_node("node-b", replica=1)
    job_id = Client(on_supabase, 0).submit(
        (DIGITS / "train.py").read_bytes(),
        {"rounds": 2, "shards": 2, "epochs": 1, "seed": 3},
        data=("train.csv", (DIGITS / "data" / "train.csv").read_bytes()),
    )
    body = Client(on_supabase, 1).wait_done(job_id, 240)
    assert body["job"]["status"] == "succeeded", body
    assert len({t["node_id"] for t in body["tasks"]}) == 2, "both replicas' nodes took tasks"
    models = [
        Client(on_supabase, i).http.get(f"/jobs/{job_id}/model", params={"format": "safetensors"})
        for i in (0, 1)
    ]
    assert models[0].status_code == models[1].status_code == 200
    assert models[0].content == models[1].content

    # the bucket, seen through Supabase's API: the model among the blobs, no result left unfiled
    bucket = on_supabase.coordinator_env["GRIDX_STORAGE_URL"].removeprefix("supabase://")
    bucket = bucket.split("/")[0]
    blobs = asyncio.run(_listing(supabase_server, bucket, "gridx/blobs"))
    model_sha = hashlib.sha256(models[0].content).hexdigest()
    assert f"gridx/blobs/{model_sha[:2]}/{model_sha}" in {b["path"] for b in blobs}
    assert asyncio.run(_listing(supabase_server, bucket, "gridx/incoming")) == []

    # the nodes' bytes went to Supabase through signed links, never through a coordinator
    trained = [t for t in body["tasks"] if t["status"] == "succeeded"]
    by_nodes = [
        r
        for r in supabase_server.requests()
        if "aiohttp" in str(r["req"]["headers"])  # type: ignore[index]
    ]
    signed = [
        (r["req"]["method"], str(r["req"]["url"]).split("?")[0], r["res"]["statusCode"])  # type: ignore[index]
        for r in by_nodes
    ]
    downloads = [s for s in signed if s[0] == "GET" and s[1].startswith(f"/object/sign/{bucket}/")]
    uploads = [
        s for s in signed if s[0] == "PUT" and s[1].startswith(f"/object/upload/sign/{bucket}/")
    ]
    assert len(uploads) >= len(trained) and all(s[2] == 200 for s in uploads), signed
    assert len(downloads) >= len(trained) and all(s[2] == 200 for s in downloads), signed
    for i in (0, 1):
        log = on_supabase.root / ("coordinator.log" if i == 0 else f"coordinator-{i}.log")
        assert "/blobs/" not in log.read_text()

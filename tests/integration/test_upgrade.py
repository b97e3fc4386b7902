"""Upgrade and restore, on real processes: a data folder the previous release wrote (built by
its own code: tests/fixtures/make_release_fixture.sh) is migrated by this one and keeps working;
a backup taken while the coordinator runs (SQLite's online backup; `pg_dump` and a bucket copy)
restored into a fresh coordinator gives back the same final model."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
from pathlib import Path

from gridx.coordinator.cli.cluster import LocalCluster
from tests.integration.conftest import FAST, REPO, Client
from tests.support.servers import PostgresServer, S3Server

PREVIOUS = REPO / "tests" / "fixtures" / "release-0010.tar.gz"
TRAIN = b"import os, torch\ntorch.save({'w': torch.ones(8)}, os.environ['GRIDX_OUTPUT'])\n"


def test_a_data_folder_of_the_previous_release_is_migrated_and_keeps_working(
    tmp_path: Path,
) -> None:
    with tarfile.open(PREVIOUS) as tar:
        tar.extractall(tmp_path, filter="data")
    meta = json.loads((tmp_path / "meta.json").read_text())
    cluster = LocalCluster(tmp_path, coordinator_env=FAST)
    cluster.api_key = meta["api_key"]  # the old admin's key, made by the old release
    cluster.start()
    try:
        client = Client(cluster)
        old = client.job(meta["job_id"])
        assert old["job"]["status"] == "succeeded" and len(old["rounds"]) >= 2
        model = client.http.get(f"/jobs/{meta['job_id']}/model").content
        assert hashlib.sha256(model).hexdigest() == meta["final_model_sha256"]
        keys = client.http.get("/keys").json()
        assert [k["name"] for k in keys] == ["first key"] and keys[0]["last_used_at"]
        # the node the old release enrolled comes back with its old identity and works (at
        # the coordinator's address, which here is a new port: the identity is per address)
        identity = tmp_path / meta["node_state"] / "identity.json"
        ident = json.loads(identity.read_text())
        identity.write_text(json.dumps({**ident, "coordinator_url": cluster.url}))
        cluster.add_node(meta["node_state"])
        job_id = client.submit(TRAIN, {"rounds": 2, "shards": 2})
        body = client.wait_done(job_id, 180)
        assert body["job"]["status"] == "succeeded", body["tasks"]
        nodes = client.http.get("/nodes").json()
        assert [n["name"] for n in nodes] == ["old-node"]
        assert {h["node_id"] for t in body["tasks"] for h in t["history"]} == {nodes[0]["id"]}
    finally:
        cluster.stop()


def test_an_online_backup_restores_into_a_fresh_coordinator(
    cluster: LocalCluster, client: Client, tmp_path: Path
) -> None:
    cluster.add_node("n")
    job_id = client.submit(TRAIN, {"rounds": 2, "shards": 2})
    assert client.wait_done(job_id, 180)["job"]["status"] == "succeeded"
    model = client.http.get(f"/jobs/{job_id}/model").content
    backup = tmp_path / "backup"
    out = subprocess.run(  # while the coordinator runs
        [sys.executable, "-m", "gridx.coordinator.cli", "coordinator", "backup",
         "--data-dir", str(cluster.data_dir), str(backup)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    cluster.stop()
    restored = LocalCluster(tmp_path / "restored", coordinator_env=FAST)
    restored.data_dir.parent.mkdir(parents=True)
    backup.rename(restored.data_dir)
    _gives_back(restored, cluster.api_key, job_id, model)


def _gives_back(restored: LocalCluster, key: str, job_id: str, model: bytes) -> None:
    """A coordinator started on restored data shows the job and serves the same model."""
    restored.api_key = key  # the users came back with the data
    restored.start()
    try:
        again = Client(restored)
        assert again.job(job_id)["job"]["status"] == "succeeded"
        assert again.http.get(f"/jobs/{job_id}/model").content == model
    finally:
        restored.stop()


async def _copy_bucket(endpoint: str, source: str, target: str, cache: Path) -> int:
    """What an admin's `aws s3 sync` does: every object of one bucket into another."""
    from gridx.coordinator.storage.s3 import S3Storage

    src = await S3Storage.open(source, cache / "a", endpoint=endpoint)
    dst = await S3Storage.open(target, cache / "b", endpoint=endpoint)
    copied = 0
    try:
        pages = src.client.get_paginator("list_objects_v2").paginate(Bucket=src.bucket)
        async for page in pages:
            for obj in page.get("Contents", []):
                body = await src.client.get_object(Bucket=src.bucket, Key=obj["Key"])
                async with body["Body"] as stream:
                    data = await stream.read()
                await dst.client.put_object(Bucket=dst.bucket, Key=obj["Key"], Body=data)
                copied += 1
    finally:
        await src.close()
        await dst.close()
    return copied


def test_a_pg_dump_and_a_bucket_copy_restore_into_a_fresh_deployment(
    tmp_path: Path, pg_server: PostgresServer, s3_server: S3Server
) -> None:
    import asyncio

    def deployment(database: str, bucket: str) -> dict[str, str]:
        return {**FAST, "GRIDX_DATABASE_URL": database, "GRIDX_STORAGE_URL": bucket,
                "GRIDX_S3_ENDPOINT": s3_server.endpoint}  # fmt: skip

    first = (pg_server.new_database(), s3_server.new_bucket_url())
    cluster = LocalCluster(tmp_path / "first", coordinator_env=deployment(*first))
    cluster.start()
    try:
        cluster.add_node("n")
        client = Client(cluster)
        job_id = client.submit(TRAIN, {"rounds": 2, "shards": 2})
        assert client.wait_done(job_id, 180)["job"]["status"] == "succeeded"
        model = client.http.get(f"/jobs/{job_id}/model").content
        dump = tmp_path / "gridx.sql"  # while it runs: the dump, then the bucket
        subprocess.run([pg_server.bin / "pg_dump", "-d", first[0], "-f", dump], check=True)
        second = (pg_server.new_database(), s3_server.new_bucket_url())
        copied = asyncio.run(_copy_bucket(s3_server.endpoint, first[1], second[1], tmp_path))
        assert copied >= 3
    finally:
        cluster.stop()
    psql = [pg_server.bin / "psql", "-q", "-v", "ON_ERROR_STOP=1", "-d", second[0], "-f", dump]
    subprocess.run(psql, check=True, capture_output=True)
    restored = LocalCluster(tmp_path / "second", coordinator_env=deployment(*second))
    _gives_back(restored, cluster.api_key, job_id, model)

"""Scale-out, end to end: two coordinator replicas on a real PostgreSQL and a real S3 server
(SeaweedFS), nodes split across them. A job completes; and killing the replica that is merging
a round hands the merge to the other, which completes the job exactly once."""

from __future__ import annotations

import asyncio
import time

import asyncpg

from gridx.coordinator.cli.cluster import LocalCluster
from tests.integration.conftest import REPO, Client

DIGITS = REPO / "examples" / "digits"

# Big enough (2 x 96 MB of float32 updates) that merging takes a few seconds on this machine.
BIG_MODEL = b"""
import os, torch
torch.manual_seed(int(os.environ.get("GRIDX_SHARD", "0")))
torch.save({"w": torch.randn(24_000_000)}, os.environ["GRIDX_OUTPUT"])
"""


def test_a_job_completes_with_nodes_split_across_two_replicas(replicas: LocalCluster) -> None:
    replicas.add_node("node-a", replica=0)
    replicas.add_node("node-b", replica=1)
    job_id = Client(replicas, 0).submit(
        (DIGITS / "train.py").read_bytes(),
        {"rounds": 2, "shards": 2, "epochs": 1, "seed": 3},
        data=("train.csv", (DIGITS / "data" / "train.csv").read_bytes()),
    )
    body = Client(replicas, 1).wait_done(job_id, 240)
    assert body["job"]["status"] == "succeeded", body
    nodes = {t["node_id"] for t in body["tasks"]}
    assert len(nodes) == 2, "both replicas' nodes took tasks"
    models = [
        Client(replicas, i).http.get(f"/jobs/{job_id}/model", params={"format": "safetensors"})
        for i in (0, 1)
    ]
    assert models[0].status_code == models[1].status_code == 200
    assert models[0].content == models[1].content
    assert body["final_safetensors_sha256"]


async def _aggregator(url: str) -> str | None:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(
            "SELECT aggregator FROM rounds WHERE status = 'aggregating' AND aggregator IS NOT NULL"
        )
    finally:
        await conn.close()


async def _rows(url: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


def test_killing_the_aggregating_replica_hands_the_merge_over_once(
    replicas: LocalCluster,
) -> None:
    db = replicas.coordinator_env["GRIDX_DATABASE_URL"]
    replicas.add_node("node-a", replica=0)
    replicas.add_node("node-b", replica=1)
    # one round of two updates, merged once (no initialisation step's merge before it)
    config = {"rounds": 1, "shards": 2, "seed": 1, "init_step": False}
    job_id = Client(replicas, 0).submit(BIG_MODEL, config)

    deadline = time.monotonic() + 180
    holder = None
    while holder is None and time.monotonic() < deadline:
        holder = asyncio.run(_aggregator(db))
        time.sleep(0.02)
    assert holder is not None, "the round never started merging"
    victim = int(holder.rsplit("-", 1)[1])
    replicas.kill_coordinator(victim)  # SIGKILL mid-merge: its lease stops being renewed
    survivor = 1 - victim

    body = Client(replicas, survivor).wait_done(job_id, 180)
    assert body["job"]["status"] == "succeeded", body
    rounds = asyncio.run(_rows(db, "SELECT aggregator, status FROM rounds"))
    assert [(r["aggregator"], r["status"]) for r in rounds] == [(f"replica-{survivor}", "done")]
    events = asyncio.run(_rows(db, "SELECT kind FROM events ORDER BY id"))
    kinds = [e["kind"] for e in events]
    assert kinds.count("round_done") == 1 and kinds.count("job_succeeded") == 1

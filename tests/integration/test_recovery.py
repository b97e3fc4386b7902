"""Crashes change nothing: the same seeded job gives a bit-identical model with and without them."""

from __future__ import annotations

import time
from pathlib import Path

from gridx.coordinator.cli.cluster import LocalCluster
from tests.integration.conftest import REPO, Client

TRAIN_ONES = b"import os, torch\ntorch.save({'w': torch.ones(2)}, os.environ['GRIDX_OUTPUT'])\n"

DIGITS = REPO / "examples" / "digits"
CONFIG = {"rounds": 3, "shards": 2, "epochs": 1, "seed": 7}


def _submit(client: Client) -> str:
    """The digits job, each task lasting at least 0.5 s (a warm task takes under 0.1 s: the
    test, polling every 0.1 s, must see a round's tasks leased to crash the coordinator then)."""
    return client.submit(
        (DIGITS / "train.py").read_bytes() + b"\nimport time\n\ntime.sleep(0.5)\n",
        CONFIG,
        data=("train.csv", (DIGITS / "data" / "train.csv").read_bytes()),
    )


def _in_round(client: Client, job_id: str, r: int) -> None:
    client.wait(
        job_id,
        lambda b: any(t["round"] == r and t["status"] == "leased" for t in b["tasks"]),
        120,
    )


def test_node_and_coordinator_crashes_leave_the_model_bit_identical(
    cluster: LocalCluster, client: Client
) -> None:
    cluster.add_node("node-1")
    cluster.add_node("node-2")
    clean = client.wait_done(_submit(client), 180)
    assert clean["job"]["status"] == "succeeded", clean
    reference = clean["final_safetensors_sha256"]
    assert reference

    # the coordinator is SIGKILLed while the initialisation step runs, and started again
    job_id = _submit(client)
    _in_round(client, job_id, -1)
    cluster.kill_coordinator()
    cluster.start_coordinator()
    restarted = client.wait_done(job_id, 240)
    assert restarted["job"]["status"] == "succeeded", restarted
    assert [r["index"] for r in restarted["rounds"]] == [-1, 0, 1, 2]
    assert restarted["final_safetensors_sha256"] == reference

    # the coordinator is SIGKILLed in the middle of round 2 and started again
    job_id = _submit(client)
    _in_round(client, job_id, 1)
    cluster.kill_coordinator()
    cluster.start_coordinator()
    crashed = client.wait_done(job_id, 240)
    assert crashed["job"]["status"] == "succeeded", crashed
    assert crashed["final_safetensors_sha256"] == reference

    # a node is SIGKILLed mid-task; its lease expires and another node redoes the shard
    job_id = _submit(client)
    body = client.wait(job_id, lambda b: any(t["status"] == "leased" for t in b["tasks"]), 120)
    victim_id = next(t["node_id"] for t in body["tasks"] if t["status"] == "leased")
    names = {n["id"]: n["name"] for n in client.http.get("/nodes").json()}
    cluster.kill_node(names[victim_id])
    cluster.add_node("node-3")
    lost = client.wait_done(job_id, 240)
    assert lost["job"]["status"] == "succeeded", lost
    assert any(h["outcome"] == "lease_expired" for t in lost["tasks"] for h in t["history"])
    assert lost["final_safetensors_sha256"] == reference


def _stat(pid: int) -> list[str] | None:
    """State, parent pid, ... of a live process (None once it is gone or a zombie)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return None if fields[0] == "Z" else fields


def _children(pid: int) -> set[int]:
    return {
        int(p.name)
        for p in Path("/proc").glob("[0-9]*")
        if (fields := _stat(int(p.name))) is not None and int(fields[1]) == pid
    }


def test_aggregation_workers_die_with_a_sigkilled_coordinator(
    cluster: LocalCluster, client: Client
) -> None:
    cluster.add_node("node")
    job_id = client.submit(TRAIN_ONES, {"rounds": 1, "shards": 1})
    assert client.wait_done(job_id, 90)["job"]["status"] == "succeeded"  # the pool has started
    coordinator = cluster.coordinator
    assert coordinator is not None
    workers = _children(coordinator.pid)
    assert workers, "the aggregation pool's workers are the coordinator's children"
    cluster.kill_coordinator()
    deadline = time.monotonic() + 10
    while (alive := {p for p in workers if _stat(p) is not None}) and (time.monotonic() < deadline):
        time.sleep(0.1)
    assert alive == set()

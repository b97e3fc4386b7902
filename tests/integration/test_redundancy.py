"""Redundant computing against a cheating node: real coordinator, two honest `gridx-node`
processes of different owners, and a hostile node (a client of the agent API, as a hacked node
would be) that answers every task with made-up weights of the right shape."""

from __future__ import annotations

import hashlib
import io
import threading
from pathlib import Path

import httpx
import torch

from gridx.coordinator.cli.cluster import LocalCluster, make_user
from tests.integration.conftest import FAST, Client

# Deterministic: each round adds 1 to the model it starts from, so 3 rounds give exactly 3.
TRAIN = b"""
import os, torch
init = os.environ.get("GRIDX_INIT_MODEL")
w = torch.load(init, weights_only=True)["w"] if init and os.path.exists(init) else torch.zeros(4)
torch.save({"w": w + 1}, os.environ["GRIDX_OUTPUT"])
"""


class Cheater:
    """Long-polls like a node and uploads garbage of the right keys and shapes."""

    def __init__(self, url: str, key: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=30)
        r = self.http.post(
            "/agent/register", json={"name": "cheater"}, headers={"Authorization": f"Bearer {key}"}
        )
        assert r.status_code == 201, r.text
        self.id = r.json()["node_id"]
        self.auth = {"Authorization": f"Bearer {r.json()['node_token']}"}
        self.taken: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        buf = io.BytesIO()
        torch.save({"w": torch.full((4,), 100.0)}, buf)
        weights = buf.getvalue()
        while not self.stop.is_set():
            r = self.http.post("/agent/request_task", params={"wait_s": "1"}, headers=self.auth)
            if r.status_code != 200:
                continue
            task = r.json()
            self.taken.append(task["task_id"])
            assert self.http.put(task["upload_url"], content=weights).status_code == 201
            done = self.http.post(
                "/agent/complete_task",
                headers=self.auth,
                json={
                    "task_id": task["task_id"],
                    "lease_token": task["lease_token"],
                    "result_sha256": hashlib.sha256(weights).hexdigest(),
                },
            )
            assert done.status_code == 200, done.text


def test_a_cheating_node_is_outvoted_flagged_and_cut_off(tmp_path: Path) -> None:
    # one disagreement in a row is enough; the cheater sends no heartbeats, so its lease must
    # outlast a slow upload on a loaded machine (nothing in this test needs leases to expire)
    env = {**FAST, "GRIDX_MIN_REPUTATION": "0.6", "GRIDX_LEASE_S": "60"}
    with LocalCluster(tmp_path / "c", coordinator_env=env) as cluster:
        client = Client(cluster)
        bob = make_user(cluster.data_dir, "bob@example.org")
        mallory = make_user(cluster.data_dir, "mallory@example.org")
        cheater = Cheater(cluster.url, mallory)
        cheater.thread.start()
        job_id = client.submit(TRAIN, {"rounds": 3, "shards": 1, "replicas": 2})
        client.wait(job_id, lambda b: any(t["node_id"] == cheater.id for t in b["tasks"]), 30)
        cluster.add_node("honest-admin")
        cluster.add_node("honest-bob", {"GRIDX_ENROLMENT_KEY": bob})
        body = client.wait_done(job_id, 180)
        cheater.stop.set()
        cheater.thread.join(10)
        assert body["job"]["status"] == "succeeded", body
        model = client.http.get(f"/jobs/{job_id}/model", params={"format": "pth"})
        state = torch.load(io.BytesIO(model.content), weights_only=True)
        assert torch.equal(state["w"], torch.full((4,), 3.0))  # no cheated update was merged
        mine = [t for t in body["tasks"] if t["node_id"] == cheater.id]
        assert [t["verdict"] for t in mine] == ["disagreed"] and len(cheater.taken) == 1
        round0 = [t for t in body["tasks"] if t["round"] == 0]
        assert len(round0) == 3 and sorted(t["copy"] for t in round0) == [0, 1, 2]  # reissued
        assert {t["verdict"] for t in round0 if t["node_id"] != cheater.id} == {"agreed"}
        owners = {n["id"]: n["owner"] for n in client.http.get("/nodes").json()}
        for r in range(3):  # never two copies of a shard to one owner
            held = [owners[t["node_id"]] for t in body["tasks"] if t["round"] == r]
            assert len(held) == len(set(held))
        nodes = {n["id"]: n for n in client.http.get("/nodes").json()}
        assert nodes[cheater.id]["disagreed"] == 1 and nodes[cheater.id]["reputation"] == 0.5
        assert all(n["disagreed"] == 0 for i, n in nodes.items() if i != cheater.id)

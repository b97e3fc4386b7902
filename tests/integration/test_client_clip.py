"""Client-side clipping on real nodes: the job's script moves the model far, each node clips its
update in its own sandbox before uploading it, and the coordinator (which refuses any update over
the clip norm of such a job) accepts every one."""

from __future__ import annotations

import io

import torch

from gridx.coordinator.cli.cluster import LocalCluster
from tests.integration.conftest import Client

FAR = b"""
import os
import torch
start = os.environ.get("GRIDX_INIT_MODEL")
state = torch.load(start, weights_only=True) if start else {"w": torch.zeros(100)}
torch.save({k: v + 10.0 for k, v in state.items()}, os.environ["GRIDX_OUTPUT"])
"""


def test_nodes_clip_their_own_updates(cluster: LocalCluster, client: Client) -> None:
    for name in ("node-a", "node-b"):
        cluster.add_node(name)
    client.wait_for_nodes(2)
    dp = {"noise_multiplier": 0.01, "clip_norm": 0.5, "delta": 1e-3, "client_clip": True}
    job_id = client.submit(FAR, {"rounds": 2, "shards": 2, "dp": dp})
    body = client.wait_done(job_id, 300)
    assert body["job"]["status"] == "succeeded", (body["job"], body["tasks"])
    attempts = [a for t in body["tasks"] for a in t["history"]]
    assert all(a["error_code"] is None for a in attempts), attempts  # none refused
    final = torch.load(
        io.BytesIO(client.http.get(f"/jobs/{job_id}/model").content), weights_only=True
    )["w"]
    # from the initialisation step's model (10 everywhere: it has no input to clip against),
    # two rounds each add the mean of updates clipped to 0.5, plus noise of std 0.0025: about
    # 1.0 in all, where unclipped updates would have taken the model to 30
    moved = float((final - 10.0).norm())
    assert 0.9 < moved < 1.2, moved

"""Stragglers on real nodes: one node of three never finishes (its train.py sleeps for longer
than the test lasts, keyed on the node's own folder), so a job only completes when its round
rules route around it: backup copies, or closing rounds at a deadline with a fraction in."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import pytest

from gridx.coordinator.cli.cluster import LocalCluster
from tests.integration.conftest import Client

STUCK = b"""
import os, time
import torch
if "node-stuck" in os.getcwd():  # the work folder lies in the node's state folder
    time.sleep(3600)
time.sleep(0.2)
torch.save({"w": torch.ones(4) * int(os.environ["GRIDX_SHARD"])}, os.environ["GRIDX_OUTPUT"])
"""


@pytest.fixture
def three_nodes(cluster: LocalCluster, client: Client) -> Client:
    for name in ("node-a", "node-b", "node-stuck"):
        cluster.add_node(name)
    client.wait_for_nodes(3)
    return client


def _events(cluster: LocalCluster, job_id: str, kind: str) -> list[dict[str, Any]]:
    """The payloads of a job's events of one kind, from the coordinator's event log."""
    with sqlite3.connect(cluster.data_dir / "gridx.db") as db:
        rows = db.execute(
            "SELECT data FROM events WHERE job_id = ? AND kind = ? ORDER BY id", (job_id, kind)
        ).fetchall()
    return [json.loads(r[0]) for r in rows]


def test_backup_copies_finish_the_rounds_a_stuck_node_holds(
    cluster: LocalCluster, three_nodes: Client
) -> None:
    client = three_nodes
    config = {"rounds": 3, "shards": 3, "backup_tasks": True, "task_timeout_s": 3600}
    config["init_step"] = False  # its one task has no round median to judge it by
    body = client.wait_done(client.submit(STUCK, config), 300)
    assert body["job"]["status"] == "succeeded", body["job"]
    nodes = {n["id"]: n["name"] for n in client.http.get("/nodes").json()}
    for rnd in range(3):
        tasks = [t for t in body["tasks"] if t["round"] == rnd]
        won = {t["shard"]: nodes[t["node_id"]] for t in tasks if t["status"] == "succeeded"}
        assert sorted(won) == [0, 1, 2] and "node-stuck" not in won.values(), tasks
        # whatever the stuck node held was backed up, and its copy cancelled, not failed
        lost = [t for t in tasks if t["status"] == "cancelled"]
        assert all(t["error_code"] == "superseded" for t in lost), lost
        assert all(t["status"] in ("succeeded", "cancelled") for t in tasks), tasks
    assert _events(cluster, body["job"]["id"], "backup_task"), "no backup copy was queued"


def test_a_round_closes_at_its_deadline_with_enough_shards_in(
    cluster: LocalCluster, three_nodes: Client
) -> None:
    client = three_nodes
    config = {"rounds": 2, "shards": 3, "min_fraction": 0.6, "round_deadline_s": 1}
    config |= {"task_timeout_s": 3600, "init_step": False}  # (its one task cannot be dropped)
    body = client.wait_done(client.submit(STUCK, config), 300)
    assert body["job"]["status"] == "succeeded", body["job"]
    # round 0 went to all three idle nodes, so it closed without the stuck one; a later round
    # closes early too only if the stuck node is back in time to take one of its shards
    closed = _events(cluster, body["job"]["id"], "round_closed")
    assert closed[0]["round"] == 0 and all(e["dropped"] >= 1 for e in closed), closed
    dropped = [t for t in body["tasks"] if t["status"] == "cancelled"]
    assert len(dropped) == sum(e["dropped"] for e in closed)
    assert all(t["error_code"] == "dropped" for t in dropped), dropped
    for rnd in range(2):
        done = [t for t in body["tasks"] if t["round"] == rnd and t["status"] == "succeeded"]
        assert len(done) >= 2

"""The owner's local status page on a real node."""

from __future__ import annotations

import json
import socket
import time

import httpx

from gridx.coordinator.cli.cluster import LocalCluster, free_port
from tests.integration.conftest import Client


def test_node_serves_its_status_on_loopback(cluster: LocalCluster, client: Client) -> None:
    port = free_port()
    cluster.add_node("pi", args=("--status-port", str(port)))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            status = httpx.get(f"{url}/status.json", timeout=1).json()
            break
        except httpx.HTTPError:
            assert time.monotonic() < deadline, "status page never came up"
            time.sleep(0.2)
    assert status["node_id"].startswith("n-") and status["executor"] == "process"
    assert status["current_task"] is None and status["recent"] == []
    job_id = client.submit(
        b"import torch\ntorch.save({'w': torch.zeros(1)}, 'model.pth')\n",
        {"rounds": 1, "shards": 1},
    )
    assert client.wait_done(job_id)["job"]["status"] == "succeeded"
    status = httpx.get(f"{url}/status.json").json()
    assert status["tasks_run"] == 1 and status["recent"][0]["result"] == "succeeded"
    page = httpx.get(f"{url}/").text
    assert status["node_id"] in page and "succeeded" in page and "gxn_" not in page
    memory = status["memory"]  # the task's cap: the owner's, within what was free at start
    assert 0 < memory["task_mb"] <= memory["cap_mb"] and memory["task_mb"] < memory["machine_mb"]
    assert status["caps"]["memory_mb"] == memory["task_mb"]
    assert f"a task may use {memory['task_mb']:,} MB" in page and "Warm runners" in page
    # a web page the owner visits, its DNS name pointed at 127.0.0.1, reads nothing
    rebound = httpx.get(f"{url}/status.json", headers={"Host": "evil.example:80"})
    assert rebound.status_code == 421 and status["node_id"] not in rebound.text
    framed = httpx.get(f"{url}/").headers
    assert "frame-ancestors 'none'" in framed["content-security-policy"]
    # no secret ever reaches a log: not the API key, not the node's token
    token = json.loads((cluster.root / "pi" / "identity.json").read_text())["node_token"]
    logs = "".join(p.read_text(errors="replace") for p in cluster.root.glob("*.log"))
    assert logs and cluster.api_key not in logs and token not in logs


def test_a_taken_status_port_moves_the_page_to_the_next_free_one(cluster: LocalCluster) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        node = cluster.add_node("busy", args=("--status-port", str(port)))
        log = cluster.root / "busy.log"
        deadline = time.monotonic() + 60
        while "status page: http://127.0.0.1:" not in log.read_text(errors="replace"):
            assert node.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        text = log.read_text(errors="replace")
        moved = int(text.split("status page: http://127.0.0.1:")[1].split("/")[0])
        assert moved != port and f"port {port} is taken, using {moved}" in text
        assert httpx.get(f"http://127.0.0.1:{moved}/status.json", timeout=5).json()["node_id"]


def _status(url: str) -> dict:
    deadline = time.monotonic() + 30
    while True:
        try:
            return dict(httpx.get(f"{url}/status.json", timeout=1).json())
        except httpx.HTTPError:
            assert time.monotonic() < deadline, "status page never came up"
            time.sleep(0.2)


def test_a_paused_node_takes_nothing_until_resumed_and_keeps_its_own_tally(
    cluster: LocalCluster, client: Client
) -> None:
    import subprocess
    import sys

    def node_cli(*args: str) -> None:
        out = subprocess.run(
            [sys.executable, "-m", "gridx.node", *args, "--state-dir", str(cluster.root / "pi")],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr

    node_cli("pause")  # before it even starts: kept in its state folder
    port = free_port()
    cluster.add_node("pi", args=("--status-port", str(port)))
    url = f"http://127.0.0.1:{port}"
    while "paused" not in str(_status(url)["resting"]):
        time.sleep(0.2)
    client.wait_for_nodes(1)
    job_id = client.submit(
        b"import torch\ntorch.save({'w': torch.zeros(1)}, 'model.pth')\n",
        {"rounds": 1, "shards": 1},
    )
    time.sleep(3)  # several of its loops: a paused node never asks for work
    assert client.job(job_id)["job"]["status"] == "queued"
    assert "resting: paused by its owner" in httpx.get(f"{url}/").text
    node_cli("resume")
    assert client.wait_done(job_id)["job"]["status"] == "succeeded"
    status = _status(url)
    assert status["resting"] is None and status["credits"]["tasks"] == 1
    assert "This machine has given 1 task(s)" in httpx.get(f"{url}/").text

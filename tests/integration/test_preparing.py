"""Preparing a task's environment is a phase people can see, and the node's own torch is used.

A package index of our own (PEP 658 metadata, like PyPI) serves a 4 MB wheel and holds its
download half-way until the test has seen the progress on the coordinator's API and on the
node's status page: nothing here depends on how fast the machine is.
"""

from __future__ import annotations

import os
import re
import time

import httpx

from gridx.coordinator.cli.cluster import LocalCluster, free_port
from tests.integration.conftest import Client
from tests.support.package_index import Index

TRAIN = b"""
import os, torch, gridx_probe
assert torch.__file__.startswith(os.environ["GRIDX_NODE_SITE"]), torch.__file__
torch.save({"w": torch.zeros(1) + gridx_probe.VALUE}, os.environ["GRIDX_OUTPUT"])
"""


def _site() -> str:
    import torch

    return str(torch.__file__).rsplit("/torch/", 1)[0]


def test_preparing_shows_its_download_and_the_node_keeps_its_own_torch(
    cluster: LocalCluster, client: Client, index: Index
) -> None:
    status_port = free_port()
    cluster.add_node(
        "prep",
        extra_env={"PIP_INDEX_URL": index.url, "PIP_NO_CACHE_DIR": "1"},
        args=("--status-port", str(status_port)),
    )
    train = TRAIN.replace(b'os.environ["GRIDX_NODE_SITE"]', repr(_site()).encode())
    job_id = client.submit(train, {"rounds": 1, "shards": 1}, requirements=b"torch\ngridx-probe\n")
    seen = re.compile(r"downloading 1 package \(gridx-probe 1\.0\): [\d.]+ MB / 4\.\d MB")
    deadline = time.monotonic() + 180
    while True:  # the wheel is half-way: the API says so, and torch is not in the list
        task = client.job(job_id)["tasks"][0]
        if task["phase"] == "preparing" and seen.fullmatch(task["phase_detail"] or ""):
            break
        assert time.monotonic() < deadline, task
        time.sleep(0.2)
    page = httpx.get(f"http://127.0.0.1:{status_port}/status.json", timeout=5).json()
    assert page["current_task"]["phase"] == "preparing", page
    assert seen.fullmatch(page["current_task"]["phase_detail"]), page
    index.go.set()
    body = client.wait_done(job_id, 180)
    assert body["job"]["status"] == "succeeded", body["tasks"]
    assert body["tasks"][0]["phase"] is None  # only a leased task has one
    recent = httpx.get(f"http://127.0.0.1:{status_port}/status.json", timeout=5).json()["recent"]
    assert recent[0]["result"] == "succeeded" and recent[0]["prepare_seconds"] > 0, recent
    log = (cluster.root / "prep.log").read_text()
    assert "preparing (downloading 1 package (gridx-probe 1.0)" in log, log
    # the host only downloaded the wheel; it was unpacked inside the task's sandbox, and the
    # environment is the node's again (tasks see it read-only)
    assert "preparing (installing 1 package (gridx-probe 1.0) in the sandbox)" in log, log
    probe = next((cluster.root / "prep" / "envs").glob("*/lib/python*/site-packages/gridx_probe"))
    assert probe.stat().st_uid == os.getuid()

    # a job that asks for a torch no node has is told why at submit, and nothing is downloaded
    files = {"train_py": ("train.py", train), "requirements": ("r.txt", b"torch==2.5.0\n")}
    clash = client.http.post("/jobs/", files=files, data={"config": '{"rounds": 1}'})
    assert clash.status_code == 422 and clash.json()["field"] == "requirements", clash.text
    assert "the nodes provide torch" in clash.json()["message"], clash.text

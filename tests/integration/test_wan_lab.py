"""A real node on a shaped link in its own network namespace (`tests/support/wan_lab.py`): the
link is cut, connections and all, in the middle of the model's download and again in the middle
of the result's upload; each transfer resumes where it stopped, the task succeeds, and the bytes
on the wire stay close to one copy of each file."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import torch

from gridx.coordinator.cli.cluster import LocalCluster
from tests.support.wan_lab import Profile, WanLab

MODEL_BYTES = 6_000_000
TRAIN = b"""
import os, torch
model = torch.load(os.environ["GRIDX_INIT_MODEL"], weights_only=True)
torch.save({k: v + 0.01 for k, v in model.items()}, os.environ["GRIDX_OUTPUT"])
"""


def _until(what: str, check: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_transfers_resume_after_cuts_of_a_real_link(tmp_path: Path) -> None:
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(MODEL_BYTES // 4)}, buf)
    model = buf.getvalue()
    with WanLab() as lab:
        lab.add("home-1", Profile(down_mbit=8, up_mbit=8))
        cluster = LocalCluster(
            tmp_path / "cluster", coordinator_env={"GRIDX_HEARTBEAT_S": "0.5"}, host=lab.host
        )
        cluster.start()
        try:
            http = httpx.Client(
                base_url=cluster.url,
                headers={"Authorization": f"Bearer {cluster.api_key}"},
                timeout=30,
            )
            r = http.post(
                "/jobs/",
                files={"train_py": ("train.py", TRAIN), "init_model": ("start.pth", model)},
                data={"config": json.dumps({"rounds": 1, "shards": 1, "warm": False})},
            )
            assert r.status_code == 201, r.text
            job_id = r.json()["job"]["id"]
            cluster.add_node("home-1", launcher=(*lab.argv("home-1"), sys.executable))
            # the model comes down at 1 MB/s: cut the link a third of the way in
            _until("the download", lambda: lab.traffic("home-1")[0] > MODEL_BYTES // 3)
            lab.cut("home-1", 4).join()
            # the result goes up at 1 MB/s: cut once the coordinator holds a third of it
            spool = cluster.data_dir / "blobs" / "tmp"
            _until(
                "the upload",
                lambda: any(p.stat().st_size > MODEL_BYTES // 3 for p in spool.glob("part-*")),
            )
            lab.cut("home-1", 4).join()

            def done() -> bool:
                status = http.get(f"/jobs/{job_id}").json()["job"]["status"]
                return status in ("succeeded", "failed", "cancelled")

            _until("the job", done)
            body = http.get(f"/jobs/{job_id}").json()
            assert body["job"]["status"] == "succeeded", (body["job"], cluster.node_log("home-1"))
            down, up = lab.traffic("home-1")
            log = cluster.node_log("home-1", 200)
        finally:
            cluster.stop()
    assert "download init_model.pth failed" in log and "upload failed" in log, log
    print(f"over the wire: {down} bytes down, {up} up, for two files of {len(model)}")
    overhead = 1_000_000  # TCP/IP headers, HTTP, heartbeats and polls
    assert MODEL_BYTES < down < 1.2 * MODEL_BYTES + overhead, down  # resumed, not restarted
    assert MODEL_BYTES < up < 1.2 * MODEL_BYTES + overhead, up
    assert MODEL_BYTES < body["tasks"][0]["uploaded_bytes"] < MODEL_BYTES + 10_000


def test_a_profile_caps_the_cpu_of_what_runs_behind_its_link() -> None:
    busy = "import time, os\nend = time.monotonic() + 1.5\nwhile time.monotonic() < end: pass\n"
    busy += "print(os.times().user + os.times().system)"
    with WanLab() as lab:
        lab.add("pi", Profile(down_mbit=20, up_mbit=4, cpus=0.25))
        out = subprocess.run(
            [*lab.argv("pi"), sys.executable, "-c", busy], capture_output=True, text=True
        )
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) < 0.6  # a quarter of a core for 1.5 s, not a whole one

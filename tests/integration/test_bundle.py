"""The volunteer's path: build the worker bundle, unpack it, set up a clean venv, run a task."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

from gridx.coordinator.cli.cluster import LocalCluster
from tests.integration.conftest import REPO, Client

# A script that needs nothing but the standard library: the bundle's venv has no torch.
NO_TORCH = textwrap.dedent("""
    import json, struct
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    header += b" " * (-len(header) % 8)
    with open("model.safetensors", "wb") as fh:
        fh.write(struct.pack("<Q", len(header)) + header + struct.pack("<2f", 1.0, 2.0))
""").encode()


def test_bundle_sets_up_a_node_that_completes_a_task(
    cluster: LocalCluster, client: Client, tmp_path: Path
) -> None:
    out = subprocess.run(
        [str(REPO / "infra" / "bundle" / "build_bundle.sh"), str(tmp_path / "dist")],
        capture_output=True,
        text=True,
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
        check=True,
    )
    bundle = Path(out.stdout.strip().splitlines()[-1])
    with tarfile.open(bundle) as tar:
        tar.extractall(tmp_path / "home", filter="data")
    home = tmp_path / "home" / "gridx-worker"
    assert {p.name for p in home.iterdir()} >= {
        "setup_worker.sh",
        "start_worker.sh",
        "gridx-node.service",
        "WORKER_SETUP.md",
    }
    setup = subprocess.run(
        [
            "./setup_worker.sh",
            "--coordinator",
            cluster.url,
            "--enrolment-key",
            cluster.api_key,
            "--name",
            "bundled",
        ],
        cwd=home,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert setup.returncode == 0, setup.stdout + setup.stderr
    assert (home / "worker_config.env").stat().st_mode & 0o077 == 0  # the key is private
    venv_has_torch = subprocess.run(
        [str(home / ".venv/bin/python"), "-c", "import torch"], capture_output=True
    )
    assert venv_has_torch.returncode != 0  # the node installs without torch
    job_id = client.submit(NO_TORCH, {"rounds": 1, "shards": 1})
    node = subprocess.run(
        ["./start_worker.sh", "--once", "--executor", "process"],
        cwd=home,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert node.returncode == 0, node.stdout + node.stderr
    body = client.wait_done(job_id, 60)
    assert body["job"]["status"] == "succeeded", body
    nodes = client.http.get("/nodes").json()
    assert [n["name"] for n in nodes] == ["bundled"]

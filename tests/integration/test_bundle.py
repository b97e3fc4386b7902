"""The volunteer's path: build the worker bundle, unpack it, set up a clean venv (with the
CPU-only torch, there being no GPU here), run a task that names torch without downloading it."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from gridx.coordinator.cli.cluster import LocalCluster
from tests.integration.conftest import REPO, Client

# A job that names torch in its requirements: the node's own torch serves it.
TORCH_JOB = b"import os, torch\ntorch.save({'w': torch.ones(2)}, os.environ['GRIDX_OUTPUT'])\n"


@pytest.mark.timeout(600)
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
        # no internet here: PyTorch's CPU index is an empty local one, and pip finds the same
        # CPU build in this machine's wheel folder (its configured find-links)
        env={**os.environ, "GRIDX_TORCH_CPU_INDEX": (tmp_path / "no-index").as_uri()},
    )
    assert setup.returncode == 0, setup.stdout + setup.stderr
    assert (home / "worker_config.env").stat().st_mode & 0o077 == 0  # the key is private
    assert "installing torch 2.13.0 (CPU-only build, from " in setup.stdout, setup.stdout
    assert len(setup.stdout.splitlines()) <= 3, setup.stdout  # quiet: no pip chatter
    cuda = subprocess.run(
        [str(home / ".venv/bin/python"), "-c", "import torch; print(torch.version.cuda)"],
        capture_output=True,
        text=True,
    )
    assert cuda.stdout.strip() == "None", cuda  # the CPU build: no multi-GB CUDA libraries
    installed = subprocess.run(
        [str(home / ".venv/bin/python"), "-m", "pip", "list", "--format=freeze"],
        capture_output=True, text=True, check=True,
    ).stdout.lower()  # fmt: skip
    assert "torch==2.13.0" in installed and "nvidia-" not in installed and "triton" not in installed
    job_id = client.submit(TORCH_JOB, {"rounds": 1, "shards": 1}, requirements=b"torch\n")
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
    assert "preparing (downloading" not in node.stderr + node.stdout  # its torch: the node's
    nodes = client.http.get("/nodes").json()
    assert [n["name"] for n in nodes] == ["bundled"]
    # the bundle's ./gridx-node acts on the node it set up (its ./state), not on ~/.gridx-node
    paused = subprocess.run(["./gridx-node", "pause"], cwd=home, capture_output=True, text=True)
    assert paused.returncode == 0 and (home / "state" / "paused").exists(), paused.stderr
    assert subprocess.run(["./gridx-node", "resume"], cwd=home).returncode == 0
    assert not (home / "state" / "paused").exists()
    # `gridx` is the users' and admins' tool: a node-only install says so, no traceback
    gridx = subprocess.run(
        [str(home / ".venv/bin/gridx"), "--help"], capture_output=True, text=True
    )
    assert gridx.returncode == 1 and "this install is a node only" in gridx.stderr, gridx.stderr
    assert "Traceback" not in gridx.stderr
    unit = (home / "gridx-node.service").read_text()  # written for this folder, not /opt/gridx
    assert f"WorkingDirectory={home}" in unit and "/opt/gridx" not in unit, unit

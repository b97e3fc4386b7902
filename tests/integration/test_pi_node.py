"""A Raspberry Pi node for real: the worker bundle installed on Debian 12 arm64 (the base of
Raspberry Pi OS 64-bit) by its own `setup_worker.sh`, then the machine booted as an arm64 VM
against the coordinator here: its sandbox self-test `strong`, one digits job trained to the
end, and the install's size and the node's memory printed (`tests/support/arm64_vm.py`)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from gridx.coordinator.cli.cluster import LocalCluster
from tests.integration.conftest import DIGITS_JOB, REPO, Client, gridx
from tests.support.arm64_vm import TORCH, Arm64Machine, emulation_ready, torch_index
from tests.support.package_index import served_folder

INSTALL_GOAL_MB = 1200


def _setup(machine: Arm64Machine, cluster: LocalCluster, tmp_path: Path) -> str:
    """The bundle installed in the rootfs as a Pi owner does it; its output."""
    built = subprocess.run(
        [str(REPO / "infra" / "bundle" / "build_bundle.sh"), str(tmp_path / "dist")],
        capture_output=True, text=True, check=True,
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    (machine.root / "opt" / "gridx-worker.tar.gz").write_bytes(
        Path(built.stdout.strip().splitlines()[-1]).read_bytes()
    )
    # PyTorch's CPU index, which CI cannot reach, stood in for by one served from here
    port = cluster.url.rsplit(":", 1)[1]
    with served_folder(torch_index().parent) as url:
        setup = machine.chroot(
            "cd /opt && tar xzf gridx-worker.tar.gz && cd gridx-worker && "
            f"GRIDX_TORCH_CPU_INDEX={url}/simple GRIDX_TORCH_VERSION={TORCH} ./setup_worker.sh "
            f"--coordinator http://10.0.2.2:{port} --enrolment-key {cluster.api_key} --name pi"
        )
    assert setup.returncode == 0, setup.stdout[-3000:] + setup.stderr[-3000:]
    return setup.stdout


@pytest.mark.timeout(3000)
def test_a_pi_installs_the_bundle_selftests_strong_and_trains_a_job(
    cluster: LocalCluster, client: Client, tmp_path: Path
) -> None:
    why = emulation_ready()
    assert why is None, why  # infra/test_env.sh prepares it; a missing part is a failure
    machine = Arm64Machine(tmp_path / "pi")
    try:
        out = _setup(machine, cluster, tmp_path)
        assert f"installing torch {TORCH} (CPU-only build, from http://127.0.0.1:" in out, out
        listed = machine.chroot("/opt/gridx-worker/.venv/bin/python -m pip list --format=freeze")
        packages = listed.stdout.lower()
        assert f"torch=={TORCH}" in packages, packages
        assert "nvidia-" not in packages and "triton" not in packages, packages
        size = machine.chroot("du -sm /opt/gridx-worker/.venv").stdout.split()[0]
        print(f"arm64 install: {size} MB on disk with torch {TORCH} (goal {INSTALL_GOAL_MB})")
        assert int(size) < INSTALL_GOAL_MB

        machine.boot()
        machine.wait_console("GRIDX-VM up: aarch64", 300)
        client.wait_for_nodes(1, 900)
        node = client.http.get("/nodes").json()[0]
        assert node["capabilities"]["arch"] == "aarch64", node
        assert node["capabilities"]["sandbox"] == "strong", node
        task_mb, machine_mb = (node["capabilities"][k] for k in ("memory_mb", "machine_memory_mb"))
        print(f"arm64 node: a task may use {task_mb} MB of the machine's {machine_mb} MB")
        assert 0 < task_mb < machine_mb <= 2048, node  # what was free, less the node's reserve

        submitted = gridx(cluster, *DIGITS_JOB, "--rounds", "2", "--shards", "2", "--json")
        assert submitted.returncode == 0, submitted.stderr
        job_id = re.search(r'"id":\s*"([^"]+)"', submitted.stdout).group(1)  # type: ignore[union-attr]
        body = client.wait_done(job_id, 1500)
        assert body["job"]["status"] == "succeeded", body["job"]
        rss = re.findall(r"GRIDX-RSS node=(\d+) runners=([\d ]*)", machine.read_console())
        node_mb = max(int(n) for n, _ in rss) // 1024
        runner_mb = max((int(r) for _, rs in rss for r in rs.split()), default=0) // 1024
        print(f"arm64 node: {node_mb} MB RSS at most; runner or task: {runner_mb} MB at most")
        assert node_mb > 0 and runner_mb > 0, rss
    except BaseException:
        print(machine.read_console()[-8000:])
        raise
    finally:
        machine.stop()

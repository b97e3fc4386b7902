"""HTTPS end to end: the coordinator serves TLS, nodes verify it against the CA they are given."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from gridx.coordinator.cli.cluster import LocalCluster
from tests.integration.conftest import Client
from tests.tlscerts import make_ca, make_server_cert


def test_a_job_runs_over_tls_and_a_node_with_the_wrong_ca_refuses(tmp_path: Path) -> None:
    ca, ca_key, ca_cert = make_ca(tmp_path, "gridx-test-ca")
    cert, key = make_server_cert(tmp_path, ca_key, ca_cert)
    wrong_ca, _, _ = make_ca(tmp_path, "someone-else")
    cluster = LocalCluster(
        tmp_path / "cluster", coordinator_env={"GRIDX_LEASE_S": "5"}, tls=(cert, key, ca)
    )
    cluster.start()
    try:
        assert cluster.url.startswith("https://")
        client = Client(cluster)
        cluster.add_node("trusting")
        job_id = client.submit(
            b"import torch\ntorch.save({'w': torch.ones(2)}, 'model.pth')\n",
            {"rounds": 2, "shards": 1},
        )
        assert client.wait_done(job_id, 120)["job"]["status"] == "succeeded"
        # a node told to trust another CA will not talk to this coordinator
        doubting = cluster.add_node("doubting", args=("--ca-file", str(wrong_ca)))
        assert doubting.wait(timeout=120) != 0
        log = (cluster.root / "doubting.log").read_text()
        assert "CERTIFICATE_VERIFY_FAILED" in log or "certificate verify failed" in log
        # the CLI verifies too
        env = {
            "GRIDX_URL": cluster.url,
            "GRIDX_API_KEY": cluster.api_key,
            "GRIDX_CA_FILE": str(ca),
            "PATH": "/usr/bin:/bin",
        }
        ok = subprocess.run(
            [sys.executable, "-m", "gridx.coordinator.cli", "job", "list"],
            capture_output=True,
            text=True,
            env=env,
        )
        assert ok.returncode == 0, ok.stderr
        env["GRIDX_CA_FILE"] = str(wrong_ca)
        bad = subprocess.run(
            [sys.executable, "-m", "gridx.coordinator.cli", "job", "list"],
            capture_output=True,
            text=True,
            env=env,
        )
        assert bad.returncode == 1 and "certificate" in bad.stderr.lower()
    finally:
        cluster.stop()

"""Real processes: a coordinator on 127.0.0.1 and `gridx-node` daemons, started per test."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gridx.coordinator.cli.cluster import LocalCluster
from tests.support.package_index import index  # noqa: F401 (a fixture for the tests here)
from tests.support.servers import PostgresServer, S3Server

REPO = Path(__file__).resolve().parents[2]
FAST = {"GRIDX_LEASE_S": "3", "GRIDX_HEARTBEAT_S": "0.5"}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """A running coordinator with short leases; nodes are added by each test."""
    c = LocalCluster(tmp_path / "cluster", coordinator_env=FAST)
    c.start()
    try:
        yield c
    finally:
        c.stop()


class Client:
    """Plain HTTP calls with the cluster admin's key (to one of its replicas)."""

    def __init__(self, cluster: LocalCluster, replica: int = 0) -> None:
        self.http = httpx.Client(
            base_url=cluster.urls[replica],
            headers={"Authorization": f"Bearer {cluster.api_key}"},
            timeout=30,
            verify=cluster.verify,
        )

    def submit(
        self,
        train: bytes,
        config: dict[str, Any],
        data: tuple[str, bytes] | None = None,
        requirements: bytes | None = None,
    ) -> str:
        import json

        files: dict[str, tuple[str, bytes]] = {"train_py": ("train.py", train)}
        if data:
            files["data"] = data
        if requirements:
            files["requirements"] = ("requirements.txt", requirements)
        r = self.http.post("/jobs/", files=files, data={"config": json.dumps(config)})
        assert r.status_code == 201, r.text
        return str(r.json()["job"]["id"])

    def job(self, job_id: str) -> dict[str, Any]:
        r = self.http.get(f"/jobs/{job_id}")
        assert r.status_code == 200, r.text
        return dict(r.json())

    def wait(
        self, job_id: str, pred: Callable[[dict[str, Any]], bool], timeout: float = 120
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            body = self.job(job_id)
            if pred(body):
                return body
            time.sleep(0.1)
        raise AssertionError(f"timed out; last state: {body['job']} {body['tasks']}")

    def wait_for_nodes(self, n: int, timeout: float = 180) -> None:
        """Until `n` nodes registered: a node first runs its sandbox self-test, which for a
        docker node starts containers, slow on a loaded machine (no test depends on its speed)."""
        deadline = time.monotonic() + timeout
        while len(self.http.get("/nodes").json()) < n:
            assert time.monotonic() < deadline, "nodes did not register"
            time.sleep(0.1)

    def wait_done(self, job_id: str, timeout: float = 120) -> dict[str, Any]:
        return self.wait(
            job_id, lambda b: b["job"]["status"] in ("succeeded", "failed", "cancelled"), timeout
        )


DIGITS = REPO / "examples" / "digits"
DIGITS_JOB = (
    "job",
    "submit",
    str(DIGITS / "train.py"),
    "--requirements",
    str(DIGITS / "requirements.txt"),
    "--data",
    str(DIGITS / "data" / "train.csv"),
    "--evaluate",
    str(DIGITS / "evaluate.py"),
    "--test-data",
    str(DIGITS / "data" / "test.csv"),
)
"""`gridx job submit` of the digits example with its held-out evaluation (add the settings)."""


def digits_job(cluster: LocalCluster, out: Path, *settings: str) -> dict[str, Any]:
    """Run the digits job with `settings` through the CLI to its end (`--wait --json`), its
    model saved in `out`; the CLI's JSON (job, rounds, model), the job succeeded."""
    done = gridx(cluster, *DIGITS_JOB, *settings, "--wait", "--json", "--out", str(out))
    assert done.returncode == 0, done.stderr + done.stdout
    result: dict[str, Any] = json.loads(done.stdout)
    assert result["job"]["status"] == "succeeded", result["job"]
    return result


def digits_accuracy(model: str | Path) -> float:
    """The digits example's own evaluate.py on a model file: its accuracy."""
    evaluated = subprocess.run(
        [sys.executable, str(DIGITS / "evaluate.py"), str(model)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(json.loads(evaluated.stdout)["accuracy"])


def gridx(
    cluster: LocalCluster, *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """The `gridx` CLI as a user runs it, pointed at `cluster` with its admin's key."""
    env = {**os.environ, "GRIDX_URL": cluster.url, "GRIDX_API_KEY": cluster.api_key}
    return subprocess.run(
        [sys.executable, "-m", "gridx.coordinator.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )


@pytest.fixture
def client(cluster: LocalCluster) -> Client:
    return Client(cluster)


def replica_pair(
    root: Path, env: dict[str, str]
) -> contextlib.AbstractContextManager[LocalCluster]:
    """Two coordinator replicas on the shared database and bucket `env` names."""
    return LocalCluster(
        root, coordinator_env={**FAST, "GRIDX_AGGREGATION_LEASE_S": "2", **env}, replicas=2
    )


@pytest.fixture
def replicas(
    tmp_path: Path, pg_server: PostgresServer, s3_server: S3Server
) -> Iterator[LocalCluster]:
    env = {
        "GRIDX_DATABASE_URL": pg_server.new_database(),
        "GRIDX_STORAGE_URL": s3_server.new_bucket_url(),
        "GRIDX_S3_ENDPOINT": s3_server.endpoint,
    }
    with replica_pair(tmp_path / "cluster", env) as cluster:
        yield cluster

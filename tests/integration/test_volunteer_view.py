"""What a volunteer's node shows the fleet, and what its owner reads in its log: a paused node is
`resting` with its reason, the jobs it holds up say so, and a coordinator that is down is one
warning, not one a second."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from gridx.coordinator.cli.cluster import LocalCluster
from tests.integration.conftest import FAST, Client, gridx

TRAIN = b"import os, torch\ntorch.save({'w': torch.zeros(1)}, os.environ['GRIDX_OUTPUT'])\n"


def _node_cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "gridx.node", *args], check=True, capture_output=True)


def _until(what: str, check: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_a_paused_node_rests_and_the_job_it_holds_up_says_why(
    cluster: LocalCluster, client: Client, tmp_path: Path
) -> None:
    job_id = client.submit(TRAIN, {"rounds": 1, "shards": 1, "init_step": False})
    status = gridx(cluster, "job", "status", job_id).stdout
    assert "waiting: no node is online: start one (`gridx-node start`)" in status, status
    state = cluster.root / "node-1"
    _node_cli("pause", "--state-dir", str(state))
    cluster.add_node("node-1")

    def listed() -> dict[str, str]:
        return json.loads(gridx(cluster, "node", "list", "--json").stdout)

    _until("the node rests", lambda: [n["status"] for n in listed()] == ["resting"])
    assert listed()[0]["resting"] == "paused by its owner (gridx-node resume)"
    table = gridx(cluster, "node", "list").stdout
    assert "resting" in table and "paused by its owner" in table, table
    waits = "waiting: the 1 node(s) able to run it take no task now (node-1: paused by its owner"
    _until("the job says why", lambda: waits in gridx(cluster, "job", "status", job_id).stdout)
    _node_cli("resume", "--state-dir", str(state))
    assert client.wait_done(job_id, 60)["job"]["status"] == "succeeded"
    assert [n["status"] for n in listed()] == ["online"] and listed()[0]["resting"] == ""
    assert "waiting:" not in gridx(cluster, "job", "status", job_id).stdout


def test_a_coordinator_that_is_down_is_one_warning_then_one_a_minute(
    cluster: LocalCluster, client: Client
) -> None:
    cluster.add_node("node-1")
    client.wait_for_nodes(1)
    cluster.kill_coordinator()
    time.sleep(8)  # ~8 polls and 2 heartbeats fail
    cluster.start_coordinator()
    log = cluster.root / "node-1.log"
    _until("the node says it is back", lambda: "reachable again after" in log.read_text())
    text = log.read_text()
    assert text.count("coordinator unreachable") == 1, text
    assert "coordinator still unreachable" not in text  # (once a minute)
    job_id = client.submit(TRAIN, {"rounds": 1, "shards": 1, "init_step": False})
    assert client.wait_done(job_id, 60)["job"]["status"] == "succeeded"


def test_the_access_log_leaves_out_the_nodes_routine_calls(tmp_path: Path) -> None:
    with LocalCluster(tmp_path / "c", coordinator_env=FAST, log_level="info") as cluster:
        cluster.add_node("node-1")
        client = Client(cluster)
        client.wait_for_nodes(1)
        time.sleep(2)  # heartbeats every 0.5 s, and a long-poll
        assert client.http.get("/jobs/").status_code == 200
        assert client.http.get("/jobs/nope").status_code == 404
    log = (tmp_path / "c" / "coordinator.log").read_text()
    assert '"GET /jobs/ HTTP/1.1" 200' in log and '"GET /jobs/nope HTTP/1.1" 404' in log, log
    assert "/agent/" not in log, log  # (the register, heartbeats and polls: all 2xx)


def test_a_tasks_output_does_not_name_the_volunteers_folders(
    cluster: LocalCluster, client: Client
) -> None:
    cluster.add_node("node-1")
    script = b"import os, sys\nprint('cwd', os.getcwd(), file=sys.stderr)\nraise ValueError('x')\n"
    job_id = client.submit(
        script, {"rounds": 1, "shards": 1, "init_step": False, "max_attempts": 1}
    )
    body = client.wait_done(job_id, 60)
    assert body["job"]["status"] == "failed"
    tail = body["tasks"][0]["history"][0]["stderr_tail"]
    state = str((cluster.root / "node-1").resolve())
    assert "ValueError: x" in tail and "cwd <node>/tasks/" in tail, tail
    assert state not in tail and str(cluster.root) not in tail, tail

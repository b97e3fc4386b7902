"""Structured logs: with `--log-format json` every coordinator record is one JSON object, and
the records of a job's life carry its job, round, task and node ids."""

from __future__ import annotations

import json
import re
from pathlib import Path

from gridx.coordinator.cli.cluster import LocalCluster
from tests.integration.conftest import FAST, Client

TRAIN = b"import os, torch\ntorch.save({'w': torch.ones(2)}, os.environ['GRIDX_OUTPUT'])\n"


def test_json_logs_carry_the_ids_of_a_jobs_life(tmp_path: Path) -> None:
    env = {**FAST, "GRIDX_LOG_FORMAT": "json"}
    with LocalCluster(tmp_path / "c", coordinator_env=env, log_level="info") as cluster:
        client = Client(cluster)
        cluster.add_node("node")
        job_id = client.submit(TRAIN, {"rounds": 1, "shards": 1})
        body = client.wait_done(job_id, 90)
        assert body["job"]["status"] == "succeeded", body
    task = body["tasks"][0]
    lines = (cluster.root / "coordinator.log").read_text().splitlines()
    records = [json.loads(line) for line in lines if not line.startswith("Grid-X coordinator on")]
    assert records and all({"ts", "level", "logger", "msg"} <= set(r) for r in records)
    about = [r for r in records if r.get("job") == job_id]
    ids = {"job": job_id, "round": 0, "task": task["id"], "node": task["node_id"]}
    for msg in ("task leased", "task succeeded"):
        found = [r for r in about if r["msg"].startswith(msg)]
        assert found and all(r.items() >= ids.items() for r in found), (msg, about)
    assert any(r["msg"] == "aggregating" and r["round"] == 0 for r in about)
    assert any(r["msg"].startswith("round done, job succeeded") for r in about)
    text = "\n".join(lines)
    assert cluster.api_key not in text


def test_no_secret_reaches_any_log_line_of_a_whole_job(tmp_path: Path) -> None:
    with LocalCluster(tmp_path / "c", coordinator_env=FAST, log_level="debug") as cluster:
        client = Client(cluster)
        cluster.add_node("node", args=("--verbose",))
        job_id = client.submit(TRAIN, {"rounds": 2, "shards": 1})
        body = client.wait_done(job_id, 90)
        assert body["job"]["status"] == "succeeded", body
        node_token = json.loads((cluster.root / "node" / "identity.json").read_text())["node_token"]
    text = "\n".join((cluster.root / name).read_text() for name in ("coordinator.log", "node.log"))
    assert "sig=***" in text  # the access log printed the signed links, redacted
    assert re.findall(r"(?:sig|lease|token|key)=(?!\*\*\*)[^&\s]+", text) == []
    for secret in (cluster.api_key, node_token):
        assert secret not in text

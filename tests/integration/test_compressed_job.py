"""Compressed updates on real nodes: the digits job trains to the same accuracy with its updates
sent as int8 or as the top 5% of the changes, the bytes sent per round shrink accordingly, and
top-k's residual stays on the node between the job's tasks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gridx.coordinator.cli.cluster import LocalCluster
from tests.integration.conftest import DIGITS, DIGITS_JOB, gridx


def _model_bytes(path: Path) -> int:
    state = torch.load(path, weights_only=True)
    return sum(v.numel() * v.element_size() for v in state.values())


@pytest.mark.parametrize(("spec", "most"), [("int8", 0.27), ("topk:0.05", 0.12)])
def test_a_compressed_digits_job_learns_and_sends_less(
    cluster: LocalCluster, tmp_path: Path, spec: str, most: float
) -> None:
    cluster.add_node("node-1")
    cluster.add_node("node-2")
    out = gridx(
        cluster,
        *DIGITS_JOB,
        "--rounds",
        "3",
        "--shards",
        "2",
        "--epochs",
        "2",
        "--compress",
        spec,
        "--wait",
        "--json",
        "--out",
        str(tmp_path),
    )
    assert out.returncode == 0, out.stderr + out.stdout
    result = json.loads(out.stdout)
    job_id = result["job"]["id"]
    assert result["job"]["status"] == "succeeded"
    rounds = result["rounds"]
    assert rounds[-1]["held_out"]["accuracy"] > 0.85, rounds[-1]
    evaluated = subprocess.run(
        [sys.executable, str(DIGITS / "evaluate.py"), result["model"]],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(evaluated.stdout)["accuracy"] > 0.85
    # each training round: two updates, each at most `most` of the model's bytes
    full = _model_bytes(Path(result["model"]))
    for rnd in rounds[1:]:
        assert 0 < rnd["uploaded_bytes"] <= 2 * (most * full + 2000), (rnd, full)
    status = gridx(cluster, "job", "status", job_id)
    assert f"uploaded by the nodes ({spec} updates)" in status.stdout, status.stdout
    residuals = sorted(cluster.root.glob("node-*/residuals/*.pt"))
    if spec.startswith("topk"):
        assert residuals, "top-k keeps what it did not send on the node"
        kept = torch.load(residuals[0], weights_only=True)
        assert set(kept) == {"0.weight", "0.bias", "2.weight", "2.bias"}
        assert float(sum(v.abs().sum() for v in kept.values())) > 0
    else:
        assert not residuals

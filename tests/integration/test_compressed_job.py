"""Compressed updates on real nodes: the digits job trains to the same accuracy with its updates
sent as int8 or as the top 5% of the changes, the bytes sent per round shrink accordingly, and
top-k's residual stays on the node between the job's tasks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gridx.coordinator.cli.cluster import LocalCluster
from tests.integration.conftest import digits_accuracy, digits_job, gridx


def _model_bytes(path: Path) -> int:
    state = torch.load(path, weights_only=True)
    return sum(v.numel() * v.element_size() for v in state.values())


@pytest.mark.parametrize(("spec", "most"), [("int8", 0.27), ("topk:0.05", 0.12)])
def test_a_compressed_digits_job_learns_and_sends_less(
    cluster: LocalCluster, tmp_path: Path, spec: str, most: float
) -> None:
    cluster.add_node("node-1")
    cluster.add_node("node-2")
    settings = ("--rounds", "3", "--shards", "2", "--epochs", "2", "--compress", spec)
    result = digits_job(cluster, tmp_path, *settings)
    job_id = result["job"]["id"]
    rounds = result["rounds"]
    assert rounds[-1]["held_out"]["accuracy"] > 0.85, rounds[-1]
    assert digits_accuracy(result["model"]) > 0.85
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

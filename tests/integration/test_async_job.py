"""An asynchronous (FedBuff) job on real processes: three nodes, the digits example, the CLI."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from gridx.coordinator.cli.cluster import LocalCluster
from tests.integration.conftest import digits_job, gridx


def test_an_async_digits_job_steps_every_k_updates_and_learns(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    for i in range(3):
        cluster.add_node(f"node-{i + 1}")
    settings = ("--mode", "async", "--shards", "4", "--buffer", "2", "--rounds", "6")
    result = digits_job(cluster, tmp_path, *settings, "--eval-every", "3")
    rounds = result["rounds"]
    assert [(r["index"], r["status"]) for r in rounds] == [(i, "done") for i in range(-1, 6)]
    steps = rounds[1:]
    # every step merged exactly `buffer` updates; with 4 shards in flight and a step every 2,
    # some of them were trained on an older model
    assert all(len(r["staleness"]) == 2 for r in steps), steps
    assert any(s > 0 for r in steps for s in r["staleness"]), steps
    for prev, cur in itertools.pairwise(steps):
        assert cur["input_model_sha256"] == prev["output_model_sha256"]
    # held-out evaluation every 3 steps (and the last)
    assert [r["index"] for r in steps if r["held_out"]] == [2, 5]
    assert steps[-1]["held_out"]["accuracy"] > 0.85, steps[-1]["held_out"]
    assert (result["job"]["tasks_done"], result["job"]["tasks_total"]) == (12, 12)
    # the training still running when the last step merged was cancelled, none is left over
    detail = json.loads(gridx(cluster, "job", "status", result["job"]["id"], "--json").stdout)
    assert not [t for t in detail["tasks"] if t["status"] in ("queued", "leased")]
    status = gridx(cluster, "job", "status", result["job"]["id"]).stdout
    assert "mode: async, a server step every 2 updates" in status and "updates/s" in status
    assert "step 6: done" in status and "staleness:" in status

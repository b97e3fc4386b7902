"""`gridx demo`: a real federated job on this machine, next to a centrally trained baseline."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

from gridx.coordinator.cli.client import ApiClient
from gridx.coordinator.cli.cluster import LocalCluster
from gridx.coordinator.cli.progress import last_failure, watch
from gridx.schemas.jobs import JobConfig

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "digits"


def _evaluate(example: Path, model: Path) -> float:
    out = subprocess.run(
        [
            sys.executable,
            str(example / "evaluate.py"),
            str(model),
            str(example / "data" / "test.csv"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(json.loads(out.stdout.strip().splitlines()[-1])["accuracy"])


def _train_central(example: Path, workdir: Path, epochs: int, seed: int) -> Path:
    """The same script on all the training data in one process: the baseline."""
    model = workdir / "central_model.pth"
    env = {
        **os.environ,
        "GRIDX_DATA": str(example / "data" / "train.csv"),
        "GRIDX_EPOCHS": str(epochs),
        "GRIDX_SEED": str(seed),
        "GRIDX_OUTPUT": str(model),
        "GRIDX_METRICS": str(workdir / "central_metrics.json"),
    }
    subprocess.run(
        [sys.executable, str(example / "train.py")],
        env=env,
        cwd=workdir,
        check=True,
        capture_output=True,
    )
    return model


def run_demo(rounds: int, num_nodes: int, epochs: int, keep: bool, example: Path = EXAMPLE) -> int:
    """Start a coordinator and nodes, run the digits job, compare, stop everything.

    Returns:
        The process exit code (0 when the job succeeded).
    """
    if not (example / "train.py").exists():
        raise click.ClickException(
            f"the digits example is not at {example}; run the demo from a clone of the repository"
        )
    root = Path(tempfile.mkdtemp(prefix="gridx-demo-"))
    click.echo(f"Grid-X demo: coordinator + {num_nodes} nodes on 127.0.0.1 (files in {root})")
    started = time.monotonic()
    try:
        with LocalCluster(root, executor="auto") as cluster:
            click.echo(f"coordinator up at {cluster.url}")
            for i in range(num_nodes):
                cluster.add_node(f"node-{i + 1}")
            client = ApiClient(cluster.url, cluster.api_key)
            config = JobConfig(name="digits-demo", rounds=rounds, shards=num_nodes, epochs=epochs)
            detail = client.submit(
                config,
                example / "train.py",
                example / "requirements.txt",
                example / "data" / "train.csv",
            )
            job_id = detail.job.id
            click.echo(
                f"submitted {job_id}: {rounds} rounds x {num_nodes} shards, {epochs} local epochs"
            )
            detail = watch(client, job_id)
            if detail.job.status != "succeeded":
                click.echo(
                    f"job {detail.job.status}: {detail.job.error}\n{last_failure(detail)}", err=True
                )
                return 1
            model = client.download(job_id, "pth", root / "final_model.pth")
            client.download(job_id, "safetensors", root / "final_model.safetensors")
            nodes_used = sorted({t.node_id for t in detail.tasks if t.node_id})
        fed_wall = time.monotonic() - started
        click.echo(f"job {job_id} succeeded in {fed_wall:.1f}s on {len(nodes_used)} node(s)")
        click.echo(
            "training the centralized baseline (same script, all data, same total epochs)..."
        )
        central = _train_central(example, root, rounds * epochs, config.seed)
        fed_acc, central_acc = _evaluate(example, model), _evaluate(example, central)
        gap = (central_acc - fed_acc) * 100
        click.echo(f"final model: {model} (and .safetensors)")
        click.echo(f"held-out accuracy, federated ({num_nodes} nodes): {fed_acc * 100:.2f}%")
        click.echo(f"held-out accuracy, centralized baseline:   {central_acc * 100:.2f}%")
        click.echo(f"gap: {gap:+.2f} points")
        click.echo(
            json.dumps(
                {
                    "job": job_id,
                    "federated_accuracy": round(fed_acc, 4),
                    "central_accuracy": round(central_acc, 4),
                    "gap_points": round(gap, 2),
                    "seconds": round(fed_wall, 1),
                }
            )
        )
        return 0
    finally:
        if keep:
            click.echo(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

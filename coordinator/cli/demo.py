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
from gridx.schemas.jobs import JobConfig, JobDetail

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DEMOS = {
    "digits": "an MLP on 8x8 handwritten digits (classification)",
    "regression": "an MLP predicting a building's energy use from 8 readings (regression)",
}


def held_out(example: Path, model: Path) -> tuple[str, float]:
    """The example's own `evaluate.py` on its test split: its headline metric (the first key of
    the JSON it prints) and the value."""
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
    name, value = next(iter(json.loads(out.stdout.strip().splitlines()[-1]).items()))
    return str(name), float(value)


def train_central(script: Path, data: Path, workdir: Path, epochs: int, seed: int) -> Path:
    """The same script on all the training data in one process: the baseline."""
    model = workdir / "central_model.pth"
    env = {
        **os.environ,
        "GRIDX_DATA": str(data),
        "GRIDX_EPOCHS": str(epochs),
        "GRIDX_SEED": str(seed),
        "GRIDX_OUTPUT": str(model),
        "GRIDX_METRICS": str(workdir / "central_metrics.json"),
    }
    subprocess.run(
        [sys.executable, str(script)], env=env, cwd=workdir, check=True, capture_output=True
    )
    return model


def _show(name: str, value: float) -> str:
    return f"{value * 100:.2f}%" if name == "accuracy" else f"{value:.4f}"


def _federated(
    root: Path, example: Path, name: str, rounds: int, num_nodes: int, epochs: int
) -> tuple[JobDetail, Path]:
    """Run the example's job on a local coordinator and `num_nodes` nodes; its final detail and
    model (not downloaded when the job failed)."""
    model = root / "final_model.pth"
    with LocalCluster(root, executor="auto") as cluster:
        click.echo(f"coordinator up at {cluster.url}")
        for i in range(num_nodes):
            cluster.add_node(f"node-{i + 1}")
        client = ApiClient(cluster.url, cluster.api_key)
        config = JobConfig(name=f"{name}-demo", rounds=rounds, shards=num_nodes, epochs=epochs)
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
        if detail.job.status == "succeeded":
            client.download(job_id, "pth", model)
            client.download(job_id, "safetensors", root / "final_model.safetensors")
    return detail, model


def _compare(root: Path, example: Path, model: Path, detail: JobDetail, fed_wall: float) -> None:
    """Train the centralized baseline and print both held-out scores (and a JSON line)."""
    config = detail.config
    click.echo("training the centralized baseline (same script, all data, same total epochs)...")
    central = train_central(
        example / "train.py",
        example / "data" / "train.csv",
        root,
        config.rounds * config.epochs,
        config.seed,
    )
    metric, fed = held_out(example, model)
    _, base = held_out(example, central)
    click.echo(f"final model: {model} (and .safetensors)")
    click.echo(f"held-out {metric}, federated ({config.shards} nodes): {_show(metric, fed)}")
    click.echo(f"held-out {metric}, centralized baseline:   {_show(metric, base)}")
    click.echo(f"gap: {(fed - base) * 100:+.2f} points")
    summary = {
        "job": detail.job.id,
        "metric": metric,
        "federated": round(fed, 4),
        "central": round(base, 4),
        "gap_points": round((fed - base) * 100, 2),
        "seconds": round(fed_wall, 1),
    }
    click.echo(json.dumps(summary))


def run_demo(rounds: int, num_nodes: int, epochs: int, keep: bool, name: str = "digits") -> int:
    """Start a coordinator and nodes, run the example's job, compare it with centralized
    training, stop everything.

    Returns:
        The process exit code (0 when the job succeeded).
    """
    example = EXAMPLES / name
    if not (example / "train.py").exists():
        raise click.ClickException(
            f"the {name} example is not at {example}; run the demo from a clone of the repository"
        )
    root = Path(tempfile.mkdtemp(prefix="gridx-demo-"))
    click.echo(f"Grid-X demo: coordinator + {num_nodes} nodes on 127.0.0.1 (files in {root})")
    click.echo(f"example {name}: {DEMOS[name]}")
    started = time.monotonic()
    try:
        detail, model = _federated(root, example, name, rounds, num_nodes, epochs)
        if detail.job.status != "succeeded":
            msg = f"job {detail.job.status}: {detail.job.error}\n{last_failure(detail)}"
            click.echo(msg, err=True)
            return 1
        fed_wall = time.monotonic() - started
        nodes_used = {t.node_id for t in detail.tasks if t.node_id}
        click.echo(f"job {detail.job.id} succeeded in {fed_wall:.1f}s on {len(nodes_used)} node(s)")
        _compare(root, example, model, detail, fed_wall)
        return 0
    finally:
        if keep:
            click.echo(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
